//! Stateless connector tokens: `npmc_s1.<claims>.<mac>`, the claims (key id, expiry, token id,
//! connector) signed with HMAC-SHA256 under a token-signing key the filter holds. The control
//! plane mints them without changing any filter configuration; removing a key from the
//! configuration revokes every token it signed.
//!
//! Every part is base64url, so a token is safe in a proxy URL's userinfo and in `.npmrc`.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every signed token starts with (it also starts with `npmc_`, for secret scanners).
pub const PREFIX: &str = "npmc_s1.";

/// A token-signing key: 32 random bytes, known by an id. `Debug` does not print the bytes.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    mac: Hmac<Sha256>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?}, <redacted>)", self.kid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a token key id is 1 to 64 letters, digits, '.', '_' or '-'")]
    BadKid,
    #[error("a token key is 32 bytes")]
    BadLength,
}

/// Key ids name files and appear in tokens: a small alphabet without the claims' separator.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl SigningKey {
    pub fn new(kid: &str, key: &[u8]) -> Result<Self, KeyError> {
        if !valid_kid(kid) {
            return Err(KeyError::BadKid);
        }
        if key.len() != 32 {
            return Err(KeyError::BadLength);
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| KeyError::BadLength)?;
        Ok(SigningKey { kid: kid.to_owned(), mac })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn tag(&self, signed_part: &str) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(signed_part.as_bytes());
        m
    }

    /// A token for `connector` (`namespace/name`) until `expires_at` (unix seconds); `jti` is a
    /// random id the control plane logs.
    pub fn mint(&self, connector: &str, expires_at: u64, jti: &str) -> String {
        let claims = URL_SAFE_NO_PAD.encode(format!("{}:{expires_at}:{jti}:{connector}", self.kid));
        let signed_part = format!("{PREFIX}{claims}");
        let mac = URL_SAFE_NO_PAD.encode(self.tag(&signed_part).finalize().into_bytes());
        format!("{signed_part}.{mac}")
    }
}

/// What a genuine token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub kid: String,
    pub connector: String,
    pub expires_at: u64,
    pub jti: String,
}

/// Checks the signature with the key the token names (constant-time comparison) and returns
/// its claims; `None` for a token that is malformed, names an unknown (or removed) key, or was
/// altered. Expiry is the caller's to check.
pub fn verify(token: &str, keys: &HashMap<String, SigningKey>) -> Option<Claims> {
    let rest = token.strip_prefix(PREFIX)?;
    let (claims_b64, mac_b64) = rest.split_once('.')?;
    let signed_part = &token[..PREFIX.len() + claims_b64.len()];
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(claims_b64).ok()?).ok()?;
    let mut parts = claims.splitn(4, ':');
    let (kid, exp, jti, connector) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let key = keys.get(kid)?;
    let mac = URL_SAFE_NO_PAD.decode(mac_b64).ok()?;
    key.tag(signed_part).verify_slice(&mac).ok()?;
    Some(Claims {
        kid: kid.to_owned(),
        connector: connector.to_owned(),
        expires_at: exp.parse().ok()?,
        jti: jti.to_owned(),
    })
}

/// Verdicts on the signed tokens a configuration has already checked: a signature costs
/// several SHA-256 blocks, a lookup one hash of the token. Bounded (cleared when full, so a
/// flood of bad tokens costs memory only up to the bound); a new configuration starts empty,
/// so a removed key's tokens are not remembered. `Debug` shows the count, never a token.
pub struct Verdicts<T: Copy> {
    seen: std::cell::RefCell<HashMap<String, Option<T>>>,
}

impl<T: Copy> Default for Verdicts<T> {
    fn default() -> Self {
        Verdicts { seen: Default::default() }
    }
}

/// How many verdicts a configuration keeps.
pub const VERDICTS: usize = 4096;

