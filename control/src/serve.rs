//! `npm-connector serve`: the control plane's main loop. It watches a directory of Connector and
//! Secret manifests (and SIGHUP), keeps client tokens, renders a snapshot per connected Envoy
//! and hands it to the xDS cache. A bad manifest is logged and the last good snapshot stays.

pub mod metrics;
mod run;
pub use run::run;
pub mod source;
pub mod tokens;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::manifest::Connector;
use crate::pki::Leaves;
pub use crate::pki::TlsConfig;
use crate::render::{self, Accepted, ConfigSource, Options};
use crate::token::{Entropy, TokenKeys};
use crate::xds::cache::{Cache, NodeInfo};
use crate::xds::snapshot::{EncodeCache, Snapshot};
use tokens::TokenStore;

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub manifests: PathBuf,
    /// Secrets mounted as volumes, one subdirectory per Secret (`--secrets-dir`).
    pub secrets: Option<PathBuf>,
    pub namespace: String,
    /// Rendering options; a node's `npm_connector_listen` metadata overrides `listen`.
    pub opts: Options,
    pub xds_addr: SocketAddr,
    /// Where client-token hashes persist across restarts.
    pub state: Option<PathBuf>,
    /// Where to keep fresh client files for every connector (a directory pods mount).
    pub clients: Option<PathBuf>,
    /// Lifetime of the client tokens `serve` mints, seconds; renewed at half of it.
    pub token_ttl: u64,
    /// Token-signing keys (a directory, one file per key id): tokens are then stateless and
    /// minting them changes no filter configuration.
    pub token_keys: Option<PathBuf>,
    /// Quiet time after a file event before reloading.
    pub debounce: Duration,
    /// How often tokens are renewed and pruned and expiries checked.
    pub tick: Duration,
    /// https-proxy mode: the connector CA and leaf lifetime.
    pub tls: Option<TlsConfig>,
    /// Where `/healthz` and `/metrics` are served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The token exchange (`POST /v1/token`), if served.
    pub exchange: Option<ExchangeSetup>,
    /// Mutual TLS on the xDS port: serve's certificate and key, and the CA Envoys' client
    /// certificates must chain to (PEM text).
    pub xds_tls: Option<XdsTls>,
}

#[derive(Debug, Clone)]
pub struct XdsTls {
    pub cert_pem: String,
    pub key_pem: secrecy::SecretString,
    pub client_ca_pem: String,
}

impl XdsTls {
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        use secrecy::ExposeSecret as _;
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, self.key_pem.expose_secret()))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.client_ca_pem))
            .client_auth_optional(false)
    }
}

/// The token exchange's listener, TLS configuration and issuers.
#[derive(Debug, Clone)]
pub struct ExchangeSetup {
    pub listen: SocketAddr,
    pub tls: std::sync::Arc<rustls::ServerConfig>,
    pub issuers: crate::exchange::oidc::IssuersFile,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("cannot listen for xDS on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot watch {0}: {1}")]
    Watch(String, notify::Error),
    #[error("cannot set up signal handling: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    TokenKeys(#[from] crate::token::TokenKeysError),
    #[error("{0}")]
    Exchange(String),
    #[error("--mode https-proxy needs --ca-dir: create the connector CA with `npm-connector ca init --dir DIR`")]
    NoCa,
}

/// An empty manifest set is a valid state (it revokes every connector), but rarely meant.
fn warn_if_empty(connectors: &[Connector], dir: &std::path::Path) {
    if connectors.is_empty() {
        log::warn!("no npm connectors in {}: every Envoy drops every connector and its credential", dir.display());
    }
}

/// How long expired client tokens stay known to the filter.
const EXPIRED_GRACE: u64 = 3600;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// When a credential was first seen, to warn as its expiry nears.
struct Seen {
    fingerprint: [u8; 32],
    since: u64,
    warned: bool,
}

/// The control plane's state and its pure-ish operations; `run` drives it.
pub struct Engine {
    cfg: ServeConfig,
    connectors: std::sync::Arc<Vec<Connector>>,
    tokens: TokenStore,
    /// When each connector's current client token was minted.
    clients: BTreeMap<String, u64>,
    seen: BTreeMap<String, Seen>,
    entropy: Box<dyn Entropy + Send>,
    token_keys: TokenKeys,
    encodings: std::sync::Mutex<EncodeCache>,
    leaves: Option<Leaves>,
    pub metrics: std::sync::Arc<metrics::ServeMetrics>,
}

