//! https-proxy mode: clients keep the registry's https URL and CONNECT through the proxy.
//!
//! The outer listener only terminates CONNECT. Its routes decide where a CONNECT goes: to a
//! connector's `host:port` (route `connect/<host:port>`, into the intercepting internal
//! listener), blind to any other destination (`--unmatched passthrough`, or the hosts a
//! Connector lists in `npm-connector.io/tunnel-hosts`: a TCP tunnel through the dynamic
//! forward proxy, never decrypted, never given a credential), or nowhere (403). The filter
//! checks the token on every CONNECT that opens a tunnel. The intercepted tunnel ends in an
//! internal listener: `tls_inspector` reads the SNI, the filter chain for that host terminates
//! TLS with a leaf of the connector CA, each connector's path prefix is a route named after
//! it, the filter swaps in that connector's credential, and the registry cluster
//! re-originates TLS with SNI and SAN verification.
//!
//! The CONNECT's `Proxy-Authorization` crosses into the internal listener as filter state
//! (`set_filter_state`, shared once with the upstream connection, which the `internal_upstream`
//! transport socket hands to the internal listener), where the filter checks it again for every
//! request, so two connectors on one registry host stay apart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use npm_connector_filter::config::Role;

use super::envoy::{
    dfp_cluster, filter_entry, hcm, json_reply, listener, registry_clusters, registry_route, router, then_route,
    ConfigSource, Resources, Upstream,
};
use super::filter::{self, connect_route, route_name, Entry};
use super::{LeafPem, Options, OutFile, Planned, RenderError, Tls, Unmatched};

/// The internal listener the CONNECT tunnels end in.
pub(crate) const HTTPS_LISTENER: &str = "npm_connector_https";
pub(crate) const HTTPS_TUNNEL_CLUSTER: &str = "https_tunnel";
/// Blind tunnels: the dynamic forward proxy's cluster (plain TCP to the CONNECT's host:port).
const BLIND_CLUSTER: &str = "blind_tunnel";
/// Filter-state key of the CONNECT's Proxy-Authorization inside the tunnel.
pub(crate) const TUNNEL_TOKEN_KEY: &str = "npm_connector.proxy_authorization";

fn tls(opts: &Options) -> Result<&Tls, RenderError> {
    opts.tls.as_ref().ok_or(RenderError::NoCa)
}

fn leaf_paths(tls: &Tls, leaf: &LeafPem) -> (PathBuf, PathBuf) {
    let n = leaf.name();
    (tls.leaf_dir.join(format!("{n}.pem")), tls.leaf_dir.join(format!("{n}-key.pem")))
}

