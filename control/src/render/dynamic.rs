//! Bootstraps for dynamic configuration: one that takes everything over ADS from
//! `npm-connector serve`, and file-based xDS (a watched directory) for setups with no
//! control-plane process.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::envoy::{bootstrap_base, config_source, to_json, to_yaml, ConfigSource, Resources};
use super::{Options, OutFile, RenderError};
use crate::xds::{CLUSTER, EXTENSION_CONFIG, LISTENER, SECRET};

/// `render --xds-dir`'s files, as the bootstrap and the resources that point at them name them.
const LDS_FILE: &str = "lds.json";
const CDS_FILE: &str = "cds.json";
pub(super) const SDS_FILE: &str = "sds.json";

/// The file of one filter configuration (ECDS) in the xDS directory.
pub(super) fn ecds_file(name: &str) -> String {
    format!("ecds-{name}.json")
}

/// The xDS cluster's name in rendered bootstraps.
pub const XDS_CLUSTER: &str = "npm_connector_xds";

/// Where `serve` listens, from `--xds grpc://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTarget {
    pub host: String,
    pub port: u16,
}

impl XdsTarget {
    pub fn parse(url: &url::Url) -> Result<Self, RenderError> {
        let bad = || RenderError::Xds(url.to_string());
        if url.scheme() != "grpc" {
            return Err(bad());
        }
        Ok(XdsTarget { host: url.host_str().ok_or_else(bad)?.to_owned(), port: url.port().ok_or_else(bad)? })
    }
}

/// Envoy's client certificate for mutual TLS with `serve`, and the CA that issued serve's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsClientTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The control plane as a bootstrap reaches it: one or more `serve` replicas (a DNS name
/// resolving to several, e.g. a headless Service, counts as several), optionally over mTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xds {
    pub targets: Vec<XdsTarget>,
    pub tls: Option<XdsClientTls>,
}

/// A bootstrap that gets listeners, clusters and the filter's configuration (ECDS) from
/// `serve` over ADS. The node's metadata tells `serve` where this Envoy's listener binds. With
/// several replicas, the ADS stream goes to one and reconnects to another when it fails; the
/// Envoy keeps its configuration meanwhile.
pub fn xds_bootstrap(opts: &Options, node_id: &str, xds: &Xds) -> Result<Vec<OutFile>, RenderError> {
    let mut doc = bootstrap_base(opts, node_id);
    doc["node"]["metadata"] = json!({"npm_connector_listen": opts.listen.to_string()});
    let addresses: Vec<(String, u16)> = xds
        .targets
        .iter()
        .map(|t| match opts.resolve.get(&t.host) {
            Some(ip) => (ip.to_string(), t.port),
            None => (t.host.clone(), t.port),
        })
        .collect();
    let dns = addresses.iter().any(|(a, _)| a.parse::<std::net::IpAddr>().is_err());
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|(a, p)| json!({"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}}))
        .collect();
    let mut cluster = json!({
        "name": XDS_CLUSTER,
        // STRICT_DNS: every address a name resolves to is an endpoint (each replica).
        "type": if dns { "STRICT_DNS" } else { "STATIC" },
        "connect_timeout": "2s",
        // gRPC needs HTTP/2; keepalive notices a control plane that vanished without a FIN.
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {
                "connection_keepalive": {"interval": "10s", "timeout": "5s"}}}}},
        "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 30, "keepalive_interval": 10, "keepalive_probes": 3}},
        "load_assignment": {"cluster_name": XDS_CLUSTER, "endpoints": [{"lb_endpoints": endpoints}]},
    });
    if dns {
        cluster["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    if let Some(tls) = &xds.tls {
        // serve's certificate must chain to `ca` and name the host Envoy dialled.
        let sans: Vec<Value> = xds
            .targets
            .iter()
            .map(|t| {
                let kind = if t.host.parse::<std::net::IpAddr>().is_ok() { "IP_ADDRESS" } else { "DNS" };
                json!({"san_type": kind, "matcher": {"exact": t.host}})
            })
            .collect();
        let mut ctx = json!({
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [{"certificate_chain": {"filename": tls.cert.display().to_string()},
                                      "private_key": {"filename": tls.key.display().to_string()}}],
                "validation_context": {"trusted_ca": {"filename": tls.ca.display().to_string()},
                                       "match_typed_subject_alt_names": sans}}});
        if let Some(first) = xds.targets.first().filter(|t| t.host.parse::<std::net::IpAddr>().is_err()) {
            ctx["sni"] = json!(first.host);
        }
        cluster["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": ctx});
    }
    doc["static_resources"] = json!({"clusters": [cluster]});
    doc["dynamic_resources"] = json!({
        "ads_config": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "set_node_on_first_message_only": true,
            "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER,
                // Reconnect quickly after the control plane restarts; Envoy keeps the last
                // configuration meanwhile.
                "retry_policy": {"retry_back_off": {"base_interval": "0.25s", "max_interval": "5s"}, "num_retries": 100000}}}],
        },
        "lds_config": {"ads": {}, "resource_api_version": "V3"},
        "cds_config": {"ads": {}, "resource_api_version": "V3"},
    });
    let contents =
        to_yaml(&doc, "# Rendered by npm-connector render --xds: everything else comes from npm-connector serve.")?;
    let mut files = vec![OutFile { path: PathBuf::from("envoy.yaml"), contents: contents.into(), secret: false }];
    if opts.mode == super::Mode::Sidecar {
        files.extend(super::sidecar::files(opts)?);
    }
    Ok(files)
}

