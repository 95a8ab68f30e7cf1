//! A real Verdaccio over HTTPS that demands authentication for every read and write, writing
//! absolute https tarball URLs on the registry's host name, as Nexus and GitLab do.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::pki::Pki;
use crate::procs::{free_port, wait_for_port, Daemon};

/// Replaces the registry's users (htpasswd `{SHA}` entries) atomically; Verdaccio re-reads the
/// file when it changes.
pub fn write_users(dir: &Path, users: &[(&str, &str)]) {
    let htpasswd: String = users
        .iter()
        .map(|(u, p)| {
            format!("{u}:{{SHA}}{}\n", base64::engine::general_purpose::STANDARD.encode(Sha1::digest(p.as_bytes())))
        })
        .collect();
    let tmp = dir.join("htpasswd.tmp");
    std::fs::write(&tmp, htpasswd).unwrap_or_else(|e| panic!("htpasswd: {e}"));
    std::fs::rename(&tmp, dir.join("htpasswd")).unwrap_or_else(|e| panic!("htpasswd: {e}"));
}

pub struct Verdaccio {
    pub daemon: Daemon,
    pub port: u16,
    /// The registry's URL as clients and Envoy name it: `https://<host>:<port>/`.
    pub public_url: String,
}

/// Starts Verdaccio on 127.0.0.1 with the given users. Passwords use htpasswd's `{SHA}` form:
/// bcrypt would cost ~75 ms a request.
pub fn start(dir: &Path, pki: &Pki, host: &str, users: &[(&str, &str)]) -> Verdaccio {
    start_with(dir, pki, users, |port| format!("https://{host}:{port}/"))
}

/// A registry Verdaccio pulls from (`uplinks`): packages it does not hold are fetched there
/// and kept in its storage.
pub struct Uplink {
    pub url: String,
    /// `user:password`, sent as Basic on every request to the uplink.
    pub basic: Option<String>,
    /// How long a fetched packument is served before Verdaccio asks the uplink again.
    pub maxage: &'static str,
}

/// Where Verdaccio keeps its packages, and where it pulls from.
#[derive(Default)]
pub struct Opts {
    /// Defaults to `<dir>/storage`.
    pub storage: Option<std::path::PathBuf>,
    pub uplink: Option<Uplink>,
}

/// Like [`start`], with its own storage and an uplink.
pub fn start_opts(dir: &Path, pki: &Pki, host: &str, users: &[(&str, &str)], opts: &Opts) -> Verdaccio {
    let port = free_port();
    let public_url = format!("https://{host}:{port}/");
    let mut v = spawn(dir, pki, users, &format!("127.0.0.1:{port}"), &public_url, None, opts);
    wait_for_port(&mut v.daemon, port, Duration::from_secs(60));
    v
}

/// Like [`start`], with the public URL (where tarball URLs point) made from the port: a
/// registry behind a front that strips a path prefix, as GitLab's API paths are.
pub fn start_with(dir: &Path, pki: &Pki, users: &[(&str, &str)], public_url: impl FnOnce(u16) -> String) -> Verdaccio {
    let port = free_port();
    let public_url = public_url(port);
    let mut v = spawn(dir, pki, users, &format!("127.0.0.1:{port}"), &public_url, None, &Opts::default());
    wait_for_port(&mut v.daemon, port, Duration::from_secs(60));
    v
}

/// Starts Verdaccio inside network namespace `netns`, listening on `listen` (`ip:port`), and
/// waits for it to say so.
pub fn start_in(
    dir: &Path,
    pki: &Pki,
    users: &[(&str, &str)],
    listen: &str,
    public_url: &str,
    netns: &str,
) -> Verdaccio {
    let mut v = spawn(dir, pki, users, listen, public_url, Some(netns), &Opts::default());
    let start = std::time::Instant::now();
    while !v.daemon.log_text().contains("http address") {
        v.daemon.assert_running();
        assert!(start.elapsed() < Duration::from_secs(60), "verdaccio did not start:\n{}", v.daemon.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    v
}

fn spawn(
    dir: &Path,
    pki: &Pki,
    users: &[(&str, &str)],
    listen: &str,
    public_url: &str,
    netns: Option<&str>,
    opts: &Opts,
) -> Verdaccio {
    let bin = crate::tool("VERDACCIO_BIN", "tests/registry/node_modules/.bin/verdaccio");
    let port = listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
    write_users(dir, users);
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
    };
    let mut access =
        "    access: $authenticated\n    publish: $authenticated\n    unpublish: $authenticated\n".to_owned();
    let mut uplinks = String::new();
    if let Some(up) = &opts.uplink {
        access.push_str("    proxy: up\n");
        uplinks = format!("uplinks:\n  up:\n    url: {}\n    maxage: {}\n    timeout: 60s\n", up.url, up.maxage);
        if let Some(basic) = &up.basic {
            let token = base64::engine::general_purpose::STANDARD.encode(basic);
            uplinks.push_str(&format!("    auth:\n      type: basic\n      token: \"{token}\"\n"));
        }
    }
    let storage = opts.storage.clone().unwrap_or_else(|| dir.join("storage"));
    let config = format!(
        "storage: {storage}\nauth:\n  htpasswd:\n    file: {htpasswd}\n    max_users: -1\n{uplinks}\
         packages:\n  '@*/*':\n{access}  '**':\n{access}\
         https:\n  key: {key}\n  cert: {cert}\n  ca: {ca}\n\
         listen: https://{listen}\nlog: {{type: stdout, format: pretty, level: http}}\n",
        storage = storage.display(),
        htpasswd = dir.join("htpasswd").display(),
        key = pki.server_key.display(),
        cert = pki.server_cert.display(),
        ca = pki.ca_cert.display(),
    );
    write("config.yaml", &config);
    let mut cmd = Command::new("node");
    cmd.arg(&bin).arg("-c").arg(dir.join("config.yaml"));
    cmd.env("VERDACCIO_PUBLIC_URL", public_url).env("NODE_NO_WARNINGS", "1");
    // An uplink over TLS is verified against Node's roots, the test CA and any extra roots the
    // machine already gives Node (an egress proxy's, when filling a bench registry).
    if opts.uplink.is_some() {
        let mut extra = std::fs::read_to_string(&pki.ca_cert).unwrap_or_else(|e| panic!("test CA: {e}"));
        if let Some(more) = std::env::var_os("NODE_EXTRA_CA_CERTS").and_then(|p| std::fs::read_to_string(p).ok()) {
            extra.push('\n');
            extra.push_str(&more);
        }
        write("extra-ca.pem", &extra);
        cmd.env("NODE_EXTRA_CA_CERTS", dir.join("extra-ca.pem"));
    }
    if let Some(ns) = netns {
        cmd = crate::netns::wrap(ns, &cmd);
    }
    let daemon = Daemon::spawn("verdaccio", cmd, dir.join("verdaccio.log"));
    Verdaccio { daemon, port, public_url: public_url.to_owned() }
}
