//! Client files for one connector: `.npmrc` (npm, pnpm) and `.yarnrc.yml` (yarn berry).
//!
//! Both carry the connector token, never the registry credential. npm needs *some* credential
//! for the registry or `npm publish` stops locally with ENEEDAUTH, and yarn sends one on GETs
//! only with `npmAlwaysAuth`: the token fills both roles, so a transparently intercepted
//! client (no proxy setting) is still identified through `Authorization`.

use secrecy::ExposeSecret;

use super::{filter::authority, Mode, Options, Planned};

/// npm's "nerf dart": the registry URL without its scheme, the key prefix for per-registry auth.
fn nerf_dart(u: &url::Url) -> String {
    format!("//{}{}", authority(u), u.path())
}

/// `http://<ns>%2F<name>:<token>@<proxy>/`: npm and yarn URL-decode the userinfo, so the filter
/// sees `ns/name:token` in `Proxy-Authorization: Basic`.
fn proxy_url(p: &Planned<'_>, public: &url::Url) -> String {
    let c = p.connector;
    format!(
        "http://{}%2F{}:{}@{}/",
        c.namespace,
        c.name,
        p.token.expose_secret(),
        authority(public)
    )
}

fn header(p: &Planned<'_>, opts: &Options, comment: &str) -> String {
    let mode = match opts.mode {
        Mode::Forward => "forward",
        Mode::Gateway => "gateway",
    };
    format!(
        "{comment} npm-connector client configuration for connector {} ({mode} mode). Generated: do not edit.\n\
         {comment} The token here is a connector token, not the registry credential; Envoy swaps it.\n",
        p.connector.id()
    )
}

pub(crate) fn npmrc(p: &Planned<'_>, opts: &Options, public: &url::Url) -> String {
    let mut s = header(p, opts, ";");
    s += &format!("registry={}\n", p.client_registry);
    if opts.mode == Mode::Forward {
        s += &format!("proxy={}\n", proxy_url(p, public));
    }
    s += &format!(
        "{}:_authToken={}\n",
        nerf_dart(&p.client_registry),
        p.token.expose_secret()
    );
    s
}

pub(crate) fn yarnrc(p: &Planned<'_>, opts: &Options, public: &url::Url) -> String {
    let mut s = header(p, opts, "#");
    let q = |v: &str| serde_json::Value::from(v).to_string();
    s += &format!("npmRegistryServer: {}\n", q(p.client_registry.as_str()));
    s += "npmAlwaysAuth: true\n";
    s += &format!("npmAuthToken: {}\n", q(p.token.expose_secret()));
    if opts.mode == Mode::Forward {
        s += &format!("httpProxy: {}\n", q(&proxy_url(p, public)));
    }
    // Yarn refuses plain-http registries unless listed; the http leg only reaches the proxy.
    s += &format!(
        "unsafeHttpWhitelist:\n  - {}\n",
        q(p.client_registry.host_str().unwrap_or_default())
    );
    s
}
