//! Filter configuration: one schema, shared with the control plane (which builds the raw types
//! as structs), parsed strictly and validated once into the compiled form every request shares.
//!
//! The configuration never says which host or path belongs to a connector: Envoy's route
//! configuration does. Each connector names the route (`route.name`) that is its own and the
//! cluster that route must send to; the filter acts on the route the router chose.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use crate::credential::{Credential, RawCredential};
use crate::seal::Key;
use crate::token::signed::SigningKey;
use crate::token::TokenHash;

/// Which listener the filter runs on; each takes the client token from its own place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Clients use a registry URL on the proxy; the token is `Authorization` (`_authToken`).
    Gateway,
    /// https-proxy mode's outer listener: only `CONNECT`, decided on its route and the token in
    /// `Proxy-Authorization`. Never injects; its configuration holds no credential.
    Connect,
    /// Requests decrypted inside a CONNECT tunnel: the token is the CONNECT's
    /// `Proxy-Authorization`, which the outer listener left in filter state.
    Tunnel,
    /// A sidecar in the pod's network namespace: iptables redirected the client's TLS
    /// connection to the registry's real host, Envoy terminated it with a leaf of the connector
    /// CA; the token is `Authorization` (`_authToken`). URLs are the registry's own: nothing is
    /// rewritten.
    Sidecar,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub role: Role,
    /// The filter-state key holding the tunnel's token (role `tunnel` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_token: Option<String>,
    pub connectors: Vec<RawConnector>,
    /// Keys that sign stateless connector tokens ([`crate::token::signed`]): tokens minted
    /// under any of them are accepted until they expire; a key removed revokes its tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_keys: Vec<RawTokenKey>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenKey {
    pub kid: String,
    pub key: RawKeyBytes,
}

/// 32 key bytes in standard base64, or sealed like a credential (bound to `token-key/<kid>`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum RawKeyBytes {
    Plain(#[serde(serialize_with = "crate::credential::expose")] secrecy::SecretString),
    Sealed(String),
}

/// The associated data a token key is sealed under.
pub fn token_key_aad(kid: &str) -> String {
    format!("token-key/{kid}")
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    /// `namespace/name`.
    pub name: String,
    /// The name of the route(s) that are this connector's. In role `connect` the connectors of
    /// one registry `host:port` share the CONNECT route; otherwise a route has one connector.
    pub route: String,
    /// The cluster this connector's route must send to: its registry's, with verified TLS.
    pub cluster: String,
    /// Absent in role `connect`, required otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<RawCredential>,
    pub tokens: Vec<RawToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RawRewrite>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub upstream: String,
    pub client: String,
}

/// Why a configuration was rejected. Messages name the connector and field, never a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration is not valid JSON for this filter: {0}")]
    Json(String),
    #[error("connector #{index}: name {name:?} must be namespace/name")]
    BadName { index: usize, name: String },
    #[error("connector {0}: the name is used twice")]
    DuplicateName(String),
    #[error("connector {connector}: {field} must not be empty")]
    Empty { connector: String, field: &'static str },
    #[error("connectors {first} and {second} both own route {route:?}; a route selects one connector")]
    SharedRoute { first: String, second: String, route: String },
    #[error("connector {connector}: credential: {reason}")]
    BadCredential { connector: String, reason: &'static str },
    #[error("connector {0}: role connect never injects, so its configuration must not hold a credential")]
    CredentialOnConnect(String),
    #[error("connector {0}: credential is missing")]
    NoCredential(String),
    #[error("connector {connector}: the credential is sealed but Envoy has no key: set NPM_CONNECTOR_KEY in Envoy's environment (the bootstrap passes it with vm_config.environment_variables.host_env_keys)")]
    NoKey { connector: String },
    #[error(
        "connector {connector}: cannot unseal the credential: wrong NPM_CONNECTOR_KEY, or the sealed value was altered"
    )]
    Unseal { connector: String },
    #[error("connector {connector}: tokens[{index}].sha256 must be 64 hex digits")]
    BadTokenHash { connector: String, index: usize },
    #[error("connectors {first} and {second} accept the same token; tokens are minted per connector")]
    SharedToken { first: String, second: String },
    #[error("connector {connector}: rewrite.{field} must be an absolute http(s) URL ending in '/'")]
    BadRewrite { connector: String, field: &'static str },
    #[error("token_keys[{index}]: {reason}")]
    BadTokenKey { index: usize, reason: String },
    #[error("token key {0:?} is listed twice")]
    DuplicateTokenKey(String),
    #[error("token key {kid:?} is sealed but Envoy has no key: set NPM_CONNECTOR_KEY in Envoy's environment")]
    NoKeyForTokenKey { kid: String },
    #[error("token key {kid:?}: cannot unseal it: wrong NPM_CONNECTOR_KEY, or the sealed value was altered")]
    UnsealTokenKey { kid: String },
    #[error("role tunnel needs tunnel_token, a filter-state key of letters, digits, '.', '_' and '-'; other roles take none")]
    BadTunnelKey,
    #[error("connector {0}: role sidecar keeps the registry's own URLs, so it takes no rewrite")]
    RewriteOnSidecar(String),
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
    pub route: String,
    pub cluster: String,
    /// `None` only in role `connect`.
    pub credential: Option<Credential>,
    pub rewrite: Option<Rewrite>,
}

