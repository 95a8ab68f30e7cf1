//! Packument rewriting's cost: the same Envoy and filter serving the same 300-version
//! packument from a local upstream, with the connector's tarball rewrite on and off
//! (passthrough), interleaved rounds; the figure is the ratio of the medians.

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

fn packument(versions: usize) -> Vec<u8> {
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
    let wasm = tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let body = packument(knob("BENCH_PACKUMENT_VERSIONS", 300));
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
    let (pass, rw) = (median(rps[0].clone()), median(rps[1].clone()));
    println!("packument rewrite: {rw:.0} req/s vs passthrough {pass:.0} req/s: ratio {:.2}", rw / pass);
    format!(
        "## Packument rewriting\n\n\
         The same Envoy and filter serving a {size}-byte packument (300 versions) from a local upstream, the \
         connector's tarball rewrite on (every `versions.*.dist.tarball` re-based) and off; wrk 1 thread, 16 \
         connections, {seconds} s, median of {rounds} interleaved rounds.\n\n\
         | variant | req/s |\n|---|---:|\n| passthrough | {pass:.0} |\n| rewritten | {rw:.0} |\n\n\
         **Ratio rewritten / passthrough: {:.2}** (goal ≥ 0.90).\n",
        rw / pass
    )
}
