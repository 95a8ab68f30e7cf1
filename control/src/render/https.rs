//! https-proxy mode: clients keep the registry's https URL and CONNECT through the proxy.
//!
//! The outer listener only terminates CONNECT, and only to a connector's `host:port` with a
//! valid token (the filter decides; the routes refuse every other target). The tunnel ends in
//! an internal listener: `tls_inspector` reads the SNI, the filter chain for that host
//! terminates TLS with a leaf of the connector CA, the filter swaps in the credential, and the
//! registry cluster re-originates TLS with SNI and SAN verification.
//!
//! The CONNECT's `Proxy-Authorization` crosses into the internal listener as filter state
//! (`set_filter_state`, shared once with the upstream connection, which the `internal_upstream`
//! transport socket hands to the internal listener), where the filter checks it again for every
//! request, so two connectors on one registry host stay apart.

use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::envoy::{
    cluster, filter_entry, hcm, json_reply, listener, route_to, router, ConfigSource, Resources, Upstream,
};
use super::filter::{self, Role};
use super::{Options, OutFile, Planned, RenderError, Tls};

/// The internal listener the CONNECT tunnels end in.
pub(crate) const HTTPS_LISTENER: &str = "npm_connector_https";
const HTTPS_TUNNEL_CLUSTER: &str = "https_tunnel";
/// Filter-state key of the CONNECT's Proxy-Authorization inside the tunnel.
pub(crate) const TUNNEL_TOKEN_KEY: &str = "npm_connector.proxy_authorization";

/// The name of the SDS secret (and static files) holding a host's leaf.
pub(crate) fn leaf_name(host: &str) -> String {
    format!("leaf_{host}")
}

fn tls(opts: &Options) -> Result<&Tls, RenderError> {
    opts.tls.as_ref().ok_or(RenderError::NoCa)
}

fn leaf_paths(tls: &Tls, host: &str) -> (PathBuf, PathBuf) {
    let n = leaf_name(host);
    (tls.leaf_dir.join(format!("{n}.pem")), tls.leaf_dir.join(format!("{n}-key.pem")))
}

