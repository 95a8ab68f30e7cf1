//! The subcommands of the `npm-connector` binary and what they share.

pub mod ca;
pub mod image;
pub mod keygen;
pub mod login;
pub mod render;
pub mod serve;
pub mod token;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use npm_connector::manifest::Connector;
use npm_connector::pki::{Leaves, TlsConfig};
use npm_connector::render::{tls_hosts, Key, Mode, Options, Sealing, Sidecar, Tls, Unmatched};

/// How credentials are protected in what Envoy receives.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// Sealing key file (from `npm-connector keygen`) [default: $NPM_CONNECTOR_KEY]. Envoy needs
    /// the same key in its environment as NPM_CONNECTOR_KEY.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Put credentials in clear in Envoy's configuration, readable by anyone who can read the
    /// bootstrap or the admin API's /config_dump. Not recommended.
    #[arg(long)]
    pub plaintext_credentials: bool,
}

/// Everything about the deployment the manifests do not say (shared by render and serve).
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// How clients reach registries through the proxy: gateway, https-proxy, or sidecar (Envoy
    /// in the pod's network namespace, iptables redirecting its outbound traffic).
    #[arg(long, value_parser = parse_mode, default_value = "gateway")]
    pub mode: Mode,
    /// Kubernetes Secrets mounted as volumes: one subdirectory per Secret (its name), one file
    /// per key; a Connector's secretRef finds them by name. Kind inferred from the keys
    /// (username + password: basicAuth; token: bearerToken).
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
    /// Namespace for manifests without metadata.namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Address Envoy listens on.
    #[arg(long, default_value = "127.0.0.1:10000")]
    pub listen: SocketAddr,
    /// URL clients use to reach the proxy, if not http://<listen>/ (e.g. a Service name).
    #[arg(long)]
    pub public_url: Option<url::Url>,
    /// Path of the filter's .wasm as Envoy sees it (`make wasm` builds
    /// target/wasm32-wasip1/release/npm_connector_filter.wasm).
    #[arg(long, default_value = npm_connector::render::DEFAULT_WASM)]
    pub wasm: PathBuf,
    /// CA bundle for verifying https registries [default: the system trust store].
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
    /// Pin a registry host to an address instead of DNS: HOST=IP (repeatable).
    #[arg(long = "resolve", value_parser = parse_resolve)]
    pub resolve: Vec<(String, IpAddr)>,
    /// https-proxy mode: a CONNECT (with a valid token) to a host:port no connector owns is a
    /// blind TCP tunnel (passthrough) or refused with 403 (deny; the hosts of a Connector's
    /// npm-connector.io/tunnel-hosts annotation stay open).
    #[arg(long, value_enum, default_value = "passthrough")]
    pub unmatched: Unmatched,
    #[command(flatten)]
    pub key: KeyArgs,
    /// https-proxy mode: the connector CA's directory (from `npm-connector ca init`). Its key
    /// stays there; Envoy gets only leaf certificates for the registry hosts.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    /// https-proxy mode: lifetime of the leaf certificates Envoy presents for registry hosts.
    #[arg(long, value_parser = parse_ttl, default_value = "24h")]
    pub leaf_ttl: u64,
    /// https-proxy mode: where build pods mount their connector's client files (the `cafile`
    /// paths point there) [default: the rendered <output>/<namespace>/<name> directory].
    #[arg(long)]
    pub client_dir: Option<PathBuf>,
    /// https-proxy mode: PEM roots the clients' ca-bundle.pem holds besides the connector CA,
    /// for blind tunnels to CDNs [default: the system trust store].
    #[arg(long)]
    pub trust_bundle: Option<PathBuf>,
    /// sidecar mode: outbound TCP ports iptables redirects to Envoy's --listen port.
    #[arg(long, value_delimiter = ',', default_value = "80,443")]
    pub intercept_ports: Vec<u16>,
    /// sidecar mode: the uid Envoy runs under; its own connections are not redirected.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// sidecar mode: the image of the init container that installs the iptables rules.
    #[arg(long, default_value = npm_connector::render::DEFAULT_INIT_IMAGE)]
    pub init_image: String,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "gateway" => Ok(Mode::Gateway),
        "https-proxy" => Ok(Mode::HttpsProxy),
        "sidecar" => Ok(Mode::Sidecar),
        "forward" => Err("forward mode was removed: it sent clients to http:// registry URLs that lockfiles keep \
             (a credential sent in clear outside the mesh). Use --mode https-proxy (real https URLs, \
             --ca-dir), or --mode gateway"
            .to_owned()),
        other => Err(format!("{other:?}: expected gateway, https-proxy or sidecar")),
    }
}

fn parse_resolve(s: &str) -> Result<(String, IpAddr), String> {
    let (h, ip) = s.split_once('=').ok_or("expected HOST=IP")?;
    let ip = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok((h.to_ascii_lowercase(), ip))
}

