//! Client files for one connector: `.npmrc` (npm, pnpm) and `.yarnrc.yml` (yarn berry).
//!
//! Both carry the connector token, never the registry credential. npm needs *some* credential
//! for the registry or `npm publish` stops locally with ENEEDAUTH, and yarn sends one on GETs
//! only with `npmAlwaysAuth`: the token fills both roles, so a transparently intercepted
//! client (no proxy setting) is still identified through `Authorization`.

use secrecy::{ExposeSecret, SecretString};

use super::{filter::authority, Mode, Options};
use crate::manifest::Connector;

/// npm's "nerf dart": the registry URL without its scheme, the key prefix for per-registry auth.
fn nerf_dart(u: &url::Url) -> String {
    format!("//{}{}", authority(u), u.path())
}

/// `http://<ns>%2F<name>:<token>@<proxy>/`: npm and yarn URL-decode the userinfo, so the filter
/// sees `ns/name:token` in `Proxy-Authorization: Basic`.
fn proxy_url(c: &Connector, public: &url::Url, token: &SecretString) -> String {
    format!("http://{}%2F{}:{}@{}/", c.namespace, c.name, token.expose_secret(), authority(public))
}

fn header(c: &Connector, opts: &Options, comment: &str) -> String {
    let mode = match opts.mode {
        Mode::Forward => "forward",
        Mode::Gateway => "gateway",
    };
    format!(
        "{comment} npm-connector client configuration for connector {} ({mode} mode). Generated: do not edit.\n\
         {comment} The token here is a connector token, not the registry credential; Envoy swaps it.\n",
        c.id()
    )
}

pub(crate) fn npmrc(
    c: &Connector,
    registry: &url::Url,
    opts: &Options,
    public: &url::Url,
    token: &SecretString,
) -> String {
    let mut s = header(c, opts, ";");
    s += &format!("registry={registry}\n");
    if opts.mode == Mode::Forward {
        s += &format!("proxy={}\n", proxy_url(c, public, token));
    }
    s += &format!("{}:_authToken={}\n", nerf_dart(registry), token.expose_secret());
    s
}

pub(crate) fn yarnrc(
    c: &Connector,
    registry: &url::Url,
    opts: &Options,
    public: &url::Url,
    token: &SecretString,
) -> String {
    let mut s = header(c, opts, "#");
    let q = |v: &str| serde_json::Value::from(v).to_string();
    s += &format!("npmRegistryServer: {}\n", q(registry.as_str()));
    s += "npmAlwaysAuth: true\n";
    s += &format!("npmAuthToken: {}\n", q(token.expose_secret()));
    if opts.mode == Mode::Forward {
        s += &format!("httpProxy: {}\n", q(&proxy_url(c, public, token)));
    }
    // Yarn refuses plain-http registries unless listed; the http leg only reaches the proxy.
    s += &format!("unsafeHttpWhitelist:\n  - {}\n", q(registry.host_str().unwrap_or_default()));
    s
}
