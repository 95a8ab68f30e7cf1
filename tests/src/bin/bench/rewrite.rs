//! Packument rewriting's cost: the same Envoy and filter serving the same 300-version
//! packument from a local upstream, with the connector's tarball rewrite on and off
//! (passthrough), interleaved rounds; the figure is the ratio of the medians. Two shapes: flat
//! version objects of strings (every byte goes through the tokenizer), and version objects
//! shaped like the npm registry's (dependencies, maintainers, scripts… which the rewriter skips
//! without tokenizing).

use std::sync::Arc;
use std::time::Duration;

use npm_connector_tests::envoy::{self, Envoy};
use npm_connector_tests::procs::free_port;
use npm_connector_tests::tool;
use npm_connector_tests::upstream::{Answer, Seen, Upstream};
use serde_json::Value;

use crate::filter::{config, median, wrk, Filter};
use crate::knob;

const UPSTREAM: &str = "https://registry.test/repository/npm/";
const CLIENT: &str = "http://127.0.0.1:8080/bench/npm/";

/// Version objects of strings only.
fn flat(versions: usize) -> Vec<u8> {
    let mut v = serde_json::Map::new();
    for i in 0..versions {
        v.insert(
            format!("1.0.{i}"),
            serde_json::json!({"name": "pkg", "version": format!("1.0.{i}"), "description": "a package ".repeat(20),
                "dist": {"tarball": format!("{UPSTREAM}pkg/-/pkg-1.0.{i}.tgz"), "shasum": "0".repeat(40),
                         "integrity": format!("sha512-{}", "A".repeat(86))}}),
        );
    }
    serde_json::json!({"name": "pkg", "versions": v, "readme": "x".repeat(2000)}).to_string().into_bytes()
}

/// Version objects with the members the npm registry's packuments carry.
fn npm_shaped(versions: usize) -> Vec<u8> {
    let mut v = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    let deps: serde_json::Map<String, Value> =
        (0..12).map(|d| (format!("dependency-number-{d}"), Value::from(format!("^{d}.2.3")))).collect();
    for i in 0..versions {
        let version = format!("1.0.{i}");
        v.insert(
            version.clone(),
            serde_json::json!({
                "name": "pkg", "version": version, "description": "a package ".repeat(8), "main": "index.js",
                "license": "MIT", "homepage": "https://github.com/acme/pkg#readme",
                "keywords": ["acme", "package", "bench"],
                "author": {"name": "Acme Developer", "email": "dev@acme.test"},
                "repository": {"type": "git", "url": "git+https://github.com/acme/pkg.git"},
                "bugs": {"url": "https://github.com/acme/pkg/issues"},
                "scripts": {"test": "node --test", "build": "tsc -p .", "lint": "eslint ."},
                "engines": {"node": ">=18"},
                "dependencies": deps, "devDependencies": {"typescript": "^5.4.0", "eslint": "^9.0.0"},
                "maintainers": [{"name": "dev", "email": "dev@acme.test"}, {"name": "ops", "email": "ops@acme.test"}],
                "_npmUser": {"name": "dev", "email": "dev@acme.test"}, "_id": format!("pkg@1.0.{i}"),
                "_nodeVersion": "20.11.1", "_npmVersion": "10.2.4", "gitHead": "0".repeat(40),
                "directories": {}, "_hasShrinkwrap": false,
                "dist": {"tarball": format!("{UPSTREAM}pkg/-/pkg-1.0.{i}.tgz"), "shasum": "0".repeat(40),
                         "integrity": format!("sha512-{}", "A".repeat(86)), "fileCount": 12, "unpackedSize": 48213,
                         "signatures": [{"keyid": "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA",
                                         "sig": "M".repeat(96)}]},
            }),
        );
        time.insert(format!("1.0.{i}"), Value::from("2024-01-01T00:00:00.000Z"));
    }
    serde_json::json!({"_id": "pkg", "name": "pkg", "dist-tags": {"latest": format!("1.0.{}", versions - 1)},
        "versions": v, "time": time, "readme": "x".repeat(2000), "readmeFilename": "README.md"})
    .to_string()
    .into_bytes()
}

