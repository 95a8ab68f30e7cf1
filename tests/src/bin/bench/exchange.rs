//! The token exchange's latency: `serve --token-listen` with a JWKS-file issuer, ES256
//! projected-ServiceAccount tokens, sequential `POST /v1/token` over HTTPS from one client
//! (a kept-alive connection; and a new TLS connection per request, as `login` pays).

use std::time::{Duration, Instant};

use npm_connector_tests::control::{self, wait_for};
use npm_connector_tests::oidc::{now, service_account, Keys};
use npm_connector_tests::procs::free_port;

use crate::knob;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run() -> String {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    let pki = npm_connector_tests::pki::make(d, &["127.0.0.1"]);
    let manifests = d.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        manifests.join("c.yaml"),
        npm_connector_tests::plane::manifest("https://registry.test/npm", "u", "p"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let key = d.join("key");
    control::keygen(&key);
    let keys_dir = d.join("token-keys");
    std::fs::create_dir_all(&keys_dir).unwrap_or_else(|e| panic!("{e}"));
    control::keygen(&keys_dir.join("k1"));
    let issuer = Keys::new(&["a"]);
    std::fs::write(d.join("jwks.json"), issuer.jwks()).unwrap_or_else(|e| panic!("{e}"));
    let iss = "https://cluster.bench";
    std::fs::write(
        d.join("issuers.yaml"),
        format!(
            "issuers:\n- {{name: cluster, kind: kubernetes, issuer: \"{iss}\", jwksFile: {}}}\nrateLimit: {{perMinute: 1000000, burst: 1000000}}\n",
            d.join("jwks.json").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let args: Vec<String> = [
        "-d",
        &manifests.display().to_string(),
        "--key-file",
        &key.display().to_string(),
        "--xds-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--mode",
        "gateway",
        "--token-keys",
        &keys_dir.display().to_string(),
        "--token-listen",
        &format!("127.0.0.1:{port}"),
        "--token-tls-cert",
        &pki.server_cert.display().to_string(),
        "--token-tls-key",
        &pki.server_key.display().to_string(),
        "--issuers",
        &d.join("issuers.yaml").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let serve = control::serve(&args, d.join("serve.log"));
    wait_for("the exchange", Duration::from_secs(20), || {
        std::fs::read_to_string(&serve.log).ok().filter(|l| l.contains("token exchange"))
    });
    let jwt = issuer.sign("a", &service_account(iss, "team", "builder", "npm-connector", now() + 3600));
    let url = format!("https://127.0.0.1:{port}/v1/token");
    let n = knob("BENCH_EXCHANGES", 500usize);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let client = |()| npm_connector::exchange::oidc::http_client(Some(&pki.ca_cert)).unwrap_or_else(|e| panic!("{e}"));
    let mut rows = String::new();
    for (name, body, fresh) in [
        ("token only, kept-alive connection", r#"{"connector":"team/npm"}"#, false),
        ("token and npm's client files, kept-alive connection", r#"{"connector":"team/npm","tool":"npm"}"#, false),
        ("token only, a new TLS connection each (what `login` pays)", r#"{"connector":"team/npm"}"#, true),
    ] {
        let mut c = client(());
        let mut lat = Vec::with_capacity(n);
        for i in 0..n + 20 {
            if fresh {
                c = client(());
            }
            let t = Instant::now();
            let (status, text) = rt.block_on(async {
                match c.post(&url).bearer_auth(&jwt).body(body).send().await {
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                }
            });
            assert_eq!(status, 200, "exchange {i}: {text}");
            if i >= 20 {
                lat.push(t.elapsed());
            }
        }
        lat.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "exchange ({name}): p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
        rows += &format!(
            "| {name} | {n} | {:.2} | {:.2} | {:.2} |\n",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat[lat.len() - 1])
        );
    }
    drop(serve);
    format!(
        "## Token exchange\n\n`POST /v1/token` on `serve --token-listen` (HTTPS, rustls), an ES256 projected-ServiceAccount ID token verified \
         against a JWKS-file issuer, policy, rate limit, a signed connector token minted; sequential requests from one client after 20 \
         warm-up requests.\n\n| request | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n{rows}"
    )
}
