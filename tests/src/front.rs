//! Recording fronts: a separate Envoy whose listeners each stand for a host:port (a registry's
//! TLS port, another host). Each listener accepts TLS *and* cleartext on the same port
//! (`tls_inspector` picks the chain) and forwards to its own hyper recorder with
//! `x-arrived: tls` or `x-arrived: cleartext`, so a test sees every request that reached the
//! port, including a credential sent in clear to a TLS port.

use std::path::Path;

use serde_json::json;

use crate::envoy::{self, Envoy};
use crate::pki::Pki;
use crate::procs::free_port;
use crate::upstream::{Seen, Upstream};

pub struct Front {
    pub envoy: Envoy,
    /// One per listener, in the order of `ports`.
    pub recorders: Vec<Upstream>,
    pub ports: Vec<u16>,
}

fn hcm(arrived: &str, cluster: &str) -> serde_json::Value {
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": format!("{cluster}_{arrived}"),
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
            "route": {"cluster": cluster},
            "request_headers_to_add": [{"header": {"key": "x-arrived", "value": arrived},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}})
}

/// Starts `n` recording listeners with the test server certificate.
pub fn start(dir: &Path, pki: &Pki, n: usize) -> Front {
    start_with(dir, pki, (0..n).map(|_| Upstream::start(None)).collect())
}

/// A TLS-and-cleartext listener in front of each of `recorders`.
pub fn start_with(dir: &Path, pki: &Pki, recorders: Vec<Upstream>) -> Front {
    start_at(dir, pki, recorders.into_iter().map(|r| (r, free_port())).collect())
}

/// The same, on given ports (when an upstream's answers must name another's port).
pub fn start_at(dir: &Path, pki: &Pki, upstreams: Vec<(Upstream, u16)>) -> Front {
    let (recorders, ports): (Vec<Upstream>, Vec<u16>) = upstreams.into_iter().unzip();
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for (i, (rec, port)) in recorders.iter().zip(&ports).enumerate() {
        let cluster = format!("recorder_{i}");
        let tls = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {"tls_certificates": [{
                "certificate_chain": {"filename": pki.server_cert.display().to_string()},
                "private_key": {"filename": pki.server_key.display().to_string()}}]}}});
        listeners.push(json!({
            "name": format!("front_{i}"),
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
            "filter_chains": [
                {"filter_chain_match": {"transport_protocol": "tls"}, "transport_socket": tls,
                 "filters": [hcm("tls", &cluster)]},
                {"filters": [hcm("cleartext", &cluster)]},
            ],
        }));
        clusters.push(json!({"name": cluster, "type": "STATIC", "connect_timeout": "5s",
            "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": rec.addr.port()}}}}]}]}}));
    }
    let admin = dir.join("front-admin.sock");
    let doc = json!({
        "admin": {"address": {"pipe": {"path": admin.display().to_string()}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    });
    let config = dir.join("front.yaml");
    std::fs::write(&config, doc.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let mut envoy = envoy::start(&config, dir.join("front.log"), ports[0], admin, None);
    for p in &ports[1..] {
        crate::procs::wait_for_port(&mut envoy.daemon, *p, std::time::Duration::from_secs(10));
    }
    Front { envoy, recorders, ports }
}

impl Front {
    /// What recorder `i` saw, tagged with the case header `x-case`.
    pub fn case(&self, i: usize, case: &str) -> Vec<Seen> {
        self.recorders[i].seen().into_iter().filter(|s| s.header("x-case") == Some(case)).collect()
    }

    /// Everything every recorder saw.
    pub fn all(&self) -> Vec<Seen> {
        self.recorders.iter().flat_map(Upstream::seen).collect()
    }
}
