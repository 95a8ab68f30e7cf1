//! Client (connector) tokens: minted here, given only to the connector's client files; the
//! filter configuration holds only their SHA-256 hashes.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// Bytes of randomness in a token: 256 bits.
const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("cannot read randomness from the operating system: {0}")]
pub struct TokenError(String);

/// A fresh client token, `npmc_` + 43 base64url characters: safe in a URL's userinfo, and the
/// prefix lets secret scanners recognise a leaked one.
pub fn mint() -> Result<SecretString, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError(e.to_string()))?;
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(SecretString::from(format!("npmc_{body}")))
}

/// Where render gets client tokens. Tests substitute fixed ones for golden files.
pub trait Entropy {
    fn token(&mut self) -> Result<SecretString, TokenError>;
}

/// The operating system's randomness.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn token(&mut self) -> Result<SecretString, TokenError> {
        mint()
    }
}

/// A fresh sealing key (`npm-connector keygen`).
pub fn new_key() -> Result<npm_connector_filter::seal::Key, TokenError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| TokenError(e.to_string()))?;
    Ok(npm_connector_filter::seal::Key::from_bytes(k))
}

/// The hash the filter stores.
pub fn hash(token: &SecretString) -> String {
    npm_connector_filter::token::TokenHash::digest_hex(token.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_long_and_url_safe() {
        let a = mint().unwrap_or_else(|e| panic!("{e}"));
        let b = mint().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 5 + 43);
        assert!(a.expose_secret().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(hash(&a).len(), 64);
    }
}
