//! Packuments as real registries send them, through gateway mode with npm: one the registry
//! gzips although the filter asked for identity (Envoy's decompressor decodes it before the
//! rewriter), with its tarball URL written the PHP way (`https:\/\/...`); npm installs the
//! package through the gateway, so the rewrite happened.

use std::sync::Arc;

use npm_connector::render::Mode;
use npm_connector_tests::clients::{self, Npm};
use npm_connector_tests::upstream::{Answer, Seen, Upstream};
use npm_connector_tests::{front, pki, scenario};

const HOST: &str = scenario::CDN_REGISTRY_HOST;

#[test]
fn compressed_and_escaped_packuments_are_rewritten() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let pki = pki::make(d, &[HOST, "127.0.0.1"]);
    let (tgz, integrity, shasum) = clients::npm_pack(d, "gz-pkg");
    let port = npm_connector_tests::procs::free_port();
    let expected = format!("Basic {}", base64_of("reg-user:reg-pass"));
    let exp = expected.clone();
    let registry = Upstream::scripted(Arc::new(move |s: &Seen| -> Answer {
        if s.header("authorization") != Some(exp.as_str()) {
            return (401, Vec::new(), b"{}".to_vec());
        }
        match s.path.as_str() {
            "/reg/gz-pkg" => {
                // Escaped slashes, as PHP's json_encode writes them, and gzip whatever was asked.
                let url = format!("https:\\/\\/{HOST}:{port}\\/reg\\/gz-pkg\\/-\\/gz-pkg-1.0.0.tgz");
                let doc = format!(
                    r#"{{"name":"gz-pkg","dist-tags":{{"latest":"1.0.0"}},"versions":{{"1.0.0":{{"name":"gz-pkg","version":"1.0.0","dist":{{"tarball":"{url}","integrity":"{integrity}","shasum":"{shasum}"}}}}}}}}"#
                );
                let headers = vec![
                    ("content-type".into(), "application/json".into()),
                    ("content-encoding".into(), "gzip".into()),
                ];
                (200, headers, clients::gzip(doc.as_bytes()))
            }
            "/reg/gz-pkg/-/gz-pkg-1.0.0.tgz" => {
                (200, vec![("content-type".into(), "application/octet-stream".into())], tgz.clone())
            }
            _ => (404, Vec::new(), b"{}".to_vec()),
        }
    }));
    let front = front::start_at(d, &pki, vec![(registry, port)]);
    let yaml = format!(
        "kind: Secret\nmetadata:\n  name: reg\n  namespace: team\ntype: kubernetes.io/basic-auth\n\
         stringData:\n  username: reg-user\n  password: reg-pass\n---\n\
         kind: Connector\nmetadata:\n  name: reg\n  namespace: team\nspec:\n  connectorClassName: npm\n\
         \x20 address: https://{HOST}:{port}/reg/\n  auth:\n    name: basicAuth\n    secretRef:\n      name: reg\n"
    );
    let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));
    let (envoy, tokens) = scenario::render_and_start(d, Mode::Gateway, &pki.ca_cert, &key, &yaml, "out", None);

    // The packument comes back decoded, its tarball URL on the gateway.
    let auth = format!("authorization: Bearer {}", tokens["team/reg"]);
    let url = format!("http://127.0.0.1:{}/team/reg/gz-pkg", envoy.port);
    let r = clients::curl(&["-s", "-D", "-", "-H", &auth, &url]);
    let (head, body) = r.stdout.split_once("\r\n\r\n").unwrap_or_default();
    assert!(!head.to_ascii_lowercase().contains("content-encoding"), "{head}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let gw = format!("http://127.0.0.1:{}/team/reg/gz-pkg/-/gz-pkg-1.0.0.tgz", envoy.port);
    assert_eq!(v["versions"]["1.0.0"]["dist"]["tarball"], serde_json::Value::from(gw));
    let rewritten = envoy.counter("wasmcustom.npm_connector.rewritten_responses.connector=team/reg");
    assert!(rewritten >= 1, "{}", envoy.admin("/stats?filter=npm_connector"));
    // The filter asked for identity; the registry sent gzip anyway (it was asked nothing else).
    let seen = front.recorders[0].seen();
    assert!(seen.iter().all(|s| s.header("accept-encoding") == Some("identity")), "{seen:?}");

    // npm installs through the gateway, integrity checked.
    let project = d.join("project");
    std::fs::create_dir_all(&project).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(project.join("package.json"), r#"{"name":"c","version":"1.0.0","private":true}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{e}"));
    let npm = Npm::new(&home, &d.join("out/team/reg/.npmrc"));
    let r = npm.run(&project, &["install", "gz-pkg@1.0.0"]);
    assert!(r.ok && project.join("node_modules/gz-pkg/package.json").exists(), "{}", r.all());
    let at_registry = front.recorders[0].seen();
    assert!(
        at_registry.iter().any(|s| s.path == "/reg/gz-pkg/-/gz-pkg-1.0.0.tgz"),
        "the tarball came through the gateway"
    );
    assert!(at_registry.iter().all(|s| s.header("authorization") == Some(expected.as_str())));
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
