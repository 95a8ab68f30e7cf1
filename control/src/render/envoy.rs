//! The Envoy bootstrap: one listener running the wasm filter, one upstream cluster per registry,
//! and the admin API on a unix socket.

use serde_json::{json, Value};

use super::filter::{self, authority, Role};
use super::{Mode, Options, Planned, RenderError, Unmatched, SYSTEM_CA};

/// Carries no header that could hold a token or credential: method, authority, path, status,
/// flags, sizes, duration and upstream only.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms upstream=%UPSTREAM_HOST%\n";

const PASSTHROUGH: &str = "passthrough";
/// The internal listener that CONNECT tunnels to registry hosts end in (forward mode).
const TUNNEL_LISTENER: &str = "npm_connector_tunnel";
const TUNNEL_CLUSTER: &str = "tunnel";

/// A registry endpoint: scheme, host and port; connectors on the same one share a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Upstream {
    pub(super) fn of(u: &url::Url) -> Self {
        Upstream {
            tls: u.scheme() == "https",
            host: u.host_str().unwrap_or_default().to_owned(),
            port: u.port_or_known_default().unwrap_or(443),
        }
    }

    pub(super) fn cluster_name(&self) -> String {
        format!("registry_{}_{}", self.host, self.port)
    }
}

pub(super) fn cluster(up: &Upstream, opts: &Options) -> Value {
    let name = up.cluster_name();
    let pinned = opts.resolve.get(&up.host);
    let address = pinned.map(|ip| ip.to_string()).unwrap_or_else(|| up.host.clone());
    let mut c = json!({
        "name": name,
        "type": if pinned.is_some() || up.host.parse::<std::net::IpAddr>().is_ok() { "STATIC" } else { "LOGICAL_DNS" },
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": address, "port_value": up.port}}}}]}]},
    });
    if c["type"] == "LOGICAL_DNS" {
        c["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    if up.tls {
        let ca = opts.upstream_ca.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| SYSTEM_CA.to_owned());
        let san_type = if up.host.parse::<std::net::IpAddr>().is_ok() { "IP_ADDRESS" } else { "DNS" };
        // Verify the registry's certificate chain *and* that it names the registry host.
        c["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": up.host,
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": ca},
                    "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": up.host}}],
                }},
            },
        });
    }
    c
}

pub(super) fn route_to(cluster: &str) -> Value {
    // Publishing a large package can take a while; npm's own timeout is 5 minutes.
    json!({"cluster": cluster, "timeout": "300s"})
}

pub(super) fn json_reply(status: u16, message: &str) -> Value {
    json!({"status": status, "body": {"inline_string": json!({"error": message}).to_string()}})
}

/// Where a virtual host is: on the listener clients talk to, or inside a CONNECT tunnel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Outer,
    Tunnel,
}

