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

/// Like [`start`], with the public URL (where tarball URLs point) made from the port: a
/// registry behind a front that strips a path prefix, as GitLab's API paths are.
pub fn start_with(dir: &Path, pki: &Pki, users: &[(&str, &str)], public_url: impl FnOnce(u16) -> String) -> Verdaccio {
    let port = free_port();
    let public_url = public_url(port);
    let mut v = spawn(dir, pki, users, &format!("127.0.0.1:{port}"), &public_url, None);
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
    let mut v = spawn(dir, pki, users, listen, public_url, Some(netns));
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
) -> Verdaccio {
    let bin = crate::tool("VERDACCIO_BIN", "tests/registry/node_modules/.bin/verdaccio");
    let port = listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
    let htpasswd: String = users
        .iter()
        .map(|(u, p)| {
            format!("{u}:{{SHA}}{}\n", base64::engine::general_purpose::STANDARD.encode(Sha1::digest(p.as_bytes())))
        })
        .collect();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
    };
    write("htpasswd", &htpasswd);
    let access = "    access: $authenticated\n    publish: $authenticated\n    unpublish: $authenticated\n";
    let config = format!(
        "storage: {storage}\nauth:\n  htpasswd:\n    file: {htpasswd}\n    max_users: -1\n\
         packages:\n  '@*/*':\n{access}  '**':\n{access}\
         https:\n  key: {key}\n  cert: {cert}\n  ca: {ca}\n\
         listen: https://{listen}\nlog: {{type: stdout, format: pretty, level: http}}\n",
        storage = dir.join("storage").display(),
        htpasswd = dir.join("htpasswd").display(),
        key = pki.server_key.display(),
        cert = pki.server_cert.display(),
        ca = pki.ca_cert.display(),
    );
    write("config.yaml", &config);
    let mut cmd = Command::new("node");
    cmd.arg(&bin).arg("-c").arg(dir.join("config.yaml"));
    cmd.env("VERDACCIO_PUBLIC_URL", public_url).env("NODE_NO_WARNINGS", "1");
    if let Some(ns) = netns {
        cmd = crate::netns::wrap(ns, &cmd);
    }
    let daemon = Daemon::spawn("verdaccio", cmd, dir.join("verdaccio.log"));
    Verdaccio { daemon, port, public_url: public_url.to_owned() }
}
