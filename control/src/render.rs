//! Pure renderers: validated connectors + options in, the files of an output directory out
//! (per-connector client files and one Envoy bootstrap). Nothing here touches the disk.

mod client;
mod dynamic;
mod envoy;
mod filter;
mod https;
mod istio;
mod sidecar;

pub use dynamic::{xds_bootstrap, Xds, XdsClientTls, XdsTarget, XDS_CLUSTER};
pub use envoy::{ConfigSource, Resources, ACCESS_LOG_FORMAT, WASM_TYPE_URL};
pub use istio::{secret_name as istio_secret_name, Istio, IstioTarget};
pub use sidecar::{init_container, iptables_script, Sidecar, DEFAULT_INIT_IMAGE};

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;

use crate::manifest::Connector;
use crate::token::{Entropy, TokenError};

pub use npm_connector_filter::seal::Key;

/// What https-proxy mode does with a CONNECT to a `host:port` no connector owns (from one of
/// its clients; without a token it is always 407).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Unmatched {
    /// A blind TCP tunnel to that destination: no TLS interception, no filter, no credential.
    #[default]
    Passthrough,
    /// Refused with 403 (an egress allow-list), except the hosts a Connector lists in
    /// `npm-connector.io/tunnel-hosts`.
    Deny,
}

/// How the credential travels in the filter configuration.
#[derive(Debug, Clone)]
pub enum Sealing {
    /// Encrypted with a key that only Envoy's environment holds (the default).
    Key(Key),
    /// In clear: anyone who can read the bootstrap or `/config_dump` sees it. Explicit opt-in.
    Plaintext,
}

/// How build pods reach the registry through the proxy. (Forward mode, which told clients to
/// speak plain http to the registry's own host, was removed: lockfiles kept those http URLs.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Clients use a registry URL on the proxy itself, one path per connector.
    Gateway,
    /// Clients keep the registry's real https URL and tunnel to it through the proxy with
    /// CONNECT; the proxy terminates TLS with a leaf of the connector CA, which clients trust.
    HttpsProxy,
    /// Envoy is the pod's sidecar: iptables redirects the pod's outbound TCP to it; clients
    /// keep the registry's real https URL with no proxy setting, trust the connector CA, and
    /// send the token as `_authToken`.
    Sidecar,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Gateway => "gateway",
            Mode::HttpsProxy => "https-proxy",
            Mode::Sidecar => "sidecar",
        }
    }

    /// Whether Envoy terminates the clients' TLS to the registry host with a leaf of the
    /// connector CA (which clients then trust).
    pub fn terminates_tls(self) -> bool {
        match self {
            Mode::Gateway => false,
            Mode::HttpsProxy | Mode::Sidecar => true,
        }
    }
}

/// A leaf certificate and key (PEM) for up to [`crate::pki::HOSTS_PER_LEAF`] registry hosts,
/// its SANs.
#[derive(Debug, Clone)]
pub struct LeafPem {
    /// The hosts it names, sorted; the first names the leaf.
    pub hosts: Vec<String>,
    pub cert: String,
    pub key: SecretString,
}

impl LeafPem {
    /// The name of its SDS secret and the stem of its static files: `leaf_<first host>`.
    pub fn name(&self) -> String {
        format!("leaf_{}", self.hosts.first().map(String::as_str).unwrap_or_default())
    }
}

/// What https-proxy mode needs besides the manifests. The caller mints the leaves (clock and
/// randomness stay outside the renderer).
#[derive(Debug, Clone)]
pub struct Tls {
    /// The connector CA's certificate (PEM), which clients trust; every connector's `ca.pem`.
    pub ca_cert: Arc<str>,
    /// Every registry host's leaf (see [`tls_hosts`]); hosts share leaves.
    pub leaves: BTreeMap<String, Arc<LeafPem>>,
    /// Where Envoy reads the leaf files of a static bootstrap (absolute).
    pub leaf_dir: PathBuf,
    /// Where build pods find their connector's client files, for `cafile` paths; `None`: the
    /// rendered `<output>/<namespace>/<name>` directory itself.
    pub client_dir: Option<PathBuf>,
    /// The rendered output directory (absolute).
    pub out: PathBuf,
    /// Every connector's `ca-bundle.pem` (see [`client_bundle`]): one copy, however many
    /// connectors there are.
    pub bundle: Arc<str>,
}

