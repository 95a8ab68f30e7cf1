//! Client files for one connector: `.npmrc` (npm, pnpm) and `.yarnrc.yml` (yarn berry).
//!
//! Both carry the connector token, never the registry credential. npm needs *some* credential
//! for the registry or `npm publish` stops locally with ENEEDAUTH, and yarn sends one on GETs
//! only with `npmAlwaysAuth`: the token fills both roles, so a transparently intercepted
//! client (no proxy setting) is still identified through `Authorization`.

use secrecy::{ExposeSecret, SecretString};

use super::{filter::authority, Mode};
use crate::manifest::Connector;

/// npm's "nerf dart": the registry URL without its scheme, the key prefix for per-registry auth.
fn nerf_dart(u: &url::Url) -> String {
    format!("//{}{}", authority(u), u.path())
}

/// What one connector's client files are made of.
pub(crate) struct Client<'a> {
    pub connector: &'a Connector,
    /// The registry URL clients use (ends in '/').
    pub registry: &'a url::Url,
    /// How clients reach the proxy.
    pub public: &'a url::Url,
    pub mode: Mode,
    pub token: &'a SecretString,
}

impl Client<'_> {
    /// `http://<ns>%2F<name>:<token>@<proxy>/`: npm and yarn URL-decode the userinfo, so the
    /// filter sees `ns/name:token` in `Proxy-Authorization: Basic`.
    fn proxy_url(&self) -> String {
        let c = self.connector;
        format!("http://{}%2F{}:{}@{}/", c.namespace, c.name, self.token.expose_secret(), authority(self.public))
    }

    fn header(&self, comment: &str) -> String {
        let mode = match self.mode {
            Mode::Forward => "forward",
            Mode::Gateway => "gateway",
        };
        format!(
            "{comment} npm-connector client configuration for connector {} ({mode} mode). Generated: do not edit.\n\
             {comment} The token here is a connector token, not the registry credential; Envoy swaps it.\n",
            self.connector.id()
        )
    }

    pub(crate) fn npmrc(&self) -> String {
        let mut s = self.header(";");
        s += &format!("registry={}\n", self.registry);
        if self.mode == Mode::Forward {
            s += &format!("proxy={}\n", self.proxy_url());
        }
        s += &format!("{}:_authToken={}\n", nerf_dart(self.registry), self.token.expose_secret());
        s
    }

    pub(crate) fn yarnrc(&self) -> String {
        let mut s = self.header("#");
        let q = |v: &str| serde_json::Value::from(v).to_string();
        s += &format!("npmRegistryServer: {}\n", q(self.registry.as_str()));
        s += "npmAlwaysAuth: true\n";
        s += &format!("npmAuthToken: {}\n", q(self.token.expose_secret()));
        if self.mode == Mode::Forward {
            s += &format!("httpProxy: {}\n", q(&self.proxy_url()));
        }
        // Yarn refuses plain-http registries unless listed; the http leg only reaches the proxy.
        s += &format!("unsafeHttpWhitelist:\n  - {}\n", q(self.registry.host_str().unwrap_or_default()));
        s
    }
}
