//! `npm-connector image`: the filter as an OCI image layout in the Wasm image spec's "oci"
//! variant (what Istio's WasmPlugin pulls), read back with skopeo.

use std::process::Command;

use npm_connector_tests::control;
use sha2::{Digest, Sha256};

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out =
        Command::new("skopeo").args(args).output().unwrap_or_else(|e| panic!("skopeo: {e} (make tools installs it)"));
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn the_filter_packs_as_a_wasm_oci_image_skopeo_reads() {
    let wasm =
        npm_connector_tests::tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let module = std::fs::read(&wasm).unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().join("image");
    let archive = tmp.path().join("image.tar");
    let printed = control::run(&[
        "image",
        "--wasm",
        &wasm.display().to_string(),
        "-o",
        &dir.display().to_string(),
        "--tag",
        "v1",
        "--tar",
        &archive.display().to_string(),
    ]);
    let reference = format!("oci:{}:v1", dir.display());

    let raw = skopeo(&["inspect", "--raw", &reference]);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{e}"));
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    assert!(printed.contains(&format!("manifest {manifest_digest}")), "{printed}");
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(layers.len(), 1, "exactly one layer: {manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.module.wasm.content.layer.v1+wasm");
    assert_eq!(layers[0]["digest"], format!("sha256:{}", hex::encode(Sha256::digest(&module))));
    assert_eq!(layers[0]["size"], module.len());
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.module.wasm.config.v1+json");
    let config: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", "--config", "--raw", &reference]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config["type"], "envoy_proxy");
    assert_eq!(config["config"]["root_ids"], serde_json::json!(["npm_connector"]));
    // Standard tools move it like any image.
    let copy = format!("oci:{}:copied", tmp.path().join("copy").display());
    skopeo(&["copy", "-q", &reference, &copy]);
    assert_eq!(skopeo(&["inspect", "--raw", &copy]), raw);

    // The same image as one tar file.
    assert_eq!(skopeo(&["inspect", "--raw", &format!("oci-archive:{}", archive.display())]), raw);

    // Anything but a Wasm module is refused.
    let bogus = tmp.path().join("bogus.wasm");
    std::fs::write(&bogus, "not wasm").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(control::binary())
        .args(["image", "--wasm", &bogus.display().to_string(), "-o", &tmp.path().join("x").display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is not a Wasm module"));
}