impl Tls {
    /// The leaves that name `hosts`, each once, in the order of their first host.
    pub fn leaves_for(&self, hosts: &[String]) -> Result<Vec<&Arc<LeafPem>>, RenderError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for h in hosts {
            let leaf = self.leaves.get(h).ok_or_else(|| RenderError::NoLeaf(h.clone()))?;
            if seen.insert(Arc::as_ptr(leaf)) {
                out.push(leaf);
            }
        }
        Ok(out)
    }
}

/// What https-proxy and sidecar clients verify with: the connector CA (intercepted registries)
/// and `roots`, the public roots (the system's, or `--trust-bundle`) for blind tunnels.
pub fn client_bundle(ca_cert: &str, roots: &str) -> Arc<str> {
    format!("{}\n{roots}", ca_cert.trim_end()).into()
}

/// Everything about the deployment that the manifests do not say.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Where Envoy listens.
    pub listen: SocketAddr,
    /// How clients reach the proxy (default `http://<listen>/`).
    pub public_url: Option<url::Url>,
    /// The filter's `.wasm`, as Envoy will find it.
    pub wasm: PathBuf,
    /// The admin API's unix socket.
    pub admin_socket: PathBuf,
    /// CA bundle to verify https registries with (default: the system trust store).
    pub upstream_ca: Option<PathBuf>,
    /// Registry hosts pinned to an address instead of DNS (tests, split-horizon setups).
    pub resolve: BTreeMap<String, IpAddr>,
    pub unmatched: Unmatched,
    /// Unix time at which the minted client tokens expire.
    pub token_expires_at: Option<u64>,
    pub sealing: Sealing,
    /// Keys the filter verifies stateless tokens with (`serve --token-keys`).
    pub token_keys: crate::token::TokenKeys,
    /// https-proxy and sidecar mode's certificates.
    pub tls: Option<Tls>,
    /// Sidecar mode's interception (ports, proxy uid, init image).
    pub sidecar: Sidecar,
    /// Sidecar mode in an Istio mesh: also render the Istio objects (`render --istio`).
    pub istio: Option<Istio>,
}

/// yarn classic (v1)'s copy of `.npmrc`, with the `always-auth` npm itself warns about.
pub const YARN_CLASSIC_FILE: &str = "yarn-classic.npmrc";

/// The trust bundle clients of https-proxy mode verify with: the connector CA (for intercepted
/// registries) plus public roots (for blind tunnels to CDNs and other hosts).
pub const BUNDLE_FILE: &str = "ca-bundle.pem";

pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where Envoy finds the filter unless told otherwise (the CLI's `--wasm` default too).
pub const DEFAULT_WASM: &str = "/etc/npm-connector/npm_connector_filter.wasm";

/// One file of the output directory. `secret` files are written with mode 0600. Files that
/// share one `contents` (the CA bundle of every connector) are held once and written once:
/// the others are hard links to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    pub path: PathBuf,
    pub contents: Arc<str>,
    pub secret: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no npm connectors to render")]
    NoConnectors,
    #[error("the rendered filter configuration is invalid: {0}")]
    Filter(String),
    #[error("--public-url {0:?} must be an http URL with a host")]
    PublicUrl(String),
    #[error("cannot serialise the Envoy configuration: {0}")]
    Yaml(String),
    #[error(transparent)]
    Entropy(#[from] TokenError),
    #[error("cannot seal the credential of {0}")]
    Seal(String),
    #[error("--xds {0:?} must be grpc://HOST:PORT")]
    Xds(String),
    #[error("https-proxy and sidecar modes need the connector CA (npm-connector ca init, then --ca-dir)")]
    NoCa,
    #[error("connector {0}: {1} mode intercepts https registries only; use gateway mode for a cleartext registry")]
    NotHttps(String, &'static str),
    #[error(
        "connector {0}: {1} mode needs the registry's host name, not an IP address (clients send no SNI for an IP)"
    )]
    IpHost(String, &'static str),
    #[error("https-proxy mode: no leaf certificate for registry host {0}")]
    NoLeaf(String),
    #[error("--istio renders sidecar mode for an Istio mesh: use it with --mode sidecar")]
    IstioNeedsSidecar,
}

/// The registry hosts that need a leaf certificate in https-proxy mode.
pub fn tls_hosts<'a>(connectors: impl IntoIterator<Item = &'a Connector>) -> Vec<String> {
    let mut hosts: Vec<String> =
        connectors.into_iter().filter_map(|c| c.address.host_str().map(str::to_owned)).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// One client token the filter accepts for a connector: its SHA-256 hash and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sha256: String,
    pub expires_at: Option<u64>,
}

