//! Client (connector) tokens: where a request carries one, and checking it in constant time
//! against the SHA-256 hashes in the configuration.

use base64::Engine as _;
use sha2::{Digest, Sha256};

pub mod signed;

/// An accepted client token, stored only as its SHA-256 hash. Tokens are looked up by hash:
/// a lookup's timing can only tell something about the hash of a token the caller already has.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not secret, but there is no reason to print it either.
        f.write_str("TokenHash")
    }
}

impl TokenHash {
    pub fn from_hex(hex_digest: &str) -> Option<Self> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut hash).ok()?;
        Some(TokenHash(hash))
    }

    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// The hash of a token, as the control plane writes it.
    pub fn digest_hex(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }
}

/// The prefix of every connector token (secret scanners know it).
pub const TOKEN_PREFIX: &str = "npmc_";

/// Whether an `Authorization`-style header value holds a connector token (Bearer, or Basic
/// whose password is one). Such a header never leaves the proxy.
pub fn carries_connector_token(value: &str) -> bool {
    value.contains(TOKEN_PREFIX) || parse_credentials(value).is_some_and(|t| t.contains(TOKEN_PREFIX))
}

/// A request header as the decision sees it: duplicates are never guessed at.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Header<'a> {
    #[default]
    Absent,
    One(&'a str),
    /// Sent more than once (or merged by Envoy into one comma-joined value).
    Many,
}

impl<'a> Header<'a> {
    pub fn is_present(&self) -> bool {
        !matches!(self, Header::Absent)
    }
}

/// Where the client token is expected; decides the refusal's wording and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Authorization,
    /// The `Proxy-Authorization` of the CONNECT that opened the tunnel (https-proxy mode).
    Tunnel,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Authorization => "Authorization",
            Source::Tunnel => "the tunnel's Proxy-Authorization",
        }
    }
}

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Missing,
    /// The header is there but is not Basic/Bearer, its Basic payload does not decode, or it
    /// was sent more than once.
    Malformed,
    Token(String),
}

/// The token in a header: Bearer, or Basic whose password is the token (`ns/name:token` from a
/// proxy URL's userinfo, or npm's `_auth`).
pub fn presented(header: Header<'_>) -> Presented {
    match header {
        Header::Absent => Presented::Missing,
        Header::Many => Presented::Malformed,
        Header::One(v) => match parse_credentials(v) {
            Some(token) if !token.is_empty() && !token.contains(',') => Presented::Token(token),
            _ => Presented::Malformed,
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

#[cfg(test)]
mod tests;