fn virtual_hosts(planned: &[Planned<'_>], opts: &Options, side: Side) -> Vec<Value> {
    match opts.mode {
        Mode::Forward => {
            // One virtual host per registry authority; Envoy matches `host` and `host:port`.
            let by_up: std::collections::BTreeSet<Upstream> =
                planned.iter().map(|p| Upstream::of(&p.connector.address)).collect();
            let mut vhosts: Vec<Value> = by_up
                .iter()
                .map(|up| {
                    let mut routes = Vec::new();
                    if side == Side::Outer {
                        // Clients such as yarn (hpagent) tunnel even plain-http requests with
                        // CONNECT: terminate it here (the filter has checked Proxy-Authorization
                        // on the CONNECT) and run the tunnelled requests through the filter again.
                        let mut r = json!({"cluster": TUNNEL_CLUSTER, "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]});
                        r["timeout"] = json!("0s");
                        routes.push(json!({"match": {"connect_matcher": {}}, "route": r}));
                    }
                    routes.push(json!({"match": {"prefix": "/"}, "route": route_to(&up.cluster_name())}));
                    json!({
                        "name": up.cluster_name(),
                        "domains": [up.host, format!("{}:{}", up.host, up.port)],
                        "routes": routes,
                    })
                })
                .collect();
            let fallback = match (side, opts.unmatched) {
                (Side::Outer, Unmatched::Passthrough) => {
                    json!({"match": {"prefix": "/"}, "route": route_to(PASSTHROUGH)})
                }
                (Side::Outer, Unmatched::Deny) => {
                    json!({"match": {"prefix": "/"}, "direct_response":
                    json_reply(403, "npm-connector: this proxy only allows its connectors' registries")})
                }
                // A tunnel was opened for a registry host; any other Host inside it is refused.
                (Side::Tunnel, _) => json!({"match": {"prefix": "/"}, "direct_response":
                    json_reply(403, "npm-connector: the Host of a tunnelled request must be the registry the tunnel was opened for")}),
            };
            vhosts.push(json!({"name": "unmatched", "domains": ["*"], "routes": [fallback]}));
            vhosts
        }
        // https-proxy mode builds its own (render/https.rs).
        Mode::HttpsProxy => Vec::new(),
        Mode::Gateway => {
            let mut routes: Vec<Value> = planned
                .iter()
                .map(|p| {
                    let c = p.connector;
                    let mut r = route_to(&Upstream::of(&c.address).cluster_name());
                    r["prefix_rewrite"] = json!(c.address.path());
                    r["host_rewrite_literal"] = json!(authority(&c.address));
                    json!({"match": {"prefix": p.client_registry.path()}, "route": r})
                })
                .collect();
            routes.push(json!({"match": {"prefix": "/"}, "direct_response":
                json_reply(404, "npm-connector: no connector at this path; registries are at /<namespace>/<name>/")}));
            vec![json!({"name": "gateway", "domains": ["*"], "routes": routes})]
        }
    }
}

fn wasm_filter(opts: &Options, filter_json: &str, vm_id: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "npm_connector",
                "root_id": "npm_connector",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": filter_json},
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": opts.wasm.display().to_string()}},
                    // The sealing key reaches the filter from Envoy's environment only.
                    "environment_variables": {"host_env_keys": [npm_connector_filter::seal::KEY_ENV]},
                },
            },
        },
    })
}

fn dns_cache() -> Value {
    json!({"name": PASSTHROUGH, "dns_lookup_family": "V4_PREFERRED"})
}

pub(super) fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

pub(super) fn access_log() -> Value {
    json!([{"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}])
}

/// An HTTP connection manager with the path handling every npm-connector listener needs.
pub(super) fn hcm(stat_prefix: &str, virtual_hosts: Vec<Value>, http_filters: Vec<Value>) -> Value {
    // Large parts are moved in after the skeleton: `json!` would copy them.
    let mut v = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            // RFC 3986 normalisation and merged slashes before any filter sees the path; encoded
            // slashes stay as they are, because npm asks for scoped packages as /@scope%2fname.
            "normalize_path": true,
            "merge_slashes": true,
            "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
            "access_log": access_log(),
            "route_config": {"name": stat_prefix},
        },
    });
    v["typed_config"]["route_config"]["virtual_hosts"] = Value::Array(virtual_hosts);
    v["typed_config"]["http_filters"] = Value::Array(http_filters);
    v
}

/// A listener around one HTTP connection manager.
pub(super) fn listener(mut head: Value, hcm: Value) -> Value {
    head["filter_chains"] = json!([{"filters": []}]);
    head["filter_chains"][0]["filters"] = Value::Array(vec![hcm]);
    head
}

/// Where Envoy gets the wasm filter's configuration (and its other dynamic resources) from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Inline in a static bootstrap.
    Static,
    /// From the aggregated xDS stream (`npm-connector serve`); the filter over ECDS.
    Ads,
    /// From files in a watched directory (`render --xds-dir`).
    Dir(std::path::PathBuf),
}