/// The bench config with the connector's rewrite rule on or off.
fn with_rewrite(mut cfg: Value, rewrite: bool) -> Value {
    let filters =
        &mut cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
    let wasm = &mut filters[0]["typed_config"]["config"]["configuration"]["value"];
    let mut fc: Value = serde_json::from_str(wasm.as_str().unwrap_or_default()).unwrap_or_default();
    if rewrite {
        fc["connectors"][0]["rewrite"] = serde_json::json!({"upstream": UPSTREAM, "client": CLIENT});
    }
    *wasm = Value::from(fc.to_string());
    cfg
}

pub fn run() -> String {
    let versions = knob("BENCH_PACKUMENT_VERSIONS", 300);
    let mut rows = String::new();
    for (shape, body) in [("flat, strings only", flat(versions)), ("npm-shaped", npm_shaped(versions))] {
        let (size, pass, rw) = measure(body);
        println!(
            "packument rewrite ({shape}, {size} bytes): {rw:.0} req/s vs passthrough {pass:.0} req/s: ratio {:.2}",
            rw / pass
        );
        rows.push_str(&format!("| {shape} | {size} | {pass:.0} | {rw:.0} | **{:.2}** |\n", rw / pass));
    }
    let (seconds, rounds) = (knob("BENCH_SECONDS", 5u32), knob("BENCH_ROUNDS", 3usize));
    format!(
        "## Packument rewriting\n\n\
         The same Envoy and filter serving a {versions}-version packument from a local upstream, the connector's \
         tarball rewrite on (every `versions.*.dist.tarball` re-based) and off (passthrough); wrk 1 thread, 16 \
         connections, {seconds} s, median of {rounds} interleaved rounds.\n\n\
         | packument | bytes | passthrough req/s | rewritten req/s | ratio |\n|---|---:|---:|---:|---:|\n{rows}\n\
         Goal: ratio ≥ 0.90.\n"
    )
}

/// Passthrough and rewritten req/s (medians) for one packument body.
fn measure(body: Vec<u8>) -> (usize, f64, f64) {
    let wasm = tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let size = body.len();
    let upstream = Upstream::scripted(Arc::new(move |_: &Seen| -> Answer {
        (200, vec![("content-type".into(), "application/json".into())], body.clone())
    }));
    let (seconds, rounds) = (knob("BENCH_SECONDS", 5u32), knob("BENCH_ROUNDS", 3usize));
    let mut rps: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, rewrite) in [false, true].into_iter().enumerate() {
            let port = free_port();
            let admin = dir.path().join(format!("admin-rw-{i}.sock"));
            let cfg_path = dir.path().join(format!("rw-{i}.yaml"));
            let cfg = with_rewrite(config(Filter::Ours, Some(upstream.addr.port()), port, &admin, &wasm), rewrite);
            std::fs::write(&cfg_path, cfg.to_string()).unwrap_or_else(|e| panic!("{e}"));
            let e: Envoy = envoy::start(&cfg_path, dir.path().join(format!("envoy-rw-{i}.log")), port, admin, None);
            let pid = e.daemon.pid();
            wrk(port, 1, pid);
            let s = wrk(port, seconds, pid);
            let rewritten = e.counter("wasmcustom.npm_connector.rewritten_responses.connector=bench/npm");
            assert_eq!(rewritten > 0, rewrite, "rewrite {rewrite}: {rewritten} responses rewritten");
            eprintln!(
                "round {round}: packument {} {:>9.0} req/s",
                if rewrite { "rewritten " } else { "passthrough" },
                s.rps
            );
            rps[i].push(s.rps);
            drop(e);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    (size, median(rps[0].clone()), median(rps[1].clone()))
}
