//! The Envoy bootstrap of gateway mode (https-proxy mode's listeners are in https.rs): one
//! listener whose routes map each connector's path to its registry, named after the connector
//! so the filter knows whose route the router chose; registries reached by DNS share one
//! dynamic-forward-proxy cluster (pinned ones keep their own), always with verified TLS; the
//! admin API on a unix socket.

use serde_json::{json, Value};

use npm_connector_filter::config::Role;

use super::filter::{self, authority, route_name, Entry};
use super::{Mode, Options, Planned, RenderError, SYSTEM_CA};

/// Carries no header that could hold a token or credential: method, authority, path, status,
/// flags, sizes, duration and upstream only.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms upstream=%UPSTREAM_HOST%\n";

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

    /// Named as Istio names the cluster of a ServiceEntry host and port, so the filter's
    /// configuration (which names each connector's cluster) is the same in a sidecar Envoy and
    /// in an Istio proxy running the WasmPlugin.
    pub(super) fn cluster_name(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
    }
}

/// The cluster every registry endpoint reached by DNS shares, per scheme: Envoy's dynamic
/// forward proxy. A route to it names its endpoint's `host[:port]` (set as the Host before the
/// DNS lookup); the connection goes to that host, with that SNI and that SAN verified
/// (`auto_sni`, `auto_san_validation`). Hosts resolve on first use, so 10,000 registries cost
/// Envoy one cluster and one TLS context rather than 10,000 of each, each resolved before
/// Envoy is ready (a cluster per endpoint took 30 s and 880 MB at 10,000 connectors).
pub(crate) const REGISTRIES_CLUSTER: &str = "registries";
pub(crate) const REGISTRIES_CLEARTEXT_CLUSTER: &str = "registries_cleartext";
const DFP_FILTER: &str = "envoy.filters.http.dynamic_forward_proxy";

