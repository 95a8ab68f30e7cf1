//! The checked-in rendered Envoy configurations load in the real Envoy (`--mode validate`),
//! with the wasm path pointed at the built filter.

use npm_connector_tests::{envoy, root, tool};

#[test]
fn checked_in_envoy_configs_validate() {
    let wasm = tool(
        "NPM_CONNECTOR_WASM",
        "target/wasm32-wasip1/release/npm_connector_filter.wasm",
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for rel in [
        "envoy/examples/forward/envoy.yaml",
        "envoy/examples/gateway/envoy.yaml",
        "envoy/docker/rendered/envoy.yaml",
    ] {
        let text =
            std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(
            text.contains("/etc/npm-connector/npm_connector_filter.wasm"),
            "{rel}"
        );
        let local = text.replace(
            "/etc/npm-connector/npm_connector_filter.wasm",
            &wasm.display().to_string(),
        );
        let path = dir.path().join(rel.replace('/', "_"));
        std::fs::write(&path, local).unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new(envoy::binary())
            .args(["--mode", "validate", "--log-level", "error", "-c"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
