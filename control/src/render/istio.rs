//! Istio objects for sidecar mode in a mesh (`render --mode sidecar --istio`). Istio's
//! sidecar cannot terminate a pod's outbound TLS (it routes TLS by SNI, undecrypted), so the
//! interception point is an egress gateway, which Istio can make terminate TLS:
//!
//! - `ServiceEntry`: the registry hosts, port 443, protocol TLS (routed by SNI).
//! - `VirtualService` (mesh): build pods' TLS to a registry host goes to the egress gateway
//!   (`sourceLabels` picks the build pods; other pods reach the registry directly).
//! - `Gateway`: the egress gateway terminates that TLS with the registry host's leaf of the
//!   connector CA (`credentialName`: a Secret rendered next to it), which the pods trust.
//! - `VirtualService` (gateway): one HTTP route per connector prefix, named after the
//!   connector, to the registry's `outbound|443||<host>` cluster: the names the filter checks.
//! - `DestinationRule`s: the sidecars pass the clients' TLS to the gateway without wrapping it
//!   in Istio mTLS; the gateway re-originates TLS to the registry (SNI, SAN verified).
//! - `WasmPlugin`: the filter on the gateway, `FAIL_CLOSE`, phase AUTHN (before the router,
//!   whose choice it reads); `pluginConfig` is the sidecar-mode filter configuration, byte
//!   for byte (sealed credentials, token hashes, token keys); the sealing key from the proxy's
//!   environment (`valueFrom: HOST`).
//!
//! Clients use sidecar mode's files unchanged: the real https URL, the CA bundle, `_authToken`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::envoy::{to_yaml, Upstream};
use super::https::prefixes_by_host;
use super::{OutFile, Planned, RenderError, Tls};

/// Which proxies run the WasmPlugin: pods by label, or a Gateway API object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstioTarget {
    Selector(BTreeMap<String, String>),
    /// `(kind, name)`, group `gateway.networking.k8s.io` (a Gateway) or `""` (a Service).
    TargetRef(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Istio {
    /// The egress gateway's namespace: the Gateway, its VirtualService, the leaf Secrets and the
    /// WasmPlugin go there.
    pub namespace: String,
    /// The egress gateway pods' labels (the Gateway's `selector`).
    pub gateway_labels: BTreeMap<String, String>,
    /// The egress gateway's Service host (where the mesh VirtualService sends build pods).
    pub gateway_service: String,
    /// What the WasmPlugin selects (by default the gateway's labels).
    pub target: IstioTarget,
    /// The build pods' labels (`sourceLabels` of the mesh route); empty: every pod.
    pub build_pods: BTreeMap<String, String>,
    /// Where Istio pulls the filter (`oci://…`, `https://…`, `file://…`) and its sha256.
    pub url: String,
    pub sha256: Option<String>,
}

const GATEWAY: &str = "npm-connector-egress";

fn meta(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "npm-connector"}})
}

/// A Kubernetes-safe name for a host.
fn host_name(host: &str) -> String {
    host.replace('.', "-")
}

/// The TLS Secret holding a registry host's leaf, as the Gateway's `credentialName` names it.
pub fn secret_name(host: &str) -> String {
    format!("npm-connector-leaf-{}", host_name(host))
}

fn hosts(ups: &[Upstream]) -> Vec<String> {
    let mut h: Vec<String> = ups.iter().map(|u| u.host.clone()).collect();
    h.sort();
    h.dedup();
    h
}

