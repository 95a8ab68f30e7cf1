//! Registries whose tarballs live on another host, with npm: a GitHub-Packages-shaped registry
//! that answers tarball GETs with a 302 to a CDN URL carrying a signed query string, and an
//! S3-backed one whose packuments list tarballs on the CDN. Installs work in https-proxy mode
//! (the CDN is reached through a blind tunnel and verified with the rendered trust bundle) and
//! in gateway mode (the client follows the redirect itself); the CDN never sees a credential or
//! a connector token, and the registry sees its credential only over TLS.
//!
//! The registry and the CDN are scripted hyper upstreams behind a recording Envoy front (TLS
//! and cleartext on one port): what matters here is npm's and the proxy's behaviour on those
//! response shapes, and the recorders see every request that arrives.

use std::sync::Arc;

use base64::Engine as _;
use npm_connector::render::Mode;
use npm_connector_tests::clients::{self, Npm};
use npm_connector_tests::front;
use npm_connector_tests::upstream::{Answer, Seen, Upstream};
use npm_connector_tests::{pki, scenario};

const HOST: &str = scenario::CDN_REGISTRY_HOST;
const SIG: &str = "X-Amz-Signature=5f2a9c";
const USER: &str = "gh-user";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn packument(tarball: &str, integrity: &str, shasum: &str) -> Vec<u8> {
    serde_json::json!({"name": "cdn-pkg", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {
        "name": "cdn-pkg", "version": "1.0.0", "main": "index.js",
        "dist": {"tarball": tarball, "integrity": integrity, "shasum": shasum}}}})
    .to_string()
    .into_bytes()
}

fn json(status: u16, body: Vec<u8>) -> Answer {
    (status, vec![("content-type".into(), "application/json".into())], body)
}

