//! Test hosts in network namespaces (iproute2's `ip netns`, a veth pair): a "pod" namespace
//! and a "registry" namespace on 198.18.0.0/24 (RFC 2544's benchmarking range, never routed
//! anywhere), each with its own `/etc/hosts` (`ip netns exec` bind-mounts
//! `/etc/netns/<name>/hosts`). Everything is removed when the guard drops.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pod's address on the veth link.
pub const POD_ADDR: &str = "198.18.0.1";
/// The registry host's address, and a second, unrelated host's.
pub const REGISTRY_ADDR: &str = "198.18.0.2";
pub const OTHER_ADDR: &str = "198.18.0.3";

pub struct Hosts {
    pub pod: String,
    pub registry: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Whether this machine lets us make network namespaces (root, a kernel that allows them,
/// iproute2 and iptables installed); `Err` says why not.
pub fn available() -> Result<(), String> {
    for tool in ["ip", "iptables", "setpriv"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.map(|o| o.status.success()).unwrap_or(false) {
            return Err(format!("{tool} is not installed (make netns-tools installs iproute2, iptables)"));
        }
    }
    let probe = format!("npmc-probe-{}", std::process::id());
    ip(&["netns", "add", &probe])?;
    let _ = ip(&["netns", "del", &probe]);
    Ok(())
}

impl Hosts {
    /// Two namespaces joined by a veth pair; `names` are the host names every namespace
    /// resolves, to the registry's or the other host's address.
    pub fn create(hosts: &[(&str, &str)]) -> Hosts {
        let id = std::process::id();
        let h = Hosts { pod: format!("npmc-pod-{id}"), registry: format!("npmc-reg-{id}") };
        let veth_pod = format!("npmc-p{id}");
        let veth_reg = format!("npmc-r{id}");
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), h.pod.clone()],
            vec!["netns".into(), "add".into(), h.registry.clone()],
            vec![
                "link".into(),
                "add".into(),
                veth_pod.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                veth_reg.clone(),
            ],
            vec!["link".into(), "set".into(), veth_pod.clone(), "netns".into(), h.pod.clone()],
            vec!["link".into(), "set".into(), veth_reg.clone(), "netns".into(), h.registry.clone()],
        ];
        for s in &steps {
            let args: Vec<&str> = s.iter().map(String::as_str).collect();
            ip(&args).unwrap_or_else(|e| panic!("{e}"));
        }
        for (ns, dev, addrs) in
            [(&h.pod, &veth_pod, vec![POD_ADDR]), (&h.registry, &veth_reg, vec![REGISTRY_ADDR, OTHER_ADDR])]
        {
            for a in addrs {
                ip(&["-n", ns, "addr", "add", &format!("{a}/24"), "dev", dev]).unwrap_or_else(|e| panic!("{e}"));
            }
            ip(&["-n", ns, "link", "set", dev, "up"]).unwrap_or_else(|e| panic!("{e}"));
            ip(&["-n", ns, "link", "set", "lo", "up"]).unwrap_or_else(|e| panic!("{e}"));
        }
        let mut lines = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, addr) in hosts {
            lines += &format!("{addr} {name}\n");
        }
        for ns in [&h.pod, &h.registry] {
            let dir = Path::new("/etc/netns").join(ns);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            std::fs::write(dir.join("hosts"), &lines).unwrap_or_else(|e| panic!("{e}"));
        }
        h
    }

    /// `program` run inside namespace `ns`.
    pub fn command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Runs `script` with `sh` in namespace `ns`, panicking with its output if it fails.
    pub fn sh(ns: &str, script: &str) -> String {
        let out = Hosts::command(ns, "sh").args(["-c", script]).output().unwrap_or_else(|e| panic!("{e}"));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "in {ns}: {script}\n{text}");
        text
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.pod, &self.registry] {
            let _ = ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
    }
}

/// `cmd` rebuilt to run inside namespace `ns`: the same program, arguments, directory and
/// explicitly set environment (the clients start from a cleared one).
pub fn wrap(ns: &str, cmd: &Command) -> Command {
    let mut w = Hosts::command(ns, cmd.get_program());
    w.args(cmd.get_args());
    w.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        w.env("PATH", path);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        w.current_dir(d);
    }
    w
}

/// The Envoy executable itself (the venv's `envoy` is a Python launcher that a uid without
/// access to the interpreter cannot run): `<venv>/lib/python*/site-packages/envoy/_bin/envoy`.
pub fn envoy_executable() -> PathBuf {
    let launcher = crate::envoy::binary();
    let lib = launcher.parent().and_then(Path::parent).map(|v| v.join("lib"));
    let found = lib.and_then(|lib| std::fs::read_dir(lib).ok()).and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path().join("site-packages/envoy/_bin/envoy")).find(|p| p.is_file())
    });
    found.unwrap_or(launcher)
}
