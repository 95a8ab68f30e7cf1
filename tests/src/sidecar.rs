//! Sidecar mode's world, with real kernel interception: a "pod" network namespace holding the
//! clients and Envoy (under its own uid, as a sidecar runs), the rendered iptables rules
//! installed there, and a "registry" namespace holding an HTTPS Verdaccio (two host names, two
//! connectors) and an unrelated host, a recording Envoy that answers on 443 (TLS and
//! cleartext alike) and 80 and logs every request's Authorization.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::control;
use crate::netns::{self, Hosts, OTHER_ADDR, REGISTRY_ADDR};
use crate::pki::{self, Pki};
use crate::procs::Daemon;
use crate::verdaccio::{self, Verdaccio};

pub const REGISTRY_HOST: &str = "registry.test";
pub const REGISTRY2_HOST: &str = "registry2.test";
pub const OTHER_HOST: &str = "other.test";
/// The uid Envoy runs under; the rules exclude its connections.
pub const PROXY_UID: u32 = 1337;
pub const SIDECAR_PORT: u16 = 15001;
pub const OTHER_BODY: &str = "other.test answered\n";

pub struct Pod {
    pub envoy: Daemon,
    /// `npm-connector serve --mode sidecar`, once [`Pod::switch_to_serve`] started it.
    pub serve: Option<Daemon>,
    pub other: Daemon,
    pub registry: Verdaccio,
    pub hosts: Hosts,
    pub pki: Pki,
    pub out: PathBuf,
    pub admin: PathBuf,
    /// Registry passwords, the sealing key, the client tokens: none may show up in logs.
    pub secrets: Vec<String>,
    /// The registry user's password of connector team/npm, and the real credential line.
    pub password: String,
    pub dir: tempfile::TempDir,
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("{e}"));
}

fn manifests(password: &str, password2: &str) -> String {
    let one = |ns: &str, user: &str, pw: &str, host: &str| {
        format!(
            "kind: Secret\napiVersion: v1\nmetadata: {{name: registry, namespace: {ns}}}\ntype: kubernetes.io/basic-auth\n\
             stringData: {{username: {user}, password: \"{pw}\"}}\n---\n\
             apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: npm, namespace: {ns}}}\n\
             spec:\n  connectorClassName: npm\n  address: https://{host}/\n  auth: {{name: basicAuth, secretRef: {{name: registry}}}}\n---\n"
        )
    };
    format!("{}{}", one("team", "ci-a", password, REGISTRY_HOST), one("other-team", "ci-b", password2, REGISTRY2_HOST))
}

/// The unrelated host: a recording Envoy on other.test:443 (its own certificate, and
/// cleartext on the same port) and :80, answering 200 and logging every request's
/// `Authorization` and whether it arrived over TLS.
fn start_other(d: &Path, ns: &str) -> Daemon {
    // The test CA (pki::make wrote it into `d`) signs other.test's own certificate.
    let ca = npm_connector::pki::Ca::load(d).unwrap_or_else(|e| panic!("{e}"));
    let leaf = ca
        .mint_leaf(&[OTHER_HOST], std::time::SystemTime::now(), Duration::from_secs(3600))
        .unwrap_or_else(|e| panic!("{e}"));
    write(&d.join("other.pem"), &leaf.cert_pem);
    write(&d.join("other-key.pem"), secrecy::ExposeSecret::expose_secret(&leaf.key_pem));
    let log = d.join("other-access.log");
    let hcm = |arrived: &str| {
        json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": arrived,
            "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": log.display().to_string(),
                "log_format": {"text_format_source": {"inline_string":
                    format!("{arrived} %REQ(:AUTHORITY)% %REQ(:PATH)% authorization=%REQ(AUTHORIZATION)%\n")}}}}],
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": OTHER_BODY}}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}})
    };
    let tls = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {"tls_certificates": [{
            "certificate_chain": {"filename": d.join("other.pem").display().to_string()},
            "private_key": {"filename": d.join("other-key.pem").display().to_string()}}]}}});
    let addr = |port: u16| json!({"socket_address": {"address": OTHER_ADDR, "port_value": port}});
    let doc = json!({
        "admin": {"address": {"pipe": {"path": d.join("other-admin.sock").display().to_string()}}},
        "static_resources": {"listeners": [
            {"name": "https", "address": addr(443),
             "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
             "filter_chains": [
                {"filter_chain_match": {"transport_protocol": "tls"}, "transport_socket": tls, "filters": [hcm("tls")]},
                {"filters": [hcm("cleartext-on-443")]}]},
            {"name": "http", "address": addr(80), "filter_chains": [{"filters": [hcm("cleartext")]}]},
        ]},
    });
    write(&d.join("other.yaml"), &doc.to_string());
    let mut cmd = Hosts::command(ns, crate::envoy::binary());
    cmd.arg("-c").arg(d.join("other.yaml")).args(crate::envoy::TEST_ARGS);
    let mut other = Daemon::spawn("other.test envoy", cmd, d.join("other.log"));
    wait_ready(&mut other, &d.join("other-admin.sock"));
    other
}

