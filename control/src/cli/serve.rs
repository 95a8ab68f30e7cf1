//! `npm-connector serve`: the xDS control plane over a directory of manifests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use npm_connector::serve::{self, ServeConfig};
use npm_connector::token::OsEntropy;

use super::{absolute, parse_ttl, DeployArgs};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Directory of Connector and Secret manifests (a ConfigMap/Secret volume works: updates
    /// arrive as an atomic swap of its ..data symlink). Watched; SIGHUP also reloads.
    #[arg(short = 'd', long)]
    manifests: PathBuf,
    /// Where to serve ADS (gRPC).
    #[arg(long, default_value = "127.0.0.1:18000")]
    xds_listen: SocketAddr,
    #[command(flatten)]
    deploy: DeployArgs,
    /// State directory: client-token hashes that must survive a restart.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Keep fresh client files (.npmrc, .yarnrc.yml) for every connector here, for pods to mount.
    #[arg(long)]
    clients: Option<PathBuf>,
    /// Token-signing keys: a directory with one file per key id, each 32 bytes in base64
    /// (`npm-connector keygen -o DIR/<kid>`; a Secret volume works). Tokens are then signed and
    /// stateless: minting changes no Envoy configuration. The id that sorts last signs; removing
    /// a key's file revokes every token it signed.
    #[arg(long)]
    token_keys: Option<PathBuf>,
    /// Lifetime of the client tokens serve mints (renewed at half of it), e.g. 30m.
    #[arg(long, value_parser = parse_ttl, default_value = "30m")]
    token_ttl: u64,
    /// Quiet time after a file change before reloading, in milliseconds.
    #[arg(long, default_value_t = 200)]
    debounce_ms: u64,
    /// Mutual TLS on the xDS port (it carries sealed credentials and https-proxy leaf keys):
    /// serve's certificate (PEM)...
    #[arg(long, requires_all = ["xds_tls_key", "xds_client_ca"])]
    xds_tls_cert: Option<PathBuf>,
    /// ...its private key...
    #[arg(long, requires = "xds_tls_cert")]
    xds_tls_key: Option<PathBuf>,
    /// ...and the CA every Envoy's client certificate must chain to (`ca leaf --client`).
    #[arg(long, requires = "xds_tls_cert")]
    xds_client_ca: Option<PathBuf>,
    /// Serve the token exchange (POST /v1/token, HTTPS) here, e.g. 0.0.0.0:8443: pods and CI
    /// jobs trade an OIDC ID token for a connector token. Needs --issuers, --token-keys and
    /// --token-tls-cert/--token-tls-key.
    #[arg(long)]
    token_listen: Option<SocketAddr>,
    /// The exchange's certificate chain (PEM).
    #[arg(long, requires = "token_listen")]
    token_tls_cert: Option<PathBuf>,
    /// The exchange's private key (PEM).
    #[arg(long, requires = "token_listen")]
    token_tls_key: Option<PathBuf>,
    /// Trusted ID-token issuers (YAML: issuers: [{name, kind: kubernetes|github|gitlab|oidc,
    /// issuer, audience?, jwksFile?, jwksUri?, caFile?}], rateLimit?: {perMinute, burst}).
    #[arg(long, requires = "token_listen")]
    issuers: Option<PathBuf>,
    /// Serve /healthz (200 once a snapshot is built) and /metrics (Prometheus) here, e.g.
    /// 0.0.0.0:9090; off unless given.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

fn exchange_setup(a: &ServeArgs) -> Result<Option<npm_connector::serve::ExchangeSetup>> {
    let Some(listen) = a.token_listen else { return Ok(None) };
    let (Some(cert), Some(key), Some(issuers)) = (&a.token_tls_cert, &a.token_tls_key, &a.issuers) else {
        anyhow::bail!("--token-listen needs --token-tls-cert, --token-tls-key and --issuers: the exchange is HTTPS-only and trusts only the issuers listed");
    };
    if a.token_keys.is_none() {
        anyhow::bail!("--token-listen needs --token-keys: exchanged tokens are signed so that minting changes no Envoy configuration");
    }
    let text = std::fs::read_to_string(issuers).with_context(|| format!("--issuers {}", issuers.display()))?;
    let file: npm_connector::exchange::oidc::IssuersFile =
        serde_yaml_ng::from_str(&text).with_context(|| format!("--issuers {}", issuers.display()))?;
    if file.issuers.is_empty() {
        anyhow::bail!("--issuers {}: no issuers listed; nobody could exchange a token", issuers.display());
    }
    let tls = npm_connector::exchange::server::tls_config(cert, key)?;
    Ok(Some(npm_connector::serve::ExchangeSetup { listen, tls: std::sync::Arc::new(tls), issuers: file }))
}

pub fn run(a: ServeArgs) -> Result<()> {
    // serve renders listeners and clusters, never a bootstrap: no admin socket to name.
    let opts = a.deploy.options(PathBuf::new(), None, true)?;
    let cfg = ServeConfig {
        manifests: absolute(&a.manifests)?,
        secrets: a.deploy.secrets_dir.as_deref().map(absolute).transpose()?,
        namespace: a.deploy.namespace.clone(),
        opts,
        xds_addr: a.xds_listen,
        state: a.state.as_deref().map(absolute).transpose()?,
        clients: a.clients.as_deref().map(absolute).transpose()?,
        token_ttl: a.token_ttl,
        token_keys: a.token_keys.as_deref().map(absolute).transpose()?,
        debounce: Duration::from_millis(a.debounce_ms),
        // Often enough for the shorter of the token and leaf lifetimes.
        tick: Duration::from_secs((a.token_ttl.min(a.deploy.leaf_ttl) / 10).clamp(1, 30)),
        tls: a.deploy.tls_config()?,
        metrics_addr: a.metrics_listen,
        exchange: exchange_setup(&a)?,
        xds_tls: match (&a.xds_tls_cert, &a.xds_tls_key, &a.xds_client_ca) {
            (Some(c), Some(k), Some(ca)) => {
                let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| p.display().to_string());
                Some(serve::XdsTls { cert_pem: read(c)?, key_pem: read(k)?.into(), client_ca_pem: read(ca)? })
            }
            _ => None,
        },
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            log::info!("shutting down");
        };
        serve::run(cfg, Box::new(OsEntropy), shutdown).await
    })?;
    Ok(())
}