/// An accepted token: whose it is and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub connector: usize,
    pub expires_at: Option<u64>,
}

#[derive(Debug)]
pub struct Config {
    pub role: Role,
    pub tunnel_token: Option<String>,
    pub connectors: Vec<Connector>,
    /// Route name → the connectors that own it (one, except CONNECT routes).
    routes: HashMap<String, Vec<usize>>,
    /// Token hash → grant: one lookup, whatever the number of connectors.
    tokens: HashMap<TokenHash, Grant>,
    /// Connector name → index, for signed tokens (which name their connector).
    names: HashMap<String, usize>,
    token_keys: HashMap<String, SigningKey>,
    /// Signed tokens already checked under these keys.
    verdicts: crate::token::signed::Verdicts<Grant>,
}

impl Config {
    /// Parses and validates the plugin configuration bytes; `key` opens sealed credentials,
    /// once, here, never per request.
    pub fn from_json(bytes: &[u8], key: Option<&Key>) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(describe(&e)))?;
        Self::try_from((raw, key))
    }

    /// The connectors that own `route`, if any.
    pub fn route(&self, route: &str) -> Option<&[usize]> {
        self.routes.get(route).map(Vec::as_slice)
    }

    /// Whose token this hash is.
    pub fn grant(&self, hash: &TokenHash) -> Option<Grant> {
        self.tokens.get(hash).copied()
    }

    /// Whose signed token this is, if its signature holds under one of the configured keys.
    /// The signature is checked once per token and configuration; expiry is still checked by
    /// the caller on every request.
    pub fn signed_grant(&self, token: &str) -> Option<Grant> {
        self.verdicts.get_or(token, || {
            let claims = crate::token::signed::verify(token, &self.token_keys)?;
            let connector = *self.names.get(&claims.connector)?;
            Some(Grant { connector, expires_at: Some(claims.expires_at) })
        })
    }
}

fn token_keys(raw: Vec<RawTokenKey>, key: Option<&Key>) -> Result<HashMap<String, SigningKey>, ConfigError> {
    use base64::Engine as _;
    use secrecy::ExposeSecret;
    let mut out = HashMap::with_capacity(raw.len());
    for (index, k) in raw.into_iter().enumerate() {
        let bytes =
            match &k.key {
                RawKeyBytes::Plain(text) => base64::engine::general_purpose::STANDARD
                    .decode(text.expose_secret().trim())
                    .map_err(|_| ConfigError::BadTokenKey { index, reason: "key.plain is not base64".into() })?,
                RawKeyBytes::Sealed(sealed) => {
                    let key = key.ok_or_else(|| ConfigError::NoKeyForTokenKey { kid: k.kid.clone() })?;
                    key.open(&token_key_aad(&k.kid), sealed)
                        .map_err(|_| ConfigError::UnsealTokenKey { kid: k.kid.clone() })?
                }
            };
        let signing =
            SigningKey::new(&k.kid, &bytes).map_err(|e| ConfigError::BadTokenKey { index, reason: e.to_string() })?;
        if out.insert(k.kid.clone(), signing).is_some() {
            return Err(ConfigError::DuplicateTokenKey(k.kid));
        }
    }
    Ok(out)
}

