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

use crate::filter::{config, wrk, Filter};
use crate::knob;
use crate::median;

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

/// What Envoy runs in front of the upstream.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// npm-connector's filter, the connector's rewrite off.
    Passthrough,
    Rewritten,
    /// The no-op Wasm filter, and the same copying every body chunk into the VM and back.
    Noop,
    NoopCopy,
}

const VARIANTS: [Variant; 4] = [Variant::Passthrough, Variant::Rewritten, Variant::Noop, Variant::NoopCopy];

pub fn run() -> String {
    let versions = knob("BENCH_PACKUMENT_VERSIONS", 300);
    let (mut rows, mut summary) = (String::new(), String::new());
    for (shape, body) in [("flat, strings only", flat(versions)), ("npm-shaped", npm_shaped(versions))] {
        let size = body.len();
        let [pass, rw, noop, copy] = measure(body);
        let line = format!(
            "{shape} ({size} bytes): rewritten / passthrough **{:.2}** in req/s, **{:.2}** in Envoy CPU per \
             request ({:.0} µs of rewriting per packument, {:.0} MB/s); the Wasm body copy floor {:.2} in req/s, \
             {:.2} in CPU",
            rw.0 / pass.0,
            pass.1 / rw.1,
            rw.1 - pass.1,
            size as f64 / (rw.1 - pass.1),
            copy.0 / noop.0,
            noop.1 / copy.1,
        );
        println!("packument rewrite: {line}");
        summary.push_str(&format!("- {line}.\n"));
        for (name, (rps, cpu)) in [
            ("npm-connector, passthrough", pass),
            ("npm-connector, rewritten", rw),
            ("no-op Wasm filter", noop),
            ("no-op Wasm filter copying the body", copy),
        ] {
            rows.push_str(&format!("| {shape} | {size} | {name} | {rps:.0} | {cpu:.0} |\n"));
        }
    }
    let (seconds, rounds) = (knob("BENCH_SECONDS", 5u32), knob("BENCH_ROUNDS", 3usize));
    format!(
        "## Packument rewriting\n\n\
         The same Envoy and filter serving a {versions}-version packument from a local upstream, the connector's \
         tarball rewrite on (every `versions.*.dist.tarball` re-based) and off (passthrough); wrk 1 thread, 16 \
         connections, {seconds} s, median of {rounds} interleaved rounds; Envoy's CPU per request from /proc. The \
         floor rows: the no-op Wasm filter, and the same reading every response body chunk into the VM and writing \
         it back unchanged (what any Wasm body rewriter pays before it looks at a byte).\n\n\
         | packument | bytes | variant | req/s | Envoy CPU µs/req |\n|---|---:|---|---:|---:|\n{rows}\n{summary}\n\
         Goal: ratio ≥ 0.90.\n"
    )
}

/// Medians of req/s and of Envoy CPU µs per request for one packument body, in the order of
/// [`VARIANTS`].
fn measure(body: Vec<u8>) -> [(f64, f64); 4] {
    let wasm = tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let upstream = Upstream::scripted(Arc::new(move |_: &Seen| -> Answer {
        (200, vec![("content-type".into(), "application/json".into())], body.clone())
    }));
    let (seconds, rounds) = (knob("BENCH_SECONDS", 5u32), knob("BENCH_ROUNDS", 3usize));
    let mut rps: [Vec<f64>; 4] = Default::default();
    let mut cpu: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        for (i, v) in VARIANTS.into_iter().enumerate() {
            let port = free_port();
            let admin = dir.path().join(format!("admin-rw-{i}.sock"));
            let cfg_path = dir.path().join(format!("rw-{i}.yaml"));
            let up = Some(upstream.addr.port());
            let cfg = match v {
                Variant::Passthrough | Variant::Rewritten => {
                    with_rewrite(config(Filter::Ours, up, port, &admin, &wasm), v == Variant::Rewritten)
                }
                Variant::Noop | Variant::NoopCopy => {
                    let mut cfg = config(Filter::Noop, up, port, &admin, &wasm);
                    if v == Variant::NoopCopy {
                        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                            ["http_filters"][0]["typed_config"]["config"]["configuration"]["value"] =
                            Value::from("copy-body");
                    }
                    cfg
                }
            };
            std::fs::write(&cfg_path, cfg.to_string()).unwrap_or_else(|e| panic!("{e}"));
            let e: Envoy = envoy::start(&cfg_path, dir.path().join(format!("envoy-rw-{i}.log")), port, admin, None);
            let pid = e.daemon.pid();
            wrk(port, 1, pid);
            let s = wrk(port, seconds, pid);
            if matches!(v, Variant::Passthrough | Variant::Rewritten) {
                let rewritten = e.counter("wasmcustom.npm_connector.rewritten_responses.connector=bench/npm");
                let on = v == Variant::Rewritten;
                assert_eq!(rewritten > 0, on, "rewrite {on}: {rewritten} responses rewritten");
            }
            eprintln!("round {round}: variant {i}: {:>9.0} req/s, {:.0} µs CPU/req", s.rps, s.cpu_us);
            rps[i].push(s.rps);
            cpu[i].push(s.cpu_us);
            drop(e);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let (rps, cpu) = (rps.map(median), cpu.map(median));
    [0, 1, 2, 3].map(|i| (rps[i], cpu[i]))
}
