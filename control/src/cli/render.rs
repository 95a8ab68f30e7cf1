//! `npm-connector render`: manifests in, client files and a (validated) Envoy bootstrap out.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use npm_connector::render::{self, Mode, Options, Sealing, Unmatched};
use npm_connector::token::OsEntropy;
use npm_connector::{manifest, output};

use super::{absolute, parse_ttl, KeyArgs};

#[derive(clap::Args)]
pub struct RenderArgs {
    /// Multi-document YAML files with Connector and Secret manifests.
    #[arg(short = 'f', long = "file", required = true)]
    files: Vec<PathBuf>,
    /// Output directory (created; existing files are replaced).
    #[arg(short = 'o', long = "output")]
    out: PathBuf,
    /// How clients reach registries through the proxy.
    #[arg(long, value_enum, default_value = "forward")]
    mode: Mode,
    /// Namespace for manifests without metadata.namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Address Envoy listens on.
    #[arg(long, default_value = "127.0.0.1:10000")]
    listen: SocketAddr,
    /// URL clients use to reach the proxy, if not http://<listen>/ (e.g. a Service name).
    #[arg(long)]
    public_url: Option<url::Url>,
    /// Path of the filter's .wasm as Envoy sees it [default: the workspace build, absolute].
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Unix socket for Envoy's admin API [default: <output>/admin.sock].
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// CA bundle for verifying https registries [default: the system trust store].
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// Pin a registry host to an address instead of DNS: HOST=IP (repeatable).
    #[arg(long = "resolve", value_parser = parse_resolve)]
    resolve: Vec<(String, IpAddr)>,
    /// What to do with requests no connector matches.
    #[arg(long, default_value = "passthrough", value_parser = ["passthrough", "deny"])]
    unmatched: String,
    /// Lifetime of the minted client tokens, e.g. 30m, 12h, 3600 [default: no expiry].
    #[arg(long, value_parser = parse_ttl)]
    token_ttl: Option<u64>,
    /// Envoy binary used to validate the rendered bootstrap [default: $ENVOY_BIN, ./.venv/bin/envoy, envoy on PATH].
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// Skip `envoy --mode validate`.
    #[arg(long)]
    no_validate: bool,
    #[command(flatten)]
    key: KeyArgs,
}

fn parse_resolve(s: &str) -> Result<(String, IpAddr), String> {
    let (h, ip) = s.split_once('=').ok_or("expected HOST=IP")?;
    let ip = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok((h.to_ascii_lowercase(), ip))
}

fn find_envoy(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from(".venv/bin/envoy");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("envoy")).find(|p| p.is_file()))
}

pub fn run(a: RenderArgs) -> Result<()> {
    let mut sources = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        sources.push((f.display().to_string(), text));
    }
    let connectors = manifest::load(&sources, &a.namespace)?;
    let out = absolute(&a.out)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let opts = Options {
        mode: a.mode,
        listen: a.listen,
        public_url: a.public_url,
        wasm: match a.wasm {
            Some(w) => w,
            None => absolute(Path::new("target/wasm32-wasip1/release/npm_connector_filter.wasm"))?,
        },
        admin_socket: match a.admin_socket {
            Some(s) => s,
            None => out.join("admin.sock"),
        },
        upstream_ca: a.upstream_ca.map(|p| absolute(&p)).transpose()?,
        resolve: a.resolve.into_iter().collect::<BTreeMap<_, _>>(),
        unmatched: if a.unmatched == "deny" { Unmatched::Deny } else { Unmatched::Passthrough },
        token_expires_at: a.token_ttl.map(|t| now + t),
        sealing: a.key.sealing()?,
    };
    let files = render::render(&connectors, &opts, &mut OsEntropy)?;
    output::write(&out, &files)?;
    for c in &connectors {
        println!("rendered connector {} -> {}", c.id(), out.join(&c.namespace).join(&c.name).display());
    }
    let envoy_yaml = out.join("envoy.yaml");
    println!("rendered Envoy bootstrap -> {}", envoy_yaml.display());
    if !opts.wasm.exists() {
        println!("note: {} does not exist yet; build the filter (make wasm) or pass --wasm", opts.wasm.display());
    }
    if a.no_validate {
        return Ok(());
    }
    match find_envoy(a.envoy.as_deref()) {
        None => println!("not validated: no Envoy binary found (set --envoy or ENVOY_BIN)"),
        Some(envoy) => {
            // Validation opens the sealed credentials too, so Envoy needs the key as well.
            let mut cmd = Command::new(&envoy);
            if let Sealing::Key(k) = &opts.sealing {
                cmd.env(npm_connector_filter::seal::KEY_ENV, k.to_base64());
            }
            let res = cmd
                .args(["--mode", "validate", "--log-level", "error", "-c"])
                .arg(&envoy_yaml)
                .output()
                .with_context(|| format!("cannot run {}", envoy.display()))?;
            if !res.status.success() {
                // Envoy may quote the configuration it rejects: never print the credential.
                let said = format!("{}{}", String::from_utf8_lossy(&res.stdout), String::from_utf8_lossy(&res.stderr));
                bail!(
                    "Envoy ({}) rejected {}:\n{}",
                    envoy.display(),
                    envoy_yaml.display(),
                    output::redact(&said, &connectors)
                );
            }
            println!("validated with {} --mode validate: OK", envoy.display());
        }
    }
    Ok(())
}
