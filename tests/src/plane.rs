//! A control plane under test: `serve` over a ConfigMap-style manifests directory, Envoys
//! bootstrapped with `render --xds`, and helpers to ask the registry who a request was.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::{self, get, npmrc_token};
use crate::envoy::{self, Envoy};
use crate::procs::{free_port, Daemon};

pub const CONNECTOR: &str = "team/npm";
pub const WHOAMI: &str = "/team/npm/-/whoami";

pub fn manifest(registry: &str, user: &str, password: &str) -> String {
    format!(
        "kind: Secret\napiVersion: v1\nmetadata:\n  name: login\n  namespace: team\ntype: kubernetes.io/basic-auth\n\
         stringData:\n  username: {user}\n  password: \"{password}\"\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: npm\n  namespace: team\n\
         spec:\n  connectorClassName: npm\n  address: {registry}\n  auth:\n    name: basicAuth\n    secretRef:\n      name: login\n"
    )
}

/// `n` Connector + Secret pairs in namespaces `team-<i>`; with `distinct_hosts` each has its own
/// registry host, else all use `registry.test`. `rotation` sets the first one's password.
pub fn many_manifests(n: usize, distinct_hosts: bool, rotation: usize) -> String {
    let mut y = String::with_capacity(n * 420);
    for i in 0..n {
        let host = if distinct_hosts { format!("registry-{i}.example.com") } else { "registry.test".to_owned() };
        let pw = if i == 0 { format!("password-{rotation}") } else { format!("password-{i}") };
        y += &format!(
            "kind: Secret\napiVersion: v1\nmetadata:\n  name: s{i}\n  namespace: team-{i}\ntype: kubernetes.io/basic-auth\n\
             stringData:\n  username: user-{i}\n  password: {pw}\n---\n\
             apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: npm\n  namespace: team-{i}\n\
             spec:\n  connectorClassName: npm\n  address: https://{host}/repository/npm\n  auth:\n    name: basicAuth\n    secretRef:\n      name: s{i}\n---\n"
        );
    }
    y
}

/// A `serve` replica's ports and its own state and client-file directories (under the plane's).
pub struct Replica {
    pub xds_port: u16,
    pub metrics_port: u16,
    pub state: &'static str,
    pub clients: &'static str,
}

pub struct Plane {
    pub dir: PathBuf,
    pub xds_port: u16,
    pub ca: PathBuf,
    pub wasm: PathBuf,
    /// `--mode` of serve and of the Envoys' bootstraps.
    pub mode: &'static str,
    /// More deployment options for both (`--ca-dir ...` in https-proxy mode).
    pub extra: Vec<String>,
    /// serve's `/healthz` and `/metrics` port.
    pub metrics_port: u16,
}

