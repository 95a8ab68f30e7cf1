//! `render --mode sidecar --istio`: every Istio object validates against Istio's CRD schemas
//! (@kubernetes-models/istio, pinned) plus the rules that package does not enforce (no unknown
//! field, selector and targetRefs not both); the WasmPlugin's pluginConfig is the very filter
//! configuration the sidecar Envoy runs; the Secrets and the sidecar's init container validate
//! against the Kubernetes schemas.

use std::path::{Path, PathBuf};
use std::process::Command;

use npm_connector_tests::control;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifests() -> &'static str {
    "kind: Secret\napiVersion: v1\nmetadata: {name: registry, namespace: build}\ntype: kubernetes.io/basic-auth\n\
     stringData: {username: ci, password: istio-test-password}\n---\n\
     apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: npm, namespace: build}\n\
     spec:\n  connectorClassName: npm\n  address: https://nexus.example.com/repository/npm/\n  auth: {name: basicAuth, secretRef: {name: registry}}\n---\n\
     kind: Secret\napiVersion: v1\nmetadata: {name: gl, namespace: build}\nstringData: {token: glpat-istio-test}\n---\n\
     apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: gitlab\n  namespace: build\n  annotations: {npm-connector.io/auth-header: Private-Token}\n\
     spec:\n  connectorClassName: npm\n  address: https://gitlab.example.com/api/v4/packages/npm/\n  auth: {name: bearerToken, secretRef: {name: gl}}\n"
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split("\n---\n").filter_map(|d| serde_yaml_ng::from_str::<Value>(d).ok()).filter(|v| v.is_object()).collect()
}

