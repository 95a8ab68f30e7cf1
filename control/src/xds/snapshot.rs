//! A snapshot: every resource one Envoy should have, by type, each type with a version that is
//! a hash of its contents (so an unchanged type is never pushed again), checked for
//! consistency before anyone sees it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use envoy_types::pb::google::protobuf::Any;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{to_any, XdsError, CLUSTER, EXTENSION_CONFIG, LISTENER, SECRET};
use crate::render::Resources;

/// One named resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub any: Any,
}

/// All resources of one type, and their version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Typed {
    pub version: String,
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub types: BTreeMap<&'static str, Typed>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{kind} {name:?} is defined twice")]
    Duplicate { kind: &'static str, name: String },
    #[error("listener {listener} refers to {kind} {name:?}, which the snapshot does not have")]
    Dangling { listener: String, kind: &'static str, name: String },
    #[error(transparent)]
    Encode(#[from] XdsError),
}

/// Every value of `key` (a string) anywhere inside `v`.
fn strings_under<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k == key, x) {
                    (true, Value::String(s)) => out.push(s),
                    _ => strings_under(x, key, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| strings_under(x, key, out)),
        _ => {}
    }
}

fn names<'a>(kind: &'static str, items: &'a [Value]) -> Result<BTreeSet<&'a str>, SnapshotError> {
    let mut set = BTreeSet::new();
    for i in items {
        let n = i.get("name").and_then(Value::as_str).unwrap_or_default();
        if !set.insert(n) {
            return Err(SnapshotError::Duplicate { kind, name: n.to_owned() });
        }
    }
    Ok(set)
}

/// Every reference a listener makes must resolve inside the same snapshot: route clusters,
/// ECDS filter configurations, SDS secrets, internal listeners.
fn check(res: &Resources) -> Result<(), SnapshotError> {
    let clusters = names("cluster", &res.clusters)?;
    let listeners = names("listener", &res.listeners)?;
    let extensions = names("extension config", &res.extension_configs)?;
    let secrets = names("secret", &res.secrets)?;
    for l in &res.listeners {
        let listener = l.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut refs = Vec::new();
        strings_under(l, "cluster", &mut refs);
        if let Some(r) = refs.iter().find(|r| !clusters.contains(*r)) {
            return Err(SnapshotError::Dangling { listener, kind: "cluster", name: (*r).to_owned() });
        }
        let chains = l.get("filter_chains").and_then(Value::as_array).into_iter().flatten();
        for chain in chains {
            let filters = chain.pointer("/filters/0/typed_config/http_filters").and_then(Value::as_array);
            for f in filters.into_iter().flatten().filter(|f| f.get("config_discovery").is_some()) {
                let n = f.get("name").and_then(Value::as_str).unwrap_or_default();
                if !extensions.contains(n) {
                    return Err(SnapshotError::Dangling { listener, kind: "extension config", name: n.to_owned() });
                }
            }
            let sds = chain
                .pointer("/transport_socket/typed_config/common_tls_context/tls_certificate_sds_secret_configs")
                .and_then(Value::as_array);
            for s in sds.into_iter().flatten() {
                let n = s.get("name").and_then(Value::as_str).unwrap_or_default();
                if !secrets.contains(n) {
                    return Err(SnapshotError::Dangling { listener, kind: "secret", name: n.to_owned() });
                }
            }
        }
    }
    for c in &res.clusters {
        let mut refs = Vec::new();
        strings_under(c, "server_listener_name", &mut refs);
        if let Some(r) = refs.iter().find(|r| !listeners.contains(*r)) {
            let cluster = c.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            return Err(SnapshotError::Dangling {
                listener: cluster,
                kind: "internal listener",
                name: (*r).to_owned(),
            });
        }
    }
    Ok(())
}

/// Hashes JSON as it is serialised, without holding the text (listeners run to megabytes).
struct HashWriter {
    hash: Sha256,
    len: usize,
}

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hash.update(buf);
        self.len += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encoded resources by the hash of their JSON: re-rendering after a credential change
/// re-encodes only what changed (the filter's configuration), not thousands of routes.
#[derive(Default)]
pub struct EncodeCache {
    map: HashMap<[u8; 32], Any>,
    used: HashSet<[u8; 32]>,
}