impl Upstream {
    /// `host:port`, always with the port (CONNECT targets, virtual host names and domains).
    pub(super) fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host[:port]`, the port only when it is not the scheme's default.
    pub(super) fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// An endpoint keeps a cluster of its own (`outbound|<port>||<host>`) when its address is
    /// pinned (`--resolve`) or an IP literal (nothing to resolve), and under `--istio`, whose
    /// WasmPlugin names the clusters Istio makes per ServiceEntry host.
    pub(super) fn own_cluster(&self, opts: &Options) -> bool {
        opts.istio.is_some() || opts.resolve.contains_key(&self.host) || self.host.parse::<std::net::IpAddr>().is_ok()
    }

    /// The cluster this endpoint's routes send to, which the filter checks.
    pub(super) fn cluster(&self, opts: &Options) -> String {
        match (self.own_cluster(opts), self.tls) {
            (true, _) => self.cluster_name(),
            (false, true) => REGISTRIES_CLUSTER.to_owned(),
            (false, false) => REGISTRIES_CLEARTEXT_CLUSTER.to_owned(),
        }
    }
}

/// The registry endpoints of `planned`, each once, in order.
pub(super) fn upstreams(planned: &[Planned<'_>]) -> Vec<Upstream> {
    let mut ups: Vec<Upstream> = planned.iter().map(|p| Upstream::of(&p.connector.address)).collect();
    ups.sort();
    ups.dedup();
    ups
}

/// The registry clusters: one per endpoint that keeps its own, and the shared ones in use.
pub(super) fn registry_clusters(ups: &[Upstream], opts: &Options) -> Vec<Value> {
    let mut out: Vec<Value> = ups.iter().filter(|u| u.own_cluster(opts)).map(|u| cluster(u, opts)).collect();
    for tls in [true, false] {
        if ups.iter().any(|u| u.tls == tls && !u.own_cluster(opts)) {
            out.push(shared_cluster(tls, opts));
        }
    }
    out
}

/// The end of a registry listener's HTTP filters: the DNS-lookup filter when any endpoint
/// uses a shared cluster, then the router.
pub(super) fn then_route(mut filters: Vec<Value>, ups: &[Upstream], opts: &Options) -> Vec<Value> {
    if ups.iter().any(|u| !u.own_cluster(opts)) {
        filters.push(dns_lookup_filter());
    }
    filters.push(router());
    filters
}

/// Envoy's DNS cache for registry hosts; the filter and the cluster must name the same one.
/// Its bound is far above any connector count so that adding connectors never changes the
/// cluster (a changed cluster drains its connections); entries exist only for hosts in use.
fn registries_dns_cache() -> Value {
    json!({"name": REGISTRIES_CLUSTER, "dns_lookup_family": "V4_PREFERRED", "max_hosts": 65536})
}

/// The HTTP filter that resolves a shared-cluster route's host before the router picks the
/// connection (it passes routes to other clusters and direct responses through).
fn dns_lookup_filter() -> Value {
    json!({"name": DFP_FILTER, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig",
        "dns_cache_config": registries_dns_cache()}})
}

fn upstream_tls(opts: &Options, pinned_name: Option<(&str, &str)>) -> Value {
    let ca = opts.upstream_ca.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| SYSTEM_CA.to_owned());
    let mut t = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": ca}}},
    });
    if let Some((host, san_type)) = pinned_name {
        t["sni"] = json!(host);
        t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] =
            json!([{"san_type": san_type, "matcher": {"exact": host}}]);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": t})
}

/// A dynamic forward proxy cluster over the DNS cache `dns_cache` (the filter that fills it
/// must name the same cache).
pub(super) fn dfp_cluster(name: &str, dns_cache: Value) -> Value {
    json!({
        "name": name,
        "connect_timeout": "5s",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {"name": "envoy.clusters.dynamic_forward_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
            "dns_cache_config": dns_cache}},
    })
}

fn shared_cluster(tls: bool, opts: &Options) -> Value {
    let name = if tls { REGISTRIES_CLUSTER } else { REGISTRIES_CLEARTEXT_CLUSTER };
    let mut c = dfp_cluster(name, registries_dns_cache());
    if tls {
        // The chain verified against the upstream CA, and SNI and SAN both the route's host.
        c["transport_socket"] = upstream_tls(opts, None);
        c["typed_extension_protocol_options"] = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "upstream_http_protocol_options": {"auto_sni": true, "auto_san_validation": true},
            "explicit_http_config": {"http_protocol_options": {}}}});
    }
    c
}

/// A route to a registry endpoint. To a shared cluster, the route sets the endpoint's
/// authority as the Host before the DNS lookup, so the route alone says where it goes.
pub(super) fn registry_route(name: &str, prefix: &str, up: &Upstream, opts: &Options) -> Value {
    let mut r = json!({"name": name, "match": {"prefix": prefix}, "route": route_to(&up.cluster(opts))});
    if !up.own_cluster(opts) {
        r["typed_per_filter_config"] = json!({DFP_FILTER: {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.PerRouteConfig",
            "host_rewrite_literal": up.authority()}});
    }
    r
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
    // Only under --istio (its clusters are per host); otherwise a DNS name shares a cluster.
    if c["type"] == "LOGICAL_DNS" {
        c["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    if up.tls {
        let san_type = if up.host.parse::<std::net::IpAddr>().is_ok() { "IP_ADDRESS" } else { "DNS" };
        // Verify the registry's certificate chain *and* that it names the registry host.
        c["transport_socket"] = upstream_tls(opts, Some((&up.host, san_type)));
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

/// Gateway mode's routes: each connector's path prefix (and publish prefix) to its registry
/// cluster, path and Host rewritten; the route's name is the connector's, which is how the
/// filter learns whose route the router chose. Every other path gets a JSON 404 from Envoy.
fn gateway_virtual_hosts(planned: &[Planned<'_>], opts: &Options) -> Vec<Value> {
    let mut routes: Vec<Value> = Vec::with_capacity(planned.len() + 1);
    for p in planned {
        let c = p.connector;
        let up = Upstream::of(&c.address);
        let mut r = registry_route(&route_name(c), p.client_registry.path(), &up, opts);
        r["route"]["prefix_rewrite"] = json!(c.address.path());
        if up.own_cluster(opts) {
            r["route"]["host_rewrite_literal"] = json!(authority(&c.address));
        }
        routes.push(r);
    }
    routes.push(json!({"name": "not_found", "match": {"prefix": "/"}, "direct_response":
        json_reply(404, "npm-connector: no connector at this path; registries are at /<namespace>/<name>/")}));
    vec![json!({"name": "gateway", "domains": ["*"], "routes": routes})]
}

/// Every filter configuration of one Envoy runs in the same VM (one per worker thread), each as
/// a root context of its own: a second `vm_id` would start a second V8 VM per thread (https-proxy
/// at 10,000 connectors: 15 MB more).
const VM_ID: &str = "npm_connector";

fn wasm_filter(opts: &Options, filter_json: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "npm_connector",
                "root_id": "npm_connector",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": filter_json},
                "vm_config": {
                    "vm_id": VM_ID,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": opts.wasm.display().to_string()}},
                    // The sealing key reaches the filter from Envoy's environment only.
                    "environment_variables": {"host_env_keys": [npm_connector_filter::seal::KEY_ENV]},
                },
            },
        },
    })
}

/// Response decompressors (gzip, brotli, zstd): requests untouched, and no `Accept-Encoding`
/// advertised (the filter asks packuments for identity; this is for registries that ignore it).
fn decompressors() -> Vec<Value> {
    [
        ("gzip", "type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip"),
        ("brotli", "type.googleapis.com/envoy.extensions.compression.brotli.decompressor.v3.Brotli"),
        ("zstd", "type.googleapis.com/envoy.extensions.compression.zstd.decompressor.v3.Zstd"),
    ]
    .into_iter()
    .map(|(name, ty)| {
        json!({"name": format!("envoy.filters.http.decompressor.{name}"), "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor",
            "decompressor_library": {"name": name, "typed_config": {"@type": ty}},
            "request_direction_config": {
                "common_config": {"enabled": {"default_value": false, "runtime_key": "npm_connector.decompress_requests"}},
                "advertise_accept_encoding": false},
            "response_direction_config": {
                "common_config": {"enabled": {"default_value": true, "runtime_key": "npm_connector.decompress_responses"}}},
        }})
    })
    .collect()
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
    let mut inline = wasm_filter(opts, filter_json);
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
    entries: &[Entry],
    source: &ConfigSource,
) -> Result<Resources, RenderError> {
    match opts.mode {
        Mode::HttpsProxy => return super::https::resources(planned, opts, entries, source),
        Mode::Sidecar => return super::sidecar::resources(planned, opts, entries, source),
        Mode::Gateway => {}
    }
    let mut res = Resources::default();
    // The routes and the clusters are independent: build them on two threads (thousands of
    // connectors make this the bulk of a render).
    let ups = upstreams(planned);
    let (outer_side, clusters) = std::thread::scope(|s| {
        let clusters = s.spawn(|| registry_clusters(&ups, opts));
        let outer_side =
            filter::config(entries, opts, Role::Gateway, None, true).map(|f| (f, gateway_virtual_hosts(planned, opts)));
        (outer_side, clusters.join())
    });
    let (outer_filter, outer_vhosts) = outer_side?;
    let clusters = clusters.map_err(|_| RenderError::Filter("a rendering thread panicked".into()))?;
    // Envoy's decompressors after the filter: responses pass them first, so a packument the
    // registry compressed although identity was asked for reaches the rewriter decoded.
    let mut http_filters = vec![filter_entry("npm_connector", &outer_filter, opts, source, &mut res.extension_configs)];
    http_filters.extend(decompressors());
    let outer = hcm("npm_connector", outer_vhosts, then_route(http_filters, &ups, opts));
    let listen = opts.listen;
    res.listeners.push(listener(
        json!({"name": "npm_connector_gateway", "address": {"socket_address": {"address": listen.ip().to_string(), "port_value": listen.port()}}}),
        outer,
    ));
    res.clusters = clusters;
    Ok(res)
}

/// What every bootstrap has: the node, the admin API on a unix socket, the internal listener
/// extension (where CONNECT tunnels end in forward and https-proxy modes).
pub(crate) fn bootstrap_base(opts: &Options, node_id: &str) -> Value {
    let mut doc = json!({
        "node": {"id": node_id, "cluster": "npm-connector"},
        // The admin API can dump the configuration: never on TCP.
        "admin": {"address": {"pipe": {"path": opts.admin_socket.display().to_string(), "mode": 0o600}}},
        "stats_config": {"stats_tags": [stats_tag()]},
    });
    if opts.mode == Mode::HttpsProxy {
        doc["bootstrap_extensions"] = json!([{"name": "envoy.bootstrap.internal_listener", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"}}]);
    }
    doc
}

/// The filter names its per-connector counters `npm_connector.<counter>.connector=<ns>/<name>`;
/// this turns the suffix into a `connector` tag, so Prometheus sees
/// `envoy_wasmcustom_npm_connector_injected{connector="ns/name"}`.
pub const CONNECTOR_TAG_REGEX: &str = r"^wasmcustom\.npm_connector\.[a-z_]+(\.connector=(.+))$";

fn stats_tag() -> Value {
    json!({"tag_name": "connector", "regex": CONNECTOR_TAG_REGEX})
}

/// Above this size a document is kept as the JSON it was serialized to: a YAML file
/// (`render --xds-dir`'s resources) is then written in YAML's flow style (which is JSON), which
/// Envoy reads the same and is emitted five times faster than block style; the static
/// bootstrap becomes `envoy.json`, which Envoy parses as JSON (picking the parser by the file's
/// extension: a `.yaml` goes through yaml-cpp and a YAML-to-JSON step first; at 10,000
/// https-proxy connectors, 39 MB, that took Envoy 5.8 s and a 1,008 MB peak to be ready, the
/// same document as `.json` 2.2 s and 359 MB).
const JSON_ABOVE: usize = 4 << 20;

/// A document as text: pretty JSON when large, block YAML otherwise.
enum Encoded {
    Json(String),
    Yaml(String),
}

fn encode(doc: &Value) -> Result<Encoded, RenderError> {
    let json = serde_json::to_string_pretty(doc).map_err(|e| RenderError::Yaml(e.to_string()))?;
    if json.len() > JSON_ABOVE {
        return Ok(Encoded::Json(json));
    }
    serde_yaml_ng::to_string(doc).map(Encoded::Yaml).map_err(|e| RenderError::Yaml(e.to_string()))
}

pub(crate) fn to_yaml(doc: &Value, header: &str) -> Result<String, RenderError> {
    Ok(match encode(doc)? {
        Encoded::Json(json) => {
            format!("{header}\n# Large: written in YAML flow style (JSON), which Envoy reads as YAML.\n{json}\n")
        }
        Encoded::Yaml(yaml) => format!("{header}\n{yaml}"),
    })
}

/// A static bootstrap and the file it goes to.
pub struct Bootstrap {
    /// `envoy.yaml`, or `envoy.json` above [`JSON_ABOVE`].
    pub file: &'static str,
    pub text: String,
}

/// A static bootstrap: everything inline.
pub(crate) fn bootstrap(
    planned: &[Planned<'_>],
    opts: &Options,
    connectors: &[Entry],
) -> Result<Bootstrap, RenderError> {
    let res = resources(planned, opts, connectors, &ConfigSource::Static)?;
    let mut doc = bootstrap_base(opts, "npm-connector");
    doc["static_resources"] = json!({});
    doc["static_resources"]["listeners"] = Value::Array(res.listeners);
    doc["static_resources"]["clusters"] = Value::Array(res.clusters);
    Ok(match encode(&doc)? {
        // JSON has no comments: the file's mode (0600) is what says it holds the credential.
        Encoded::Json(json) => Bootstrap { file: "envoy.json", text: json + "\n" },
        Encoded::Yaml(yaml) => Bootstrap {
            file: "envoy.yaml",
            text: format!(
                "# Rendered by npm-connector render. Holds the sealed registry credential: keep it 0600.\n{yaml}"
            ),
        },
    })
}
