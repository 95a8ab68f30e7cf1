//! Control-plane speed: rendering 10,000 connectors, and pushing a changed credential to two
//! connected Envoys with 1,000 connectors configured, timed from the file change to both ACKs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use npm_connector::render::{self, Key, Mode, Options, Sealing};
use npm_connector::token::OsEntropy;
use npm_connector_tests::configmap::ConfigMapDir;
use npm_connector_tests::control::{self, wait_for};
use npm_connector_tests::plane::{many_manifests, Plane};
use npm_connector_tests::procs::free_port;

use crate::{knob, median};

/// Rounds of the in-memory render measures; the host's speed varies, so the table gives the
/// range as well as the median.
const ROUNDS: usize = 5;

/// "min–max" in milliseconds.
fn range(v: &[Duration]) -> String {
    let (lo, hi) = (v.iter().min().copied().unwrap_or_default(), v.iter().max().copied().unwrap_or_default());
    format!("{}–{}", lo.as_millis(), hi.as_millis())
}

struct RenderTimes {
    /// Size of the rendered bootstrap in bytes.
    bootstrap: usize,
    parse: Duration,
    static_render: Duration,
    /// Manifest text in, every output file in memory: what the goal is about.
    both: Duration,
    both_range: String,
    snapshot: Duration,
    cli: Duration,
}

/// What `serve` does on a change: resources for one node, checked and encoded as protobuf;
/// the time it took.
fn cold_snapshot(connectors: &[npm_connector::manifest::Connector], opts: &Options) -> Duration {
    let accepted: BTreeMap<String, Vec<render::Accepted>> = connectors
        .iter()
        .enumerate()
        // One token per connector: the filter refuses a token two connectors accept.
        .map(|(i, c)| (c.id(), vec![render::Accepted { sha256: format!("{i:064x}"), expires_at: None }]))
        .collect();
    let t = Instant::now();
    let res = render::xds_resources(connectors, opts, &accepted, &render::ConfigSource::Ads)
        .unwrap_or_else(|e| panic!("{e}"));
    npm_connector::xds::snapshot::Snapshot::build(&res).unwrap_or_else(|e| panic!("{e}"));
    t.elapsed()
}

fn render_bench(n: usize) -> RenderTimes {
    let yaml = many_manifests(n, true, 0);
    let listen = "127.0.0.1:10000".parse().unwrap_or_else(|e| panic!("{e}"));
    let opts = Options::new(Mode::Gateway, listen, Sealing::Key(Key::from_bytes([7; 32])));
    let (mut parse, mut full, mut both, mut snap, mut bootstrap) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let connectors = npm_connector::manifest::load(&[("bench.yaml".into(), yaml.clone())], "default")
            .unwrap_or_else(|e| panic!("{e}"));
        parse.push(t.elapsed());
        let files = render::render(&connectors, &opts, &mut OsEntropy).unwrap_or_else(|e| panic!("{e}"));
        both.push(t.elapsed());
        full.push(t.elapsed() - parse[parse.len() - 1]);
        // .npmrc, .yarnrc.yml, yarn-classic.npmrc, bunfig.toml per connector, and the bootstrap.
        assert_eq!(files.len(), 4 * n + 1);
        bootstrap = files
            .iter()
            .find(|f| f.path == npm_connector::render::bootstrap_path(&files))
            .map_or(0, |f| f.contents.len());
        snap.push(cold_snapshot(&connectors, &opts));
    }
    // The CLI as a user runs it: read, parse, render, write 40,001 files.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("bench.yaml");
    std::fs::write(&file, &yaml).unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("key");
    control::keygen(&key);
    let mut cli = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("out{i}"));
        let t = Instant::now();
        control::render(&file, &out, &key, &["--no-validate"]);
        cli.push(t.elapsed());
    }
    RenderTimes {
        bootstrap,
        parse: median(parse),
        static_render: median(full),
        both_range: range(&both),
        both: median(both),
        snapshot: median(snap),
        cli: median(cli),
    }
}

