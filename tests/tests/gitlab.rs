//! The GitLab workflow in https-proxy mode against a real registry behind GitLab's path shapes:
//! a scoped connector installs from the instance-level `/api/v4/packages/npm/` and publishes to
//! the project-level `/api/v4/projects/42/packages/npm/`; a second connector on the same host
//! (another project, another registry user) stays apart from it.
//!
//! "GitLab" is Verdaccio behind a small Envoy front that strips those prefixes (Verdaccio
//! cannot serve under a path itself) and writes tarball URLs under the instance-level path.

use std::path::Path;
use std::time::Duration;

use npm_connector::render::Mode;
use npm_connector_tests::clients::{self, Npm};
use npm_connector_tests::control;
use npm_connector_tests::envoy::{self, Envoy};
use npm_connector_tests::procs::free_port;
use npm_connector_tests::scenario::{self, GITLAB_HOST};
use npm_connector_tests::{pki, verdaccio};

const INSTANCE: &str = "/api/v4/packages/npm/";
const PROJECT: &str = "/api/v4/projects/42/packages/npm/";
const OTHER_PROJECT: &str = "/api/v4/projects/43/packages/npm/";

/// The front: TLS for gitlab.test, each GitLab path prefix rewritten to Verdaccio's root.
fn front(dir: &Path, pki: &pki::Pki, port: u16, registry_port: u16) -> Envoy {
    let routes: Vec<serde_json::Value> = [INSTANCE, PROJECT, OTHER_PROJECT]
        .iter()
        .map(|p| serde_json::json!({"match": {"prefix": p}, "route": {"cluster": "verdaccio", "prefix_rewrite": "/", "timeout": "60s"}}))
        .collect();
    let config = serde_json::json!({
        "admin": {"address": {"pipe": {"path": dir.join("front-admin.sock").display().to_string()}}},
        "static_resources": {
            "listeners": [{"name": "gitlab", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": {"tls_certificates": [{
                            "certificate_chain": {"filename": pki.server_cert.display().to_string()},
                            "private_key": {"filename": pki.server_key.display().to_string()}}]}}},
                    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gitlab",
                        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                        "route_config": {"virtual_hosts": [{"name": "gitlab", "domains": ["*"], "routes": routes}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
            "clusters": [{"name": "verdaccio", "type": "STATIC", "connect_timeout": "5s",
                "load_assignment": {"cluster_name": "verdaccio", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": registry_port}}}}]}]},
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": GITLAB_HOST,
                    "common_tls_context": {"validation_context": {"trusted_ca": {"filename": pki.ca_cert.display().to_string()}}}}}}]
        }
    });
    let path = dir.join("front.yaml");
    std::fs::write(&path, config.to_string()).unwrap_or_else(|e| panic!("{e}"));
    envoy::start(&path, dir.join("front.log"), port, dir.join("front-admin.sock"), None)
}

fn manifests(base: &str, passwords: &[String; 2]) -> String {
    format!(
        "kind: Secret\napiVersion: v1\nmetadata: {{name: gitlab-a, namespace: team-g}}\ntype: kubernetes.io/basic-auth\n\
         stringData: {{username: ci-a, password: \"{pa}\"}}\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: gitlab\n  namespace: team-g\n\
         \x20 annotations:\n    npm-connector.io/scope: \"@acme\"\n    npm-connector.io/publish-address: {base}{PROJECT}\n\
         spec:\n  connectorClassName: npm\n  address: {base}{INSTANCE}\n  auth: {{name: basicAuth, secretRef: {{name: gitlab-a}}}}\n---\n\
         kind: Secret\napiVersion: v1\nmetadata: {{name: gitlab-b, namespace: team-h}}\ntype: kubernetes.io/basic-auth\n\
         stringData: {{username: ci-b, password: \"{pb}\"}}\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: project43, namespace: team-h}}\n\
         spec:\n  connectorClassName: npm\n  address: {base}{OTHER_PROJECT}\n  auth: {{name: basicAuth, secretRef: {{name: gitlab-b}}}}\n",
        pa = passwords[0],
        pb = passwords[1],
    )
}

fn npm_ok(npm: &Npm, dir: &Path, args: &[&str], envoy: &Envoy) -> String {
    let r = npm.run(dir, args);
    assert!(r.ok, "npm {args:?}:\n{}\n--- envoy:\n{}", r.all(), scenario::tail(&envoy.daemon.log_text()));
    r.stdout
}

