//! Filter configuration: strict JSON parsed into raw types, then validated once into the
//! compiled form that every request shares.

use std::collections::HashMap;

use serde::Deserialize;

pub use crate::credential::Credential;
use crate::credential::RawCredential;
use crate::matcher::{HostPattern, PathPrefix};
use crate::seal::Key;
use crate::token::TokenHash;

/// What happens to a request that no connector matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Forward it untouched (only the hop-by-hop `Proxy-Authorization` is removed).
    #[default]
    Passthrough,
    /// Refuse it with 403: the proxy is an egress allow-list.
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    unmatched: Unmatched,
    /// Clients reach this listener as an HTTP proxy: a missing token is answered with 407.
    #[serde(default)]
    proxy_listener: bool,
    /// Clients open CONNECT tunnels here (https-proxy mode): a CONNECT is decided on its
    /// `host:port` and token alone, and never carries the credential.
    #[serde(default)]
    connect: bool,
    /// Requests arrive inside a CONNECT tunnel (https-proxy mode): the client token is the
    /// tunnel's `Proxy-Authorization`, which the outer listener left in this filter-state key.
    #[serde(default)]
    tunnel_token: Option<String>,
    connectors: Vec<RawConnector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    name: String,
    hosts: Vec<String>,
    #[serde(default = "default_prefix")]
    path_prefix: String,
    /// A second path the connector owns on the same hosts: where it publishes (GitLab's
    /// project-level endpoint next to the instance-level one it installs from).
    #[serde(default)]
    publish_prefix: Option<String>,
    credential: RawCredential,
    tokens: Vec<RawToken>,
    #[serde(default)]
    rewrite: Option<RawRewrite>,
}

fn default_prefix() -> String {
    "/".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    sha256: String,
    #[serde(default)]
    expires_at: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    upstream: String,
    client: String,
}

/// Why a configuration was rejected. Messages name the connector and field, never a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration is not valid JSON for this filter: {0}")]
    Json(String),
    #[error("configuration has no connectors")]
    NoConnectors,
    #[error("connector #{index}: name {name:?} must be namespace/name")]
    BadName { index: usize, name: String },
    #[error("connector {0}: the name is used twice")]
    DuplicateName(String),
    #[error("connector {connector}: hosts must not be empty")]
    NoHosts { connector: String },
    #[error("connector {connector}: host {host:?}: {reason}")]
    BadHost { connector: String, host: String, reason: String },
    #[error("connector {connector}: path_prefix {prefix:?} must start with '/' and have no '.' or '..' segments")]
    BadPrefix { connector: String, prefix: String },
    #[error("connector {connector}: credential: {reason}")]
    BadCredential { connector: String, reason: &'static str },
    #[error("connector {connector}: the credential is sealed but Envoy has no key: set NPM_CONNECTOR_KEY in Envoy's environment (the bootstrap passes it with vm_config.environment_variables.host_env_keys)")]
    NoKey { connector: String },
    #[error(
        "connector {connector}: cannot unseal the credential: wrong NPM_CONNECTOR_KEY, or the sealed value was altered"
    )]
    Unseal { connector: String },
    #[error("connector {connector}: tokens[{index}].sha256 must be 64 hex digits")]
    BadTokenHash { connector: String, index: usize },
    #[error("connector {connector}: rewrite.{field} must be an absolute http(s) URL ending in '/'")]
    BadRewrite { connector: String, field: &'static str },
    #[error("tunnel_token {0:?} must be a filter-state key: letters, digits, '.', '_' and '-'")]
    BadTunnelKey(String),
    #[error("connectors {first} and {second} both claim host {host:?} with path prefix {prefix:?}")]
    Overlap { first: String, second: String, host: String, prefix: String },
}

/// Tarball URL rewrite: `dist.tarball` values starting with `upstream` are re-based on `client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub upstream: String,
    pub client: String,
}

#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub prefix: PathPrefix,
    pub publish_prefix: Option<PathPrefix>,
    pub credential: Credential,
    pub tokens: Vec<TokenHash>,
    pub rewrite: Option<Rewrite>,
}

#[derive(Debug)]
pub struct Config {
    pub unmatched: Unmatched,
    pub proxy_listener: bool,
    pub connect: bool,
    pub tunnel_token: Option<String>,
    pub connectors: Vec<Connector>,
}

impl Config {
    /// Parses and validates the plugin configuration bytes.
    /// Parses and validates the plugin configuration bytes; `key` opens sealed credentials,
    /// once, here, never per request.
    pub fn from_json(bytes: &[u8], key: Option<&Key>) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(describe(&e)))?;
        Self::try_from((raw, key))
    }
}

/// serde's messages quote offending *values* ("invalid type: integer `1234`"), which could be a
/// secret: keep the messages that only name fields or variants, else just say where.
fn describe(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let safe = ["unknown field", "missing field", "duplicate field", "unknown variant"];
    if safe.iter().any(|p| msg.starts_with(p)) {
        msg
    } else {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Data => "wrong type or value",
            serde_json::error::Category::Io => "read error",
        };
        format!("{kind} at line {} column {}", e.line(), e.column())
    }
}

