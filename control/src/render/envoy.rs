//! The Envoy bootstrap: one listener running the wasm filter, one upstream cluster per registry,
//! and the admin API on a unix socket.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{filter::authority, Mode, Options, Planned, RenderError, Unmatched, SYSTEM_CA};

/// Carries no header that could hold a token or credential: method, authority, path, status,
/// flags, sizes, duration and upstream only.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms upstream=%UPSTREAM_HOST%\n";

const PASSTHROUGH: &str = "passthrough";

/// A registry endpoint: scheme, host and port; connectors on the same one share a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Upstream {
    tls: bool,
    host: String,
    port: u16,
}

impl Upstream {
    fn of(u: &url::Url) -> Self {
        Upstream {
            tls: u.scheme() == "https",
            host: u.host_str().unwrap_or_default().to_owned(),
            port: u.port_or_known_default().unwrap_or(443),
        }
    }

    fn cluster_name(&self) -> String {
        format!("registry_{}_{}", self.host, self.port)
    }
}

fn cluster(up: &Upstream, opts: &Options) -> Value {
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

fn route_to(cluster: &str) -> Value {
    // Publishing a large package can take a while; npm's own timeout is 5 minutes.
    json!({"cluster": cluster, "timeout": "300s"})
}

fn json_reply(status: u16, message: &str) -> Value {
    json!({"status": status, "body": {"inline_string": json!({"error": message}).to_string()}})
}

fn virtual_hosts(planned: &[Planned<'_>], opts: &Options) -> Vec<Value> {
    match opts.mode {
        Mode::Forward => {
            // One virtual host per registry authority; Envoy matches `host` and `host:port`.
            let mut by_up: BTreeMap<Upstream, Vec<String>> = BTreeMap::new();
            for p in planned {
                by_up.entry(Upstream::of(&p.connector.address)).or_default().push(p.connector.id());
            }
            let mut vhosts: Vec<Value> = by_up
                .iter()
                .map(|(up, ids)| {
                    json!({
                        "name": up.cluster_name(),
                        "domains": [up.host, format!("{}:{}", up.host, up.port)],
                        "routes": [{"match": {"prefix": "/"}, "route": route_to(&up.cluster_name())}],
                        "metadata": {"filter_metadata": {"npm_connector": {"connectors": ids}}},
                    })
                })
                .collect();
            let fallback = match opts.unmatched {
                Unmatched::Passthrough => json!({"match": {"prefix": "/"}, "route": route_to(PASSTHROUGH)}),
                Unmatched::Deny => json!({"match": {"prefix": "/"}, "direct_response":
                    json_reply(403, "npm-connector: this proxy only allows its connectors' registries")}),
            };
            vhosts.push(json!({"name": "unmatched", "domains": ["*"], "routes": [fallback]}));
            vhosts
        }
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

pub(crate) fn wasm_filter(opts: &Options, filter_json: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "npm_connector",
                "root_id": "npm_connector",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": filter_json},
                "vm_config": {
                    "vm_id": "npm_connector",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": opts.wasm.display().to_string()}},
                },
            },
        },
    })
}

fn dns_cache() -> Value {
    json!({"name": PASSTHROUGH, "dns_lookup_family": "V4_PREFERRED"})
}

pub(crate) fn bootstrap(planned: &[Planned<'_>], opts: &Options, filter_json: &str) -> Result<String, RenderError> {
    let passthrough = opts.mode == Mode::Forward && opts.unmatched == Unmatched::Passthrough;
    let mut http_filters = vec![wasm_filter(opts, filter_json)];
    if passthrough {
        http_filters.push(json!({"name": "envoy.filters.http.dynamic_forward_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig",
            "dns_cache_config": dns_cache()}}));
    }
    http_filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));

    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "npm_connector",
        // RFC 3986 normalisation and merged slashes before any filter sees the path; encoded
        // slashes stay as they are, because npm asks for scoped packages as /@scope%2fname.
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "access_log": [{"name": "envoy.access_loggers.stdout", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}],
        "route_config": {"name": "npm_connector", "virtual_hosts": virtual_hosts(planned, opts)},
        "http_filters": http_filters,
    });
    if opts.mode == Mode::Forward {
        // A forward proxy receives absolute URLs (`GET http://registry/...`).
        hcm["http_protocol_options"] = json!({"allow_absolute_url": true});
    }

    let mut ups: Vec<Upstream> = planned.iter().map(|p| Upstream::of(&p.connector.address)).collect();
    ups.sort();
    ups.dedup();
    let mut clusters: Vec<Value> = ups.iter().map(|u| cluster(u, opts)).collect();
    if passthrough {
        clusters.push(json!({
            "name": PASSTHROUGH,
            "connect_timeout": "5s",
            "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {"name": "envoy.clusters.dynamic_forward_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
                "dns_cache_config": dns_cache()}},
        }));
    }

    let listener_name = match opts.mode {
        Mode::Forward => "npm_connector_forward",
        Mode::Gateway => "npm_connector_gateway",
    };
    let doc = json!({
        "node": {"id": "npm-connector", "cluster": "npm-connector"},
        // The admin API can dump the configuration, credential included: never on TCP.
        "admin": {"address": {"pipe": {"path": opts.admin_socket.display().to_string(), "mode": 0o600}}},
        "static_resources": {
            "listeners": [{
                "name": listener_name,
                "address": {"socket_address": {"address": opts.listen.ip().to_string(), "port_value": opts.listen.port()}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
            }],
            "clusters": clusters,
        },
    });
    let yaml = serde_yaml_ng::to_string(&doc).map_err(|e| RenderError::Yaml(e.to_string()))?;
    Ok(format!("# Rendered by npm-connector render. Contains the registry credential: keep it 0600.\n{yaml}"))
}
