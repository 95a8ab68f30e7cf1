//! Client (connector) tokens: where a request carries one, and checking it in constant time
//! against the SHA-256 hashes in the configuration.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One accepted client token, stored only as its SHA-256 hash.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash {
    hash: [u8; 32],
    /// Unix seconds after which the token is refused.
    expires_at: Option<u64>,
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not secret, but there is no reason to print it either.
        write!(f, "TokenHash {{ expires_at: {:?} }}", self.expires_at)
    }
}

impl TokenHash {
    pub fn from_hex(hex_digest: &str, expires_at: Option<u64>) -> Option<Self> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut hash).ok()?;
        Some(TokenHash { hash, expires_at })
    }

    /// The hash of a token, as the control plane writes it.
    pub fn digest_hex(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }
}

/// Where the client token was found: decides whether a missing one is a 407 or a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    ProxyAuthorization,
    Authorization,
    /// The `Proxy-Authorization` of the CONNECT that opened the tunnel (https-proxy mode).
    Tunnel,
}

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Missing,
    /// A header was there but is not Basic/Bearer, or its Basic payload does not decode.
    Malformed(Source),
    Token(Source, String),
}

/// Takes the token from `Proxy-Authorization` (Basic `ns/name:token` or Bearer) or, only when
/// that is absent, from `Authorization` (Bearer from `_authToken`, or Basic from `_auth`).
pub fn presented(proxy_authorization: Option<&str>, authorization: Option<&str>) -> Presented {
    let (source, value) = match (proxy_authorization, authorization) {
        (Some(p), _) => (Source::ProxyAuthorization, p),
        (None, Some(a)) => (Source::Authorization, a),
        (None, None) => return Presented::Missing,
    };
    match parse_credentials(value) {
        Some(token) if !token.is_empty() => Presented::Token(source, token),
        _ => Presented::Malformed(source),
    }
}

/// The token of a tunnelled request: the `Proxy-Authorization` its CONNECT carried.
pub fn presented_in_tunnel(tunnel_proxy_authorization: Option<&str>) -> Presented {
    match tunnel_proxy_authorization {
        None => Presented::Missing,
        Some(v) => match parse_credentials(v) {
            Some(token) if !token.is_empty() => Presented::Token(Source::Tunnel, token),
            _ => Presented::Malformed(Source::Tunnel),
        },
    }
}

fn parse_credentials(value: &str) -> Option<String> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(raw).ok()?;
        // userinfo is `namespace/name:token`; the token is everything after the first ':'.
        let (_user, token) = text.split_once(':')?;
        return Some(token.to_owned());
    }
    None
}

/// The verdict on a presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Expired,
    Unknown,
}

/// Compares the token's hash with every accepted hash, without stopping at the first match, so
/// the time taken says nothing about which or how many bytes matched.
pub fn verify(token: &str, accepted: &[TokenHash], now_unix: &dyn Fn() -> u64) -> Verdict {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found: Option<&TokenHash> = None;
    for t in accepted {
        if bool::from(t.hash.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    match found {
        None => Verdict::Unknown,
        Some(t) => match t.expires_at {
            Some(exp) if now_unix() >= exp => Verdict::Expired,
            _ => Verdict::Valid,
        },
    }
}

#[cfg(test)]
mod tests;