impl Engine {
    /// Loads the manifests; at start-up they must be good.
    pub fn new(cfg: ServeConfig, entropy: Box<dyn Entropy + Send>) -> Result<Self, ServeError> {
        let connectors = source::load(&cfg.manifests, cfg.secrets.as_deref(), &cfg.namespace)?;
        let mut tokens = TokenStore::open(cfg.state.as_deref());
        tokens.reload();
        let token_keys = match &cfg.token_keys {
            Some(dir) => TokenKeys::load(dir)?,
            None => TokenKeys::default(),
        };
        let leaves = match (&cfg.tls, cfg.opts.mode) {
            (Some(t), render::Mode::HttpsProxy | render::Mode::Sidecar) => Some(Leaves::open(t)?),
            (None, render::Mode::HttpsProxy | render::Mode::Sidecar) => return Err(ServeError::NoCa),
            _ => None,
        };
        let mut e = Engine {
            cfg,
            connectors: std::sync::Arc::new(connectors),
            tokens,
            clients: BTreeMap::new(),
            seen: BTreeMap::new(),
            entropy,
            token_keys,
            encodings: Default::default(),
            leaves,
            metrics: Default::default(),
        };
        e.note_metrics();
        e.refresh_leaves();
        e.note_credentials(now());
        log::info!("loaded {} connector(s) from {}", e.connectors.len(), e.cfg.manifests.display());
        warn_if_empty(&e.connectors, &e.cfg.manifests);
        Ok(e)
    }

    /// Re-reads manifests and tokens. On a bad manifest, logs what to fix and keeps the last good
    /// connectors. Returns whether a new snapshot may be due.
    pub fn reload(&mut self) -> bool {
        self.tokens.reload();
        if let Some(dir) = &self.cfg.token_keys {
            match TokenKeys::load(dir) {
                Ok(k) => self.token_keys = k,
                Err(e) => log::error!("{e}; still using the last good token keys"),
            }
        }
        match source::load(&self.cfg.manifests, self.cfg.secrets.as_deref(), &self.cfg.namespace) {
            Ok(c) => {
                log::info!("reloaded {} connector(s) from {}", c.len(), self.cfg.manifests.display());
                warn_if_empty(&c, &self.cfg.manifests);
                self.connectors = std::sync::Arc::new(c);
                self.metrics.last_reload_failed.store(false, Ordering::Relaxed);
                self.note_metrics();
                self.refresh_leaves();
                self.note_credentials(now());
                true
            }
            Err(e) => {
                log::error!("manifests rejected, still serving the last good configuration: {e}");
                self.metrics.reload_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.last_reload_failed.store(true, Ordering::Relaxed);
                true // tokens may have changed all the same
            }
        }
    }

    /// The figures /metrics reports about the loaded connectors.
    fn note_metrics(&self) {
        self.metrics.connectors.store(self.connectors.len() as u64, Ordering::Relaxed);
        if let Ok(mut e) = self.metrics.expiries.lock() {
            *e = self.connectors.iter().filter_map(|c| Some((c.id(), c.credential_expires_at?))).collect();
        }
    }

    /// Leaves for every registry host, renewed when due; whether any changed.
    fn refresh_leaves(&mut self) -> bool {
        let hosts = render::tls_hosts(self.connectors.as_slice());
        self.leaves.as_mut().is_some_and(|l| l.refresh(&hosts, SystemTime::now()))
    }

    /// The rendering options, with the current leaves in https-proxy mode.
    fn opts(&self) -> Options {
        let mut opts = self.cfg.opts.clone();
        opts.token_keys = self.token_keys.clone();
        if let Some(l) = &self.leaves {
            opts.tls = Some(l.tls(self.cfg.clients.as_deref().unwrap_or(std::path::Path::new("."))));
        }
        opts
    }

    /// What the token exchange sees: the current connectors, options and token keys.
    pub fn exchange_view(&self) -> crate::exchange::View {
        crate::exchange::View {
            connectors: std::sync::Arc::clone(&self.connectors),
            opts: self.opts(),
            token_keys: self.token_keys.clone(),
            ttl: self.cfg.token_ttl,
        }
    }

    /// Remembers when each credential was first seen, to measure its remaining lifetime.
    fn note_credentials(&mut self, now: u64) {
        for c in self.connectors.iter() {
            let fp = c.credential.fingerprint();
            let changed = self.seen.get(&c.id()).is_none_or(|s| s.fingerprint != fp);
            if changed {
                self.seen.insert(c.id(), Seen { fingerprint: fp, since: now, warned: false });
            }
        }
    }