#[test]
fn gitlab_scoped_install_and_project_publish() {
    let tmp = tempfile::Builder::new().prefix("npm-connector-gitlab-").tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    let pki = pki::make(d, &[GITLAB_HOST, "127.0.0.1"]);
    let front_port = free_port();
    let base = format!("https://{GITLAB_HOST}:{front_port}");
    let passwords = [format!("pw-a-{}", std::process::id()), format!("pw-b-{}", std::process::id())];
    let vdir = d.join("verdaccio");
    std::fs::create_dir_all(&vdir).unwrap_or_else(|e| panic!("{e}"));
    let users = [("ci-a", passwords[0].as_str()), ("ci-b", passwords[1].as_str())];
    // Tarball URLs under the instance-level path, as GitLab writes them.
    let registry = verdaccio::start_with(&vdir, &pki, &users, |_| format!("{base}{INSTANCE}"));
    let front = front(d, &pki, front_port, registry.port);
    let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));
    let yaml = manifests(&base, &passwords);
    let (envoy, tokens) = scenario::render_and_start(d, Mode::HttpsProxy, &pki.ca_cert, &key, &yaml, "out", None);
    let out = d.join("out");

    // Publish @acme/lib to the project endpoint (publishConfig, as GitLab documents it)...
    let npm = Npm::new(&d.join("home-g"), &out.join("team-g/gitlab/.npmrc"));
    let pkg = d.join("lib");
    std::fs::create_dir_all(&pkg).unwrap_or_else(|e| panic!("{e}"));
    let pj = serde_json::json!({"name": "@acme/lib", "version": "1.0.0", "main": "index.js",
        "publishConfig": {"@acme:registry": format!("{base}{PROJECT}")}});
    std::fs::write(pkg.join("package.json"), pj.to_string()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pkg.join("index.js"), "module.exports = 1;\n").unwrap_or_else(|e| panic!("{e}"));
    npm_ok(&npm, &pkg, &["publish"], &envoy);
    // ...and install it from the instance-level endpoint, in a fresh HOME.
    let fresh = Npm::new(&d.join("home-install"), &out.join("team-g/gitlab/.npmrc"));
    let project = d.join("consumer");
    std::fs::create_dir_all(&project).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(project.join("package.json"), r#"{"name":"consumer","version":"1.0.0","private":true}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    npm_ok(&fresh, &project, &["install", "@acme/lib@1.0.0"], &envoy);
    assert!(project.join("node_modules/@acme/lib/package.json").exists());
    let lock = std::fs::read_to_string(project.join("package-lock.json")).unwrap_or_default();
    assert!(lock.contains(&format!("{base}{INSTANCE}@acme/lib/-/lib-1.0.0.tgz")), "{lock}");
    // Access logs reach the file every 100 ms: wait for both lines.
    let authority = format!("{GITLAB_HOST}:{front_port}");
    let put = format!("\"PUT {authority}{PROJECT}@acme%2flib HTTP/1.1\" 201");
    let get = format!("\"GET {authority}{INSTANCE}@acme%2flib HTTP/1.1\" 200");
    control::wait_for(
        "publish (project path) and install (instance path) in the access log",
        Duration::from_secs(10),
        || {
            let log = envoy.daemon.log_text();
            (log.contains(&put) && log.contains(&get)).then_some(())
        },
    );

    // yarn publishes to the project path too: npmScopes.acme.npmPublishRegistry.
    let home = d.join("home-yarn");
    let rendered = std::fs::read_to_string(out.join("team-g/gitlab/.yarnrc.yml")).unwrap_or_else(|e| panic!("{e}"));
    // Test-only settings; yarn's age gate would quarantine packages published seconds ago.
    let settings = format!(
        "{rendered}nodeLinker: node-modules\nenableGlobalCache: false\ncacheFolder: {}\nenableTelemetry: false\nnpmMinimalAgeGate: 0\n",
        home.join("yarn-cache").display()
    );
    let ypkg = d.join("ylib");
    std::fs::create_dir_all(&ypkg).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(ypkg.join("package.json"), r#"{"name":"@acme/ylib","version":"1.0.0","main":"index.js"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(ypkg.join("index.js"), "module.exports = 2;\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(ypkg.join(".yarnrc.yml"), &settings).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(ypkg.join("yarn.lock"), "").unwrap_or_else(|e| panic!("{e}"));
    for args in [&["install"][..], &["npm", "publish"][..]] {
        let r = clients::yarn(&home, &ypkg, args);
        assert!(r.ok, "yarn {args:?}:\n{}\n--- envoy:\n{}", r.all(), scenario::tail(&envoy.daemon.log_text()));
    }
    let yput = format!("\"PUT {authority}{PROJECT}@acme%2fylib HTTP/1.1\" 201");
    control::wait_for("yarn's publish on the project path in the access log", Duration::from_secs(10), || {
        envoy.daemon.log_text().contains(&yput).then_some(())
    });

    // Two connectors on one host, two registry users: each path gets its own credential, and
    // a token for one is refused on the other's path.
    let whoami = |npmrc: &Path, registry: &str| {
        let n = Npm::new(&d.join("home-whoami"), npmrc);
        npm_ok(&n, d, &["whoami", "--registry", registry], &envoy).trim().to_owned()
    };
    assert_eq!(whoami(&out.join("team-g/gitlab/.npmrc"), &format!("{base}{INSTANCE}")), "ci-a");
    assert_eq!(whoami(&out.join("team-h/project43/.npmrc"), &format!("{base}{OTHER_PROJECT}")), "ci-b");
    let token_g = tokens["team-g/gitlab"].clone();
    let proxy_g = format!("http://team-g%2Fgitlab:{token_g}@127.0.0.1:{}", envoy.port);
    let ca_g = out.join("team-g/gitlab/ca.pem");
    let r = clients::status_through(&proxy_g, &ca_g, &format!("{base}{OTHER_PROJECT}-/whoami"));
    assert_eq!(r.stdout.trim(), "403", "team-g's token on team-h's path: {}", r.all());
    // Outside both connectors' prefixes on that host nothing is injected: the tunnel refuses.
    let r = clients::status_through(&proxy_g, &ca_g, &format!("{base}/api/v4/user"));
    assert_eq!(r.stdout.trim(), "403", "{}", r.all());
    drop(front);
}