/// A connector, the client tokens it accepts, and where its clients send requests.
pub(crate) struct Planned<'a> {
    pub connector: &'a Connector,
    pub accepted: Vec<Accepted>,
    /// The registry URL as clients write it (ends in '/').
    pub client_registry: url::Url,
}

impl Options {
    /// Options with the defaults a deployment mostly keeps: the filter and admin socket where
    /// the rendered examples put them, the system trust store, DNS, unmatched requests passed
    /// through, tokens without expiry, no https-proxy certificates. Set the rest as fields.
    pub fn new(mode: Mode, listen: SocketAddr, sealing: Sealing) -> Self {
        Options {
            mode,
            listen,
            public_url: None,
            wasm: DEFAULT_WASM.into(),
            admin_socket: "/run/npm-connector/admin.sock".into(),
            upstream_ca: None,
            resolve: BTreeMap::new(),
            unmatched: Unmatched::Passthrough,
            token_expires_at: None,
            sealing,
            token_keys: Default::default(),
            tls: None,
            sidecar: Sidecar::default(),
            istio: None,
        }
    }

    fn public_url(&self) -> Result<url::Url, RenderError> {
        let u = match &self.public_url {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!("http://{}/", self.listen))
                .map_err(|e| RenderError::PublicUrl(e.to_string()))?,
        };
        if u.scheme() != "http" || u.host_str().is_none() {
            return Err(RenderError::PublicUrl(u.to_string()));
        }
        Ok(u)
    }
}

/// The registry URL a connector's clients use.
fn client_registry(c: &Connector, opts: &Options, public: &url::Url) -> url::Url {
    match opts.mode {
        Mode::Gateway => {
            let mut u = public.clone();
            u.set_path(&format!("/{}/{}/", c.namespace, c.name));
            u
        }
        // The client keeps the registry's https URL; only the proxy setting changes (or,
        // in a sidecar, nothing does).
        Mode::HttpsProxy | Mode::Sidecar => c.address.clone(),
    }
}

fn plan<'a>(
    connectors: &'a [Connector],
    opts: &Options,
    mut accepted: impl FnMut(&Connector) -> Result<Vec<Accepted>, RenderError>,
) -> Result<Vec<Planned<'a>>, RenderError> {
    if opts.mode.terminates_tls() {
        if opts.tls.is_none() {
            return Err(RenderError::NoCa);
        }
        if let Some(c) = connectors.iter().find(|c| c.address.scheme() != "https") {
            return Err(RenderError::NotHttps(c.id(), opts.mode.name()));
        }
        // The listener picks a host's leaf by SNI, which clients never send for an IP.
        if let Some(c) = connectors.iter().find(|c| !matches!(c.address.host(), Some(url::Host::Domain(_)))) {
            return Err(RenderError::IpHost(c.id(), opts.mode.name()));
        }
    }
    let public = opts.public_url()?;
    connectors
        .iter()
        .map(|c| {
            Ok(Planned { connector: c, accepted: accepted(c)?, client_registry: client_registry(c, opts, &public) })
        })
        .collect()
}

/// A connector's client files (`.npmrc`, `.yarnrc.yml`) carrying `token`.
pub fn client_files(c: &Connector, opts: &Options, token: &SecretString) -> Result<Vec<OutFile>, RenderError> {
    let public = opts.public_url()?;
    Ok(client::files_for(c, &client_registry(c, opts, &public), &public, opts, token))
}