/// What render (static) and serve share: sidecar mode, the connector CA, the listener the
/// rules redirect to, the test CA for the registry and as the clients' other roots, the
/// registry hosts pinned to the registry namespace's address.
fn common_args(d: &Path) -> Vec<String> {
    let ca = d.join(npm_connector::pki::CA_CERT).display().to_string();
    let args = [
        "--mode".to_owned(),
        "sidecar".to_owned(),
        "--ca-dir".to_owned(),
        d.join("connector-ca").display().to_string(),
        "--listen".to_owned(),
        format!("127.0.0.1:{SIDECAR_PORT}"),
        "--upstream-ca".to_owned(),
        ca.clone(),
        "--trust-bundle".to_owned(),
        ca,
        "--resolve".to_owned(),
        format!("{REGISTRY_HOST}={REGISTRY_ADDR}"),
        "--resolve".to_owned(),
        format!("{REGISTRY2_HOST}={REGISTRY_ADDR}"),
        "--wasm".to_owned(),
        d.join("npm_connector_filter.wasm").display().to_string(),
    ];
    args.to_vec()
}

/// The sidecar's uid owns its configuration (keys 0600), as a pod's volume would give it.
fn give_to_proxy(dir: &Path) {
    let status = Command::new("chown").args(["-R", &format!("{PROXY_UID}:{PROXY_UID}")]).arg(dir).status();
    assert!(status.map(|s| s.success()).unwrap_or(false), "chown");
}

/// Envoy under the proxy uid in the pod's namespace, on `out/envoy.yaml`, ready.
fn start_sidecar(pod: &str, d: &Path, out: &Path, key: &str, log: &str) -> Daemon {
    let mut cmd = Hosts::command(pod, "setpriv");
    cmd.args([&format!("--reuid={PROXY_UID}"), &format!("--regid={PROXY_UID}"), "--clear-groups"])
        .arg(d.join("envoy"))
        .arg("-c")
        .arg(out.join("envoy.yaml"))
        .args(crate::envoy::TEST_ARGS)
        .env(npm_connector_filter::seal::KEY_ENV, key);
    let mut envoy = Daemon::spawn("sidecar envoy", cmd, d.join(log));
    wait_ready(&mut envoy, &out.join("admin.sock"));
    envoy
}

