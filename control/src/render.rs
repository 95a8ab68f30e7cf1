//! Pure renderers: validated connectors + options in, the files of an output directory out
//! (per-connector client files and one Envoy bootstrap). Nothing here touches the disk.

mod client;
mod envoy;
mod filter;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use secrecy::SecretString;

use crate::manifest::Connector;
use crate::token::{Entropy, TokenError};

pub use npm_connector_filter::config::Unmatched;
pub use npm_connector_filter::seal::Key;

/// How the credential travels in the filter configuration.
#[derive(Debug, Clone)]
pub enum Sealing {
    /// Encrypted with a key that only Envoy's environment holds (the default).
    Key(Key),
    /// In clear: anyone who can read the bootstrap or `/config_dump` sees it. Explicit opt-in.
    Plaintext,
}

/// How build pods reach the registry through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Clients keep the registry's host and use the proxy as a plain-HTTP forward proxy.
    Forward,
    /// Clients use a registry URL on the proxy itself, one path per connector.
    Gateway,
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
}

pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One file of the output directory. `secret` files are written with mode 0600.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    pub path: PathBuf,
    pub contents: String,
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
}

/// A connector with its freshly minted client token and where its clients send requests.
pub(crate) struct Planned<'a> {
    pub connector: &'a Connector,
    pub token: SecretString,
    /// The registry URL as clients write it (ends in '/').
    pub client_registry: url::Url,
}

impl Options {
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

/// Renders the output directory; `entropy` supplies client tokens and sealing nonces.
pub fn render(
    connectors: &[Connector],
    opts: &Options,
    entropy: &mut dyn Entropy,
) -> Result<Vec<OutFile>, RenderError> {
    if connectors.is_empty() {
        return Err(RenderError::NoConnectors);
    }
    let public = opts.public_url()?;
    let planned = connectors
        .iter()
        .map(|c| -> Result<Planned<'_>, RenderError> {
            let client_registry = match opts.mode {
                // The client keeps the registry's host and path, spoken as plain http to the proxy.
                Mode::Forward => {
                    let mut u = c.address.clone();
                    let _ = u.set_scheme("http");
                    u
                }
                Mode::Gateway => {
                    let mut u = public.clone();
                    u.set_path(&format!("/{}/{}/", c.namespace, c.name));
                    u
                }
            };
            Ok(Planned {
                connector: c,
                token: entropy.token()?,
                client_registry,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter_connectors = filter::connectors(&planned, opts, entropy)?;
    let mut files = Vec::new();
    for p in &planned {
        let dir = PathBuf::from(&p.connector.namespace).join(&p.connector.name);
        files.push(OutFile {
            path: dir.join(".npmrc"),
            contents: client::npmrc(p, opts, &public),
            secret: true,
        });
        files.push(OutFile {
            path: dir.join(".yarnrc.yml"),
            contents: client::yarnrc(p, opts, &public),
            secret: true,
        });
    }
    files.push(OutFile {
        path: PathBuf::from("envoy.yaml"),
        contents: envoy::bootstrap(&planned, opts, &filter_connectors)?,
        secret: true,
    });
    Ok(files)
}

#[cfg(test)]
mod tests;