fn discovery_response(type_url: &str, items: &[Value]) -> Value {
    let resources: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut r = json!({"@type": type_url});
            if let (Some(o), Some(src)) = (r.as_object_mut(), i.as_object()) {
                o.extend(src.clone());
            }
            r
        })
        .collect();
    json!({"resources": resources})
}

/// File-based xDS: `lds.json`, `cds.json`, `sds.json` (https-proxy's leaves) and one
/// `ecds-<name>.json` per filter configuration in `dir`, and a bootstrap that watches them.
/// Writing new files there (atomically, as `render --xds-dir` does) updates Envoy. JSON, never
/// YAML: Envoy picks a file's parser by its extension, and a `.yaml` goes through yaml-cpp and
/// a YAML-to-JSON step first (10,000 https-proxy connectors: 21 MB of `lds.yaml` took Envoy
/// 7.8–8.0 s to be ready and a 624 MB peak; the same documents as `.json`, 2.9–3.0 s and
/// 295 MB). JSON holds no comments: the files' modes (0600 where a credential or key is) say
/// what they hold.
pub fn xds_dir_files(res: &Resources, opts: &Options, dir: &Path) -> Result<Vec<OutFile>, RenderError> {
    let file = |name: &str, doc: Value, secret: bool| -> Result<OutFile, RenderError> {
        Ok(OutFile { path: dir.join(name), contents: (to_json(&doc)? + "\n").into(), secret })
    };
    let mut files = vec![
        file(LDS_FILE, discovery_response(LISTENER, &res.listeners), true)?,
        file(CDS_FILE, discovery_response(CLUSTER, &res.clusters), false)?,
    ];
    if !res.secrets.is_empty() {
        files.push(file(SDS_FILE, discovery_response(SECRET, &res.secrets), true)?);
    }
    for e in &res.extension_configs {
        let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
        files.push(file(&ecds_file(name), discovery_response(EXTENSION_CONFIG, std::slice::from_ref(e)), true)?);
    }
    let source = ConfigSource::Dir(dir.to_owned());
    let mut doc = bootstrap_base(opts, "npm-connector");
    doc["dynamic_resources"] = json!({
        "lds_config": config_source(&source, LDS_FILE),
        "cds_config": config_source(&source, CDS_FILE),
    });
    files.push(OutFile {
        path: PathBuf::from("envoy.yaml"),
        contents: to_yaml(&doc, "# Rendered by npm-connector render --xds-dir: Envoy watches the xDS directory.")?
            .into(),
        secret: false,
    });
    Ok(files)
}
