//! The wasm filter's configuration, built as the filter's own raw types (one schema for both
//! sides) and checked with the filter's own validator, so that a configuration Envoy would
//! reject is caught at render time.
//!
//! Each connector names the route that is its own and the cluster that route sends to; the
//! routes themselves are rendered next to it (envoy.rs, https.rs) from the same names.

use npm_connector_filter::config::{
    RawConfig, RawConnector, RawCredential, RawKeyBytes, RawRewrite, RawToken, RawTokenKey, Role,
};
use secrecy::{ExposeSecret, SecretString};

use super::envoy::Upstream;
use super::{Options, Planned, RenderError, Sealing};
use crate::manifest::{Connector, Credential};

fn plain_credential(c: &Credential) -> RawCredential {
    match c {
        Credential::Basic { username, password } => {
            RawCredential::Basic { username: username.clone(), password: password.clone() }
        }
        Credential::Bearer { token } => RawCredential::Bearer { token: token.clone() },
        Credential::Header { name, value } => RawCredential::Header { name: name.clone(), value: value.clone() },
    }
}

/// The credential as the filter configuration carries it: sealed for the connector, unless
/// plaintext was asked for.
fn credential(id: &str, c: &Credential, sealing: &Sealing) -> Result<RawCredential, RenderError> {
    let plain = plain_credential(c);
    match sealing {
        Sealing::Plaintext => Ok(plain),
        Sealing::Key(key) => {
            let text = SecretString::from(serde_json::to_string(&plain).map_err(|_| RenderError::Seal(id.to_owned()))?);
            let sealed = key.seal(id, text.expose_secret().as_bytes()).map_err(|_| RenderError::Seal(id.to_owned()))?;
            Ok(RawCredential::Sealed(sealed))
        }
    }
}

/// The token-signing keys as the filter configuration carries them: sealed under the Envoy key
/// (bound to their key id) unless plaintext was asked for.
fn token_keys(opts: &Options) -> Result<Vec<RawTokenKey>, RenderError> {
    opts.token_keys
        .keys
        .iter()
        .map(|(kid, k)| {
            let key = match &opts.sealing {
                Sealing::Plaintext => RawKeyBytes::Plain(SecretString::from(k.to_base64())),
                Sealing::Key(envoy_key) => {
                    let aad = npm_connector_filter::config::token_key_aad(kid);
                    RawKeyBytes::Sealed(envoy_key.seal(&aad, k.expose_bytes()).map_err(|_| RenderError::Seal(aad))?)
                }
            };
            Ok(RawTokenKey { kid: kid.clone(), key })
        })
        .collect()
}

/// The name of a connector's own routes (its path prefix and publish prefix).
pub(crate) fn route_name(c: &Connector) -> String {
    c.id()
}

/// The name of the CONNECT route to a registry `host:port` (https-proxy mode's outer listener),
/// shared by the connectors on that endpoint.
pub(crate) fn connect_route(up: &Upstream) -> String {
    format!("connect/{}", up.host_port())
}

/// `host[:port]` as the client sends it in `:authority` for this URL.
pub(crate) fn authority(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// One connector as every listener's filter sees it, credential sealed once per render.
pub(crate) struct Entry {
    name: String,
    route: String,
    cluster: String,
    connect_route: String,
    credential: RawCredential,
    tokens: Vec<RawToken>,
    rewrite: Option<RawRewrite>,
}

/// The filter's connector entries; rendered once, shared by every listener.
pub(crate) fn connectors(planned: &[Planned<'_>], opts: &Options) -> Result<Vec<Entry>, RenderError> {
    planned
        .iter()
        .map(|p| {
            let c = p.connector;
            let up = Upstream::of(&c.address);
            Ok(Entry {
                name: c.id(),
                route: route_name(c),
                cluster: up.cluster(opts),
                connect_route: connect_route(&up),
                credential: credential(&c.id(), &c.credential, &opts.sealing)?,
                tokens: p
                    .accepted
                    .iter()
                    .map(|a| RawToken { sha256: a.sha256.clone(), expires_at: a.expires_at })
                    .collect(),
                // Tarball URLs and redirects on the registry's own URL must come back through
                // the proxy (gateway mode).
                rewrite: (c.address.as_str() != p.client_registry.as_str()).then(|| RawRewrite {
                    upstream: c.address.as_str().to_owned(),
                    client: p.client_registry.as_str().to_owned(),
                }),
            })
        })
        .collect()
}

/// The tunnel-state key, for role `tunnel`.
pub(crate) fn config(
    entries: &[Entry],
    opts: &Options,
    role: Role,
    tunnel_token: Option<&str>,
    validate: bool,
) -> Result<String, RenderError> {
    let connectors = entries
        .iter()
        .map(|e| match role {
            // The outer listener never injects: its configuration holds no credential.
            Role::Connect => RawConnector {
                name: e.name.clone(),
                route: e.connect_route.clone(),
                cluster: super::https::HTTPS_TUNNEL_CLUSTER.to_owned(),
                credential: None,
                tokens: e.tokens.clone(),
                rewrite: None,
            },
            Role::Gateway | Role::Tunnel | Role::Sidecar => RawConnector {
                name: e.name.clone(),
                route: e.route.clone(),
                cluster: e.cluster.clone(),
                credential: Some(e.credential.clone()),
                tokens: e.tokens.clone(),
                // A sidecar's clients use the registry's own URLs: nothing to re-base.
                rewrite: if role == Role::Sidecar { None } else { e.rewrite.clone() },
            },
        })
        .collect();
    let cfg =
        RawConfig { role, tunnel_token: tunnel_token.map(str::to_owned), connectors, token_keys: token_keys(opts)? };
    let text = serde_json::to_string(&cfg).map_err(|e| RenderError::Filter(e.to_string()))?;
    if !validate {
        return Ok(text);
    }
    let key = match &opts.sealing {
        Sealing::Key(k) => Some(k),
        Sealing::Plaintext => None,
    };
    npm_connector_filter::config::Config::from_json(text.as_bytes(), key)
        .map_err(|e| RenderError::Filter(e.to_string()))?;
    Ok(text)
}
