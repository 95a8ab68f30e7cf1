//! Where a token is read (Authorization / Proxy-Authorization values), connector-token
//! detection, and stateless token verification: no panic, and only a token minted under a
//! configured key verifies, with the claims it was minted with.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use npm_connector_filter::token::signed::{self, SigningKey};
use npm_connector_filter::token::{self, Header, Presented};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = token::carries_connector_token(s);
    for h in [Header::One(s), Header::Absent] {
        if let Presented::Token(t) = token::presented(h) {
            assert!(!t.is_empty(), "a presented token is never empty");
        }
    }
    let Ok(key) = SigningKey::new("k1", &[9; 32]) else { return };
    let keys: HashMap<String, SigningKey> = [("k1".to_owned(), key)].into();
    if let Some(claims) = signed::verify(s, &keys) {
        // Only a token this key minted: re-minting its claims gives it back.
        let again = keys["k1"].mint(&claims.connector, claims.expires_at, &claims.jti);
        assert_eq!(again, s, "a verified token is exactly what the key mints");
    }
    // Round trip: whatever connector name and id, what is minted verifies to the same claims.
    let mid = (0..=s.len() / 2).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    let (connector, jti) = s.split_at(mid);
    if signed::valid_kid(jti) && !connector.is_empty() {
        let t = keys["k1"].mint(connector, 4_000_000_000, jti);
        let c = signed::verify(&t, &keys);
        assert!(c.as_ref().is_some_and(|c| c.connector == connector && c.jti == jti), "round trip: {t}");
    }
});
