//! The checked-in rendered Envoy configurations load in the real Envoy (`--mode validate`),
//! with the wasm path pointed at the built filter.

use npm_connector_tests::{envoy, root, tool};

#[test]
fn checked_in_envoy_configs_validate() {
    let wasm = tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for rel in [
        "envoy/examples/gateway/envoy.yaml",
        "envoy/examples/https-proxy/envoy.yaml",
        "envoy/examples/sidecar/envoy.yaml",
        "envoy/docker/rendered/envoy.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(text.contains("/etc/npm-connector/npm_connector_filter.wasm") || rel.contains("xds"), "{rel}");
        // https-proxy and sidecar: the leaf files as checked in next to the bootstrap.
        let tls = root().join(rel).with_file_name("tls");
        let local = text
            .replace("/etc/npm-connector/npm_connector_filter.wasm", &wasm.display().to_string())
            .replace("/etc/npm-connector/tls", &tls.display().to_string());
        let path = dir.path().join(rel.replace('/', "_"));
        std::fs::write(&path, local).unwrap_or_else(|e| panic!("{e}"));
        let key = std::fs::read_to_string(root().join("envoy/examples/example.key")).unwrap_or_default();
        let out = std::process::Command::new(envoy::binary())
            .env("NPM_CONNECTOR_KEY", key.trim())
            .args(["--mode", "validate", "--log-level", "error", "-c"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "{rel}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A configuration the filter rejects (`on_configure` returns false) is refused by Envoy, which
/// logs the filter's reason and no secret.
#[test]
fn envoy_refuses_a_configuration_the_filter_rejects() {
    let wasm = tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text =
        std::fs::read_to_string(root().join("envoy/examples/gateway/envoy.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let hash_at = text.find(r#""sha256":""#).unwrap_or_else(|| panic!("no token hash in the golden config")) + 10;
    let bad = format!("{}not-hex{}", &text[..hash_at], &text[hash_at + 64..])
        .replace("/etc/npm-connector/npm_connector_filter.wasm", &wasm.display().to_string())
        .replace("/run/npm-connector/admin.sock", &dir.path().join("admin.sock").display().to_string())
        .replace("port_value: 10000", &format!("port_value: {}", npm_connector_tests::procs::free_port()));
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap_or_else(|e| panic!("{e}"));
    let key = std::fs::read_to_string(root().join("envoy/examples/example.key")).unwrap_or_default();
    let out = std::process::Command::new(envoy::binary())
        .env("NPM_CONNECTOR_KEY", key.trim())
        .args(["--use-dynamic-base-id", "--log-level", "info", "-c"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "Envoy must not start on a configuration the filter rejects");
    assert!(
        log.contains("npm-connector: configuration rejected: connector default/npm-connector: tokens[0].sha256 must be 64 hex digits"),
        "{log}"
    );
    assert!(!log.contains("your-registry-password"));
}

/// Thousands of connectors make a bootstrap of megabytes, which is written as `envoy.json`
/// (Envoy parses a `.json` bootstrap as JSON, a `.yaml` through its YAML parser, much slower):
/// the real Envoy must accept it, and no stale `envoy.yaml` may be left beside it.
#[test]
fn a_large_bootstrap_is_json_and_validates() {
    let wasm = tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("key");
    npm_connector_tests::control::keygen(&key);
    let out = dir.path().join("out");
    let envoy_bin = envoy::binary().display().to_string();
    let wasm = wasm.display().to_string();
    let args = ["--wasm", wasm.as_str(), "--envoy", envoy_bin.as_str()];
    let render = |n: usize| {
        let file = dir.path().join(format!("m{n}.yaml"));
        std::fs::write(&file, npm_connector_tests::plane::many_manifests(n, true, 0)).unwrap_or_else(|e| panic!("{e}"));
        // `render` runs `envoy --mode validate` on what it wrote and fails if Envoy refuses it.
        npm_connector_tests::control::render(&file, &out, &key, &args)
    };
    let said = render(2);
    assert!(said.contains(&format!("rendered Envoy bootstrap -> {}", out.join("envoy.yaml").display())), "{said}");
    let said = render(4_000);
    assert!(said.contains("validated with"), "{said}");
    assert!(said.contains(&format!("rendered Envoy bootstrap -> {}", out.join("envoy.json").display())), "{said}");
    assert!(said.contains(&format!("removed {} (no longer rendered)", out.join("envoy.yaml").display())), "{said}");
    assert!(!out.join("envoy.yaml").exists());
    let text = std::fs::read_to_string(out.join("envoy.json")).unwrap_or_else(|e| panic!("{e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("envoy.json is not JSON: {e}"));
    assert_eq!(doc["static_resources"]["listeners"][0]["name"], "npm_connector_gateway");
    assert!(text.len() > 4 << 20);
}
