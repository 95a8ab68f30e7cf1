//! Compiles the Envoy API protos shipped inside the `envoy-types` crate into a descriptor set,
//! so the control plane can turn the renderer's JSON into protobuf xDS resources (one renderer
//! for the static bootstrap and for xDS). Pure Rust (protox): no protoc needed.

use std::path::{Path, PathBuf};

/// Must match the `envoy-types` version pinned in Cargo.toml.
const ENVOY_TYPES: &str = "envoy-types-0.7.7";

/// The messages xDS resources are made of; their imports come along.
const FILES: &[&str] = &[
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/core/v3/extension.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/wasm/v3/wasm.proto",
    "envoy/extensions/filters/http/dynamic_forward_proxy/v3/dynamic_forward_proxy.proto",
    "envoy/extensions/filters/http/decompressor/v3/decompressor.proto",
    "envoy/extensions/compression/gzip/decompressor/v3/gzip.proto",
    "envoy/extensions/compression/brotli/decompressor/v3/brotli.proto",
    "envoy/extensions/compression/zstd/decompressor/v3/zstd.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/bootstrap/internal_listener/v3/internal_listener.proto",
    // registries reached by DNS share one cluster (auto SNI and SAN from the route's host)
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    // https-proxy mode
    "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    // sidecar mode
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "google/protobuf/wrappers.proto",
];

fn find_proto_root() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let src = cargo_home.join("registry").join("src");
    std::fs::read_dir(&src)
        .ok()?
        .filter_map(Result::ok)
        .map(|index| index.path().join(ENVOY_TYPES).join("proto"))
        .find(|p| p.is_dir())
}

fn main() {
    let Some(root) = find_proto_root() else {
        println!("cargo::error=cannot find {ENVOY_TYPES}/proto under $CARGO_HOME/registry/src: run `cargo fetch`");
        return;
    };
    let includes: Vec<PathBuf> = [
        "data-plane-api",
        "xds",
        "protoc-gen-validate",
        "googleapis",
        "cel-spec",
        "opentelemetry-proto",
        "client_model",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    // The dynamic forward proxy cluster names `common.dynamic_forward_proxy.v3.DnsCacheConfig`.
    // protoc resolves that through its direct imports only; protox also sees the
    // `envoy.extensions.clusters.common` package of a transitive import and stops there. Compile
    // a copy of that one file with the name fully qualified, ahead of the originals.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let dfp = "envoy/extensions/clusters/dynamic_forward_proxy/v3/cluster.proto";
    let patched_root = out_dir.join("patched-protos");
    let text = std::fs::read_to_string(root.join("data-plane-api").join(dfp)).unwrap_or_default();
    let text = text.replace(
        " common.dynamic_forward_proxy.v3.DnsCacheConfig",
        " .envoy.extensions.common.dynamic_forward_proxy.v3.DnsCacheConfig",
    );
    let patched = patched_root.join(dfp);
    if let Some(parent) = patched.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&patched, text) {
        println!("cargo::error=writing {}: {e}", patched.display());
        return;
    }
    let mut includes = includes;
    includes.insert(0, patched_root);
    let mut files = FILES.to_vec();
    files.push(dfp);
    let set = match protox::compile(&files, &includes) {
        Ok(s) => s,
        Err(e) => {
            println!("cargo::error=compiling Envoy protos from {}: {e}", root.display());
            return;
        }
    };
    let out = out_dir.join("envoy_descriptors.bin");
    if let Err(e) = std::fs::write(&out, prost::Message::encode_to_vec(&set)) {
        println!("cargo::error=writing {}: {e}", out.display());
    }
    println!("cargo::rerun-if-changed=build.rs");
}
