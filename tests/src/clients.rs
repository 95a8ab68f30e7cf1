//! Real package-manager clients, each with its own HOME, cache and config files, so the
//! machine's own npmrc (which sets a cafile and omits lockfile URLs) never leaks in.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a client printed and whether it succeeded.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The network namespace every client of this test process runs in, if any (the sidecar
/// tests' "pod").
static NETNS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// From now on, every client this process runs (npm, pnpm, yarn, bun, curl) runs inside
/// network namespace `ns` (`None`: where the test runs).
pub fn run_in_netns(ns: Option<&str>) {
    if let Ok(mut n) = NETNS.lock() {
        *n = ns.map(str::to_owned);
    }
}

fn run(cmd: Command, what: &str) -> Run {
    let ns = NETNS.lock().ok().and_then(|n| n.clone());
    let mut cmd = match ns {
        Some(ns) => crate::netns::wrap(&ns, &cmd),
        None => cmd,
    };
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A clean environment: PATH and a private HOME only (no proxies or npm_config_* from outside).
fn clean(cmd: &mut Command, home: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("npm_config_update_notifier", "false");
}

/// npm with a given user config (the rendered `.npmrc`) and an empty global config.
pub struct Npm {
    pub home: PathBuf,
    pub userconfig: PathBuf,
}

impl Npm {
    pub fn new(home: &Path, userconfig: &Path) -> Npm {
        std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("{e}"));
        Npm { home: home.to_owned(), userconfig: userconfig.to_owned() }
    }

    pub fn run(&self, dir: &Path, args: &[&str]) -> Run {
        let global = self.home.join("empty-globalrc");
        let _ = std::fs::write(&global, "");
        let mut cmd = Command::new("npm");
        clean(&mut cmd, &self.home);
        cmd.current_dir(dir)
            .arg("--userconfig")
            .arg(&self.userconfig)
            .arg("--globalconfig")
            .arg(&global)
            .arg("--cache")
            .arg(self.home.join("npm-cache"))
            .args(["--no-audit", "--no-fund", "--fetch-retries", "0", "--loglevel", "http"])
            .args(args);
        run(cmd, "npm")
    }

    /// Runs and panics with the output unless it succeeded.
    pub fn ok(&self, dir: &Path, args: &[&str]) -> Run {
        let r = self.run(dir, args);
        assert!(r.ok, "npm {args:?} failed:\n{}", r.all());
        r
    }
}

/// yarn berry, pinned in tests/registry, run in a project whose `.yarnrc.yml` is given.
pub fn yarn(home: &Path, project: &Path, args: &[&str]) -> Run {
    let yarn_js = crate::tool("YARN_JS", "tests/registry/node_modules/@yarnpkg/cli-dist/bin/yarn.js");
    let mut cmd = Command::new("node");
    clean(&mut cmd, home);
    cmd.current_dir(project)
        .arg(yarn_js)
        .args(args)
        .env("YARN_ENABLE_TELEMETRY", "0")
        .env("YARN_ENABLE_GLOBAL_CACHE", "0")
        .env("YARN_ENABLE_HARDENED_MODE", "0")
        .env("YARN_GLOBAL_FOLDER", home.join("yarn-global"));
    run(cmd, "yarn")
}

/// yarn classic (v1) with the rendered `yarn-classic.npmrc` as its user config, its cache in
/// `home` (fresh per HOME).
pub fn yarn_classic(home: &Path, userconfig: &Path, project: &Path, args: &[&str]) -> Run {
    let yarn_js = crate::tool("YARN_CLASSIC_JS", "tests/registry/node_modules/yarn-classic/bin/yarn.js");
    let mut cmd = Command::new("node");
    clean(&mut cmd, home);
    cmd.current_dir(project)
        .arg(yarn_js)
        .args(args)
        .args(["--cache-folder"])
        .arg(home.join("yarn1-cache"))
        .args(["--non-interactive", "--no-progress"])
        .env("npm_config_userconfig", userconfig)
        .env("YARN_IGNORE_PATH", "1");
    run(cmd, "yarn classic")
}