/// The Envoy resources of one rendering: listeners, clusters and (unless inline) the filter
/// configurations Envoy fetches over ECDS as `TypedExtensionConfig`s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    pub extension_configs: Vec<Value>,
    /// SDS secrets (https-proxy mode's leaf certificates), unless read from files.
    pub secrets: Vec<Value>,
}

pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// The `config_source` Envoy uses for a dynamic resource in `file` (file-based xDS).
pub(crate) fn config_source(source: &ConfigSource, file: &str) -> Value {
    match source {
        ConfigSource::Dir(dir) => json!({"path_config_source": {
            "path": dir.join(file).display().to_string(),
            "watched_directory": {"path": dir.display().to_string()}},
            "resource_api_version": "V3"}),
        _ => json!({"ads": {}, "resource_api_version": "V3"}),
    }
}

/// The filter's entry in an HTTP filter chain; with xDS, the listener only names the config,
/// so a credential change touches the ECDS resource and drains no connection.
pub(super) fn filter_entry(
    name: &str,
    filter_json: &str,
    opts: &Options,
    source: &ConfigSource,
    extension_configs: &mut Vec<Value>,
) -> Value {
    let mut inline = wasm_filter(opts, filter_json, name);
    if *source == ConfigSource::Static {
        return inline;
    }
    let mut ext = json!({"name": name});
    ext["typed_config"] = inline["typed_config"].take();
    extension_configs.push(ext);
    json!({"name": name, "config_discovery": {
        "config_source": config_source(source, &format!("ecds-{name}.yaml")),
        "type_urls": [WASM_TYPE_URL]}})
}

