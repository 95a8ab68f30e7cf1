//! Table tests for token extraction and hashing.

use base64::Engine as _;

use super::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn tok(t: &str) -> Presented {
    Presented::Token(t.to_owned())
}

#[test]
fn extraction_table() {
    let basic_proxy = format!("Basic {}", b64("team-a/npm:s3cr3t"));
    let basic_colon = format!("Basic {}", b64("team-a/npm:a:b"));
    let basic_auth = format!("basic {}", b64("whoever:tok"));
    let no_colon = format!("Basic {}", b64("nocolon"));
    let empty_pw = format!("Basic {}", b64("user:"));
    let cases: Vec<(Header<'_>, Presented)> = vec![
        (Header::Absent, Presented::Missing),
        (Header::One(&basic_proxy), tok("s3cr3t")),
        (Header::One(&basic_colon), tok("a:b")),
        (Header::One("Bearer abc"), tok("abc")),
        (Header::One("bearer   abc  "), tok("abc")),
        (Header::One(&basic_auth), tok("tok")),
        (Header::One("Digest x"), Presented::Malformed),
        (Header::One("Basic !!notbase64"), Presented::Malformed),
        (Header::One(&no_colon), Presented::Malformed),
        (Header::One("Bearer"), Presented::Malformed),
        (Header::One("Bearer "), Presented::Malformed),
        (Header::One(&empty_pw), Presented::Malformed),
        // Two headers merged by Envoy into one value, and two headers seen as two.
        (Header::One("Bearer a,Bearer b"), Presented::Malformed),
        (Header::Many, Presented::Malformed),
    ];
    for (h, want) in cases {
        assert_eq!(presented(h), want, "{h:?}");
    }
}

#[test]
fn connector_tokens_are_recognised_in_every_spelling() {
    assert!(carries_connector_token("Bearer npmc_abc"));
    assert!(carries_connector_token(&format!("Basic {}", b64("ns/name:npmc_abc"))));
    assert!(carries_connector_token(&format!("Basic {}", b64("x:npmc_abc"))));
    assert!(!carries_connector_token("Bearer glpat-xyz"));
    assert!(!carries_connector_token(&format!("Basic {}", b64("ci:hunter2"))));
}

#[test]
fn hashes_must_be_64_hex_digits() {
    assert!(TokenHash::from_hex(&"a".repeat(64)).is_some());
    assert!(TokenHash::from_hex(&"a".repeat(63)).is_none());
    assert!(TokenHash::from_hex(&"g".repeat(64)).is_none());
    assert_eq!(TokenHash::from_hex(&TokenHash::digest_hex("t")), Some(TokenHash::of("t")));
}

#[test]
fn debug_does_not_print_the_hash() {
    let d = TokenHash::digest_hex("x");
    let t = TokenHash::of("x");
    assert!(!format!("{t:?}").contains(&d[..16]));
}