impl TryFrom<(RawConfig, Option<&Key>)> for Config {
    type Error = ConfigError;

    fn try_from((raw, key): (RawConfig, Option<&Key>)) -> Result<Self, ConfigError> {
        if raw.connectors.is_empty() {
            return Err(ConfigError::NoConnectors);
        }
        if let Some(k) = &raw.tunnel_token {
            let ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(ConfigError::BadTunnelKey(k.clone()));
            }
        }
        let mut connectors: Vec<Connector> = Vec::with_capacity(raw.connectors.len());
        // Indexes, so that validating thousands of connectors stays linear.
        let mut names: HashMap<String, usize> = HashMap::with_capacity(raw.connectors.len());
        let mut claims: HashMap<(String, String), usize> = HashMap::with_capacity(raw.connectors.len());
        for (index, rc) in raw.connectors.into_iter().enumerate() {
            let c = Connector::validate(index, rc, key)?;
            if names.insert(c.name.clone(), index).is_some() {
                return Err(ConfigError::DuplicateName(c.name));
            }
            // Two connectors with the same host pattern and prefix would make the choice of
            // credential depend on list order: refuse it.
            for (h, prefix) in c.hosts.iter().flat_map(|h| c.prefixes().map(move |p| (h, p))) {
                let claim = (h.to_string(), prefix.as_str().to_owned());
                if let Some(&first) = claims.get(&claim) {
                    return Err(ConfigError::Overlap {
                        first: connectors[first].name.clone(),
                        second: c.name.clone(),
                        host: claim.0,
                        prefix: claim.1,
                    });
                }
                claims.insert(claim, connectors.len());
            }
            connectors.push(c);
        }
        Ok(Config {
            unmatched: raw.unmatched,
            proxy_listener: raw.proxy_listener,
            connect: raw.connect,
            tunnel_token: raw.tunnel_token,
            connectors,
        })
    }
}

impl Connector {
    fn validate(index: usize, raw: RawConnector, key: Option<&Key>) -> Result<Self, ConfigError> {
        let name = raw.name;
        let valid_name = match name.split_once('/') {
            Some((ns, n)) => is_dns_label_ish(ns) && is_dns_label_ish(n),
            None => false,
        };
        if !valid_name {
            return Err(ConfigError::BadName { index, name });
        }
        if raw.hosts.is_empty() {
            return Err(ConfigError::NoHosts { connector: name });
        }
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for h in &raw.hosts {
            let p = HostPattern::parse(h).map_err(|reason| ConfigError::BadHost {
                connector: name.clone(),
                host: h.clone(),
                reason: reason.to_string(),
            })?;
            hosts.push(p);
        }
        let prefix = PathPrefix::parse(&raw.path_prefix)
            .ok_or_else(|| ConfigError::BadPrefix { connector: name.clone(), prefix: raw.path_prefix.clone() })?;
        let publish_prefix = match &raw.publish_prefix {
            None => None,
            Some(p) => Some(
                PathPrefix::parse(p)
                    .ok_or_else(|| ConfigError::BadPrefix { connector: name.clone(), prefix: p.clone() })?,
            ),
        };
        let credential = Credential::validate(&name, raw.credential, key)?;
        // No tokens is a valid state (a control plane that has not minted any yet): every
        // request for the connector is then refused as carrying a bad token.
        let mut tokens = Vec::with_capacity(raw.tokens.len());
        for (i, t) in raw.tokens.iter().enumerate() {
            let hash = TokenHash::from_hex(&t.sha256, t.expires_at)
                .ok_or_else(|| ConfigError::BadTokenHash { connector: name.clone(), index: i })?;
            tokens.push(hash);
        }
        let rewrite = match raw.rewrite {
            None => None,
            Some(r) => {
                for (field, v) in [("upstream", &r.upstream), ("client", &r.client)] {
                    let ok = (v.starts_with("http://") || v.starts_with("https://"))
                        && v.ends_with('/')
                        && !v.contains('"')
                        && !v.contains('\\');
                    if !ok {
                        return Err(ConfigError::BadRewrite { connector: name, field });
                    }
                }
                Some(Rewrite { upstream: r.upstream, client: r.client })
            }
        };
        Ok(Connector { name, hosts, prefix, publish_prefix, credential, tokens, rewrite })
    }

    fn prefixes(&self) -> impl Iterator<Item = &PathPrefix> {
        std::iter::once(&self.prefix).chain(self.publish_prefix.as_ref())
    }

    /// The length of the longest of this connector's prefixes that `path` (canonical) is under.
    pub fn matched_prefix_len(&self, path: &str) -> Option<usize> {
        self.prefixes().filter(|p| p.matches(path)).map(PathPrefix::len).max()
    }
}

/// Kubernetes names: lower-case alphanumerics, '-' and '.'.
fn is_dns_label_ish(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
pub(crate) mod tests;
