//! The filter's cost against bare Envoy and Envoy's native credential_injector, all in one
//! run, with wrk against each on loopback: requests/s, p50/p99 latency, the ratios, µs of Envoy
//! CPU per request and the `.wasm` size.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use npm_connector_tests::envoy::{self, Envoy};
use npm_connector_tests::procs::free_port;
use npm_connector_tests::tool;
use npm_connector_tests::upstream::Upstream;

use crate::{cpu_seconds, knob, median};
use serde_json::{json, Value};

pub(crate) const TOKEN: &str = "npmc_bench-token-0123456789abcdefghijklmnopqrstuvw";
/// Defaults; `BENCH_SECONDS` and `BENCH_ROUNDS` override them for a quick look.
const SECONDS: u32 = 5;
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Filter {
    Bare,
    Native,
    /// A Rust proxy-wasm filter that only continues: the floor any Wasm filter pays.
    Noop,
    /// The no-op filter making some of the host calls the real filter makes on each request
    /// (`headers`, `props`, `set`, `count`): what each costs before any logic runs.
    Steps(&'static str),
    Ours,
    /// The same request with 10,000 connectors configured (one route and token map lookup
    /// each, whatever the number).
    Ours10k,
    /// A stateless signed token (`npmc_s1`, HMAC-SHA256 checked per request) instead of a
    /// hashed one.
    OursSigned,
}

/// The signed token the `OursSigned` rows send, under the key their configuration holds.
fn signed_token() -> String {
    npm_connector_filter::token::signed::SigningKey::new("bench", &[7; 32])
        .map(|k| k.mint("bench/npm", 4_000_000_000, "bench"))
        .unwrap_or_default()
}

impl Filter {
    fn token(self) -> String {
        if self == Filter::OursSigned {
            signed_token()
        } else {
            TOKEN.to_owned()
        }
    }
}

impl Filter {
    fn name(self) -> &'static str {
        match self {
            Filter::Bare => "bare Envoy",
            Filter::Native => "native credential_injector",
            Filter::Noop => "no-op Rust Wasm filter",
            Filter::Steps("headers") => "no-op + read all request headers (1 call)",
            Filter::Steps("headers,props") => "no-op + headers + route and cluster names (3 calls)",
            Filter::Steps("headers,props,set") => "no-op + those + set the credential header (4 calls)",
            Filter::Steps(_) => "no-op + those + count (5 calls: the real filter's)",
            Filter::Ours => "npm-connector filter",
            Filter::Ours10k => "npm-connector filter, 10,000 connectors",
            Filter::OursSigned => "npm-connector filter, signed token",
        }
    }
}

fn filters(f: Filter, wasm: &Path) -> Vec<Value> {
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    match f {
        Filter::Bare => vec![router],
        Filter::Native => vec![
            json!({"name": "envoy.filters.http.credential_injector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
                "overwrite": true,
                "credential": {"name": "envoy.http.injected_credentials.generic", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic",
                    "credential": {"name": "bench-credential"}, "header": "Authorization"}}}}),
            router,
        ],
        Filter::Noop | Filter::Steps(_) => {
            let noop = wasm.with_file_name("npm_connector_noop_filter.wasm");
            let conf = match f {
                Filter::Steps(s) => format!("steps:{s}"),
                _ => String::new(),
            };
            vec![
                json!({"name": "envoy.filters.http.wasm", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {"name": "noop", "root_id": "noop",
                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": conf},
                        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": noop.display().to_string()}}}}}}),
                router,
            ]
        }
        Filter::Ours | Filter::Ours10k | Filter::OursSigned => {
            // The filter acts on the route named after the connector, to its cluster: the
            // local-upstream rows are injections; on the direct_response rows the route is not
            // the connector's, so they measure the decision that forwards without a credential.
            let mut connectors = vec![json!({
                "name": "bench/npm", "route": "bench/npm", "cluster": "upstream",
                "credential": {"basic": {"username": "bench", "password": "bench-password"}},
                "tokens": [{"sha256": npm_connector::token::hash(&secrecy::SecretString::from(TOKEN.to_owned()))}],
            })];
            if f == Filter::Ours10k {
                connectors.extend((1..10_000).map(|i| json!({
                    "name": format!("bench/c{i}"), "route": format!("bench/c{i}"), "cluster": format!("registry_{i}"),
                    "credential": {"bearer": {"token": format!("credential-{i}")}},
                    "tokens": [{"sha256": npm_connector::token::hash(&secrecy::SecretString::from(format!("npmc_bench_{i}")))}],
                })));
            }
            let mut cfg = json!({"role": "gateway", "connectors": connectors});
            if f == Filter::OursSigned {
                use base64::Engine as _;
                cfg["connectors"][0]["tokens"] = json!([]);
                cfg["token_keys"] = json!([{"kid": "bench", "key": {"plain": base64::engine::general_purpose::STANDARD.encode([7u8; 32])}}]);
            }
            vec![
                json!({"name": "envoy.filters.http.wasm", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {"name": "npm_connector", "root_id": "npm_connector",
                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": cfg.to_string()},
                        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm.display().to_string()}}}}}}),
                router,
            ]
        }
    }
}

