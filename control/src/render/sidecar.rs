//! Sidecar mode: Envoy in the build pod's network namespace, reached through iptables
//! `REDIRECT` of the pod's outbound TCP (as istio-init sets it up), the proxy's own traffic
//! excluded by uid. One outbound listener restores each connection's original destination
//! (`original_dst`) and reads the TLS SNI (`tls_inspector`) and whether plain bytes are HTTP
//! (`http_inspector`):
//!
//! - TLS to a connector's registry `host:port`: terminated with a leaf of the connector CA for
//!   that host; each connector's path prefix is a route named after it; the filter (role
//!   `sidecar`) checks the `Authorization` token and swaps in the credential; the registry
//!   cluster re-originates TLS with SNI and SAN verification.
//! - Plain HTTP: a connector's host gets a clear 403 (its registry is https, and npm scopes
//!   `_authToken` by host, not scheme); any other host is proxied to its original destination
//!   unchanged (no filter, no credential), as Istio's port-80 listener does.
//! - Everything else (TLS to other hosts or ports, other protocols): a plain TCP proxy to the
//!   original destination. Not decrypted, no filter, no credential.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use npm_connector_filter::config::Role;

use super::envoy::{
    filter_entry, hcm, json_reply, registry_clusters, router, then_route, ConfigSource, Resources, Upstream,
};
use super::filter::{self, Entry};
use super::https::{downstream_tls, leaf_secrets, prefixes_by_host, tunnel_hcm, Endpoints};
use super::{Options, OutFile, Planned, RenderError};

pub(crate) const SIDECAR_LISTENER: &str = "npm_connector_sidecar";
/// The original destination of a redirected connection (`ORIGINAL_DST`).
pub(crate) const PASSTHROUGH_CLUSTER: &str = "passthrough";

/// How the pod's traffic reaches the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Outbound TCP ports redirected to Envoy (80 and 443 by default).
    pub ports: Vec<u16>,
    /// The uid Envoy runs under: its own connections are not redirected.
    pub proxy_uid: u32,
    /// The image of the init container that installs the rules (needs `iptables` and `sh`).
    pub init_image: String,
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar { ports: vec![80, 443], proxy_uid: 1337, init_image: DEFAULT_INIT_IMAGE.to_owned() }
    }
}

/// istio-init's image carries iptables (legacy and nft) and a shell.
pub const DEFAULT_INIT_IMAGE: &str = "docker.io/istio/proxyv2:1.24.2";

fn passthrough_cluster() -> Value {
    json!({"name": PASSTHROUGH_CLUSTER, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "5s"})
}

fn tcp_passthrough() -> Value {
    json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": PASSTHROUGH_CLUSTER, "cluster": PASSTHROUGH_CLUSTER}})
}

