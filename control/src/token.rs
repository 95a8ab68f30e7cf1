//! Client (connector) tokens: minted here, given only to the connector's client files; the
//! filter configuration holds only their SHA-256 hashes.

use base64::Engine as _;
use npm_connector_filter::seal::Key;
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
pub fn new_key() -> Result<Key, TokenError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| TokenError(e.to_string()))?;
    Ok(Key::from_bytes(k))
}

/// Token-signing keys (`--token-keys DIR`): one file per key, named by its key id and holding
/// 32 bytes in base64 as `npm-connector keygen` writes them (a Kubernetes Secret volume
/// works). Every key is given to the filter; the one whose id sorts last signs, so a new key
/// (e.g. `2026-12-01`) takes over while tokens of the older ones stay valid until removed.
#[derive(Debug, Clone, Default)]
pub struct TokenKeys {
    /// Sorted by key id.
    pub keys: Vec<(String, Key)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenKeysError {
    #[error("token keys {0}: cannot read the directory: {1}")]
    Read(String, std::io::Error),
    #[error("token key {0}: the file name is its key id: 1 to 64 letters, digits, '.', '_' or '-'")]
    BadKid(String),
    #[error("token key {0}: {1}")]
    BadKey(String, npm_connector_filter::seal::SealError),
}

impl TokenKeys {
    pub fn load(dir: &std::path::Path) -> Result<Self, TokenKeysError> {
        let err = |e| TokenKeysError::Read(dir.display().to_string(), e);
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let kid = entry.file_name().to_string_lossy().into_owned();
            // A Secret volume's ..data and ..<timestamp> entries.
            if kid.starts_with('.') || !entry.path().is_file() {
                continue;
            }
            if !npm_connector_filter::token::signed::valid_kid(&kid) {
                return Err(TokenKeysError::BadKid(entry.path().display().to_string()));
            }
            let text = std::fs::read_to_string(entry.path()).map_err(err)?;
            let key =
                Key::from_base64(&text).map_err(|e| TokenKeysError::BadKey(entry.path().display().to_string(), e))?;
            keys.push((kid, key));
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(TokenKeys { keys })
    }

    /// A signed token for `connector` until `expires_at`, under the newest key; `None` without
    /// keys. Its id is random, for the logs.
    pub fn mint(&self, connector: &str, expires_at: u64) -> Result<Option<SecretString>, TokenError> {
        let Some((kid, key)) = self.keys.last() else { return Ok(None) };
        let signing = key.signing_key(kid).map_err(|e| TokenError(e.to_string()))?;
        let mut jti = [0u8; 12];
        getrandom::fill(&mut jti).map_err(|e| TokenError(e.to_string()))?;
        let jti = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti);
        Ok(Some(SecretString::from(signing.mint(connector, expires_at, &jti))))
    }
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

    #[test]
    fn token_keys_load_from_a_secret_volume_and_the_last_id_signs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (k1, k2) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
        std::fs::write(dir.path().join("2026-01-01"), k1.to_base64()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("2026-02-01"), format!("{}\n", k2.to_base64()))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("..2026_data")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("..data"), "x").unwrap_or_else(|e| panic!("{e}"));
        let keys = TokenKeys::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["2026-01-01", "2026-02-01"]);
        let t = keys.mint("build/npm", 99).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no token"));
        let verifier: std::collections::HashMap<_, _> =
            [("2026-02-01".to_owned(), k2.signing_key("2026-02-01").unwrap_or_else(|e| panic!("{e}")))].into();
        let claims = npm_connector_filter::token::signed::verify(t.expose_secret(), &verifier);
        assert_eq!(claims.map(|c| (c.connector, c.expires_at)), Some(("build/npm".to_owned(), 99)));
        assert!(TokenKeys::default().mint("build/npm", 99).unwrap_or_else(|e| panic!("{e}")).is_none());
        // A bad key names the file, not the content.
        std::fs::write(dir.path().join("bad"), "c2hvcnQ=").unwrap_or_else(|e| panic!("{e}"));
        let err = TokenKeys::load(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("/bad: the key must be 32 bytes") && !err.contains("c2hvcnQ"), "{err}");
        std::fs::remove_file(dir.path().join("bad")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("a b"), k1.to_base64()).unwrap_or_else(|e| panic!("{e}"));
        let err = TokenKeys::load(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("the file name is its key id"), "{err}");
    }
}