/// Runs the Istio validator on `objects`: (ok, what it printed).
fn validate(dir: &Path, objects: &[Value]) -> (bool, String) {
    let file = dir.join("objects.json");
    std::fs::write(&file, serde_json::to_string(objects).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("node")
        .arg(root().join("tests/registry/validate-istio.mjs"))
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("node: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn render(dir: &Path, extra: &[&str]) -> PathBuf {
    let ca = dir.join("ca");
    if !ca.exists() {
        control::run(&["ca", "init", "--dir", &ca.display().to_string()]);
    }
    std::fs::write(dir.join("c.yaml"), manifests()).unwrap_or_else(|e| panic!("{e}"));
    let key = dir.join("key");
    if !key.exists() {
        control::keygen(&key);
    }
    let out = dir.join(format!("out{}", extra.len()));
    let mut args = vec!["--mode", "sidecar", "--istio", "--ca-dir", ca.to_str().unwrap_or_default(), "--no-validate"];
    args.extend_from_slice(extra);
    control::render(&dir.join("c.yaml"), &out, &key, &args);
    out
}

/// The sidecar listener's filter configuration in the rendered bootstrap.
fn sidecar_filter_config(envoy_yaml: &Path) -> Value {
    let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(envoy_yaml).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let text = doc.to_string();
    let at = text.find(r#"\"role\":\"sidecar\""#).unwrap_or_else(|| panic!("no sidecar filter configuration"));
    let start = text[..at].rfind(r#""value":""#).unwrap_or(0) + 9;
    let end = start + text[start..].find(r#"}""#).unwrap_or(0) + 1;
    let escaped = format!("\"{}\"", &text[start..end]);
    let json: String = serde_json::from_str(&escaped).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn istio_objects_validate_and_carry_the_sidecars_filter_configuration() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    // The filter's OCI image (npm-connector image): the WasmPlugin pins its manifest digest.
    let wasm =
        npm_connector_tests::tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let printed = control::run(&[
        "image",
        "--wasm",
        wasm.to_str().unwrap_or_default(),
        "-o",
        d.join("layout").to_str().unwrap_or_default(),
        "--tag",
        "0.1.0",
    ]);
    let digest = printed.split("(manifest ").nth(1).and_then(|r| r.split(';').next()).unwrap_or_default().to_owned();
    assert!(digest.starts_with("sha256:"), "{printed}");
    let out = render(
        d,
        &[
            "--istio-build-pods",
            "app=build",
            "--istio-wasm-url",
            "oci://registry.example.com/npm-connector-filter:0.1.0",
            "--istio-wasm-sha256",
            &digest,
        ],
    );
    let objects = docs(&out.join("istio/istio.yaml"));
    let (ok, report) = validate(d, &objects);
    assert!(ok, "{report}");
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or("")))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "DestinationRule/npm-connector-egress-gateway",
            "DestinationRule/npm-connector-gitlab-example-com-443",
            "DestinationRule/npm-connector-nexus-example-com-443",
            "Gateway/npm-connector-egress",
            "ServiceEntry/npm-connector-registries",
            "VirtualService/npm-connector-registries",
            "VirtualService/npm-connector-to-egress",
            "WasmPlugin/npm-connector",
        ]
    );
    assert_eq!(report.matches("valid ").count(), 8, "{report}");

    let wp = objects.iter().find(|o| o["kind"] == "WasmPlugin").cloned().unwrap_or_default();
    assert_eq!(wp["spec"]["failStrategy"], "FAIL_CLOSE");
    assert_eq!(wp["spec"]["type"], "HTTP");
    assert_eq!(wp["spec"]["phase"], "AUTHN");
    assert_eq!(wp["spec"]["selector"]["matchLabels"]["istio"], "egressgateway");
    assert_eq!(wp["spec"]["url"], "oci://registry.example.com/npm-connector-filter:0.1.0");
    assert_eq!(wp["spec"]["sha256"].as_str(), digest.strip_prefix("sha256:"), "the image's manifest digest");
    assert_eq!(wp["spec"]["vmConfig"]["env"][0], serde_json::json!({"name": "NPM_CONNECTOR_KEY", "valueFrom": "HOST"}));
    // One renderer: the WasmPlugin carries exactly the sidecar Envoy's filter configuration.
    assert_eq!(wp["spec"]["pluginConfig"], sidecar_filter_config(&out.join("envoy.yaml")));
    let cfg = wp["spec"]["pluginConfig"].to_string();
    assert!(cfg.contains(r#""sealed""#) && !cfg.contains("istio-test-password") && !cfg.contains("glpat-istio-test"));
    // The gateway's routes are named after the connectors and send to the clusters the
    // filter expects (Istio's outbound|port||host).
    let vs = objects
        .iter()
        .find(|o| o["kind"] == "VirtualService" && o["metadata"]["name"] == "npm-connector-registries")
        .cloned()
        .unwrap_or_default();
    let routes = vs["spec"]["http"].to_string();
    assert!(routes.contains(r#""name":"build/npm""#) && routes.contains(r#""name":"build/gitlab""#), "{routes}");
    let npm = &wp["spec"]["pluginConfig"]["connectors"][0];
    assert_eq!(
        (npm["route"].as_str(), npm["cluster"].as_str()),
        (Some("build/npm"), Some("outbound|443||nexus.example.com"))
    );
    let mesh = objects.iter().find(|o| o["metadata"]["name"] == "npm-connector-to-egress").cloned().unwrap_or_default();
    assert_eq!(mesh["spec"]["tls"][0]["match"][0]["sourceLabels"]["app"], "build");

    // The Gateway's TLS Secrets and the sidecar's init container (in a Pod) against the
    // Kubernetes schemas.
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: build}}\nspec:\n  initContainers:\n{}\n  containers: [{{name: build, image: node:22}}]\n",
        std::fs::read_to_string(out.join("sidecar/init-container.yaml"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .enumerate()
            .map(|(i, l)| if i == 0 { format!("  - {l}") } else { format!("    {l}") })
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::fs::write(d.join("pod.yaml"), pod).unwrap_or_else(|e| panic!("{e}"));
    let kv = Command::new(root().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .arg(out.join("istio/leaf-secrets.yaml"))
        .arg(d.join("pod.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("kubernetes-validate: {e}"));
    let report = format!("{}{}", String::from_utf8_lossy(&kv.stdout), String::from_utf8_lossy(&kv.stderr));
    assert!(kv.status.success() && !report.contains("ERROR"), "{report}");
    assert_eq!(report.matches(" passed for resource ").count(), 3, "two Secrets and the Pod: {report}");

    // targetRefs instead of a selector.
    let out = render(d, &["--istio-target-ref", "Gateway/npm-egress"]);
    let objects = docs(&out.join("istio/istio.yaml"));
    let (ok, report) = validate(d, &objects);
    assert!(ok, "{report}");
    let wp = objects.iter().find(|o| o["kind"] == "WasmPlugin").cloned().unwrap_or_default();
    assert_eq!(wp["spec"]["targetRefs"][0]["kind"], "Gateway");
    assert!(wp["spec"].get("selector").is_none());
    assert!(wp["spec"]["url"].as_str().unwrap_or_default().starts_with("file://"));
}

#[test]
fn the_istio_validator_refuses_unknown_fields_and_selector_with_target_refs() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    let wp = |spec: Value| {
        serde_json::json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "x", "namespace": "y"}, "spec": spec})
    };
    let cases = [
        (wp(serde_json::json!({"url": "oci://r/x:1", "phse": "AUTHN"})), ".spec.phse: not a field of the CRD"),
        (
            wp(
                serde_json::json!({"url": "oci://r/x:1", "vmConfig": {"env": [{"name": "K", "valueFrom": "HOST", "from": 1}]}}),
            ),
            ".spec.vmConfig.env[0].from: not a field of the CRD",
        ),
        (
            wp(serde_json::json!({"url": "oci://r/x:1", "selector": {"matchLabels": {"a": "b"}},
            "targetRefs": [{"kind": "Gateway", "name": "g", "group": "gateway.networking.k8s.io"}]})),
            "selector and targetRefs are mutually exclusive",
        ),
        (wp(serde_json::json!({"url": "oci://r/x:1", "failStrategy": "FAIL_SOMETIMES"})), "schema:"),
    ];
    for (obj, want) in cases {
        let (ok, report) = validate(d, &[obj]);
        assert!(!ok && report.contains(want), "want {want:?}:\n{report}");
    }
    // The free-form pluginConfig takes anything.
    let (ok, report) =
        validate(d, &[wp(serde_json::json!({"url": "oci://r/x:1", "pluginConfig": {"any": {"thing": [1]}}}))]);
    assert!(ok, "{report}");
}
