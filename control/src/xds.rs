//! xDS: the renderer's JSON resources turned into protobuf (through Envoy's own API
//! descriptors), versioned consistent snapshots, a per-node cache, and the ADS server.

pub mod cache;
pub mod server;
pub mod snapshot;

use std::sync::OnceLock;

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// ECDS: the wasm filter's configuration, as a `TypedExtensionConfig`.
/// SDS: https-proxy mode's leaf certificates (Envoy redacts their keys in /config_dump).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("the built-in Envoy API descriptors do not load: {0}")]
    Descriptors(String),
    #[error("unknown resource type {0}")]
    UnknownType(String),
    #[error("resource {name} does not fit {type_url}: {reason}")]
    Encode { type_url: String, name: String, reason: String },
}

static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();

fn pool() -> Result<&'static DescriptorPool, XdsError> {
    POOL.get_or_init(|| {
        DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"))[..])
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| XdsError::Descriptors(e.clone()))
}

/// Encodes one JSON resource (Envoy's proto3 JSON, `@type` on nested `Any`s) as an `Any`.
pub fn to_any(type_url: &str, json: &serde_json::Value) -> Result<Any, XdsError> {
    let full_name = type_url.rsplit('/').next().unwrap_or_default();
    let desc = pool()?.get_message_by_name(full_name).ok_or_else(|| XdsError::UnknownType(type_url.to_owned()))?;
    let name = json.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_owned();
    let msg = DynamicMessage::deserialize(desc, json).map_err(|e| XdsError::Encode {
        type_url: type_url.to_owned(),
        name,
        // The message names fields, not values; resources hold only sealed credentials anyway.
        reason: e.to_string(),
    })?;
    Ok(Any { type_url: type_url.to_owned(), value: prost::Message::encode_to_vec(&msg) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_resources_encode_and_typos_are_caught() {
        let c = serde_json::json!({"name": "c", "connect_timeout": "5s", "type": "STATIC"});
        let any = to_any(CLUSTER, &c).unwrap();
        assert_eq!(any.type_url, CLUSTER);
        assert!(!any.value.is_empty());
        let bad = serde_json::json!({"name": "c", "conect_timeout": "5s"});
        assert!(matches!(to_any(CLUSTER, &bad), Err(XdsError::Encode { .. })));
        assert!(matches!(to_any("type.googleapis.com/x.Y", &c), Err(XdsError::UnknownType(_))));
    }
}
