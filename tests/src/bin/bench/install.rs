//! `npm install` of a real tree (tests/bench/package.json, about 400 packages from the npm
//! registry) against a private Verdaccio: straight at it with the credential in `.npmrc`,
//! through gateway and https-proxy mode, and through Verdaccio configured as an authenticating
//! pull-through proxy in front of it (cold: empty storage; warm: everything cached). Rounds
//! rotate the order; each install starts from an empty npm cache.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use npm_connector::render::Mode;
use npm_connector_tests::clients::Npm;
use npm_connector_tests::pki::Pki;
use npm_connector_tests::verdaccio::{self, Opts, Uplink, Verdaccio};
use npm_connector_tests::{pki, root, scenario};
use sha1::{Digest, Sha1};

use crate::{cpu_seconds, knob, median};

/// `localhost` resolves for the direct client without touching /etc/hosts, and is a name
/// (clients send SNI for names, never for IP addresses).
const HOST: &str = "localhost";

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn npmrc(path: &Path, url: &str, ca: &Path, user: &str, password: &str) {
    let nerf = url.trim_start_matches("https:");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write(path, &format!("registry={url}\ncafile={}\n{nerf}:_auth={auth}\n", ca.display()));
}

/// One install of the tree from an empty cache; the time and the number of packages npm added.
fn install(npm: &Npm, dir: &Path) -> (Duration, usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(root().join("tests/bench/package.json"), dir.join("package.json")).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(npm.home.join("npm-cache"));
    let t = Instant::now();
    let r = npm.ok(dir, &["install", "--no-package-lock", "--prefer-online", "--ignore-scripts"]);
    let took = t.elapsed();
    // "added 410 packages in 9s"
    let added = r
        .all()
        .split("added ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("npm did not say how many packages it added:\n{}", r.all()));
    (took, added)
}

/// The bench registry's storage, filled once from the npm registry this machine's npm uses and
/// kept under target/ (keyed by the tree's package.json), then served with no uplink.
fn filled_storage(pki: &Pki, d: &Path) -> PathBuf {
    let tree = std::fs::read(root().join("tests/bench/package.json")).unwrap_or_else(|e| panic!("{e}"));
    let key: String = Sha1::digest(&tree).iter().take(6).map(|b| format!("{b:02x}")).collect();
    let storage = root().join(format!("target/bench-registry/storage-{key}"));
    let marker = storage.join(".filled");
    if marker.exists() {
        return storage;
    }
    let _ = std::fs::remove_dir_all(&storage);
    let upstream = std::process::Command::new("npm")
        .args(["config", "get", "registry"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| s.starts_with("http"))
        .unwrap_or_else(|| "https://registry.npmjs.org/".to_owned());
    println!("install bench: filling {} from {upstream} (once)", storage.display());
    let dir = d.join("fill");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let opts =
        Opts { storage: Some(storage.clone()), uplink: Some(Uplink { url: upstream, basic: None, maxage: "2m" }) };
    let fill = verdaccio::start_opts(&dir, pki, HOST, &[("fill", "fill")], &opts);
    npmrc(&dir.join("npmrc"), &fill.public_url, &pki.ca_cert, "fill", "fill");
    let (took, added) = install(&Npm::new(&dir.join("home"), &dir.join("npmrc")), &dir.join("app"));
    println!("install bench: filled {added} packages in {took:?}");
    drop(fill);
    write(&marker, &format!("{added}\n"));
    storage
}

struct Variant {
    name: &'static str,
    npm: Npm,
    times: Vec<Duration>,
    /// The proxy in the path (Envoy, or the front Verdaccio), if any.
    proxy: Option<u32>,
    /// CPU seconds that proxy spent on each install.
    cpu: Vec<f64>,
}

pub fn run() -> String {
    let rounds = knob("BENCH_INSTALL_ROUNDS", 7usize);
    // In memory where the host has it: npm writes ~80 MB of cache and 409 package trees per
    // install, and on this disk the writeback stalls moved single installs by seconds.
    let shm = Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("npm-connector-bench-install-");
    let tmp = if shm.is_dir() { builder.tempdir_in(shm) } else { builder.tempdir() }.unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    let pki = pki::make(d, &[HOST, "127.0.0.1"]);
    let storage = filled_storage(&pki, d);

    // The private registry: everything from storage, nothing from outside; {SHA} passwords so
    // the registry's hashing does not swamp the proxies' share.
    let password = format!("bench-{}", std::process::id());
    let vdir = d.join("private");
    std::fs::create_dir_all(&vdir).unwrap_or_else(|e| panic!("{e}"));
    let opts = Opts { storage: Some(storage), uplink: None };
    let registry = verdaccio::start_opts(&vdir, &pki, HOST, &[("bench", &password)], &opts);
    let url = registry.public_url.clone();
    npmrc(&d.join("direct.npmrc"), &url, &pki.ca_cert, "bench", &password);

    let yaml = format!(
        "kind: Secret\napiVersion: v1\nmetadata: {{name: reg, namespace: bench}}\ntype: kubernetes.io/basic-auth\n\
         stringData: {{username: bench, password: \"{password}\"}}\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: npm, namespace: bench}}\n\
         spec: {{connectorClassName: npm, address: '{url}', auth: {{name: basicAuth, secretRef: {{name: reg}}}}}}\n"
    );
    let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));
    let (gateway, _) = scenario::render_and_start(d, Mode::Gateway, &pki.ca_cert, &key, &yaml, "gw", None);
    let (proxy, _) = scenario::render_and_start(d, Mode::HttpsProxy, &pki.ca_cert, &key, &yaml, "hp", None);

    // Verdaccio as an authenticating pull-through proxy: its own users, the registry's
    // credential in its uplink, packuments fresh for 10 minutes.
    let front = |name: &str| -> (Verdaccio, PathBuf) {
        let dir = d.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let up = Uplink { url: url.clone(), basic: Some(format!("bench:{password}")), maxage: "10m" };
        let v = verdaccio::start_opts(
            &dir,
            &pki,
            HOST,
            &[("client", "client-pw")],
            &Opts { storage: None, uplink: Some(up) },
        );
        let rc = dir.join("npmrc");
        npmrc(&rc, &v.public_url, &pki.ca_cert, "client", "client-pw");
        (v, rc)
    };
    let (warm_front, warm_rc) = front("front-warm");

    let variant = |name, home: &str, rc: &Path, proxy| Variant {
        name,
        npm: Npm::new(&d.join(home), rc),
        proxy,
        times: vec![],
        cpu: vec![],
    };
    let mut variants = vec![
        variant("direct", "home-direct", &d.join("direct.npmrc"), None),
        variant("gateway", "home-gw", &d.join("gw/bench/npm/.npmrc"), Some(gateway.daemon.pid())),
        variant("https-proxy", "home-hp", &d.join("hp/bench/npm/.npmrc"), Some(proxy.daemon.pid())),
        // Its proxy is started anew for each install.
        variant("Verdaccio proxy, cold", "home-cold", &d.join("unused"), None),
        variant("Verdaccio proxy, warm", "home-warm", &warm_rc, Some(warm_front.daemon.pid())),
    ];
    let app = d.join("app");
    // Warm-up: one of each that keeps state (Node's, Envoy's and the warm proxy's first run).
    let mut added = 0;
    for v in [0, 1, 2, 4] {
        added = install(&variants[v].npm, &app).1;
    }
    for round in 0..rounds {
        // Rotate which goes first, so drift in the host's speed hits every variant alike.
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let cold = (variants[i].name.ends_with("cold")).then(|| front("front-cold"));
            if let Some((front, rc)) = &cold {
                variants[i].npm.userconfig = rc.clone();
                variants[i].proxy = Some(front.daemon.pid());
            }
            let pid = variants[i].proxy;
            let before = pid.map(cpu_seconds).unwrap_or_default();
            let (t, n) = install(&variants[i].npm, &app);
            let cpu = pid.map(cpu_seconds).unwrap_or_default() - before;
            assert_eq!(n, added, "{}: every install adds the same tree", variants[i].name);
            variants[i].times.push(t);
            variants[i].cpu.push(cpu);
        }
    }
    drop(warm_front);
    let injected =
        |e: &npm_connector_tests::envoy::Envoy| e.counter("wasmcustom.npm_connector.injected.connector=bench/npm");
    let (gw_inj, hp_inj) = (injected(&gateway), injected(&proxy));
    // Connections Envoy opened to the registry for its requests: a TLS handshake each.
    let reuse = |e: &npm_connector_tests::envoy::Envoy| {
        let (cx, rq) =
            (e.counter("cluster.registries.upstream_cx_total"), e.counter("cluster.registries.upstream_rq_total"));
        format!("{rq} requests over {cx} connections")
    };
    let (gw_reuse, hp_reuse) = (reuse(&gateway), reuse(&proxy));
    let min_expected = (added * (rounds + 1)) as u64;
    assert!(gw_inj >= min_expected && hp_inj >= min_expected, "every package came through the filter");
    let base = median(variants[0].times.iter().copied());
    let mut rows = String::new();
    for v in &variants {
        let m = median(v.times.iter().copied());
        let ratio = m.as_secs_f64() / base.as_secs_f64();
        let all: Vec<String> = v.times.iter().map(|t| format!("{}", t.as_millis())).collect();
        // What the proxy adds at most: its own CPU time, as if every microsecond of it were on
        // the install's critical path (it is not: npm fetches in parallel over 2 cores).
        let cpu = median(v.cpu.iter().copied());
        let bound = 1.0 + cpu / base.as_secs_f64();
        println!(
            "npm install of {added} packages: {}: median {m:?}, ratio {ratio:.3} ({}); proxy CPU {:.0} ms, bound {bound:.3}",
            v.name,
            all.join(" "),
            cpu * 1e3
        );
        rows.push_str(&format!(
            "| {} | {} ms | {ratio:.3} | {:.0} ms | {bound:.3} | {} |\n",
            v.name,
            m.as_millis(),
            cpu * 1e3,
            all.join(", ")
        ));
    }
    format!(
        "## npm install of a real tree\n\n\
         `npm install --no-package-lock --prefer-online --ignore-scripts` of tests/bench/package.json (express, eslint, \
         jest: **{added} packages**), from an empty npm cache each time, against a private HTTPS Verdaccio that serves \
         them from storage (filled once from the npm registry; {{SHA}} passwords). Clients: straight at the registry with \
         the credential in `.npmrc`; gateway mode and https-proxy mode with the rendered `.npmrc` (the filter, verified \
         upstream TLS; gateway also re-bases every packument's tarball URLs); and a second Verdaccio as an authenticating \
         pull-through proxy holding the registry's credential in its uplink, cold (empty storage, started anew for each \
         install) and warm (everything cached, packuments fresh for 10 minutes). {rounds} rounds, order rotated each \
         round, after one warm-up each.\n\n\
         | client path | median | ratio to direct | proxy CPU per install | 1 + proxy CPU / direct | each round (ms) |\n\
         |---|---:|---:|---:|---:|---|\n{rows}\n\
         Goal for gateway and https-proxy: ≤ 1.02. The wall-clock ratio moves by more than that between rounds on 2 \
         cores; the proxy's own CPU time per install (user + system, from /proc, median) bounds what it can add, as if \
         every microsecond of it were on the critical path. Envoy injected the credential {gw_inj} times (gateway) and {hp_inj} \
         times (https-proxy); to the registry, gateway sent {gw_reuse} and https-proxy {hp_reuse}.\n"
    )
}
