//! The `npm-connector` binary as a process: `serve` as a daemon, other commands as runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::Daemon;

pub fn binary() -> PathBuf {
    crate::tool("NPM_CONNECTOR_BIN", "target/debug/npm-connector")
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).env("RUST_LOG", "warn").output().unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "npm-connector {args:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `npm-connector keygen -o path`; returns the key as Envoy takes it (`NPM_CONNECTOR_KEY`).
pub fn keygen(path: &Path) -> String {
    run(&["keygen", "-o", &path.display().to_string()]);
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_owned()
}

/// `npm-connector render -f file -o out --key-file key` and `extra`; returns what it printed.
pub fn render(file: &Path, out: &Path, key: &Path, extra: &[&str]) -> String {
    let (file, out, key) = (file.display().to_string(), out.display().to_string(), key.display().to_string());
    let mut args = vec!["render", "-f", &file, "-o", &out, "--key-file", &key];
    args.extend_from_slice(extra);
    run(&args)
}

/// Starts `npm-connector serve` with `args`, logging to `log`.
pub fn serve(args: &[String], log: PathBuf) -> Daemon {
    let mut cmd = Command::new(binary());
    cmd.arg("serve").args(args).env("RUST_LOG", "info");
    Daemon::spawn("npm-connector serve", cmd, log)
}

/// Waits until `f` returns Some, or panics after `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 GET on loopback (one connection per request): status and body.
pub fn get(port: u16, path: &str, bearer: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, body)
}

/// Joins the chunks of a chunked HTTP/1.1 body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `_authToken` of a rendered `.npmrc`.
pub fn npmrc_token(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.split_once(":_authToken=").map(|(_, t)| t.trim().to_owned()))
}