impl Plane {
    pub fn deploy_args(&self, listen: u16) -> Vec<String> {
        let mut args: Vec<String> = [
            "--mode",
            self.mode,
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--upstream-ca",
            &self.ca.display().to_string(),
            "--resolve",
            "registry.test=127.0.0.1",
            "--wasm",
            &self.wasm.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        args
    }

    pub fn serve(&self, key: &Path, log: &str, ttl: &str) -> Daemon {
        self.serve_with(key, log, ttl, &[])
    }

    /// `serve` with more options (the token exchange's).
    pub fn serve_with(&self, key: &Path, log: &str, ttl: &str, extra: &[String]) -> Daemon {
        let r =
            Replica { xds_port: self.xds_port, metrics_port: self.metrics_port, state: "state", clients: "clients" };
        self.serve_replica(&r, key, log, ttl, extra)
    }

    /// One `serve` replica over the plane's manifests, on its own ports and directories.
    pub fn serve_replica(&self, r: &Replica, key: &Path, log: &str, ttl: &str, extra: &[String]) -> Daemon {
        let mut args: Vec<String> = vec![
            "-d".into(),
            self.dir.join("manifests").display().to_string(),
            "--xds-listen".into(),
            format!("127.0.0.1:{}", r.xds_port),
            "--state".into(),
            self.dir.join(r.state).display().to_string(),
            "--clients".into(),
            self.dir.join(r.clients).display().to_string(),
            "--key-file".into(),
            key.display().to_string(),
            "--token-ttl".into(),
            ttl.into(),
            "--debounce-ms".into(),
            "50".into(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", r.metrics_port),
        ];
        args.extend(self.deploy_args(10000));
        args.extend(extra.iter().cloned());
        control::serve(&args, self.dir.join(log))
    }

    /// `render --xds` for one node, then Envoy on it.
    pub fn envoy(&self, node: &str, key: &str) -> Envoy {
        self.envoy_on(node, key, free_port())
    }

    /// `render --xds` for one node listening on `listen`, then Envoy on it.
    pub fn envoy_on(&self, node: &str, key: &str, listen: u16) -> Envoy {
        self.envoy_xds(node, key, listen, &["--xds".into(), format!("grpc://127.0.0.1:{}", self.xds_port)])
    }

    /// `render` with these `--xds…` options for one node, then Envoy on it.
    pub fn envoy_xds(&self, node: &str, key: &str, listen: u16, xds: &[String]) -> Envoy {
        let out = self.dir.join(format!("envoy-{node}"));
        let mut args: Vec<String> = vec![
            "render".into(),
            "-o".into(),
            out.display().to_string(),
            "--node-id".into(),
            node.into(),
            "--no-validate".into(),
        ];
        args.extend(xds.iter().cloned());
        args.extend(self.deploy_args(listen));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        control::run(&refs);
        envoy::start(&out.join("envoy.yaml"), out.join("envoy.log"), listen, out.join("admin.sock"), Some(key))
    }

    pub fn client_token(&self) -> Option<String> {
        npmrc_token(&self.dir.join("clients").join(CONNECTOR).join(".npmrc"))
    }
}

pub fn user_of(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v.get("username").and_then(|u| u.as_str()).map(str::to_owned)
}

pub fn whoami(port: u16, token: &str) -> (u16, Option<String>) {
    let (status, body) = get(port, WHOAMI, token);
    (status, user_of(&body))
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A registry, a manifests directory with one connector for `ci-0`, a sealing key and the
/// plane's paths: what every control-plane test starts from.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub pki: crate::pki::Pki,
    pub registry: crate::verdaccio::Verdaccio,
    pub manifests: crate::configmap::ConfigMapDir,
    pub password: String,
    pub key_file: PathBuf,
    pub key: String,
    pub plane: Plane,
}

impl World {
    pub fn start(prefix: &str) -> World {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .disable_cleanup(std::env::var_os("E2E_KEEP").is_some())
            .tempdir()
            .unwrap_or_else(|e| panic!("{e}"));
        let d = tmp.path().to_owned();
        let pki = crate::pki::make(&d, &["registry.test", "127.0.0.1"]);
        let vdir = d.join("verdaccio");
        std::fs::create_dir_all(&vdir).unwrap_or_else(|e| panic!("{e}"));
        let password = format!("pw-{}-0", std::process::id());
        let registry = crate::verdaccio::start(&vdir, &pki, "registry.test", &[("ci-0", &password)]);
        let mut manifests = crate::configmap::ConfigMapDir::new(&d.join("manifests"));
        manifests.write(&[("connectors.yaml", &manifest(&registry.public_url, "ci-0", &password))]);
        let key_file = d.join("key");
        let key = control::keygen(&key_file);
        let plane = Plane {
            dir: d.clone(),
            xds_port: free_port(),
            ca: pki.ca_cert.clone(),
            wasm: crate::tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm"),
            mode: "gateway",
            extra: Vec::new(),
            metrics_port: free_port(),
        };
        World { tmp, pki, registry, manifests, password, key_file, key, plane }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

/// `GET http://127.0.0.1:<port><path>` of serve's metrics server: (status, body).
pub fn serve_http(port: u16, path: &str) -> (u16, String) {
    let r = crate::clients::curl(&["-s", "-w", " %{http_code}", &format!("http://127.0.0.1:{port}{path}")]);
    let (body, status) = r.stdout.rsplit_once(' ').unwrap_or_default();
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// One sample of serve's `/metrics`, by its full name with labels.
pub fn serve_metric(port: u16, sample: &str) -> Option<f64> {
    let (_, text) = serve_http(port, "/metrics");
    text.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits for a node to answer with a user through the gateway.
pub fn wait_user(port: u16, token: &str) -> String {
    control::wait_for("a working snapshot", Duration::from_secs(30), || match whoami(port, token) {
        (200, Some(u)) => Some(u),
        _ => None,
    })
}

/// One answer of a client loop: when, status, user.
pub type Answer = (std::time::Instant, u16, Option<String>);

/// A client that keeps asking the gateway who it is, recording every answer, until stopped:
/// the load under which rotations must not fail a request.
pub struct WhoamiLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Answer>>>,
    handle: std::thread::JoinHandle<()>,
}

impl WhoamiLoop {
    pub fn start(port: u16, token: &str) -> WhoamiLoop {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let handle = {
            let (stop, seen, token) = (stop.clone(), seen.clone(), token.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, user) = whoami(port, &token);
                    if let Ok(mut s) = seen.lock() {
                        s.push((std::time::Instant::now(), status, user));
                    }
                }
            })
        };
        WhoamiLoop { stop, seen, handle }
    }

    /// Stops the loop; every answer it got.
    pub fn stop(self) -> Vec<Answer> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.handle.join();
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
