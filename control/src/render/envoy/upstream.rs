//! How Envoy reaches a registry: its endpoint (scheme, host, port), the cluster it shares or
//! keeps, verified upstream TLS (chain, SNI and SAN), and the route that sends a connector's
//! requests there. The route alone says where a request goes; the filter only checks it.

use serde_json::{json, Value};

use super::router;
use crate::render::{Options, Planned, SYSTEM_CA};

/// A registry endpoint: scheme, host and port; connectors on the same one share a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::render) struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Upstream {
    pub(in crate::render) fn of(u: &url::Url) -> Self {
        Upstream {
            tls: u.scheme() == "https",
            host: u.host_str().unwrap_or_default().to_owned(),
            port: u.port_or_known_default().unwrap_or(443),
        }
    }

    /// Named as Istio names the cluster of a ServiceEntry host and port, so the filter's
    /// configuration (which names each connector's cluster) is the same in a sidecar Envoy and
    /// in an Istio proxy running the WasmPlugin.
    pub(in crate::render) fn cluster_name(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
    }
}

/// The cluster every registry endpoint reached by DNS shares, per scheme: Envoy's dynamic
/// forward proxy. A route to it names its endpoint's `host[:port]` (set as the Host before the
/// DNS lookup); the connection goes to that host, with that SNI and that SAN verified
/// (`auto_sni`, `auto_san_validation`). Hosts resolve on first use, so 10,000 registries cost
/// Envoy one cluster and one TLS context rather than 10,000 of each, each resolved before
/// Envoy is ready (a cluster per endpoint took 30 s and 880 MB at 10,000 connectors).
const REGISTRIES_CLUSTER: &str = "registries";
const REGISTRIES_CLEARTEXT_CLUSTER: &str = "registries_cleartext";
const DFP_FILTER: &str = "envoy.filters.http.dynamic_forward_proxy";

impl Upstream {
    /// `host:port`, always with the port (CONNECT targets, virtual host names and domains).
    pub(in crate::render) fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host[:port]`, the port only when it is not the scheme's default.
    pub(in crate::render) fn authority(&self) -> String {
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
    pub(in crate::render) fn own_cluster(&self, opts: &Options) -> bool {
        opts.istio.is_some() || opts.resolve.contains_key(&self.host) || self.host.parse::<std::net::IpAddr>().is_ok()
    }

    /// The cluster this endpoint's routes send to, which the filter checks.
    pub(in crate::render) fn cluster(&self, opts: &Options) -> String {
        match (self.own_cluster(opts), self.tls) {
            (true, _) => self.cluster_name(),
            (false, true) => REGISTRIES_CLUSTER.to_owned(),
            (false, false) => REGISTRIES_CLEARTEXT_CLUSTER.to_owned(),
        }
    }
}

/// The registry endpoints of `planned`, each once, in order.
pub(in crate::render) fn upstreams(planned: &[Planned<'_>]) -> Vec<Upstream> {
    let mut ups: Vec<Upstream> = planned.iter().map(|p| Upstream::of(&p.connector.address)).collect();
    ups.sort();
    ups.dedup();
    ups
}

/// The registry clusters: one per endpoint that keeps its own, and the shared ones in use.
pub(in crate::render) fn registry_clusters(ups: &[Upstream], opts: &Options) -> Vec<Value> {
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
pub(in crate::render) fn then_route(mut filters: Vec<Value>, ups: &[Upstream], opts: &Options) -> Vec<Value> {
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
pub(in crate::render) fn dfp_cluster(name: &str, dns_cache: Value) -> Value {
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
pub(in crate::render) fn registry_route(name: &str, prefix: &str, up: &Upstream, opts: &Options) -> Value {
    let mut r = json!({"name": name, "match": {"prefix": prefix}, "route": route_to(&up.cluster(opts))});
    if !up.own_cluster(opts) {
        r["typed_per_filter_config"] = json!({DFP_FILTER: {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.PerRouteConfig",
            "host_rewrite_literal": up.authority()}});
    }
    r
}

pub(in crate::render) fn cluster(up: &Upstream, opts: &Options) -> Value {
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

pub(in crate::render) fn route_to(cluster: &str) -> Value {
    // Publishing a large package can take a while; npm's own timeout is 5 minutes.
    json!({"cluster": cluster, "timeout": "300s"})
}