/// curl, for what is about HTTP rather than npm (redirects, unmatched hosts).
pub fn curl(args: &[&str]) -> Run {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"]).args(args);
    run(cmd, "curl")
}

/// `KEY=value` lines of a rendered `connector.env`.
pub fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// pnpm, pinned in tests/registry, with `npmrc` as its user config (`$HOME/.npmrc`).
pub fn pnpm(home: &Path, npmrc: &Path, project: &Path, args: &[&str]) -> Run {
    std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(npmrc, home.join(".npmrc")).unwrap_or_else(|e| panic!("{e}"));
    let bin = crate::tool("PNPM_BIN", "tests/registry/node_modules/.bin/pnpm");
    let mut cmd = Command::new(bin);
    clean(&mut cmd, home);
    cmd.current_dir(project)
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("npm_config_store_dir", home.join("pnpm-store"));
    run(cmd, "pnpm")
}

/// bun, pinned in tests/registry, run in a project holding the rendered `bunfig.toml`, with
/// `env` (from `connector.env`) in its environment.
pub fn bun(home: &Path, project: &Path, env: &[(String, String)], args: &[&str]) -> Run {
    std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("{e}"));
    let bin = crate::tool("BUN_BIN", "tests/registry/node_modules/.bin/bun");
    let mut cmd = Command::new(bin);
    clean(&mut cmd, home);
    cmd.current_dir(project)
        .args(args)
        .env("BUN_INSTALL_CACHE_DIR", home.join("bun-cache"))
        .env("DO_NOT_TRACK", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    run(cmd, "bun")
}

/// curl with `env` (from `connector.env`) in its environment and nothing else from outside.
pub fn curl_env(home: &Path, env: &[(String, String)], args: &[&str]) -> Run {
    let mut cmd = Command::new("curl");
    clean(&mut cmd, home);
    cmd.args(["-sS", "--max-time", "20"]).args(args).envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    run(cmd, "curl")
}

/// The HTTP status of a GET for `url` through the https proxy `proxy` (a URL with the token as
/// userinfo), trusting `cacert` for the tunnel's TLS.
pub fn status_through(proxy: &str, cacert: &Path, url: &str) -> Run {
    curl(&["-o", "/dev/null", "-w", "%{http_code}", "-x", proxy, "--cacert", &cacert.display().to_string(), url])
}

/// `npm pack` of a tiny package `name@1.0.0` made under `dir`: (tarball bytes, integrity,
/// shasum), for scripted registries.
pub fn npm_pack(dir: &Path, name: &str) -> (Vec<u8>, String, String) {
    let pkg = dir.join(format!("pack-{name}"));
    std::fs::create_dir_all(&pkg).unwrap_or_else(|e| panic!("{e}"));
    let pj = format!(r#"{{"name":"{name}","version":"1.0.0","main":"index.js"}}"#);
    std::fs::write(pkg.join("package.json"), pj).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pkg.join("index.js"), format!("module.exports = '{name}';\n")).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("npm")
        .args(["pack", "--json", "--pack-destination"])
        .arg(dir)
        .current_dir(&pkg)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(dir.join(format!("{name}-1.0.0.tgz"))).unwrap_or_else(|e| panic!("{e}"));
    let field = |k: &str| v[0][k].as_str().unwrap_or_default().to_owned();
    (bytes, field("integrity"), field("shasum"))
}

/// gzip of `bytes` (the system's gzip), for upstreams that compress.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("gzip: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    out.stdout
}

/// Sends `request` (raw bytes, headers and all) to 127.0.0.1:`port` and returns the first
/// response as text: its head and a `Content-Length` body. A response with neither length nor
/// close (a CONNECT's 200: the tunnel stays open) ends at its head.
pub fn raw_http(port: u16, request: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(std::time::Duration::from_millis(2000))).unwrap_or_else(|e| panic!("{e}"));
    s.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut want: Option<usize> = None;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if want.is_none() {
            let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            if head.starts_with("http/1.1 100") {
                out.drain(..end + 4);
                continue;
            }
            let length = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse::<usize>().ok());
            want = Some(end + 4 + length.unwrap_or(0));
        }
        if want.is_some_and(|w| out.len() >= w) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