pub fn resources(
    planned: &[Planned<'_>],
    opts: &Options,
    connectors: &[Value],
    source: &ConfigSource,
) -> Result<Resources, RenderError> {
    let forward = opts.mode == Mode::Forward;
    let passthrough = forward && opts.unmatched == Unmatched::Passthrough;
    let mut res = Resources::default();
    if opts.mode == Mode::HttpsProxy {
        return super::https::resources(planned, opts, connectors, source);
    }
    // The two listeners' halves and the clusters are independent: build them on two threads
    // (thousands of connectors make this the bulk of a render).
    let (outer_side, tunnel_side) = std::thread::scope(|s| {
        let tunnel_side = s.spawn(|| -> Result<_, RenderError> {
            let mut ups: Vec<Upstream> = planned.iter().map(|p| Upstream::of(&p.connector.address)).collect();
            ups.sort();
            ups.dedup();
            let clusters: Vec<Value> = ups.iter().map(|u| cluster(u, opts)).collect();
            let tunnel = match forward {
                // The same connectors as the outer listener's, validated there already.
                true => Some((
                    filter::config(connectors, opts, Role::default(), false)?,
                    virtual_hosts(planned, opts, Side::Tunnel),
                )),
                false => None,
            };
            Ok((clusters, tunnel))
        });
        let role = Role { proxy_listener: forward, ..Role::default() };
        let outer_side =
            filter::config(connectors, opts, role, true).map(|f| (f, virtual_hosts(planned, opts, Side::Outer)));
        (outer_side, tunnel_side.join())
    });
    let (outer_filter, outer_vhosts) = outer_side?;
    let (clusters, tunnel) = tunnel_side.map_err(|_| RenderError::Filter("a rendering thread panicked".into()))??;
    let mut http_filters = vec![filter_entry("npm_connector", &outer_filter, opts, source, &mut res.extension_configs)];
    if passthrough {
        http_filters.push(json!({"name": "envoy.filters.http.dynamic_forward_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig",
            "dns_cache_config": dns_cache()}}));
    }
    http_filters.push(router());
    let mut outer = hcm("npm_connector", outer_vhosts, http_filters);
    let listen = opts.listen;
    let listener_name = if forward { "npm_connector_forward" } else { "npm_connector_gateway" };
    if forward {
        // A forward proxy receives absolute URLs (`GET http://registry/...`) and CONNECT.
        outer["typed_config"]["http_protocol_options"] = json!({"allow_absolute_url": true});
        outer["typed_config"]["upgrade_configs"] = json!([{"upgrade_type": "CONNECT"}]);
    }
    res.listeners.push(listener(
        json!({"name": listener_name, "address": {"socket_address": {"address": listen.ip().to_string(), "port_value": listen.port()}}}),
        outer,
    ));
    if let Some((tunnel_filter, tunnel_vhosts)) = tunnel {
        let inner_filters = vec![
            filter_entry("npm_connector_tunnel", &tunnel_filter, opts, source, &mut res.extension_configs),
            router(),
        ];
        let inner = hcm("npm_connector_tunnel", tunnel_vhosts, inner_filters);
        res.listeners.push(listener(json!({"name": TUNNEL_LISTENER, "internal_listener": {}}), inner));
    }
    res.clusters = clusters;
    if forward {
        res.clusters.push(json!({"name": TUNNEL_CLUSTER, "connect_timeout": "5s", "load_assignment": {"cluster_name": TUNNEL_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": TUNNEL_LISTENER}}}}]}]}}));
    }
    if passthrough {
        res.clusters.push(json!({
            "name": PASSTHROUGH,
            "connect_timeout": "5s",
            "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {"name": "envoy.clusters.dynamic_forward_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
                "dns_cache_config": dns_cache()}},
        }));
    }
    Ok(res)
}

/// What every bootstrap has: the node, the admin API on a unix socket, the internal listener
/// extension (where CONNECT tunnels end in forward and https-proxy modes).
pub(crate) fn bootstrap_base(opts: &Options, node_id: &str) -> Value {
    let mut doc = json!({
        "node": {"id": node_id, "cluster": "npm-connector"},
        // The admin API can dump the configuration: never on TCP.
        "admin": {"address": {"pipe": {"path": opts.admin_socket.display().to_string(), "mode": 0o600}}},
    });
    if opts.mode != Mode::Gateway {
        doc["bootstrap_extensions"] = json!([{"name": "envoy.bootstrap.internal_listener", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"}}]);
    }
    doc
}

/// Above this size a configuration is written in YAML's flow style (which is JSON): Envoy
/// reads it the same, and it is emitted five times faster than block style, which matters
/// for bootstraps with thousands of connectors (a 10,000-connector bootstrap is ~40 MB).
const FLOW_STYLE_ABOVE: usize = 4 << 20;

pub(crate) fn to_yaml(doc: &Value, header: &str) -> Result<String, RenderError> {
    let json = serde_json::to_string_pretty(doc).map_err(|e| RenderError::Yaml(e.to_string()))?;
    if json.len() > FLOW_STYLE_ABOVE {
        return Ok(format!(
            "{header}\n# Large: written in YAML flow style (JSON), which Envoy reads as YAML.\n{json}\n"
        ));
    }
    let yaml = serde_yaml_ng::to_string(doc).map_err(|e| RenderError::Yaml(e.to_string()))?;
    Ok(format!("{header}\n{yaml}"))
}

/// A static bootstrap: everything inline.
pub(crate) fn bootstrap(planned: &[Planned<'_>], opts: &Options, connectors: &[Value]) -> Result<String, RenderError> {
    let res = resources(planned, opts, connectors, &ConfigSource::Static)?;
    let mut doc = bootstrap_base(opts, "npm-connector");
    doc["static_resources"] = json!({});
    doc["static_resources"]["listeners"] = Value::Array(res.listeners);
    doc["static_resources"]["clusters"] = Value::Array(res.clusters);
    to_yaml(&doc, "# Rendered by npm-connector render. Holds the sealed registry credential: keep it 0600.")
}