    /// Warns about credentials within 10% of their lifetime from expiry whose Secret has not
    /// changed since; returns the warnings (also logged).
    fn check_expiry(&mut self, now: u64) -> Vec<String> {
        let mut said = Vec::new();
        for c in self.connectors.iter() {
            let (Some(exp), Some(seen)) = (c.credential_expires_at, self.seen.get_mut(&c.id())) else { continue };
            let margin = exp.saturating_sub(seen.since) / 10;
            if now + margin >= exp && !seen.warned {
                seen.warned = true;
                let msg = if now >= exp {
                    format!(
                        "connector {}: the registry credential expired {} s ago and its Secret has not changed",
                        c.id(),
                        now - exp
                    )
                } else {
                    format!(
                        "connector {}: the registry credential expires in {} s and its Secret has not changed; refresh it",
                        c.id(),
                        exp - now
                    )
                };
                log::warn!("{msg}");
                said.push(msg);
            }
        }
        said
    }

    /// Mints client tokens that are due (none yet, or past half their life) and writes the
    /// client files; old tokens stay valid until their own expiry. Returns whether the filter
    /// configuration changed (a hashed token was added; signed tokens change nothing).
    fn renew_clients(&mut self, now: u64) -> bool {
        let Some(dir) = self.cfg.clients.clone() else { return false };
        let opts = self.opts();
        let mut changed = false;
        let ttl = self.cfg.token_ttl;
        for c in self.connectors.iter() {
            let due = self.clients.get(&c.id()).is_none_or(|&minted| now >= minted + ttl / 2);
            if !due {
                continue;
            }
            // With token keys the token is signed: the filter needs no new configuration.
            let token = match self.token_keys.mint(&c.id(), now + ttl) {
                Ok(Some(t)) => t,
                Ok(None) => match self.entropy.token() {
                    Ok(t) => {
                        let accepted = Accepted { sha256: crate::token::hash(&t), expires_at: Some(now + ttl) };
                        if let Err(e) = self.tokens.add(&c.id(), accepted) {
                            log::error!("connector {}: {e}", c.id());
                            continue;
                        }
                        changed = true;
                        t
                    }
                    Err(e) => {
                        log::error!("connector {}: cannot mint a client token: {e}", c.id());
                        continue;
                    }
                },
                Err(e) => {
                    log::error!("connector {}: cannot mint a client token: {e}", c.id());
                    continue;
                }
            };
            let files = match render::client_files(c, &opts, &token) {
                Ok(f) => f,
                Err(e) => {
                    log::error!("connector {}: {e}", c.id());
                    continue;
                }
            };
            if let Err(e) = crate::output::write(&dir, &files) {
                log::error!("connector {}: {e}", c.id());
                continue;
            }
            log::info!(
                "connector {}: new client token, valid for {ttl} s; client files in {}",
                c.id(),
                dir.join(c.id()).display()
            );
            self.clients.insert(c.id(), now);
            self.metrics.tokens_minted.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// Periodic work; returns whether the accepted tokens changed.
    pub fn tick(&mut self, now: u64) -> bool {
        let _warnings = self.check_expiry(now);
        let renewed = self.renew_clients(now);
        let leaves = self.refresh_leaves();
        // Expired tokens stay in the filter for an hour: a client using one is told "token
        // expired" rather than "not valid".
        let pruned = self.tokens.prune(now.saturating_sub(EXPIRED_GRACE));
        renewed || pruned || leaves
    }

    /// The snapshot for one node.
    pub fn snapshot(&self, node: &NodeInfo) -> Result<Snapshot, String> {
        let mut opts = self.opts();
        if let Some(l) = node.listen {
            opts.listen = l;
        }
        let res = render::xds_resources(&self.connectors, &opts, self.tokens.accepted(), &ConfigSource::Ads)
            .map_err(|e| e.to_string())?;
        let mut cache = self.encodings.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot::build_cached(&res, &mut cache).map_err(|e| e.to_string())
    }

    /// Renders and sets the snapshot of every known node; a node whose snapshot fails keeps
    /// its last one.
    pub fn publish(&self, cache: &Cache) {
        for node in cache.nodes() {
            self.publish_node(cache, &node);
        }
        self.encodings.lock().unwrap_or_else(|p| p.into_inner()).sweep();
    }

    pub fn publish_node(&self, cache: &Cache, node: &NodeInfo) {
        let started = std::time::Instant::now();
        match self.snapshot(node) {
            Ok(s) => {
                log::info!("node {}: snapshot {} built in {} ms", node.id, s.versions(), started.elapsed().as_millis());
                cache.set(&node.id, s);
                self.metrics.snapshot_builds.fetch_add(1, Ordering::Relaxed);
                self.metrics.ready.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                log::error!("node {}: snapshot not built, keeping the last one: {e}", node.id);
                self.metrics.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests;