/// The leaf files a static bootstrap reads: certificates 0644, keys 0600.
pub(crate) fn leaf_files(planned: &[Planned<'_>], opts: &Options) -> Result<Vec<OutFile>, RenderError> {
    let tls = tls(opts)?;
    let mut files = Vec::new();
    for leaf in tls.leaves_for(&hosts(planned))? {
        let (cert, key) = leaf_paths(tls, leaf);
        let rel = |p: &PathBuf| p.strip_prefix(&tls.out).map(PathBuf::from).unwrap_or_else(|_| p.clone());
        files.push(OutFile { path: rel(&cert), contents: leaf.cert.as_str().into(), secret: false });
        files.push(OutFile { path: rel(&key), contents: leaf.key.expose_secret().into(), secret: true });
    }
    Ok(files)
}

fn hosts(planned: &[Planned<'_>]) -> Vec<String> {
    super::tls_hosts(planned.iter().map(|p| p.connector))
}

/// The SDS secrets (`envoy.extensions.transport_sockets.tls.v3.Secret`) for `serve`.
pub(super) fn leaf_secrets(planned: &[Planned<'_>], opts: &Options) -> Result<Vec<Value>, RenderError> {
    let tls = tls(opts)?;
    Ok(tls
        .leaves_for(&hosts(planned))?
        .into_iter()
        .map(|leaf| {
            json!({"name": leaf.name(), "tls_certificate": {
                "certificate_chain": {"inline_string": leaf.cert},
                "private_key": {"inline_string": leaf.key.expose_secret()}}})
        })
        .collect())
}

/// The TLS that ends a tunnel for any of `hosts`: their leaves (from files or over SDS), in
/// one context. Envoy picks the certificate whose SAN matches the client's SNI, so one filter
/// chain serves every registry host; a chain per host would repeat the HTTP connection
/// manager, and with it the whole filter configuration, once per host. Envoy builds an SSL
/// context per certificate, which is why a leaf names many hosts.
pub(super) fn downstream_tls(tls: &Tls, hosts: &[String], source: &ConfigSource) -> Result<Value, RenderError> {
    let leaves = tls.leaves_for(hosts)?;
    let mut common = json!({"alpn_protocols": ["http/1.1"]});
    if *source == ConfigSource::Static {
        let certs: Vec<Value> = leaves
            .iter()
            .map(|leaf| {
                let (cert, key) = leaf_paths(tls, leaf);
                json!({"certificate_chain": {"filename": cert.display().to_string()},
                    "private_key": {"filename": key.display().to_string()}})
            })
            .collect();
        common["tls_certificates"] = Value::Array(certs);
    } else {
        // Over SDS, which Envoy redacts in /config_dump.
        let sds = super::envoy::config_source(source, super::dynamic::SDS_FILE);
        let refs: Vec<Value> =
            leaves.iter().map(|leaf| json!({"name": leaf.name(), "sds_config": sds.clone()})).collect();
        common["tls_certificate_sds_secret_configs"] = Value::Array(refs);
    }
    Ok(json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": common}}))
}

fn set_filter_state() -> Value {
    json!({"name": "envoy.filters.http.set_filter_state", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
        "on_request_headers": [{
            "object_key": TUNNEL_TOKEN_KEY,
            "factory_key": "envoy.string",
            "format_string": {"text_format_source": {"inline_string": "%REQ(proxy-authorization)%"}},
            "read_only": true,
            "shared_with_upstream": "ONCE"}]}})
}

/// A clear answer for HTTP/1.0 clients, which cannot CONNECT through Envoy (426 otherwise has
/// an empty body).
fn local_replies() -> Value {
    json!({"mappers": [{"filter": {"status_code_filter": {"comparison": {"op": "EQ",
        "value": {"default_value": 426, "runtime_key": "npm_connector.http10_status"}}}},
        "body": {"inline_string": "npm-connector: HTTP/1.1 CONNECT is required; this proxy does not speak HTTP/1.0\n"}}]})
}

fn dns_cache() -> Value {
    json!({"name": BLIND_CLUSTER, "dns_lookup_family": "V4_PREFERRED"})
}

/// The dynamic forward proxy's cluster for blind tunnels, when any route uses it.
fn blind_cluster(any_blind: bool) -> Option<Value> {
    any_blind.then(|| dfp_cluster(BLIND_CLUSTER, dns_cache()))
}

/// The CONNECT route of one registry's virtual host. Anything else sent to it finds no route
/// and gets the filter's 405 (its role is `connect`), so no fallback route per host: at 10,000
/// connectors those were 10,000 routes, 22 MB of Envoy.
fn connect_vhost(name: &str, domains: Vec<String>, connect: Value) -> Value {
    json!({"name": name, "domains": domains, "routes": [connect]})
}

/// The catch-all virtual host: `connect` where a CONNECT to another host goes, anything else a
/// 405 (the filter gives the same answer first; this one stands if it is ever absent).
fn catch_all_vhost(name: &str, domains: Vec<String>, connect: Value) -> Value {
    let mut vhost = connect_vhost(name, domains, connect);
    if let Some(routes) = vhost["routes"].as_array_mut() {
        routes.push(json!({"name": "not_connect", "match": {"prefix": "/"}, "direct_response": json_reply(405,
            "npm-connector: this is an https proxy; send CONNECT host:port (set https-proxy / HTTPS_PROXY)")}));
    }
    vhost
}

fn connect_to(route: &str, cluster: &str) -> Value {
    json!({"name": route, "match": {"connect_matcher": {}}, "route": {"cluster": cluster, "timeout": "0s",
        "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]}})
}

/// Each connector's path prefixes (install and publish) with its route name, grouped by
/// registry host and endpoint, in one pass over the connectors.
pub(super) type Prefixes = BTreeMap<String, Endpoints>;
/// Per registry endpoint, its connectors' (prefix, route name)s.
pub(super) type Endpoints = BTreeMap<Upstream, Vec<(String, String)>>;

pub(super) fn prefixes_by_host(planned: &[Planned<'_>]) -> Prefixes {
    let mut by_host: Prefixes = BTreeMap::new();
    for p in planned {
        let c = p.connector;
        let up = Upstream::of(&c.address);
        let list = by_host.entry(up.host.clone()).or_default().entry(up).or_default();
        for prefix in std::iter::once(c.address.path()).chain(c.publish.as_ref().map(|u| u.path())) {
            list.push((prefix.to_owned(), route_name(c)));
        }
    }
    by_host
}

/// The connection manager inside a tunnel: a virtual host per registry endpoint with each
/// connector's prefixes, longest first (Envoy takes the first match), named after the
/// connector. A path on a registry host that no connector owns finds no route, and a local
/// reply mapper turns Envoy's empty 404 (flag NR) into a JSON 403: one mapper where a fallback
/// route on every host cost 10,000 routes (27 MB of Envoy at 10,000 connectors). A Host that
/// is no connector's gets its own 403.
pub(super) fn tunnel_hcm(stat_prefix: &str, endpoints: Endpoints, http_filters: Vec<Value>, opts: &Options) -> Value {
    let mut vhosts: Vec<Value> = endpoints
        .into_iter()
        .map(|(up, mut prefixes)| {
            prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
            let routes: Vec<Value> =
                prefixes.into_iter().map(|(prefix, name)| registry_route(&name, &prefix, &up, opts)).collect();
            let mut domains = vec![up.host_port()];
            if up.port == 443 {
                domains.push(up.host.clone());
            }
            json!({"name": up.host_port(), "domains": domains, "routes": routes})
        })
        .collect();
    vhosts.push(
        json!({"name": "other_host", "domains": ["*"], "routes": [{"name": "other_host", "match": {"prefix": "/"},
        "direct_response": json_reply(403,
            "npm-connector: no connector for this Host; this proxy intercepts only its connectors' registries")}]}),
    );
    let mut h = hcm(stat_prefix, vhosts, http_filters);
    h["typed_config"]["local_reply_config"] = json!({"mappers": [{
        "filter": {"response_flag_filter": {"flags": ["NR"]}},
        "status_code": 403,
        "body": {"inline_string": json!({"error": "npm-connector: no connector owns this path on this registry host"}).to_string()},
        "body_format_override": {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
            "content_type": "application/json"},
    }]});
    h
}

pub(crate) fn resources(
    planned: &[Planned<'_>],
    opts: &Options,
    entries: &[Entry],
    source: &ConfigSource,
) -> Result<Resources, RenderError> {
    let tls = tls(opts)?;
    let mut res = Resources::default();
    let ups = super::envoy::upstreams(planned);
    // Extra destinations (CDNs) that may be tunnelled blind even under --unmatched deny; a
    // connector's own endpoint stays intercepted.
    let owned: std::collections::BTreeSet<String> = ups.iter().map(Upstream::host_port).collect();
    let blind: Vec<String> = planned
        .iter()
        .flat_map(|p| p.connector.tunnel_hosts.iter())
        .filter(|hp| !owned.contains(*hp))
        .cloned()
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .collect();

    // Outer listener: CONNECT only; the routes say where each CONNECT goes.
    let outer_filter = filter::config(entries, opts, Role::Connect, None, true)?;
    let mut vhosts: Vec<Value> = ups
        .iter()
        .map(|up| {
            connect_vhost(&up.host_port(), vec![up.host_port()], connect_to(&connect_route(up), HTTPS_TUNNEL_CLUSTER))
        })
        .collect();
    if opts.unmatched == Unmatched::Deny && !blind.is_empty() {
        vhosts.push(catch_all_vhost("tunnel_hosts", blind.clone(), connect_to("blind", BLIND_CLUSTER)));
    }
    let fallback = match opts.unmatched {
        Unmatched::Passthrough => connect_to("blind", BLIND_CLUSTER),
        Unmatched::Deny => json!({"name": "deny", "match": {"connect_matcher": {}}, "direct_response": json_reply(403,
            "npm-connector: no connector for this host and port; this proxy only tunnels to its connectors' registries")}),
    };
    vhosts.push(catch_all_vhost("unmatched", vec!["*".to_owned()], fallback));
    let any_blind = opts.unmatched == Unmatched::Passthrough || !blind.is_empty();
    let mut http_filters = vec![
        // Before the filter decides: a refused CONNECT opens no tunnel, so its state dies with it.
        set_filter_state(),
        filter_entry("npm_connector", &outer_filter, opts, source, &mut res.extension_configs),
    ];
    if any_blind {
        // Resolves a blind tunnel's host:port for the dynamic forward proxy cluster.
        http_filters.push(json!({"name": "envoy.filters.http.dynamic_forward_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig",
            "dns_cache_config": dns_cache()}}));
    }
    http_filters.push(router());
    let mut outer = hcm("npm_connector", vhosts, http_filters);
    outer["typed_config"]["upgrade_configs"] = json!([{"upgrade_type": "CONNECT"}]);
    outer["typed_config"]["local_reply_config"] = local_replies();
    let listen = opts.listen;
    res.listeners.push(listener(
        json!({"name": "npm_connector_https_proxy", "address": {"socket_address": {
            "address": listen.ip().to_string(), "port_value": listen.port()}}}),
        outer,
    ));

    // Without connectors (a control plane revoking the last one) there is nothing to intercept:
    // no internal listener (Envoy refuses one without filter chains), no tunnel cluster.
    if planned.is_empty() {
        res.clusters.extend(blind_cluster(any_blind));
        return Ok(res);
    }
    // Internal listener: one filter chain for every registry host (its certificate chosen by
    // SNI), one connection manager whose virtual hosts are the registry hosts.
    let inner_filter = filter::config(entries, opts, Role::Tunnel, Some(TUNNEL_TOKEN_KEY), true)?;
    let inner_entry = filter_entry("npm_connector_https", &inner_filter, opts, source, &mut res.extension_configs);
    let by_host = prefixes_by_host(planned);
    let hosts: Vec<String> = by_host.keys().cloned().collect();
    let endpoints: Endpoints = by_host.into_values().flatten().collect();
    let hcm = tunnel_hcm("npm_connector_https", endpoints, then_route(vec![inner_entry], &ups, opts), opts);
    let chains = vec![json!({
        "filter_chain_match": {"server_names": hosts},
        "transport_socket": downstream_tls(tls, &hosts, source)?,
        "filters": [hcm],
    })];
    res.listeners.push(json!({
        "name": HTTPS_LISTENER,
        "internal_listener": {},
        // Filter chains are matched on the SNI, which only tls_inspector reads.
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "filter_chains": chains,
    }));

    res.clusters.extend(registry_clusters(&ups, opts));
    res.clusters.push(json!({"name": HTTPS_TUNNEL_CLUSTER, "connect_timeout": "5s",
        // internal_upstream hands filter state shared with the upstream to the internal listener.
        "transport_socket": {"name": "envoy.transport_sockets.internal_upstream", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
            "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}},
        "load_assignment": {"cluster_name": HTTPS_TUNNEL_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"envoy_internal_address": {"server_listener_name": HTTPS_LISTENER}}}}]}]}}));
    res.clusters.extend(blind_cluster(any_blind));
    if *source != ConfigSource::Static {
        res.secrets = leaf_secrets(planned, opts)?;
    }
    Ok(res)
}