/// Renders the output directory of a static deployment: a fresh client token per connector
/// (expiring at `opts.token_expires_at`), its client files, and the Envoy bootstrap.
/// `entropy` supplies the tokens.
pub fn render(
    connectors: &[Connector],
    opts: &Options,
    entropy: &mut dyn Entropy,
) -> Result<Vec<OutFile>, RenderError> {
    // A static bootstrap without connectors serves nothing; a control plane's empty snapshot
    // (xds_resources) is how the last connector is revoked.
    if connectors.is_empty() {
        return Err(RenderError::NoConnectors);
    }
    if opts.istio.is_some() && opts.mode != Mode::Sidecar {
        return Err(RenderError::IstioNeedsSidecar);
    }
    let mut tokens = Vec::new();
    let planned = plan(connectors, opts, |_| {
        let t = entropy.token()?;
        let a = Accepted { sha256: crate::token::hash(&t), expires_at: opts.token_expires_at };
        tokens.push(t);
        Ok(vec![a])
    })?;
    let public = opts.public_url()?;
    // Client files on a second thread while the bootstrap is built (both grow with connectors).
    let (client_files, built) = std::thread::scope(|s| {
        let clients = s.spawn(|| {
            let mut files = Vec::with_capacity(planned.len() * 5);
            for (p, token) in planned.iter().zip(&tokens) {
                files.extend(client::files_for(p.connector, &p.client_registry, &public, opts, token));
            }
            files
        });
        let built = filter::connectors(&planned, opts)
            .and_then(|entries| Ok((envoy::bootstrap(&planned, opts, &entries)?, entries)));
        (clients.join(), built)
    });
    let mut files = client_files.map_err(|_| RenderError::Filter("a rendering thread panicked".into()))?;
    let (bootstrap, entries) = built?;
    if let Some(istio) = &opts.istio {
        let tls = opts.tls.as_ref().ok_or(RenderError::NoCa)?;
        // The WasmPlugin's configuration is the sidecar listener's, from the same call.
        let cfg = filter::config(&entries, opts, npm_connector_filter::config::Role::Sidecar, None, true)?;
        files.extend(istio::files(&planned, tls, istio, &cfg)?);
    }
    if opts.mode.terminates_tls() {
        files.extend(https::leaf_files(&planned, opts)?);
    }
    if opts.mode == Mode::Sidecar {
        files.extend(sidecar::files(opts)?);
    }
    files.push(OutFile { path: PathBuf::from(bootstrap.file), contents: bootstrap.text.into(), secret: true });
    Ok(files)
}

/// The bootstrap among rendered files: `envoy.json` when a static bootstrap is large (Envoy
/// parses it as JSON, much faster than YAML), `envoy.yaml` otherwise.
pub fn bootstrap_path(files: &[OutFile]) -> &Path {
    let json = Path::new("envoy.json");
    files.iter().find(|f| f.path == json).map_or(Path::new("envoy.yaml"), |_| json)
}

/// The Envoy resources for a control plane (`serve`, `render --xds-dir`): the filter's
/// configurations travel separately from listeners, so a credential or token change touches
/// only them. `accepted` gives each connector's tokens by `namespace/name`.
pub fn xds_resources(
    connectors: &[Connector],
    opts: &Options,
    accepted: &std::collections::BTreeMap<String, Vec<Accepted>>,
    source: &ConfigSource,
) -> Result<Resources, RenderError> {
    let planned = plan(connectors, opts, |c| Ok(accepted.get(&c.id()).cloned().unwrap_or_default()))?;
    let filter_connectors = filter::connectors(&planned, opts)?;
    envoy::resources(&planned, opts, &filter_connectors, source)
}

/// File-based xDS in `dir` (absolute, as Envoy will see it) plus client files with fresh
/// tokens and the bootstrap that watches the directory.
pub fn xds_dir(
    connectors: &[Connector],
    opts: &Options,
    dir: &std::path::Path,
    entropy: &mut dyn Entropy,
) -> Result<Vec<OutFile>, RenderError> {
    let mut tokens = Vec::new();
    let mut accepted = std::collections::BTreeMap::new();
    for c in connectors {
        let t = entropy.token()?;
        accepted.insert(c.id(), vec![Accepted { sha256: crate::token::hash(&t), expires_at: opts.token_expires_at }]);
        tokens.push(t);
    }
    let res = xds_resources(connectors, opts, &accepted, &ConfigSource::Dir(dir.to_owned()))?;
    let mut files = Vec::new();
    for (c, t) in connectors.iter().zip(&tokens) {
        files.extend(client_files(c, opts, t)?);
    }
    files.extend(dynamic::xds_dir_files(&res, opts, dir)?);
    if opts.mode == Mode::Sidecar {
        files.extend(sidecar::files(opts)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
