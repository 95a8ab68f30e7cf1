//! Registries reached by DNS share one cluster (Envoy's dynamic forward proxy): the route sets
//! the Host, and the upstream connection takes its SNI and the SAN it verifies from it. In
//! gateway and https-proxy mode, with the registry at `localhost` (resolved by Envoy, not
//! pinned): the credential reaches its registry over verified TLS; a registry whose
//! certificate (from a trusted CA) does not name the connector's host gets nothing, and the
//! client a 503.

use std::sync::Arc;

use base64::Engine as _;
use npm_connector::render::Mode;
use npm_connector_tests::upstream::{Answer, Seen, Upstream};
use npm_connector_tests::{clients, front, pki, scenario};

const USER: &str = "dns-user";
const PASSWORD: &str = "dns-password-41c9";

fn manifests(ok_port: u16, bad_port: u16) -> String {
    let mut yaml = format!(
        "kind: Secret\nmetadata:\n  name: reg\n  namespace: team-a\ntype: kubernetes.io/basic-auth\n\
         stringData:\n  username: {USER}\n  password: {PASSWORD}\n---\n"
    );
    for (name, port) in [("npm", ok_port), ("bad", bad_port)] {
        yaml += &format!(
            "kind: Connector\nmetadata:\n  name: {name}\n  namespace: team-a\nspec:\n  connectorClassName: npm\n\
             \x20 address: https://localhost:{port}/reg/\n  auth:\n    name: basicAuth\n    secretRef:\n      name: reg\n---\n"
        );
    }
    yaml
}

#[test]
fn dns_registries_share_a_cluster_and_tls_names_the_routes_host() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    // One trusted CA, two leaves: one names localhost, the other only registry.test.
    let ok_pki = pki::make(d, &["localhost"]);
    let bad_pki = pki::leaf(d, "other", &["registry.test"]);
    let bundle = ok_pki.ca_cert.clone();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}"));
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let exp = expected.clone();
    let registry = Upstream::scripted(Arc::new(move |s: &Seen| -> Answer {
        match (s.header("authorization") == Some(exp.as_str()), s.path.as_str()) {
            (true, "/reg/pkg") => {
                (200, vec![("content-type".into(), "application/json".into())], br#"{"name":"pkg"}"#.to_vec())
            }
            (true, _) => (404, Vec::new(), Vec::new()),
            (false, _) => (401, Vec::new(), Vec::new()),
        }
    }));
    for sub in ["ok", "bad"] {
        std::fs::create_dir_all(d.join(sub)).unwrap_or_else(|e| panic!("{e}"));
    }
    let ok_front = front::start_with(&d.join("ok"), &ok_pki, vec![registry]);
    let bad_front = front::start(&d.join("bad"), &bad_pki, 1);
    let (ok_port, bad_port) = (ok_front.ports[0], bad_front.ports[0]);
    let yaml = manifests(ok_port, bad_port);
    let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));

    for mode in [Mode::Gateway, Mode::HttpsProxy] {
        let out = format!("out-{mode:?}");
        let (envoy, tokens) = scenario::render_and_start(d, mode, &bundle, &key, &yaml, &out, None);
        let bootstrap = read(&d.join(&out).join("envoy.yaml"));
        assert!(!bootstrap.contains("outbound|"), "no cluster of their own:\n{bootstrap}");
        let get = |name: &str| -> String {
            let token = &tokens[&format!("team-a/{name}")];
            let r = match mode {
                Mode::Gateway => clients::curl(&[
                    "-s",
                    "-w",
                    " %{http_code}",
                    "-H",
                    &format!("authorization: Bearer {token}"),
                    &format!("http://127.0.0.1:{}/team-a/{name}/pkg", envoy.port),
                ]),
                _ => {
                    let port = if name == "npm" { ok_port } else { bad_port };
                    let ca = d.join(&out).join("team-a").join(name).join("ca.pem");
                    clients::curl(&[
                        "-s",
                        "-w",
                        " %{http_code}",
                        "-x",
                        &format!("http://team-a%2F{name}:{token}@127.0.0.1:{}", envoy.port),
                        "--cacert",
                        &ca.display().to_string(),
                        &format!("https://localhost:{port}/reg/pkg"),
                    ])
                }
            };
            r.stdout
        };
        assert_eq!(get("npm"), r#"{"name":"pkg"} 200"#, "{mode:?}\n{}", scenario::tail(&envoy.daemon.log_text()));
        // The registry saw its credential, over TLS, with the Host the route set.
        let seen = ok_front.recorders[0].seen();
        let last = seen.last().unwrap_or_else(|| panic!("{mode:?}: the registry saw nothing"));
        assert_eq!(last.header("authorization"), Some(expected.as_str()));
        assert_eq!(last.header("x-arrived"), Some("tls"));
        assert_eq!(last.header("host"), Some(format!("localhost:{ok_port}").as_str()));
        assert!(envoy.counter("cluster.registries.upstream_rq_total") >= 1);

        // A trusted certificate for another name: refused by SAN, nothing sent.
        assert_eq!(
            get("bad"),
            "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure 503"
        );
        assert!(envoy.counter("cluster.registries.ssl.fail_verify_san") >= 1, "{}", envoy.admin("/stats?filter=ssl"));
        assert!(bad_front.all().is_empty(), "{:?}", bad_front.all());
        // The filter did inject: the credential stayed inside Envoy.
        assert!(envoy.counter("wasmcustom.npm_connector.injected.connector=team-a/bad") >= 1);
    }
}
