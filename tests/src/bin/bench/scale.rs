//! Envoy at scale: the rendered bootstrap of 10,000 connectors (a registry host each) in each
//! mode, from process start to `/ready` saying LIVE, and Envoy's resident memory then (and its
//! peak), against the same mode with one connector in the same run. Also gateway mode with
//! every host pinned (`--resolve`), which gives each registry a cluster of its own: what every
//! connector cost before registries reached by DNS shared one.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use npm_connector_tests::control;
use npm_connector_tests::envoy::{self, admin_get};
use npm_connector_tests::plane::many_manifests;
use npm_connector_tests::procs::Daemon;

use crate::knob;

struct Start {
    ready: Duration,
    rss_mb: u64,
    peak_mb: u64,
}

fn status_mb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Starts Envoy on the rendered bootstrap (`envoy.json` when large; two workers), waits for LIVE, reads its memory, stops it.
fn start(out: &Path, key: &str) -> Start {
    let mut cmd = Command::new(envoy::binary());
    let json = out.join("envoy.json");
    let bootstrap = if json.exists() { json } else { out.join("envoy.yaml") };
    cmd.env(npm_connector_filter::seal::KEY_ENV, key).arg("-c").arg(bootstrap);
    cmd.args(["--use-dynamic-base-id", "--log-level", "warn", "--concurrency", "2"]);
    let t = Instant::now();
    let mut d = Daemon::spawn("envoy", cmd, out.join("envoy.log"));
    let socket = out.join("admin.sock");
    loop {
        if admin_get(&socket, "/ready").is_ok_and(|r| r.trim() == "LIVE") {
            break;
        }
        d.assert_running();
        assert!(t.elapsed() < Duration::from_secs(300), "Envoy not ready after 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ready = t.elapsed();
    // Settle: workers finish their own start (their Wasm VMs) just after LIVE.
    std::thread::sleep(Duration::from_secs(2));
    let s = Start { ready, rss_mb: status_mb(d.pid(), "VmRSS:"), peak_mb: status_mb(d.pid(), "VmHWM:") };
    d.terminate();
    s
}

struct Row {
    what: String,
    one: Start,
    many: Start,
}

pub fn run() -> String {
    let n = knob("BENCH_SCALE_CONNECTORS", 10_000usize);
    let tmp = tempfile::Builder::new().prefix("npm-connector-bench-scale-").tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    let key_file = d.join("key");
    let key = control::keygen(&key_file);
    let ca = d.join("ca");
    control::run(&["ca", "init", "--dir", &ca.display().to_string()]);
    let wasm =
        npm_connector_tests::tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm")
            .display()
            .to_string();
    let ca_dir = ca.display().to_string();
    let pins: Vec<String> =
        (0..n).flat_map(|i| ["--resolve".to_owned(), format!("registry-{i}.example.com=127.0.0.1")]).collect();
    let mut rows = Vec::new();
    for (what, mode, pinned) in [
        ("gateway", "gateway", false),
        ("https-proxy", "https-proxy", false),
        ("sidecar", "sidecar", false),
        ("gateway, every host pinned: a cluster per registry", "gateway", true),
    ] {
        let at = |count: usize| -> Start {
            let file = d.join(format!("m{count}.yaml"));
            std::fs::write(&file, many_manifests(count, true, 0)).unwrap_or_else(|e| panic!("{e}"));
            let out = d.join(format!("out-{mode}-{count}-{pinned}"));
            let mut args: Vec<&str> = vec!["--mode", mode, "--wasm", &wasm, "--no-validate"];
            if mode != "gateway" {
                args.extend(["--ca-dir", &ca_dir]);
            }
            if pinned {
                args.extend(pins.iter().take(2 * count).map(String::as_str));
            }
            control::render(&file, &out, &key_file, &args);
            let s = start(&out, &key);
            // The client files of 10,000 connectors are gigabytes (a CA bundle each).
            let _ = std::fs::remove_dir_all(&out);
            s
        };
        let one = at(1);
        let many = at(n);
        println!(
            "{what}: 1 connector ready {:?} {} MB; {n}: ready {:?}, {} MB (peak {} MB)",
            one.ready, one.rss_mb, many.ready, many.rss_mb, many.peak_mb
        );
        rows.push(Row { what: what.to_owned(), one, many });
    }
    let mut table = String::new();
    for r in &rows {
        table += &format!(
            "| {} | {} ms, {} MB | **{} ms** ({:.1}×) | **{} MB** (peak {} MB; {:.1}×) |\n",
            r.what,
            r.one.ready.as_millis(),
            r.one.rss_mb,
            r.many.ready.as_millis(),
            r.many.ready.as_secs_f64() / r.one.ready.as_secs_f64(),
            r.many.rss_mb,
            r.many.peak_mb,
            r.many.rss_mb as f64 / r.one.rss_mb.max(1) as f64,
        );
    }
    format!(
        "## Envoy at {n} connectors\n\n\
         The rendered static bootstrap of {n} connectors, each with a registry host of its own \
         (`registry-<i>.example.com`, the worst case: no two share a cluster), started with two workers: time from \
         process start to `/ready` = LIVE, and resident memory 2 s later (and the peak). The baseline is the same \
         mode with one connector, in the same run. Goal: ≤ 3000 ms and ≤ 300 MB.\n\n\
         | mode | 1 connector | {n}: ready | {n}: memory |\n|---|---:|---:|---:|\n{table}\n\
         Registries reached by DNS share one dynamic-forward-proxy cluster and resolve on first use; the pinned \
         row gives each registry a cluster of its own, as every connector had before. https-proxy and sidecar \
         mode also hold a leaf certificate per 100 registry hosts (one filter chain, the leaf chosen by SNI). \
         Above 4 MB the bootstrap is `envoy.json`, which Envoy parses as JSON.\n"
    )
}