impl EncodeCache {
    /// Encodes every `(type, resource)`, from the cache where the JSON is unchanged; the rest
    /// is encoded on two threads (Envoy's protobuf through reflection is the slow part).
    fn encode_all(&mut self, items: &[(&'static str, &Value)]) -> Result<Vec<Any>, XdsError> {
        let mut sizes = Vec::with_capacity(items.len());
        let keys: Vec<[u8; 32]> = items
            .iter()
            .map(|(t, json)| {
                let mut w = HashWriter { hash: Sha256::new(), len: 0 };
                w.hash.update(t.as_bytes());
                // Serialising into a Vec<u8>-less writer cannot fail.
                let _ = serde_json::to_writer(&mut w, json);
                sizes.push(w.len);
                w.hash.finalize().into()
            })
            .collect();
        // Split the misses into two halves of about equal size, largest first.
        let mut missing: Vec<usize> = (0..items.len()).filter(|&i| !self.map.contains_key(&keys[i])).collect();
        missing.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
        let (mut left, mut right, mut load) = (Vec::new(), Vec::new(), [0usize; 2]);
        for i in missing {
            let side = usize::from(load[1] < load[0]);
            load[side] += sizes[i];
            if side == 0 {
                left.push(i)
            } else {
                right.push(i)
            }
        }
        let (left, right) = (&left[..], &right[..]);
        let encode = |idx: &[usize]| -> Result<Vec<(usize, Any)>, XdsError> {
            idx.iter().map(|&i| to_any(items[i].0, items[i].1).map(|a| (i, a))).collect()
        };
        let (a, b) = std::thread::scope(|s| {
            let h = s.spawn(|| encode(right));
            let a = encode(left);
            (a, h.join())
        });
        let b = b.map_err(|_| XdsError::Descriptors("an encoding thread panicked".into()))?;
        for (i, any) in a?.into_iter().chain(b?) {
            self.map.insert(keys[i], any);
        }
        self.used.extend(keys.iter().copied());
        keys.iter()
            .map(|k| {
                self.map.get(k).cloned().ok_or_else(|| XdsError::Descriptors("encoding cache lost an entry".into()))
            })
            .collect()
    }

    /// Forgets every entry not used since the last call: call it after a round of builds.
    pub fn sweep(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.map.retain(|k, _| used.contains(k));
    }
}

/// Versions each type by hashing its encoded resources.
fn typed(items: &[Value], anys: Vec<Any>) -> Typed {
    let mut hash = Sha256::new();
    let mut resources = Vec::with_capacity(items.len());
    for (i, any) in items.iter().zip(anys) {
        hash.update(&any.value);
        hash.update([0]);
        let name = i.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        resources.push(Resource { name, any });
    }
    Typed { version: hex::encode(&hash.finalize()[..8]), resources }
}

impl Snapshot {
    /// Checks and encodes rendered resources.
    pub fn build(res: &Resources) -> Result<Self, SnapshotError> {
        Self::build_cached(res, &mut EncodeCache::default())
    }

    /// Like [`Snapshot::build`], reusing encodings of unchanged resources.
    pub fn build_cached(res: &Resources, cache: &mut EncodeCache) -> Result<Self, SnapshotError> {
        check(res)?;
        let groups = [
            (CLUSTER, &res.clusters),
            (LISTENER, &res.listeners),
            (EXTENSION_CONFIG, &res.extension_configs),
            (SECRET, &res.secrets),
        ];
        let items: Vec<(&'static str, &Value)> =
            groups.iter().flat_map(|(t, v)| v.iter().map(move |x| (*t, x))).collect();
        let mut anys = cache.encode_all(&items)?.into_iter();
        let mut types = BTreeMap::new();
        for (t, v) in groups {
            types.insert(t, typed(v, anys.by_ref().take(v.len()).collect()));
        }
        Ok(Snapshot { types })
    }

    /// A short description for logs: each type's version.
    pub fn versions(&self) -> String {
        self.types
            .iter()
            .map(|(t, v)| format!("{}={}", t.rsplit('.').next().unwrap_or(t), v.version))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn res() -> Resources {
        Resources {
            listeners: vec![
                json!({"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "s",
                    "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]},
                    "http_filters": [{"name": "f", "config_discovery": {"config_source": {"ads": {}}, "type_urls": [crate::render::WASM_TYPE_URL]}}]}}]}]}),
            ],
            clusters: vec![json!({"name": "c", "connect_timeout": "1s"})],
            secrets: vec![],
            extension_configs: vec![
                json!({"name": "f", "typed_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x"}}),
            ],
        }
    }

    #[test]
    fn consistent_snapshots_build_with_content_versions() {
        let a = Snapshot::build(&res()).unwrap();
        let b = Snapshot::build(&res()).unwrap();
        assert_eq!(a, b, "same content, same versions");
        let mut r = res();
        r.extension_configs[0]["typed_config"]["value"] = json!("y");
        let c = Snapshot::build(&r).unwrap();
        assert_eq!(a.types[LISTENER].version, c.types[LISTENER].version);
        assert_eq!(a.types[CLUSTER].version, c.types[CLUSTER].version);
        assert_ne!(a.types[EXTENSION_CONFIG].version, c.types[EXTENSION_CONFIG].version, "only ECDS changes");
    }

    #[test]
    fn dangling_references_and_duplicates_are_refused() {
        let mut r = res();
        r.clusters[0]["name"] = json!("other");
        assert!(matches!(Snapshot::build(&r), Err(SnapshotError::Dangling { kind: "cluster", .. })));
        let mut r = res();
        r.extension_configs.clear();
        assert!(matches!(Snapshot::build(&r), Err(SnapshotError::Dangling { kind: "extension config", .. })));
        let mut r = res();
        let c = r.clusters[0].clone();
        r.clusters.push(c);
        assert!(matches!(Snapshot::build(&r), Err(SnapshotError::Duplicate { .. })));
        let mut r = res();
        r.clusters.push(json!({"name": "t", "load_assignment": {"cluster_name": "t", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": "missing"}}}}]}]}}));
        assert!(matches!(Snapshot::build(&r), Err(SnapshotError::Dangling { kind: "internal listener", .. })));
    }
}
