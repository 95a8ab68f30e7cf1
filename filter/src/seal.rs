//! Sealed credentials: XChaCha20-Poly1305 with a 256-bit key that only the Envoy process holds
//! (in its environment), so neither the rendered configuration nor Envoy's `/config_dump`
//! shows the registry credential. The connector's name is the associated data: a sealed value
//! copied to another connector does not open.
//!
//! The nonce is synthetic (HMAC-SHA256 of the connector and plaintext under the key), so the
//! same credential seals to the same value: a control plane that re-renders an unchanged
//! credential produces an unchanged resource, and pushes nothing.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable Envoy passes to the filter (`host_env_keys`).
pub const KEY_ENV: &str = "NPM_CONNECTOR_KEY";
const NONCE_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the key must be 32 bytes in standard base64 (npm-connector keygen makes one)")]
    BadKey,
    #[error("the sealed value is not base64 or is too short")]
    Malformed,
    #[error("wrong key, or the sealed value was altered")]
    Open,
}

/// A sealing key. Its `Debug` does not print it.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key(bytes)
    }

    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| SealError::BadKey)?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Key(bytes))
    }

    /// The key's bytes, to seal or sign with elsewhere.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as a token-signing key named `kid` (the same 32-byte format).
    pub fn signing_key(&self, kid: &str) -> Result<crate::token::signed::SigningKey, crate::token::signed::KeyError> {
        crate::token::signed::SigningKey::new(kid, &self.0)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// The synthetic nonce: distinct plaintexts (or connectors) get distinct nonces.
    fn nonce(&self, aad: &str, plaintext: &[u8]) -> Result<[u8; NONCE_LEN], SealError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).map_err(|_| SealError::BadKey)?;
        mac.update(b"npm-connector seal nonce v1\0");
        mac.update(aad.as_bytes());
        mac.update(b"\0");
        mac.update(plaintext);
        let tag = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag[..NONCE_LEN]);
        Ok(nonce)
    }

    /// Seals `plaintext` for `aad`; returns base64 of nonce ‖ ciphertext.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let nonce = self.nonce(aad, plaintext)?;
        let ct = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .map_err(|_| SealError::Open)?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_failures() {
        let k = Key::from_bytes([7; 32]);
        let s = k.seal("ns/a", b"secret").unwrap();
        assert!(!s.contains("secret"));
        assert_eq!(k.seal("ns/a", b"secret").unwrap(), s, "deterministic");
        assert_ne!(k.seal("ns/b", b"secret").unwrap(), s);
        assert_ne!(k.seal("ns/a", b"secret2").unwrap()[..32], s[..32], "new plaintext, new nonce");
        assert_eq!(k.open("ns/a", &s).unwrap(), b"secret");
        assert_eq!(k.open("ns/b", &s), Err(SealError::Open), "bound to the connector");
        assert_eq!(Key::from_bytes([8; 32]).open("ns/a", &s), Err(SealError::Open), "wrong key");
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&s).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(k.open("ns/a", &tampered), Err(SealError::Open), "tampered");
        assert_eq!(k.open("ns/a", "!!"), Err(SealError::Malformed));
        assert_eq!(k.open("ns/a", "AAAA"), Err(SealError::Malformed));
    }

    #[test]
    fn keys_parse_strictly_and_do_not_debug_print() {
        let k = Key::from_bytes([9; 32]);
        assert_eq!(Key::from_base64(&k.to_base64()).map(|k| k.0), Ok([9; 32]));
        assert_eq!(Key::from_base64("c2hvcnQ=").map(|_| ()), Err(SealError::BadKey));
        assert_eq!(Key::from_base64("not base64!").map(|_| ()), Err(SealError::BadKey));
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
    }
}