fn wasm_plugin(istio: &Istio, filter_json: &str) -> Result<Value, RenderError> {
    let config: Value = serde_json::from_str(filter_json).map_err(|e| RenderError::Filter(e.to_string()))?;
    let mut spec = json!({
        "url": istio.url,
        "pluginName": crate::image::ROOT_ID,
        "type": "HTTP",
        // Before the router, whose choice of route and cluster the filter checks.
        "phase": "AUTHN",
        "priority": 1000,
        "failStrategy": "FAIL_CLOSE",
        "pluginConfig": config,
        "vmConfig": {"env": [{"name": npm_connector_filter::seal::KEY_ENV, "valueFrom": "HOST"}]},
    });
    if let Some(sha) = &istio.sha256 {
        spec["sha256"] = json!(sha);
    }
    match &istio.target {
        IstioTarget::Selector(labels) => spec["selector"] = json!({"matchLabels": labels}),
        IstioTarget::TargetRef(kind, name) => {
            let group = if kind == "Service" { "" } else { "gateway.networking.k8s.io" };
            spec["targetRefs"] = json!([{"group": group, "kind": kind, "name": name}]);
        }
    }
    Ok(json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": meta("npm-connector", &istio.namespace), "spec": spec}))
}

/// The Istio objects and the leaf Secrets the egress gateway terminates TLS with.
pub(crate) fn files(
    planned: &[Planned<'_>],
    tls: &Tls,
    istio: &Istio,
    filter_json: &str,
) -> Result<Vec<OutFile>, RenderError> {
    let ups = super::envoy::upstreams(planned);
    let hosts = hosts(&ups);
    let ns = &istio.namespace;
    let mut objects = vec![json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": meta("npm-connector-registries", ns),
        "spec": {"hosts": hosts, "location": "MESH_EXTERNAL", "resolution": "DNS",
            "ports": ups.iter().map(|u| u.port).collect::<std::collections::BTreeSet<_>>().into_iter()
                .map(|p| json!({"number": p, "name": format!("tls-{p}"), "protocol": "TLS"})).collect::<Vec<_>>()}})];
    // Build pods' TLS to a registry host: to the egress gateway, still encrypted.
    let mut tls_routes = Vec::new();
    for up in &ups {
        let mut m = json!({"gateways": ["mesh"], "port": up.port, "sniHosts": [up.host]});
        if !istio.build_pods.is_empty() {
            m["sourceLabels"] = json!(istio.build_pods);
        }
        tls_routes.push(
            json!({"match": [m], "route": [{"destination": {"host": istio.gateway_service, "port": {"number": 443}}}]}),
        );
    }
    objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": meta("npm-connector-to-egress", ns),
        "spec": {"hosts": hosts, "gateways": ["mesh"], "exportTo": ["*"], "tls": tls_routes}}));
    let servers: Vec<Value> = hosts
        .iter()
        .map(|h| {
            json!({"port": {"number": 443, "name": format!("https-{}", host_name(h)), "protocol": "HTTPS"},
            "hosts": [h], "tls": {"mode": "SIMPLE", "credentialName": secret_name(h)}})
        })
        .collect();
    objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": meta(GATEWAY, ns),
        "spec": {"selector": istio.gateway_labels, "servers": servers}}));
    // At the gateway: each connector's prefixes (longest first), a route named after it, to its
    // registry's cluster; other paths 403.
    let mut http = Vec::new();
    // The VirtualService's hosts bind it to the registry hosts' Host headers.
    for (_host, endpoints) in prefixes_by_host(planned) {
        for (up, mut prefixes) in endpoints {
            prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
            for (prefix, route) in prefixes {
                http.push(json!({"name": route, "match": [{"gateways": [GATEWAY], "uri": {"prefix": prefix}}],
                    "route": [{"destination": {"host": up.host, "port": {"number": up.port}}}]}));
            }
        }
    }
    http.push(json!({"name": "unowned_path", "match": [{"gateways": [GATEWAY]}],
        "directResponse": {"status": 403, "body": {"string": "{\"error\":\"npm-connector: no connector owns this path on this registry host\"}"}}}));
    objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": meta("npm-connector-registries", ns), "spec": {"hosts": hosts, "gateways": [GATEWAY], "http": http}}));
    for up in &ups {
        objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": meta(&format!("npm-connector-{}-{}", host_name(&up.host), up.port), ns),
            "spec": {"host": up.host, "exportTo": ["."], "trafficPolicy": {"portLevelSettings": [{"port": {"number": up.port},
                "tls": {"mode": "SIMPLE", "sni": up.host, "subjectAltNames": [up.host]}}]}}}));
    }
    // The build pods' sidecars hand the clients' own TLS to the gateway as it is: no Istio
    // mTLS around it, or the gateway's SIMPLE server would see Istio's handshake instead.
    objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": meta("npm-connector-egress-gateway", ns),
        "spec": {"host": istio.gateway_service, "exportTo": ["*"], "trafficPolicy": {"portLevelSettings": [
            {"port": {"number": 443}, "tls": {"mode": "DISABLE"}}]}}}));
    objects.push(wasm_plugin(istio, filter_json)?);

    let mut docs = String::from(
        "# Rendered by npm-connector render --mode sidecar --istio: apply to the egress gateway's namespace.\n",
    );
    for o in &objects {
        docs += "---\n";
        docs += to_yaml(o, "")?.trim_start_matches('\n');
    }
    let mut secrets = String::from("# The egress gateway's TLS leaves (connector CA): kubectl apply, never commit.\n");
    for h in &hosts {
        let leaf = tls.leaves.get(h).ok_or_else(|| RenderError::NoLeaf(h.clone()))?;
        let s = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": meta(&secret_name(h), ns),
            "stringData": {"tls.crt": leaf.cert, "tls.key": leaf.key.expose_secret()}});
        secrets += "---\n";
        secrets += to_yaml(&s, "")?.trim_start_matches('\n');
    }
    Ok(vec![
        OutFile { path: PathBuf::from("istio/istio.yaml"), contents: docs.into(), secret: true },
        OutFile { path: PathBuf::from("istio/leaf-secrets.yaml"), contents: secrets.into(), secret: true },
    ])
}