/// The leaf files a static bootstrap reads: certificates 0644, keys 0600.
pub(crate) fn leaf_files(planned: &[Planned<'_>], opts: &Options) -> Result<Vec<OutFile>, RenderError> {
    let tls = tls(opts)?;
    let mut files = Vec::new();
    for host in hosts(planned) {
        let leaf = tls.leaves.get(&host).ok_or_else(|| RenderError::NoLeaf(host.clone()))?;
        let (cert, key) = leaf_paths(tls, &host);
        let rel = |p: &PathBuf| p.strip_prefix(&tls.out).map(PathBuf::from).unwrap_or_else(|_| p.clone());
        files.push(OutFile { path: rel(&cert), contents: leaf.cert.clone(), secret: false });
        files.push(OutFile { path: rel(&key), contents: leaf.key.expose_secret().to_owned(), secret: true });
    }
    Ok(files)
}

fn hosts(planned: &[Planned<'_>]) -> Vec<String> {
    super::tls_hosts(planned.iter().map(|p| p.connector))
}

/// The SDS secrets (`envoy.extensions.transport_sockets.tls.v3.Secret`) for `serve`.
fn leaf_secrets(planned: &[Planned<'_>], opts: &Options) -> Result<Vec<Value>, RenderError> {
    let tls = tls(opts)?;
    hosts(planned)
        .into_iter()
        .map(|host| {
            let leaf = tls.leaves.get(&host).ok_or_else(|| RenderError::NoLeaf(host.clone()))?;
            Ok(json!({"name": leaf_name(&host), "tls_certificate": {
                "certificate_chain": {"inline_string": leaf.cert},
                "private_key": {"inline_string": leaf.key.expose_secret()}}}))
        })
        .collect()
}

/// The TLS that ends a tunnel for `host`: its leaf, from files or over SDS.
fn downstream_tls(tls: &Tls, host: &str, source: &ConfigSource) -> Value {
    let mut common = json!({"alpn_protocols": ["http/1.1"]});
    if *source == ConfigSource::Static {
        let (cert, key) = leaf_paths(tls, host);
        common["tls_certificates"] = json!([{"certificate_chain": {"filename": cert.display().to_string()},
            "private_key": {"filename": key.display().to_string()}}]);
    } else {
        // Over SDS, which Envoy redacts in /config_dump.
        common["tls_certificate_sds_secret_configs"] = json!([{"name": leaf_name(host),
            "sds_config": super::envoy::config_source(source, "sds.yaml")}]);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": common}})
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

pub(crate) fn resources(
    planned: &[Planned<'_>],
    opts: &Options,
    connectors: &[Value],
    source: &ConfigSource,
) -> Result<Resources, RenderError> {
    let tls = tls(opts)?;
    let mut res = Resources::default();
    let mut ups: Vec<Upstream> = planned.iter().map(|p| Upstream::of(&p.connector.address)).collect();
    ups.sort();
    ups.dedup();

    // Outer listener: CONNECT to a connector's host:port, nothing else.
    let connect_role = Role { proxy_listener: true, connect: true, deny_unmatched: true, ..Role::default() };
    let outer_filter = filter::config(connectors, opts, connect_role, true)?;
    let http_filters = vec![
        // Before the filter decides: a refused CONNECT opens no tunnel, so its state dies with it.
        set_filter_state(),
        filter_entry("npm_connector", &outer_filter, opts, source, &mut res.extension_configs),
        router(),
    ];
    let mut vhosts: Vec<Value> = ups
        .iter()
        .map(|up| {
            json!({"name": up.cluster_name(), "domains": [format!("{}:{}", up.host, up.port)], "routes": [
                {"match": {"connect_matcher": {}}, "route": {"cluster": HTTPS_TUNNEL_CLUSTER, "timeout": "0s",
                    "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]}},
                {"match": {"prefix": "/"}, "direct_response": json_reply(405,
                    "npm-connector: this is an https proxy; send CONNECT host:port (set https-proxy / HTTPS_PROXY)")}]})
        })
        .collect();
    vhosts.push(json!({"name": "unmatched", "domains": ["*"], "routes": [
        {"match": {"connect_matcher": {}}, "direct_response": json_reply(403,
            "npm-connector: no connector for this host and port; this proxy only tunnels to its connectors' registries")},
        {"match": {"prefix": "/"}, "direct_response": json_reply(403,
            "npm-connector: this is an https proxy for its connectors' registries only; send CONNECT host:port")}]}));
    let mut outer = hcm("npm_connector", vhosts, http_filters);
    outer["typed_config"]["upgrade_configs"] = json!([{"upgrade_type": "CONNECT"}]);
    outer["typed_config"]["local_reply_config"] = local_replies();
    let listen = opts.listen;
    res.listeners.push(listener(
        json!({"name": "npm_connector_https_proxy", "address": {"socket_address": {
            "address": listen.ip().to_string(), "port_value": listen.port()}}}),
        outer,
    ));

    // Internal listener: one filter chain per registry host, chosen by SNI.
    let tunnel_role = Role { tunnel_token: Some(TUNNEL_TOKEN_KEY), deny_unmatched: true, ..Role::default() };
    let inner_filter = filter::config(connectors, opts, tunnel_role, false)?;
    // Every chain names the same filter configuration (one ECDS resource).
    let inner_entry = filter_entry("npm_connector_https", &inner_filter, opts, source, &mut res.extension_configs);
    let mut chains = Vec::new();
    for host in hosts(planned) {
        let mut vhosts: Vec<Value> = ups
            .iter()
            .filter(|u| u.host == host)
            .map(|up| {
                let mut domains = vec![format!("{}:{}", up.host, up.port)];
                if up.port == 443 {
                    domains.push(up.host.clone());
                }
                json!({"name": up.cluster_name(), "domains": domains,
                    "routes": [{"match": {"prefix": "/"}, "route": route_to(&up.cluster_name())}]})
            })
            .collect();
        vhosts.push(json!({"name": "other_host", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
            "direct_response": json_reply(403,
                "npm-connector: the Host of a tunnelled request must be the host the tunnel was opened for")}]}));
        let filters = vec![inner_entry.clone(), router()];
        let hcm = hcm("npm_connector_https", vhosts, filters);
        chains.push(json!({
            "filter_chain_match": {"server_names": [host]},
            "transport_socket": downstream_tls(tls, &host, source),
            "filters": [hcm],
        }));
    }
    res.listeners.push(json!({
        "name": HTTPS_LISTENER,
        "internal_listener": {},
        // Filter chains are matched on the SNI, which only tls_inspector reads.
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "filter_chains": chains,
    }));

    res.clusters.extend(ups.iter().map(|u| cluster(u, opts)));
    res.clusters.push(json!({"name": HTTPS_TUNNEL_CLUSTER, "connect_timeout": "5s",
        // internal_upstream hands filter state shared with the upstream to the internal listener.
        "transport_socket": {"name": "envoy.transport_sockets.internal_upstream", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
            "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}},
        "load_assignment": {"cluster_name": HTTPS_TUNNEL_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"envoy_internal_address": {"server_listener_name": HTTPS_LISTENER}}}}]}]}}));
    if *source != ConfigSource::Static {
        res.secrets = leaf_secrets(planned, opts)?;
    }
    Ok(res)
}
