//! `npm install` of a tree of packages through https-proxy mode against the same install
//! straight at the registry with the credential in `.npmrc`: alternating pairs in one run,
//! each from a fresh cache, and the ratio of the medians.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use npm_connector::render::Mode;
use npm_connector_tests::clients::Npm;
use npm_connector_tests::{pki, scenario, verdaccio};

use crate::knob;

/// The registry host: `localhost` resolves for the direct client without touching /etc/hosts,
/// and is a name (clients send SNI for names, never for IP addresses).
const HOST: &str = "localhost";

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn install(npm: &Npm, dir: &Path, deps: &str) -> Duration {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    write(
        &dir.join("package.json"),
        &format!(r#"{{"name":"bench-app","version":"1.0.0","private":true,"dependencies":{{{deps}}}}}"#),
    );
    let _ = std::fs::remove_dir_all(npm.home.join("npm-cache"));
    let t = Instant::now();
    npm.ok(dir, &["install", "--no-package-lock", "--prefer-online"]);
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run() -> String {
    let n_packages = knob("BENCH_HTTPS_PACKAGES", 32usize);
    let pairs = knob("BENCH_HTTPS_PAIRS", 11usize);
    let tmp = tempfile::Builder::new().prefix("npm-connector-bench-https-").tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    let pki = pki::make(d, &[HOST, "127.0.0.1"]);
    let vdir = d.join("verdaccio");
    std::fs::create_dir_all(&vdir).unwrap_or_else(|e| panic!("{e}"));
    // htpasswd's {SHA}: bcrypt would add ~75 ms to every request and swamp the proxy's share.
    let password = format!("bench-{}", std::process::id());
    let registry = verdaccio::start(&vdir, &pki, HOST, &[("bench", &password)]);
    let url = registry.public_url.clone();
    let nerf = url.trim_start_matches("https:");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("bench:{password}"));
    let direct_rc = d.join("direct.npmrc");
    write(&direct_rc, &format!("registry={url}\ncafile={}\n{nerf}:_auth={auth}\n", pki.ca_cert.display()));

    // The tree: n leaf packages and one that depends on them all.
    let publisher = Npm::new(&d.join("home-publish"), &direct_rc);
    let mut deps = Vec::new();
    for i in 0..n_packages {
        let name = format!("bench-dep-{i}");
        let p = d.join("pkgs").join(&name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        write(&p.join("package.json"), &format!(r#"{{"name":"{name}","version":"1.0.0","main":"index.js"}}"#));
        write(&p.join("index.js"), &format!("module.exports = {i};\n{}", "// padding\n".repeat(200)));
        publisher.ok(&p, &["publish"]);
        deps.push(format!(r#""{name}":"1.0.0""#));
    }
    let p = d.join("pkgs/bench-all");
    std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
    write(
        &p.join("package.json"),
        &format!(r#"{{"name":"bench-all","version":"1.0.0","dependencies":{{{}}}}}"#, deps.join(",")),
    );
    publisher.ok(&p, &["publish"]);

    let yaml = format!(
        "kind: Secret\napiVersion: v1\nmetadata: {{name: reg, namespace: bench}}\ntype: kubernetes.io/basic-auth\n\
         stringData: {{username: bench, password: \"{password}\"}}\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: npm, namespace: bench}}\n\
         spec: {{connectorClassName: npm, address: '{url}', auth: {{name: basicAuth, secretRef: {{name: reg}}}}}}\n"
    );
    let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));
    let (envoy, _) = scenario::render_and_start(d, Mode::HttpsProxy, &pki.ca_cert, &key, &yaml, "out", None);
    let proxied_rc: PathBuf = d.join("out/bench/npm/.npmrc");

    let direct = Npm::new(&d.join("home-direct"), &direct_rc);
    let proxied = Npm::new(&d.join("home-proxied"), &proxied_rc);
    let dep = r#""bench-all":"1.0.0""#;
    // Warm-up: one of each (Node's and Envoy's first-run costs).
    install(&direct, &d.join("app-direct"), dep);
    install(&proxied, &d.join("app-proxied"), dep);
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which goes first, so drift in the host's speed hits both alike.
        let (x, y) = if i % 2 == 0 {
            let x = install(&direct, &d.join("app-direct"), dep);
            (x, install(&proxied, &d.join("app-proxied"), dep))
        } else {
            let y = install(&proxied, &d.join("app-proxied"), dep);
            (install(&direct, &d.join("app-direct"), dep), y)
        };
        ratios.push(y.as_secs_f64() / x.as_secs_f64());
        a.push(x);
        b.push(y);
    }
    let tunnels = envoy.counter("wasmcustom.npm_connector.tunnels_opened.connector=bench/npm");
    let injected = envoy.counter("wasmcustom.npm_connector.injected.connector=bench/npm");
    assert!(tunnels > 0 && injected > 0, "the proxied installs went through the filter");
    let (ma, mb) = (median(a), median(b));
    let ratio = mb.as_secs_f64() / ma.as_secs_f64();
    ratios.sort_by(f64::total_cmp);
    let pair_ratios: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "npm install of {} packages: direct {ma:?}, https-proxy {mb:?}, ratio {ratio:.3} (pairs: {})",
        n_packages + 1,
        pair_ratios.join(" ")
    );
    format!(
        "## https-proxy mode: npm install\n\n\
         `npm install` of a tree of {} packages (one depending on {n_packages}) from a fresh cache, `--prefer-online`, \
         against a real HTTPS Verdaccio ({{SHA}} passwords, so the registry's hashing does not swamp the proxy's share): \
         straight at the registry with the credential in `.npmrc`, and through https-proxy mode (CONNECT, the connector \
         CA's leaf, the filter, verified upstream TLS) with the rendered `.npmrc`. {pairs} alternating pairs after one \
         warm-up each.\n\n\
         | client path | median |\n|---|---:|\n| direct | {} ms |\n| https-proxy | {} ms |\n\n\
         Ratio of the medians: **{ratio:.3}** (goal ≤ 1.05); per-pair ratios, sorted: {}. Envoy opened {tunnels} tunnels \
         and injected the credential {injected} times over the whole run.\n",
        n_packages + 1,
        ma.as_millis(),
        mb.as_millis(),
        pair_ratios.join(", ")
    )
}