/// Plain HTTP: connectors' hosts refused, everything else to where it was going.
fn plain_http_chain(ups: &[Upstream]) -> Value {
    let mut domains: Vec<String> = Vec::new();
    for up in ups {
        domains.push(up.host_port());
        domains.push(up.host.clone());
        domains.push(format!("{}:80", up.host));
    }
    domains.sort();
    domains.dedup();
    let vhosts = vec![
        json!({"name": "connector_hosts", "domains": domains, "routes": [{"name": "cleartext_refused",
            "match": {"prefix": "/"}, "direct_response": json_reply(403,
            "npm-connector: this registry is https only; use its https:// URL (the connector token and credential never travel in clear)")}]}),
        json!({"name": "other_hosts", "domains": ["*"], "routes": [{"name": "passthrough_http",
            "match": {"prefix": "/"}, "route": {"cluster": PASSTHROUGH_CLUSTER, "timeout": "0s"}}]}),
    ];
    let mut h = hcm("npm_connector_plain", vhosts, vec![router()]);
    // Passed through as it came: no request id, no Envoy headers either way.
    h["typed_config"]["generate_request_id"] = json!(false);
    h["typed_config"]["server_header_transformation"] = json!("PASS_THROUGH");
    h["typed_config"]["http_filters"] = json!([{"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        "suppress_envoy_headers": true}}]);
    json!({"name": "plain_http", "filter_chain_match": {"transport_protocol": "raw_buffer",
        "application_protocols": ["http/1.0", "http/1.1", "h2c"]}, "filters": [h]})
}

pub(crate) fn resources(
    planned: &[Planned<'_>],
    opts: &Options,
    entries: &[Entry],
    source: &ConfigSource,
) -> Result<Resources, RenderError> {
    let tls = opts.tls.as_ref().ok_or(RenderError::NoCa)?;
    let mut res = Resources::default();
    let ups = super::envoy::upstreams(planned);
    let mut chains = Vec::new();
    if !planned.is_empty() {
        let cfg = filter::config(entries, opts, Role::Sidecar, None, true)?;
        // Every chain names the same filter configuration (one ECDS resource).
        let entry = filter_entry("npm_connector_sidecar", &cfg, opts, source, &mut res.extension_configs);
        // One TLS chain per intercepted registry port: every host's certificate (chosen by
        // SNI) and one connection manager whose virtual hosts are those hosts.
        let mut by_port: BTreeMap<u16, (Vec<String>, Endpoints)> = BTreeMap::new();
        for (host, endpoints) in prefixes_by_host(planned) {
            for (up, prefixes) in endpoints {
                let slot = by_port.entry(up.port).or_default();
                if slot.0.last() != Some(&host) {
                    slot.0.push(host.clone());
                }
                slot.1.insert(up, prefixes);
            }
        }
        for (port, (hosts, endpoints)) in by_port {
            let hcm = tunnel_hcm("npm_connector_sidecar", endpoints, then_route(vec![entry.clone()], &ups, opts), opts);
            chains.push(json!({
                "name": format!("tls_{port}"),
                "filter_chain_match": {"destination_port": port, "server_names": hosts, "transport_protocol": "tls"},
                "transport_socket": downstream_tls(tls, &hosts, source)?,
                "filters": [hcm],
            }));
        }
    }
    chains.push(plain_http_chain(&ups));
    let listen = opts.listen;
    res.listeners.push(json!({
        "name": SIDECAR_LISTENER,
        "address": {"socket_address": {"address": listen.ip().to_string(), "port_value": listen.port()}},
        "listener_filters": [
            {"name": "envoy.filters.listener.original_dst", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}},
            {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
            {"name": "envoy.filters.listener.http_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}},
        ],
        // Server-first protocols send nothing for the inspectors: after a second they pass
        // through as plain TCP.
        "listener_filters_timeout": "1s",
        "continue_on_listener_filters_timeout": true,
        "filter_chains": chains,
        "default_filter_chain": {"name": "tcp_passthrough", "filters": [tcp_passthrough()]},
    }));
    res.clusters.extend(registry_clusters(&ups, opts));
    res.clusters.push(passthrough_cluster());
    if *source != ConfigSource::Static && !planned.is_empty() {
        res.secrets = leaf_secrets(planned, opts)?;
    }
    Ok(res)
}

/// The iptables rules that send the pod's outbound traffic on the intercepted ports to Envoy,
/// as a POSIX shell script (the init container runs it; so can a test).
pub fn iptables_script(opts: &Options) -> String {
    let s = &opts.sidecar;
    let ports = s.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
    format!(
        r#"#!/bin/sh
# Rendered by npm-connector render --mode sidecar. Run once in the pod's network namespace
# (an init container with NET_ADMIN), as istio-init does: the pod's outbound TCP to the
# intercepted ports goes to Envoy's listener; Envoy's own connections (uid {uid}) do not.
set -eu
PROXY_PORT="${{PROXY_PORT:-{proxy_port}}}"
PROXY_UID="${{PROXY_UID:-{uid}}}"
PORTS="${{PORTS:-{ports}}}"
IPTABLES="${{IPTABLES:-iptables}}"
IP6TABLES="${{IP6TABLES:-ip6tables}}"

$IPTABLES -t nat -N NPM_CONNECTOR_OUTPUT
# Envoy's own connections (to registries, to original destinations) leave untouched.
$IPTABLES -t nat -A NPM_CONNECTOR_OUTPUT -m owner --uid-owner "$PROXY_UID" -j RETURN
# Loopback stays loopback (the pod's own services, Envoy's admin socket is a unix socket).
$IPTABLES -t nat -A NPM_CONNECTOR_OUTPUT -d 127.0.0.0/8 -j RETURN
for port in $PORTS; do
  $IPTABLES -t nat -A NPM_CONNECTOR_OUTPUT -p tcp --dport "$port" -j REDIRECT --to-ports "$PROXY_PORT"
done
$IPTABLES -t nat -A OUTPUT -p tcp -j NPM_CONNECTOR_OUTPUT

# Envoy listens on IPv4 loopback: the pod's IPv6 to the intercepted ports is refused, so
# clients fall back to IPv4 and nothing bypasses the proxy.
if command -v "$IP6TABLES" >/dev/null 2>&1 && [ -e /proc/net/if_inet6 ]; then
  $IP6TABLES -N NPM_CONNECTOR_OUTPUT
  $IP6TABLES -A NPM_CONNECTOR_OUTPUT -m owner --uid-owner "$PROXY_UID" -j RETURN
  $IP6TABLES -A NPM_CONNECTOR_OUTPUT -d ::1/128 -j RETURN
  for port in $PORTS; do
    $IP6TABLES -A NPM_CONNECTOR_OUTPUT -p tcp --dport "$port" -j REJECT --reject-with tcp-reset
  done
  $IP6TABLES -A OUTPUT -p tcp -j NPM_CONNECTOR_OUTPUT
fi
"#,
        uid = s.proxy_uid,
        proxy_port = opts.listen.port(),
    )
}

/// The init container (a Kubernetes `Container`) that installs the rules: root with
/// NET_ADMIN and NET_RAW only for this step; the build container needs no privilege.
pub fn init_container(opts: &Options) -> Value {
    json!({
        "name": "npm-connector-init",
        "image": opts.sidecar.init_image,
        "command": ["/bin/sh", "-c"],
        "args": [iptables_script(opts)],
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
        },
    })
}

/// The files sidecar mode adds to an output directory: the rules and their init container.
pub(crate) fn files(opts: &Options) -> Result<Vec<OutFile>, RenderError> {
    let container = super::envoy::to_yaml(
        &init_container(opts),
        "# The init container of a sidecar build pod: installs npm-connector's iptables rules.",
    )?;
    Ok(vec![
        OutFile { path: PathBuf::from("sidecar/iptables.sh"), contents: iptables_script(opts).into(), secret: false },
        OutFile { path: PathBuf::from("sidecar/init-container.yaml"), contents: container.into(), secret: false },
    ])
}

#[cfg(test)]
mod tests;