#[test]
fn tarballs_on_a_cdn_install_and_the_cdn_gets_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    // The CDN is "localhost": a name (clients send SNI for names, not for IPs) that Envoy's
    // dynamic forward proxy resolves without a DNS server (/etc/hosts).
    let pki = pki::make(d, &[HOST, "localhost", "127.0.0.1"]);
    let (tgz, integrity, shasum) = clients::npm_pack(d, "cdn-pkg");
    let packed_integrity = integrity.clone();
    let password = "gh-password-7c1e";
    let expected = format!("Basic {}", b64(&format!("{USER}:{password}")));

    // Ports first: the registry's answers name the CDN's.
    let cdn_port = npm_connector_tests::procs::free_port();
    let reg_port = npm_connector_tests::procs::free_port();
    let cdn_url = format!("https://localhost:{cdn_port}/blobs/cdn-pkg-1.0.0.tgz?{SIG}");
    let (cdn_url2, exp) = (cdn_url.clone(), expected.clone());
    let registry = Upstream::scripted(Arc::new(move |s: &Seen| -> Answer {
        if s.header("authorization") != Some(exp.as_str()) {
            return json(401, br#"{"error":"authentication required"}"#.to_vec());
        }
        let own = format!("https://{HOST}:{reg_port}/gh/cdn-pkg/-/cdn-pkg-1.0.0.tgz");
        match s.path.as_str() {
            "/gh/cdn-pkg" => json(200, packument(&own, &integrity, &shasum)),
            "/gh/cdn-pkg/-/cdn-pkg-1.0.0.tgz" => (302, vec![("location".into(), cdn_url2.clone())], Vec::new()),
            "/s3/cdn-pkg" => json(200, packument(&cdn_url2, &integrity, &shasum)),
            // A redirect within the registry, as an absolute path.
            "/gh/moved" => (301, vec![("location".into(), "/gh/cdn-pkg".into())], Vec::new()),
            _ => json(404, br#"{"error":"not found"}"#.to_vec()),
        }
    }));
    let cdn = Upstream::scripted(Arc::new(move |s: &Seen| -> Answer {
        match s.path.split_once('?') {
            Some(("/blobs/cdn-pkg-1.0.0.tgz", q)) if q == SIG => {
                (200, vec![("content-type".into(), "application/octet-stream".into())], tgz.clone())
            }
            _ => (403, Vec::new(), b"bad signature".to_vec()),
        }
    }));
    let front = front::start_at(d, &pki, vec![(registry, reg_port), (cdn, cdn_port)]);

    let mut yaml = format!(
        "kind: Secret\nmetadata:\n  name: gh\n  namespace: team-a\ntype: kubernetes.io/basic-auth\n\
         stringData:\n  username: {USER}\n  password: {password}\n---\n"
    );
    for name in ["gh", "s3"] {
        yaml += &format!(
            "kind: Connector\nmetadata:\n  name: {name}\n  namespace: team-a\nspec:\n  connectorClassName: npm\n\
             \x20 address: https://{HOST}:{reg_port}/{name}/\n  auth:\n    name: basicAuth\n    secretRef:\n      name: gh\n---\n"
        );
    }
    let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));
    let mut tokens = Vec::new();
    let mut transcript = Vec::new();
    for mode in [Mode::HttpsProxy, Mode::Gateway] {
        let out = format!("out-{mode:?}");
        let (envoy, t) = scenario::render_and_start(d, mode, &pki.ca_cert, &key, &yaml, &out, None);
        tokens.extend(t.values().cloned());
        for name in ["gh", "s3"] {
            let files = d.join(&out).join("team-a").join(name);
            let mut rc = std::fs::read_to_string(files.join(".npmrc")).unwrap_or_else(|e| panic!("{e}"));
            if mode == Mode::Gateway {
                // The client fetches the CDN itself; the test CA stands in for the public roots.
                rc += &format!("cafile={}\n", pki.ca_cert.display());
            }
            let rc_path = files.join("test.npmrc");
            std::fs::write(&rc_path, rc).unwrap_or_else(|e| panic!("{e}"));
            let home = d.join(format!("home-{mode:?}-{name}"));
            std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{e}"));
            let project = d.join(format!("project-{mode:?}-{name}"));
            std::fs::create_dir_all(&project).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(project.join("package.json"), r#"{"name":"consumer","version":"1.0.0","private":true}"#)
                .unwrap_or_else(|e| panic!("{e}"));
            let npm = Npm::new(&home, &rc_path);
            let r = npm.run(&project, &["install", "cdn-pkg@1.0.0"]);
            transcript.push(r.all());
            assert!(
                r.ok && project.join("node_modules/cdn-pkg/package.json").exists(),
                "{mode:?} {name}: {}\n{}",
                r.all(),
                scenario::tail(&envoy.daemon.log_text())
            );
            let lock = std::fs::read_to_string(project.join("package-lock.json")).unwrap_or_default();
            // npm checked the CDN's bytes against the packument's integrity.
            assert_eq!(integrity_of(&lock), packed_integrity, "{lock}");
        }
        if mode == Mode::HttpsProxy {
            assert!(envoy.counter("wasmcustom.npm_connector.tunnels_blind") >= 1, "the CDN was reached blind");
        } else {
            // Gateway: a relative Location comes back re-based on the gateway path; an absolute
            // one to the CDN comes back unchanged.
            let token = t["team-a/gh"].clone();
            let auth = format!("authorization: Bearer {token}");
            let location = |path: &str| {
                let url = format!("http://127.0.0.1:{}/team-a/gh/{path}", envoy.port);
                let r = npm_connector_tests::clients::curl(&[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{redirect_url}",
                    "-H",
                    &auth,
                    &url,
                ]);
                r.stdout.trim().to_owned()
            };
            assert_eq!(location("moved"), format!("301 http://127.0.0.1:{}/team-a/gh/cdn-pkg", envoy.port));
            assert_eq!(location("cdn-pkg/-/cdn-pkg-1.0.0.tgz"), format!("302 {cdn_url}"));
        }
        drop(envoy);
    }

    // The CDN: every tarball fetch carried the signature, none a credential or token.
    let at_cdn = front.recorders[1].seen();
    assert!(at_cdn.len() >= 4, "{at_cdn:?}");
    for s in &at_cdn {
        assert!(s.path.ends_with(SIG), "{s:?}");
        assert_eq!(s.header("x-arrived"), Some("tls"), "{s:?}");
        assert!(s.header("authorization").is_none() && s.header("proxy-authorization").is_none(), "{s:?}");
    }
    // The registry: its credential only, over TLS, never a token.
    let at_registry = front.recorders[0].seen();
    assert!(at_registry.iter().any(|s| s.path == "/gh/cdn-pkg/-/cdn-pkg-1.0.0.tgz"), "{at_registry:?}");
    for s in &at_registry {
        assert_eq!(s.header("x-arrived"), Some("tls"), "{s:?}");
        assert_eq!(s.header("authorization"), Some(expected.as_str()), "{s:?}");
    }
    for s in at_cdn.iter().chain(&at_registry) {
        for t in &tokens {
            assert!(!s.headers.iter().any(|(_, v)| v.contains(t.as_str())), "token reached {s:?}");
        }
    }
    for t in &transcript {
        assert!(!t.contains(password) && !tokens.iter().any(|k| t.contains(k.as_str())), "{t}");
    }
}

/// The `integrity` npm recorded (present: the tarball was checked against the packument's).
fn integrity_of(lock: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(lock).unwrap_or_default();
    v["packages"]["node_modules/cdn-pkg"]["integrity"].as_str().unwrap_or("missing").to_owned()
}
