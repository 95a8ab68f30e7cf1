//! The wasm filter's configuration (JSON), checked with the filter's own validator so that a
//! configuration Envoy would reject is caught at render time.

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{Mode, Options, Planned, RenderError, Sealing};
use crate::manifest::Credential;

fn plain_credential(c: &Credential) -> Value {
    match c {
        Credential::Basic { username, password } => {
            json!({"basic": {"username": username, "password": password.expose_secret()}})
        }
        Credential::Bearer { token } => json!({"bearer": {"token": token.expose_secret()}}),
        Credential::Header { name, value } => {
            json!({"header": {"name": name, "value": value.expose_secret()}})
        }
    }
}

/// The credential as the filter configuration carries it: sealed for the connector, unless
/// plaintext was asked for.
fn credential(id: &str, c: &Credential, sealing: &Sealing) -> Result<Value, RenderError> {
    let plain = plain_credential(c);
    match sealing {
        Sealing::Plaintext => Ok(plain),
        Sealing::Key(key) => {
            let sealed = key.seal(id, plain.to_string().as_bytes()).map_err(|_| RenderError::Seal(id.to_owned()))?;
            Ok(json!({ "sealed": sealed }))
        }
    }
}

/// `host[:port]` as the client sends it in `:authority` for this URL.
pub(crate) fn authority(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// The filter's connector entries, credentials sealed; rendered once, shared by every listener.
pub(crate) fn connectors(planned: &[Planned<'_>], opts: &Options) -> Result<Vec<Value>, RenderError> {
    planned
        .iter()
        .map(|p| {
            let c = p.connector;
            let (hosts, prefix) = match opts.mode {
                Mode::Forward => (vec![authority(&c.address)], c.address.path().to_owned()),
                // The gateway is reached under any name; the per-connector path selects.
                Mode::Gateway => (vec!["*".to_owned()], p.client_registry.path().to_owned()),
                // A CONNECT names host:port always; inside the tunnel a missing port means 443.
                Mode::HttpsProxy => (
                    vec![format!(
                        "{}:{}",
                        c.address.host_str().unwrap_or_default(),
                        c.address.port_or_known_default().unwrap_or(443)
                    )],
                    c.address.path().to_owned(),
                ),
            };
            let mut v = json!({
                "name": c.id(),
                "hosts": hosts,
                "path_prefix": prefix,
                "credential": credential(&c.id(), &c.credential, &opts.sealing)?,
                "tokens": p.accepted.iter().map(|a| match a.expires_at {
                    Some(exp) => json!({"sha256": a.sha256, "expires_at": exp}),
                    None => json!({"sha256": a.sha256}),
                }).collect::<Vec<_>>(),
            });
            if let Some(publish) = &c.publish {
                v["publish_prefix"] = json!(publish.path());
            }
            // Tarball URLs on the registry's own URL must come back through the proxy.
            if c.address.as_str() != p.client_registry.as_str() {
                v["rewrite"] = json!({"upstream": c.address.as_str(), "client": p.client_registry.as_str()});
            }
            Ok(v)
        })
        .collect()
}

/// The filter configuration of one listener in `role`. Checked with the filter's own
/// validator (which opens the sealed credentials with the same key).
/// What one listener's filter does besides matching connectors.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Role {
    /// Clients reach the listener as an HTTP proxy: a missing token gets 407.
    pub proxy_listener: bool,
    /// The listener terminates CONNECT (https-proxy mode's outer listener).
    pub connect: bool,
    /// The listener runs inside CONNECT tunnels and takes the token from this filter state.
    pub tunnel_token: Option<&'static str>,
    /// Refuse what no connector claims, whatever `--unmatched` says.
    pub deny_unmatched: bool,
}

pub(crate) fn config(connectors: &[Value], opts: &Options, role: Role, validate: bool) -> Result<String, RenderError> {
    #[derive(serde::Serialize)]
    struct FilterConfig<'a> {
        unmatched: npm_connector_filter::config::Unmatched,
        proxy_listener: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        connect: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        tunnel_token: Option<&'static str>,
        connectors: &'a [Value],
    }
    let unmatched = if role.deny_unmatched { npm_connector_filter::config::Unmatched::Deny } else { opts.unmatched };
    let cfg = FilterConfig {
        unmatched,
        proxy_listener: role.proxy_listener,
        connect: role.connect,
        tunnel_token: role.tunnel_token,
        connectors,
    };
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