impl<T: Copy> Verdicts<T> {
    /// The verdict on `token`, computed by `check` the first time.
    pub fn get_or(&self, token: &str, check: impl FnOnce() -> Option<T>) -> Option<T> {
        if let Some(v) = self.seen.borrow().get(token) {
            return *v;
        }
        let v = check();
        let mut seen = self.seen.borrow_mut();
        if seen.len() >= VERDICTS {
            seen.clear();
        }
        seen.insert(token.to_owned(), v);
        v
    }

    pub fn len(&self) -> usize {
        self.seen.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Copy> fmt::Debug for Verdicts<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verdicts({} tokens, not shown)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, u8)]) -> HashMap<String, SigningKey> {
        list.iter()
            .map(|(kid, b)| ((*kid).to_owned(), SigningKey::new(kid, &[*b; 32]).unwrap_or_else(|e| panic!("{e}"))))
            .collect()
    }

    #[test]
    fn verdicts_are_checked_once_bounded_and_never_shown() {
        let v: Verdicts<u32> = Verdicts::default();
        let mut calls = 0;
        for _ in 0..3 {
            assert_eq!(
                v.get_or("npmc_s1.secret-token", || {
                    calls += 1;
                    Some(7)
                }),
                Some(7)
            );
        }
        assert_eq!(v.get_or("npmc_s1.bad", || None), None);
        assert_eq!(v.get_or("npmc_s1.bad", || Some(1)), None, "a refusal is remembered too");
        assert_eq!(calls, 1);
        assert!(!format!("{v:?}").contains("secret-token"));
        for i in 0..VERDICTS {
            v.get_or(&format!("t{i}"), || Some(0));
        }
        assert!(v.len() <= VERDICTS, "bounded");
    }

    #[test]
    fn a_minted_token_verifies_with_its_key_only() {
        let ks = keys(&[("k1", 1), ("k2", 2)]);
        let t = ks["k1"].mint("build/npm", 1_900_000_000, "abc");
        assert!(t.starts_with(PREFIX) && t.starts_with(crate::token::TOKEN_PREFIX));
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{t}");
        let want =
            Claims { kid: "k1".into(), connector: "build/npm".into(), expires_at: 1_900_000_000, jti: "abc".into() };
        assert_eq!(verify(&t, &ks), Some(want));
        // The key removed: revoked.
        assert_eq!(verify(&t, &keys(&[("k2", 2)])), None);
        // The same id with other bytes (a rotated secret): refused.
        assert_eq!(verify(&t, &keys(&[("k1", 9)])), None);
    }

    #[test]
    fn altered_tokens_are_refused() {
        let ks = keys(&[("k1", 1), ("k2", 2)]);
        let t = ks["k1"].mint("build/npm", 1_900_000_000, "abc");
        let (head, mac) = t.rsplit_once('.').unwrap_or_default();
        // Claims re-encoded for another connector, longer expiry, or the other key: the MAC fails.
        for claims in ["k1:1900000000:abc:build/other", "k1:2900000000:abc:build/npm", "k2:1900000000:abc:build/npm"] {
            let forged = format!("{PREFIX}{}.{mac}", URL_SAFE_NO_PAD.encode(claims));
            assert_eq!(verify(&forged, &ks), None, "{claims}");
        }
        for bad in [
            "",
            PREFIX,
            &format!("{head}."),
            &format!("{head}.{}", &mac[1..]),
            &format!("{head}.{mac}x"),
            &t[5..],
            &format!("{head}={mac}"),
        ] {
            assert_eq!(verify(bad, &ks), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert_eq!(SigningKey::new("a b", &[0; 32]).err(), Some(KeyError::BadKid));
        assert_eq!(SigningKey::new("", &[0; 32]).err(), Some(KeyError::BadKid));
        assert_eq!(SigningKey::new("k", &[0; 31]).err(), Some(KeyError::BadLength));
        let k = SigningKey::new("k", &[0x41; 32]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{k:?}"), "SigningKey(\"k\", <redacted>)");
    }
}