/// https-proxy mode from cold, in memory: the connector CA's leaves for every registry host
/// minted (100 hosts a leaf), then the bootstrap and client files; and `serve`'s cold xDS
/// snapshot (the leaves as SDS secrets). Returns (render median, its range, snapshot median).
fn https_render_bench(n: usize) -> (Duration, String, Duration) {
    let yaml = many_manifests(n, true, 0);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ca_dir = dir.path().join("ca");
    control::run(&["ca", "init", "--dir", &ca_dir.display().to_string()]);
    let cfg = npm_connector::pki::TlsConfig {
        ca_dir,
        leaf_ttl: Duration::from_secs(86_400),
        client_dir: None,
        trust_bundle: None,
    };
    let listen = "127.0.0.1:10000".parse().unwrap_or_else(|e| panic!("{e}"));
    let (mut both, mut snap) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let connectors = npm_connector::manifest::load(&[("bench.yaml".into(), yaml.clone())], "default")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut leaves = npm_connector::pki::Leaves::open(&cfg).unwrap_or_else(|e| panic!("{e}"));
        leaves.refresh(&render::tls_hosts(&connectors), SystemTime::now());
        let mut opts = Options::new(Mode::HttpsProxy, listen, Sealing::Key(Key::from_bytes([7; 32])));
        opts.tls = Some(leaves.tls(dir.path()));
        let files = render::render(&connectors, &opts, &mut OsEntropy).unwrap_or_else(|e| panic!("{e}"));
        both.push(t.elapsed());
        assert!(files.len() > 6 * n, "client files, CA and bundle per connector, leaves, bootstrap");
        snap.push(cold_snapshot(&connectors, &opts));
    }
    (median(both.iter().copied()), range(&both), median(snap))
}

