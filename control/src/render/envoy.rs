//! The Envoy bootstrap of gateway mode (https-proxy mode's listeners are in https.rs): one
//! listener whose routes map each connector's path to its registry, named after the connector
//! so the filter knows whose route the router chose; registries reached by DNS share one
//! dynamic-forward-proxy cluster (pinned ones keep their own), always with verified TLS; the
//! admin API on a unix socket.

use serde_json::{json, Value};

use npm_connector_filter::config::Role;

use super::filter::{self, authority, route_name, Entry};
use super::{Mode, Options, Planned, RenderError};

mod upstream;

pub(super) use upstream::{dfp_cluster, registry_clusters, registry_route, then_route, upstreams, Upstream};

/// Carries no header that could hold a token or credential: method, authority, path, status,
/// flags, sizes, duration and upstream only.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms upstream=%UPSTREAM_HOST%\n";

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
        "config_source": config_source(source, &super::dynamic::ecds_file(name)),
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

/// Above this size a document is kept as the JSON it was serialized to: a YAML file (an Istio
/// or sidecar manifest) is then written in YAML's flow style (which is JSON), emitted five
/// times faster than block style; the static
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

/// A document as pretty JSON (a large bootstrap, `render --xds-dir`'s files).
pub(super) fn to_json(doc: &Value) -> Result<String, RenderError> {
    serde_json::to_string_pretty(doc).map_err(|e| RenderError::Yaml(e.to_string()))
}

fn encode(doc: &Value) -> Result<Encoded, RenderError> {
    let json = to_json(doc)?;
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