pub(crate) fn config(f: Filter, upstream: Option<u16>, port: u16, admin: &Path, wasm: &Path) -> Value {
    let route = match upstream {
        None => {
            // Named, as every rendered route is (the filter reads the name; an empty one is a
            // cheaper host call), but no connector's.
            json!({"name": "not_a_connector", "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}})
        }
        Some(_) => json!({"name": "bench/npm", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}),
    };
    let mut clusters = vec![];
    if let Some(p) = upstream {
        clusters.push(json!({"name": "upstream", "connect_timeout": "1s", "type": "STATIC", "load_assignment": {"cluster_name": "upstream",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}]}]}}));
    }
    json!({
        "admin": {"address": {"pipe": {"path": admin.display().to_string(), "mode": 0o600}}},
        "static_resources": {
            "secrets": [{"name": "bench-credential", "generic_secret": {"secret": {"inline_string": "Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ="}}}],
            "listeners": [{"name": "bench", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "bench", "normalize_path": true, "merge_slashes": true,
                    "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
                    "http_filters": filters(f, wasm)}}]}]}],
            "clusters": clusters,
        },
    })
}

#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) cpu_us: f64,
}

fn parse_duration_ms(s: &str) -> f64 {
    let (num, unit) = s.trim().split_at(s.trim().find(|c: char| c.is_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        _ => f64::NAN,
    }
}

pub(crate) fn wrk(port: u16, secs: u32, pid: u32) -> Sample {
    wrk_with(port, secs, pid, TOKEN)
}

pub(crate) fn wrk_with(port: u16, secs: u32, pid: u32, token: &str) -> Sample {
    let before = cpu_seconds(pid);
    let out = Command::new("wrk")
        .args(["-t1", "-c16", &format!("-d{secs}s"), "--latency", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://127.0.0.1:{port}/bench/npm/some-package"))
        .output()
        .unwrap_or_else(|e| panic!("wrk: {e} (apt-get install wrk)"));
    let cpu = cpu_seconds(pid) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = Sample::default();
    let mut requests = 0.0;
    for l in text.lines() {
        let l = l.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            s.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            s.p50_ms = parse_duration_ms(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            s.p99_ms = parse_duration_ms(v);
        } else if l.contains(" requests in ") {
            requests = l.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
        }
        assert!(!l.starts_with("Non-2xx"), "the bench got errors: {text}");
    }
    s.cpu_us = if requests > 0.0 { cpu * 1e6 / requests } else { f64::NAN };
    s
}

/// The no-op filter's step rows, each adding host calls to the one before.
const STEPS: [&str; 4] = ["headers", "headers,props", "headers,props,set", "headers,props,set,count"];

/// Runs the filter bench; returns its section of BENCHMARKS.md.
pub fn run() -> String {
    let wasm = tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let wasm_size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let upstream = Upstream::quiet();
    let variants: Vec<(Filter, bool)> = [Filter::Bare, Filter::Native, Filter::Noop, Filter::Ours, Filter::Ours10k]
        .iter()
        .flat_map(|&f| [(f, false), (f, true)])
        // On direct_response rows a signed token is never checked (not a connector's route).
        .chain([(Filter::OursSigned, true)])
        // Each host call's price, on the injected path's route.
        .chain(STEPS.iter().map(|&s| (Filter::Steps(s), true)))
        .collect();
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    let (seconds, rounds) = (knob("BENCH_SECONDS", SECONDS), knob("BENCH_ROUNDS", ROUNDS));
    for round in 0..rounds {
        for (i, &(f, up)) in variants.iter().enumerate() {
            let port = free_port();
            let admin = dir.path().join(format!("admin-{i}.sock"));
            let cfg = dir.path().join(format!("bench-{i}.yaml"));
            let c = config(f, up.then_some(upstream.addr.port()), port, &admin, &wasm);
            std::fs::write(&cfg, c.to_string()).unwrap_or_else(|e| panic!("{e}"));
            let e: Envoy = envoy::start(&cfg, dir.path().join(format!("envoy-{i}.log")), port, admin, None);
            let pid = e.daemon.pid();
            let token = f.token();
            wrk_with(port, 1, pid, &token); // warm-up: V8 compiles, connections open
            let s = wrk_with(port, seconds, pid, &token);
            eprintln!(
                "round {round}: {:<28} {:<16} {:>9.0} req/s  {:.2} µs CPU/req",
                f.name(),
                if up { "local upstream" } else { "direct_response" },
                s.rps,
                s.cpu_us
            );
            if up && matches!(f, Filter::Ours | Filter::Ours10k | Filter::OursSigned) {
                // The rows measure the injected path: prove the filter injected.
                assert!(
                    e.counter("wasmcustom.npm_connector.injected.connector=bench/npm") > 0,
                    "{} injected nothing",
                    f.name()
                );
            }
            results[i].push(s);
            drop(e);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let med: Vec<Sample> = results
        .iter()
        .map(|r| Sample {
            rps: median(r.iter().map(|s| s.rps)),
            p50_ms: median(r.iter().map(|s| s.p50_ms)),
            p99_ms: median(r.iter().map(|s| s.p99_ms)),
            cpu_us: median(r.iter().map(|s| s.cpu_us)),
        })
        .collect();
    let mut table = String::from("| variant | route | req/s | vs bare | p50 ms | p99 ms | Envoy CPU µs/req | Δ vs bare µs/req | Δ vs no-op Wasm µs/req |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, &(f, up)) in variants.iter().enumerate() {
        // Variants come in (direct_response, local upstream) pairs: bare, native, no-op first.
        let bare = med[if up { 1 } else { 0 }];
        let noop = med[if up { 5 } else { 4 }];
        let s = med[i];
        table += &format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:+.1} | {:+.1} |\n",
            f.name(),
            if up { "local upstream" } else { "direct_response" },
            s.rps,
            s.rps / bare.rps,
            s.p50_ms,
            s.p99_ms,
            s.cpu_us,
            s.cpu_us - bare.cpu_us,
            s.cpu_us - noop.cpu_us
        );
    }
    let envoy_version = Command::new(envoy::binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let report = format!(
        "## Filter cost per request\n\n\
         - Machine: {} cores; Envoy `{}` with `--concurrency 1`; wrk 1 thread, 16 connections, {seconds} s per variant after a 1 s warm-up; \
         median of {rounds} rounds, variants interleaved.\n\
         - Every request carries `Authorization: Bearer <connector token>`. On the local-upstream rows the route is the connector's: \
         the filter reads the headers in one call and the route and cluster names, checks the token (SHA-256, one hash-map lookup) \
         and injects a Basic credential. On the direct_response rows the route is not a connector's: the filter decides to forward \
         without a credential (stripping the token). The native `credential_injector` injects a static credential without any check. \
         The signed-token row sends a stateless `npmc_s1` token whose HMAC-SHA256 the filter checks on every request (no cache).\n\
         - CPU per request is Envoy's user+system time from /proc over the measured run divided by the requests served (10 ms tick \
         resolution over ~{seconds} s).\n- Filter size: `npm_connector_filter.wasm` = {wasm_size} bytes.\n\n{table}\n\
         Issue 12's goal: within 3 µs/request of the no-op Wasm filter, at 1 and at 10,000 connectors.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        envoy_version.split_whitespace().last().unwrap_or("?"),
    );
    println!("\n{table}\nwasm size: {wasm_size} bytes");
    report
}