/// Millisecond timestamps of "node N acked TypedExtensionConfig version V" lines.
fn acks(log: &str) -> Vec<(SystemTime, String, String)> {
    log.lines()
        .filter_map(|l| {
            let (ts, rest) = l.strip_prefix('[')?.split_once(' ')?;
            let t = humantime::parse_rfc3339(ts).ok()?;
            let rest = rest.split_once("] node ")?.1;
            let (node, v) = rest.split_once(" acked TypedExtensionConfig version ")?;
            Some((t, node.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn push_bench(n: usize, reps: usize) -> (Vec<Duration>, bool) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    let mut cm = ConfigMapDir::new(&d.join("manifests"));
    cm.write(&[("connectors.yaml", &many_manifests(n, false, 0))]);
    let key_file = d.join("key");
    let key = control::keygen(&key_file);
    let pki = npm_connector_tests::pki::make(d, &["registry.test"]);
    let plane = Plane {
        dir: d.to_owned(),
        xds_port: free_port(),
        ca: pki.ca_cert,
        wasm: npm_connector_tests::tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm"),
        mode: "gateway",
        extra: Vec::new(),
        metrics_port: free_port(),
    };
    let serve = plane.serve(&key_file, "serve.log", "30m");
    let envoys = [plane.envoy("envoy-a", &key), plane.envoy("envoy-b", &key)];
    let acked_by_both = |after: SystemTime, before: &BTreeMap<String, String>| -> Option<SystemTime> {
        let mut latest: BTreeMap<String, (SystemTime, String)> = BTreeMap::new();
        for (t, node, v) in acks(&serve.log_text()) {
            if t >= after {
                latest.insert(node, (t, v));
            }
        }
        let done =
            ["envoy-a", "envoy-b"].iter().all(|n| latest.get(*n).is_some_and(|(_, v)| before.get(*n) != Some(v)));
        done.then(|| latest.values().map(|(t, _)| *t).max().unwrap_or(after))
    };
    let start = SystemTime::UNIX_EPOCH;
    wait_for("both Envoys to ack the first snapshot", Duration::from_secs(60), || {
        acked_by_both(start, &BTreeMap::new())
    });
    let mut times = Vec::new();
    let mut only_ecds = true;
    for rep in 1..=reps {
        let before: BTreeMap<String, String> = acks(&serve.log_text()).into_iter().map(|(_, n, v)| (n, v)).collect();
        let lines_before = serve.log_text().lines().count();
        let t0 = SystemTime::now();
        cm.write(&[("connectors.yaml", &many_manifests(n, false, rep))]);
        let t1 = wait_for("both ACKs", Duration::from_secs(60), || acked_by_both(t0, &before));
        times.push(t1.duration_since(t0).unwrap_or_default());
        let new_lines: Vec<String> = serve.log_text().lines().skip(lines_before).map(str::to_owned).collect();
        only_ecds &= !new_lines.iter().any(|l| l.contains(" acked Listener ") || l.contains(" acked Cluster "));
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(envoys);
    drop(serve);
    (times, only_ecds)
}

/// Runs the control-plane bench; returns its section of BENCHMARKS.md.
pub fn run() -> String {
    let n_render = knob("BENCH_RENDER_CONNECTORS", 10_000usize);
    let n_push = knob("BENCH_PUSH_CONNECTORS", 1_000usize);
    let r = render_bench(n_render);
    println!(
        "{n_render} connectors: parse {:?} + render {:?} = {:?}; xDS snapshot {:?}; CLI end to end {:?}",
        r.parse, r.static_render, r.both, r.snapshot, r.cli
    );
    let (https, https_range, https_snap) = https_render_bench(n_render);
    println!(
        "{n_render} connectors, https-proxy: leaves + render {https:?} ({https_range} ms); xDS snapshot {https_snap:?}"
    );
    if std::env::var_os("BENCH_SKIP_PUSH").is_some() {
        return String::new();
    }
    let (mut times, only_ecds) = push_bench(n_push, 5);
    times.sort();
    let (p50, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!("push to 2 Envoys with {n_push} connectors: median {p50:?}, max {max:?} (only ECDS pushed: {only_ecds})");
    format!(
        "## Control plane\n\n\
         {n_render} connectors, gateway mode, credentials sealed, one registry host (cluster) each:\n\n\
         | measure | median of {ROUNDS} (CLI: of 3) | goal |\n|---|---:|---:|\n\
         | parse the Connector + Secret manifests | {} ms | |\n\
         | render them as an xDS snapshot from cold (`serve`'s start: resources, consistency check, protobuf; later changes re-encode only what changed) | {} ms | |\n\
         | render them: the static bootstrap ({} MB, `envoy.json`) and client files, in memory | {} ms | |\n\
         | **render 10,000 connectors**: manifest text in, every output file in memory (the two rows above; range over the {ROUNDS} rounds: {} ms) | **{} ms** | ≤ 1000 ms |\n\
         | `npm-connector render` CLI end to end, writing {} files (mostly file-system time) | {} ms | |\n\
         | https-proxy mode, in memory: 100 leaves minted (100 hosts each), parse, render (range: {https_range} ms) | **{} ms** | ≤ 1000 ms |\n\
         | https-proxy mode: `serve`'s cold xDS snapshot, the leaves as SDS secrets (after minting) | {} ms | |\n\n\
         Pushing a changed credential to 2 Envoys connected to `serve`, with {n_push} connectors configured \
         (gateway mode; 5 changes; from the manifest file's atomic swap to the later of the two ACKs, read from `serve`'s \
         millisecond log; includes the 50 ms debounce): median **{} ms**, max {} ms (goal ≤ 1000 ms). \
         Only the filter's ECDS resource was pushed: {only_ecds}.\n",
        r.parse.as_millis(),
        r.snapshot.as_millis(),
        r.bootstrap / 1_000_000,
        r.static_render.as_millis(),
        r.both_range,
        r.both.as_millis(),
        4 * n_render + 1,
        r.cli.as_millis(),
        https.as_millis(),
        https_snap.as_millis(),
        p50.as_millis(),
        max.as_millis(),
    )
}