impl DeployArgs {
    /// The renderer's options; `out` is where the admin socket goes by default. Without
    /// `credentials` (a bootstrap that only points at a control plane) no key is needed.
    /// `admin_socket` is render's (a bootstrap's); serve renders no bootstrap.
    pub fn options(&self, admin_socket: PathBuf, token_expires_at: Option<u64>, credentials: bool) -> Result<Options> {
        Ok(Options {
            mode: self.mode,
            listen: self.listen,
            public_url: self.public_url.clone(),
            wasm: absolute(&self.wasm)?,
            admin_socket,
            upstream_ca: self.upstream_ca.as_deref().map(absolute).transpose()?,
            resolve: self.resolve.iter().cloned().collect::<BTreeMap<_, _>>(),
            unmatched: self.unmatched,
            token_expires_at,
            sealing: if credentials { self.key.sealing()? } else { Sealing::Plaintext },
            token_keys: Default::default(),
            tls: None,
            sidecar: Sidecar {
                ports: self.intercept_ports.clone(),
                proxy_uid: self.proxy_uid,
                init_image: self.init_image.clone(),
            },
            istio: None,
        })
    }

    /// Where the connector CA is and how long leaves live (`--ca-dir`, `--leaf-ttl`,
    /// `--client-dir`); `None` without `--ca-dir`.
    pub fn tls_config(&self) -> Result<Option<TlsConfig>> {
        let Some(dir) = &self.ca_dir else { return Ok(None) };
        Ok(Some(TlsConfig {
            ca_dir: absolute(dir)?,
            leaf_ttl: std::time::Duration::from_secs(self.leaf_ttl),
            client_dir: self.client_dir.as_deref().map(absolute).transpose()?,
            trust_bundle: self.trust_bundle.as_deref().map(absolute).transpose()?,
        }))
    }

    /// https-proxy mode's certificates: the CA, and a fresh leaf for every registry host of
    /// `connectors`, written under `out/tls`. `None` in the other modes.
    pub fn tls(&self, connectors: &[Connector], out: &Path) -> Result<Option<Tls>> {
        if !self.mode.terminates_tls() {
            return Ok(None);
        }
        let Some(cfg) = self.tls_config()? else {
            bail!(
                "--mode {} needs --ca-dir: create the connector CA with `npm-connector ca init --dir DIR`",
                self.mode.name()
            );
        };
        let mut leaves = Leaves::open(&cfg)?;
        // A leaf that cannot be minted is logged here and refused by the renderer (no leaf).
        leaves.refresh(&tls_hosts(connectors), std::time::SystemTime::now());
        Ok(Some(leaves.tls(out)))
    }
}

impl KeyArgs {
    pub fn sealing(&self) -> Result<Sealing> {
        if self.plaintext_credentials {
            eprintln!("warning: --plaintext-credentials: registry credentials will be readable in Envoy's configuration and /config_dump");
            return Ok(Sealing::Plaintext);
        }
        let text = match (&self.key_file, std::env::var(npm_connector_filter::seal::KEY_ENV)) {
            (Some(f), _) => {
                std::fs::read_to_string(f).with_context(|| format!("cannot read key file {}", f.display()))?
            }
            (None, Ok(k)) => k,
            (None, Err(_)) => bail!(
                "no sealing key: make one with `npm-connector keygen -o key`, then pass --key-file key \
                 (and give Envoy NPM_CONNECTOR_KEY=$(cat key)), or opt out with --plaintext-credentials"
            ),
        };
        let key = Key::from_base64(&text).map_err(|e| anyhow::anyhow!("sealing key: {e}"))?;
        Ok(Sealing::Key(key))
    }
}

/// The longest lifetime a token or leaf may be given: longer ones defeat the point of expiry.
const MAX_TTL: u64 = 366 * 86400;

/// A duration such as `90s`, `30m`, `12h`, `7d` or `1h 30m` (humantime), or plain seconds;
/// more than zero and at most a year.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let secs = match s.trim().parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("{s:?}: {e}; write a duration such as 90s, 30m, 12h or 7d"))?
            .as_secs(),
    };
    if secs == 0 {
        return Err("a TTL of zero would mint tokens that are already expired".into());
    }
    if secs > MAX_TTL {
        return Err(format!("{s:?} is longer than a year; tokens and leaves are meant to expire"));
    }
    Ok(secs)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_owned() } else { std::env::current_dir()?.join(p) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_humantime_and_bounded() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("1h 30m"), Ok(5400));
        assert_eq!(parse_ttl("7d"), Ok(7 * 86400));
        assert!(parse_ttl("0s").unwrap_err().contains("zero"));
        assert!(parse_ttl("999999999999999999d").is_err(), "no overflow panic");
        assert!(parse_ttl("400d").unwrap_err().contains("longer than a year"));
        assert!(parse_ttl("soon").unwrap_err().contains("such as 90s"));
    }

    #[test]
    fn forward_mode_names_its_replacement() {
        assert!(parse_mode("forward").unwrap_err().contains("--mode https-proxy"));
        assert_eq!(parse_mode("gateway"), Ok(Mode::Gateway));
    }
}
