//! Client files for one connector: `.npmrc` (npm, pnpm), `.yarnrc.yml` (yarn berry) and
//! `bunfig.toml` (bun); in https-proxy and sidecar modes also `connector.env` (curl, pip,
//! prefetchers) and the connector CA.
//!
//! In sidecar mode nothing points at a proxy: iptables sends the pod's connections to Envoy,
//! so clients keep the real https URL, trust the connector CA bundle, and send the token as
//! registry auth (`_authToken`), which the filter swaps for the credential.
//!
//! They carry the connector token, never the registry credential. npm needs *some* credential
//! for the registry or `npm publish` stops locally with ENEEDAUTH, and yarn sends one on GETs
//! only with `npmAlwaysAuth`: in gateway mode the token fills both roles. In https-proxy mode
//! the token travels only in the proxy URL (checked on the CONNECT) and the registry auth is a
//! placeholder the proxy replaces. https-proxy clients verify with a bundle of the connector CA
//! and public roots, so blind tunnels (a CDN) verify the real certificate.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::{filter::authority, Mode, Options, OutFile, Tls, YARN_CLASSIC_FILE};
use crate::manifest::Connector;

/// The connector CA's file name in each connector's client directory.
pub const CA_FILE: &str = "ca.pem";
use super::BUNDLE_FILE;
/// What https-proxy clients send as registry auth: the proxy replaces it with the credential.
const PLACEHOLDER: &str = "npm-connector-placeholder";

/// npm's "nerf dart": the registry URL without its scheme, the key prefix for per-registry auth.
fn nerf_dart(u: &url::Url) -> String {
    format!("//{}{}", authority(u), u.path())
}

/// A value in double quotes, escaped the JSON way (valid YAML and TOML basic strings).
fn q(v: &str) -> String {
    serde_json::Value::from(v).to_string()
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
    pub tls: Option<&'a Tls>,
}