/// serde's messages quote offending *values* ("invalid type: integer `1234`"), which could be a
/// secret: keep the messages that only name fields or variants, else just say where.
fn describe(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // "missing field" and "duplicate field" name this schema's fields; "unknown field" and
    // "unknown variant" name what the input wrote, shown only when it looks like a field name.
    let named = ["missing field", "duplicate field"];
    let echoed = ["unknown field", "unknown variant"];
    if named.iter().any(|p| msg.starts_with(p)) {
        msg
    } else if let Some(p) = echoed.iter().find(|p| msg.starts_with(*p)) {
        // "unknown field `<name>`, expected …": the name may itself hold backticks.
        let body = &msg[p.len()..];
        let (name, rest) = match body.rfind("`, expected") {
            Some(end) => (body.get(2..end).unwrap_or_default(), &body[end + 1..]),
            None => (body.get(2..body.len().saturating_sub(1)).unwrap_or_default(), ""),
        };
        if !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            msg
        } else {
            format!("{p} (name not shown){rest}")
        }
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
        let key_ok = match (&raw.tunnel_token, raw.role) {
            (Some(k), Role::Tunnel) => {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            }
            (None, Role::Tunnel) | (Some(_), _) => false,
            (None, _) => true,
        };
        if !key_ok {
            return Err(ConfigError::BadTunnelKey);
        }
        let n = raw.connectors.len();
        let mut connectors: Vec<Connector> = Vec::with_capacity(n);
        let mut names: HashMap<String, usize> = HashMap::with_capacity(n);
        let mut routes: HashMap<String, Vec<usize>> = HashMap::with_capacity(n);
        let mut tokens: HashMap<TokenHash, Grant> = HashMap::with_capacity(n);
        for (index, rc) in raw.connectors.into_iter().enumerate() {
            let (c, hashes) = Connector::validate(index, rc, raw.role, key)?;
            if names.insert(c.name.clone(), index).is_some() {
                return Err(ConfigError::DuplicateName(c.name));
            }
            let owners = routes.entry(c.route.clone()).or_default();
            if let (Some(&first), false) = (owners.first(), raw.role == Role::Connect) {
                return Err(ConfigError::SharedRoute {
                    first: connectors[first].name.clone(),
                    second: c.name,
                    route: c.route,
                });
            }
            owners.push(index);
            for (hash, expires_at) in hashes {
                if let Some(other) = tokens.insert(hash, Grant { connector: index, expires_at }) {
                    if other.connector != index {
                        return Err(ConfigError::SharedToken {
                            first: connectors[other.connector].name.clone(),
                            second: c.name,
                        });
                    }
                }
            }
            connectors.push(c);
        }
        let token_keys = token_keys(raw.token_keys, key)?;
        Ok(Config {
            role: raw.role,
            tunnel_token: raw.tunnel_token,
            connectors,
            routes,
            tokens,
            names,
            token_keys,
            verdicts: Default::default(),
        })
    }
}

/// A connector's accepted token hashes with their expiry.
type Hashes = Vec<(TokenHash, Option<u64>)>;

impl Connector {
    fn validate(index: usize, raw: RawConnector, role: Role, key: Option<&Key>) -> Result<(Self, Hashes), ConfigError> {
        let name = raw.name;
        let valid_name = match name.split_once('/') {
            Some((ns, n)) => is_dns_label_ish(ns) && is_dns_label_ish(n),
            None => false,
        };
        if !valid_name {
            return Err(ConfigError::BadName { index, name });
        }
        for (field, v) in [("route", &raw.route), ("cluster", &raw.cluster)] {
            if v.is_empty() {
                return Err(ConfigError::Empty { connector: name, field });
            }
        }
        let credential = match (raw.credential, role) {
            (Some(_), Role::Connect) => return Err(ConfigError::CredentialOnConnect(name)),
            (None, Role::Connect) => None,
            (None, _) => return Err(ConfigError::NoCredential(name)),
            (Some(c), _) => Some(Credential::validate(&name, c, key)?),
        };
        // No tokens is a valid state (a control plane that has not minted any yet): every
        // request for the connector is then refused as carrying a bad token.
        let mut hashes = Vec::with_capacity(raw.tokens.len());
        for (i, t) in raw.tokens.iter().enumerate() {
            let hash = TokenHash::from_hex(&t.sha256)
                .ok_or_else(|| ConfigError::BadTokenHash { connector: name.clone(), index: i })?;
            hashes.push((hash, t.expires_at));
        }
        let rewrite = match raw.rewrite {
            None => None,
            Some(_) if role == Role::Sidecar => return Err(ConfigError::RewriteOnSidecar(name)),
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
        Ok((Connector { name, route: raw.route, cluster: raw.cluster, credential, rewrite }, hashes))
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