/// Waits for an Envoy's admin socket to answer `/ready` with LIVE.
pub fn wait_ready(envoy: &mut Daemon, admin: &Path) {
    let start = Instant::now();
    loop {
        envoy.assert_running();
        if crate::envoy::admin_get(admin, "/ready").is_ok_and(|r| r.contains("LIVE")) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{} not ready:\n{}", envoy.name, envoy.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Pod {
    pub fn start() -> Pod {
        let dir = tempfile::Builder::new().prefix("npm-connector-sidecar-").tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path().to_owned();
        // Envoy runs under its own uid: it must reach the rendered files.
        chmod(&d, 0o755);
        let hosts =
            Hosts::create(&[(REGISTRY_HOST, REGISTRY_ADDR), (REGISTRY2_HOST, REGISTRY_ADDR), (OTHER_HOST, OTHER_ADDR)]);
        let pki = pki::make(&d, &[REGISTRY_HOST, REGISTRY2_HOST]);
        let password = format!("pw-a-{}", std::process::id());
        let password2 = format!("pw-b-{}", std::process::id());
        let vdir = d.join("verdaccio");
        std::fs::create_dir_all(&vdir).unwrap_or_else(|e| panic!("{e}"));
        let registry = verdaccio::start_in(
            &vdir,
            &pki,
            &[("ci-a", &password), ("ci-b", &password2)],
            &format!("{REGISTRY_ADDR}:443"),
            &format!("https://{REGISTRY_HOST}/"),
            &hosts.registry,
        );
        let other = start_other(&d, &hosts.registry);

        // The connector CA, then render exactly as a user would.
        let ca_dir = d.join("connector-ca");
        control::run(&["ca", "init", "--dir", &ca_dir.display().to_string()]);
        let key_file = d.join("key");
        let key = control::keygen(&key_file);
        let manifest_dir = d.join("manifests");
        std::fs::create_dir_all(&manifest_dir).unwrap_or_else(|e| panic!("{e}"));
        write(&manifest_dir.join("connectors.yaml"), &manifests(&password, &password2));
        let out = d.join("out");
        std::fs::copy(
            crate::tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm"),
            d.join("npm_connector_filter.wasm"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut args = common_args(&d);
        // --istio too: the WasmPlugin's pluginConfig must be what this Envoy runs.
        args.extend(["--proxy-uid".into(), PROXY_UID.to_string(), "--istio".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        control::render(&manifest_dir.join("connectors.yaml"), &out, &key_file, &args);
        give_to_proxy(&out);

        // What the init container does: the rendered rules, in the pod's namespace.
        Hosts::sh(&hosts.pod, &format!("sh {}", out.join("sidecar/iptables.sh").display()));

        // The Envoy binary itself, where the sidecar's uid can run it.
        let envoy_bin = d.join("envoy");
        std::fs::copy(netns::envoy_executable(), &envoy_bin).unwrap_or_else(|e| panic!("{e}"));
        chmod(&envoy_bin, 0o755);
        let admin = out.join("admin.sock");
        let envoy = start_sidecar(&hosts.pod, &d, &out, &key, "envoy.log");
        let mut secrets = vec![password.clone(), password2.clone(), key];
        for ns in ["team/npm", "other-team/npm"] {
            secrets.extend(control::npmrc_token(&out.join(ns).join(".npmrc")));
        }
        Pod { envoy, serve: None, other, registry, hosts, pki, out, admin, secrets, password, dir }
    }

    /// Replaces the static sidecar with one fed by `npm-connector serve --mode sidecar` (in the
    /// pod's namespace, on loopback): listeners and clusters over ADS, the leaves over SDS, the
    /// client files from `serve --clients`. Returns the clients directory.
    pub fn switch_to_serve(&mut self) -> PathBuf {
        self.envoy.terminate();
        let d = self.dir.path().to_owned();
        let clients = d.join("clients");
        let mut cmd = Hosts::command(&self.hosts.pod, control::binary());
        cmd.args(["serve", "-d"]).arg(d.join("manifests")).arg("--key-file").arg(d.join("key"));
        cmd.args(["--clients"]).arg(&clients).args(["--xds-listen", "127.0.0.1:18000", "--token-ttl", "1h"]);
        cmd.args(common_args(&d)).env("RUST_LOG", "info");
        self.serve = Some(Daemon::spawn("npm-connector serve", cmd, d.join("serve.log")));
        let out = d.join("out-xds");
        control::run(&[
            "render",
            "--xds",
            "grpc://127.0.0.1:18000",
            "--mode",
            "sidecar",
            "--node-id",
            "sidecar",
            "--listen",
            &format!("127.0.0.1:{SIDECAR_PORT}"),
            "-o",
            &out.display().to_string(),
            "--wasm",
            &d.join("npm_connector_filter.wasm").display().to_string(),
        ]);
        give_to_proxy(&out);
        let key = std::fs::read_to_string(d.join("key")).unwrap_or_default().trim().to_owned();
        self.admin = out.join("admin.sock");
        self.envoy = start_sidecar(&self.hosts.pod, &d, &out, &key, "envoy-xds.log");
        let npmrc = clients.join("team/npm/.npmrc");
        control::wait_for("serve's client files and the sidecar's listener over xDS", Duration::from_secs(30), || {
            (npmrc.exists() && self.admin("/listeners").contains("npm_connector_sidecar")).then_some(())
        });
        clients
    }

    pub fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// GETs an admin path of the sidecar Envoy over its unix socket.
    pub fn admin(&self, path: &str) -> String {
        crate::envoy::admin_get(&self.admin, path).unwrap_or_default()
    }

    /// What the unrelated host logged, one line per request.
    pub fn other_seen(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("other-access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The sidecar's access log and Envoy log.
    pub fn envoy_log(&self) -> String {
        self.envoy.log_text()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.envoy.terminate();
        if let Some(s) = &mut self.serve {
            s.terminate();
        }
        self.other.terminate();
        self.registry.daemon.terminate();
    }
}
