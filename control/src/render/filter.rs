//! The wasm filter's configuration (JSON), checked with the filter's own validator so that a
//! configuration Envoy would reject is caught at render time.

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{Mode, Options, Planned, RenderError};
use crate::manifest::Credential;
use crate::token;

fn credential(c: &Credential) -> Value {
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

/// `host[:port]` as the client sends it in `:authority` for this URL.
pub(crate) fn authority(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// `proxy_listener`: clients reach the listener as an HTTP proxy, so a missing token gets 407.
pub(crate) fn config(
    planned: &[Planned<'_>],
    opts: &Options,
    proxy_listener: bool,
) -> Result<String, RenderError> {
    let connectors: Vec<Value> = planned
        .iter()
        .map(|p| {
            let c = p.connector;
            let (hosts, prefix) = match opts.mode {
                Mode::Forward => (vec![authority(&c.address)], c.address.path().to_owned()),
                // The gateway is reached under any name; the per-connector path selects.
                Mode::Gateway => (vec!["*".to_owned()], p.client_registry.path().to_owned()),
            };
            let mut v = json!({
                "name": c.id(),
                "hosts": hosts,
                "path_prefix": prefix,
                "credential": credential(&c.credential),
                "tokens": [{"sha256": token::hash(&p.token)}],
            });
            if let Some(exp) = opts.token_expires_at {
                v["tokens"][0]["expires_at"] = json!(exp);
            }
            // Tarball URLs on the registry's own URL must come back through the proxy.
            if c.address.as_str() != p.client_registry.as_str() {
                v["rewrite"] =
                    json!({"upstream": c.address.as_str(), "client": p.client_registry.as_str()});
            }
            v
        })
        .collect();
    let cfg = json!({
        "unmatched": opts.unmatched,
        "proxy_listener": proxy_listener,
        "connectors": connectors,
    });
    let text = cfg.to_string();
    npm_connector_filter::config::Config::from_json(text.as_bytes())
        .map_err(|e| RenderError::Filter(e.to_string()))?;
    Ok(text)
}