impl Client<'_> {
    /// `http://<ns>%2F<name>:<token>@<proxy>/`: clients URL-decode the userinfo and send it as
    /// `Proxy-Authorization: Basic`; the token after the ':' is what counts.
    fn proxy_url(&self) -> String {
        let c = self.connector;
        format!("http://{}%2F{}:{}@{}/", c.namespace, c.name, self.token.expose_secret(), authority(self.public))
    }

    /// A file of the client directory as build pods see it.
    fn client_path(&self, file: &str) -> String {
        let c = self.connector;
        let dir = match self.tls {
            Some(Tls { client_dir: Some(d), .. }) => d.clone(),
            Some(t) => t.out.join(&c.namespace).join(&c.name),
            None => PathBuf::new(),
        };
        dir.join(file).display().to_string()
    }

    /// The connector CA alone (NODE_EXTRA_CA_CERTS adds it to Node's own roots).
    fn ca_path(&self) -> String {
        self.client_path(CA_FILE)
    }

    /// Connector CA + public roots: what replaces a client's trust store.
    fn bundle_path(&self) -> String {
        self.client_path(BUNDLE_FILE)
    }

    /// The scope of a scoped connector (`@scope`), from its `npm-connector.io/scope` annotation.
    fn scope(&self) -> Option<&str> {
        self.connector.scope.as_deref()
    }

    /// Where clients publish, if not the registry URL. Gateway mode routes only the
    /// connector's gateway path, so a publish address is not offered there: binding the token
    /// to the registry's own host would send it past the proxy.
    fn publish(&self) -> Option<&url::Url> {
        match self.mode {
            Mode::Gateway => None,
            Mode::HttpsProxy | Mode::Sidecar => self.connector.publish.as_ref(),
        }
    }

    /// The registry auth the client sends: the token (forward, gateway) or a placeholder.
    fn registry_auth(&self) -> &str {
        match self.mode {
            Mode::HttpsProxy => PLACEHOLDER,
            Mode::Gateway | Mode::Sidecar => self.token.expose_secret(),
        }
    }

    fn header(&self, comment: &str) -> String {
        format!(
            "{comment} npm-connector client configuration for connector {} ({} mode). Generated: do not edit.\n\
             {comment} The token here is a connector token, not the registry credential; Envoy swaps it.\n",
            self.connector.id(),
            self.mode.name()
        )
    }

    pub(crate) fn npmrc(&self) -> String {
        let mut s = self.header(";");
        match self.scope() {
            Some(scope) => s += &format!("{scope}:registry={}\n", self.registry),
            None => s += &format!("registry={}\n", self.registry),
        }
        match self.mode {
            Mode::HttpsProxy => {
                // strict-ssl stays on: the proxy's certificate is verified against the bundle.
                s += &format!("https-proxy={}\ncafile={}\n", self.proxy_url(), self.bundle_path());
            }
            // No proxy: the sidecar answers for the registry host, with a leaf of the CA.
            Mode::Sidecar => s += &format!("cafile={}\n", self.bundle_path()),
            Mode::Gateway => {}
        }
        if let Some(publish) = self.publish() {
            s += &format!("{}:_authToken={}\n", nerf_dart(publish), self.registry_auth());
        }
        s += &format!("{}:_authToken={}\n", nerf_dart(self.registry), self.registry_auth());
        s
    }

    /// yarn classic (v1) reads npm's files but sends registry auth on unscoped GETs only with
    /// `always-auth`, a key npm 11 warns about: so it gets its own copy of `.npmrc` with it,
    /// which npm never reads (`npm_config_userconfig=<this file> yarn install`).
    pub(crate) fn yarn_classic_npmrc(&self) -> String {
        let npmrc = self.npmrc();
        let body = npmrc.lines().filter(|l| !l.starts_with(';')).collect::<Vec<_>>().join("\n");
        format!(
            "{}; yarn classic (v1) only: npm_config_userconfig=<this file> yarn install. npm warns about always-auth.\n{body}\nalways-auth=true\n",
            self.header(";")
        )
    }

    pub(crate) fn yarnrc(&self) -> String {
        let mut s = self.header("#");
        let registry = self.registry.as_str();
        let auth = self.registry_auth();
        match self.scope() {
            Some(scope) => {
                s += &format!(
                    "npmScopes:\n  {}:\n    npmRegistryServer: {}\n    npmAlwaysAuth: true\n    npmAuthToken: {}\n",
                    scope.trim_start_matches('@'),
                    q(registry),
                    q(auth)
                );
                if let Some(publish) = self.publish() {
                    s += &format!("    npmPublishRegistry: {}\n", q(publish.as_str()));
                }
            }
            None => {
                s += &format!("npmRegistryServer: {}\nnpmAlwaysAuth: true\nnpmAuthToken: {}\n", q(registry), q(auth));
                if let Some(publish) = self.publish() {
                    s += &format!("npmPublishRegistry: {}\n", q(publish.as_str()));
                }
            }
        }
        match self.mode {
            Mode::Gateway => {
                s += &format!("unsafeHttpWhitelist:\n  - {}\n", q(self.registry.host_str().unwrap_or_default()));
            }
            Mode::HttpsProxy => {
                s += &format!("httpsProxy: {}\nhttpsCaFilePath: {}\n", q(&self.proxy_url()), q(&self.bundle_path()));
            }
            Mode::Sidecar => s += &format!("httpsCaFilePath: {}\n", q(&self.bundle_path())),
        }
        s
    }

    /// bun's config.
    pub(crate) fn bunfig(&self) -> String {
        let mut s = self.header("#");
        if self.mode == Mode::HttpsProxy {
            s += "# Bun ignores the proxy settings of .npmrc: it takes them from HTTPS_PROXY / HTTP_PROXY,\n\
                  # so source connector.env before `bun install`.\n";
        }
        s += "[install]\n";
        if self.mode.terminates_tls() {
            s += &format!("cafile = {}\n", q(&self.bundle_path()));
        }
        let entry = format!("{{ url = {}, token = {} }}", q(self.registry.as_str()), q(self.registry_auth()));
        match self.scope() {
            Some(scope) => s += &format!("\n[install.scopes]\n{} = {entry}\n", q(scope.trim_start_matches('@'))),
            None => s += &format!("registry = {entry}\n"),
        }
        s
    }

    /// Environment for everything else (bun, curl, pip, Hermeto-style prefetchers): the proxy
    /// and, in https-proxy mode, the CA, as `KEY=value` lines that shells can source.
    pub(crate) fn env(&self) -> String {
        let mut s = self.header("#");
        if self.mode == Mode::HttpsProxy {
            s += "# Bun ignores the proxy settings of .npmrc: it reads the proxy from here (HTTPS_PROXY / HTTP_PROXY).\n";
        }
        let proxy = self.proxy_url();
        let ca = self.ca_path();
        let bundle = self.bundle_path();
        let no_proxy = "localhost,127.0.0.1,::1";
        let vars: Vec<(&str, &str)> = match self.mode {
            Mode::HttpsProxy => vec![
                ("HTTPS_PROXY", &proxy),
                ("https_proxy", &proxy),
                ("NO_PROXY", no_proxy),
                ("no_proxy", no_proxy),
                // Node adds this to its own roots; the others replace the trust store.
                ("NODE_EXTRA_CA_CERTS", &ca),
                ("SSL_CERT_FILE", &bundle),
                ("REQUESTS_CA_BUNDLE", &bundle),
                ("CURL_CA_BUNDLE", &bundle),
            ],
            // No proxy in a sidecar: only the trust for the connector CA's leaves.
            Mode::Sidecar => vec![
                ("NODE_EXTRA_CA_CERTS", &ca),
                ("SSL_CERT_FILE", &bundle),
                ("REQUESTS_CA_BUNDLE", &bundle),
                ("CURL_CA_BUNDLE", &bundle),
            ],
            Mode::Gateway => vec![],
        };
        for (k, v) in vars {
            s += &format!("{k}={v}\n");
        }
        s
    }
}

/// A connector's client files, its clients using `registry` and reaching the proxy at `public`.
pub(super) fn files_for(
    connector: &Connector,
    registry: &url::Url,
    public: &url::Url,
    opts: &Options,
    token: &SecretString,
) -> Vec<OutFile> {
    let client = &Client { connector, registry, public, mode: opts.mode, token, tls: opts.tls.as_ref() };
    let dir = PathBuf::from(&client.connector.namespace).join(&client.connector.name);
    let mut files = vec![
        OutFile { path: dir.join(".npmrc"), contents: client.npmrc().into(), secret: true },
        OutFile { path: dir.join(".yarnrc.yml"), contents: client.yarnrc().into(), secret: true },
        OutFile { path: dir.join("bunfig.toml"), contents: client.bunfig().into(), secret: true },
        OutFile { path: dir.join(YARN_CLASSIC_FILE), contents: client.yarn_classic_npmrc().into(), secret: true },
    ];
    // Gateway clients need no proxy: the registry URL carries everything.
    if client.mode != Mode::Gateway {
        files.push(OutFile { path: dir.join("connector.env"), contents: client.env().into(), secret: true });
    }
    if let (true, Some(tls)) = (client.mode.terminates_tls(), client.tls) {
        files.push(OutFile { path: dir.join(CA_FILE), contents: tls.ca_cert.clone(), secret: false });
        files.push(OutFile { path: dir.join(BUNDLE_FILE), contents: tls.bundle.clone(), secret: false });
    }
    files
}
