//! Table tests for token extraction and verification.

use base64::Engine as _;

use super::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn tok(source: Source, t: &str) -> Presented {
    Presented::Token(source, t.to_owned())
}

#[test]
fn extraction_table() {
    let basic_proxy = format!("Basic {}", b64("team-a/npm:s3cr3t"));
    let basic_colon = format!("Basic {}", b64("team-a/npm:a:b"));
    let basic_auth = format!("basic {}", b64("whoever:tok"));
    let no_colon = format!("Basic {}", b64("nocolon"));
    let empty_pw = format!("Basic {}", b64("user:"));
    let cases: Vec<(Option<&str>, Option<&str>, Presented)> = vec![
        (None, None, Presented::Missing),
        (Some(basic_proxy.as_str()), None, tok(Source::ProxyAuthorization, "s3cr3t")),
        (Some(basic_colon.as_str()), None, tok(Source::ProxyAuthorization, "a:b")),
        (Some("Bearer abc"), None, tok(Source::ProxyAuthorization, "abc")),
        (Some("bearer   abc  "), None, tok(Source::ProxyAuthorization, "abc")),
        // Proxy-Authorization wins over Authorization
        (Some("Bearer p"), Some("Bearer a"), tok(Source::ProxyAuthorization, "p")),
        (None, Some("Bearer a"), tok(Source::Authorization, "a")),
        (None, Some(basic_auth.as_str()), tok(Source::Authorization, "tok")),
        (None, Some("Digest x"), Presented::Malformed(Source::Authorization)),
        (Some("Basic !!notbase64"), None, Presented::Malformed(Source::ProxyAuthorization)),
        (Some(no_colon.as_str()), None, Presented::Malformed(Source::ProxyAuthorization)),
        (Some("Bearer"), None, Presented::Malformed(Source::ProxyAuthorization)),
        (Some("Bearer "), None, Presented::Malformed(Source::ProxyAuthorization)),
        (None, Some(empty_pw.as_str()), Presented::Malformed(Source::Authorization)),
    ];
    for (pa, a, want) in cases {
        assert_eq!(presented(pa, a), want, "proxy-authorization {pa:?} authorization {a:?}");
    }
}

#[test]
fn verify_table() {
    let h = |t: &str, exp| TokenHash::from_hex(&TokenHash::digest_hex(t), exp).unwrap_or_else(|| panic!("hash"));
    let accepted = vec![h("old", Some(100)), h("current", Some(1000)), h("forever", None)];
    assert_eq!(verify("current", &accepted, &|| 999), Verdict::Valid);
    assert_eq!(verify("current", &accepted, &|| 1000), Verdict::Expired);
    assert_eq!(verify("old", &accepted, &|| 500), Verdict::Expired);
    assert_eq!(verify("forever", &accepted, &|| u64::MAX), Verdict::Valid);
    assert_eq!(verify("nope", &accepted, &|| 0), Verdict::Unknown);
    assert_eq!(verify("Current", &accepted, &|| 0), Verdict::Unknown);
    assert_eq!(verify("", &accepted, &|| 0), Verdict::Unknown);
    assert_eq!(verify("current", &[], &|| 0), Verdict::Unknown);
}

#[test]
fn hashes_must_be_64_hex_digits() {
    assert!(TokenHash::from_hex(&"a".repeat(64), None).is_some());
    assert!(TokenHash::from_hex(&"a".repeat(63), None).is_none());
    assert!(TokenHash::from_hex(&"g".repeat(64), None).is_none());
}

#[test]
fn debug_does_not_print_the_hash() {
    let d = TokenHash::digest_hex("x");
    let t = TokenHash::from_hex(&d, Some(5)).unwrap_or_else(|| panic!("hash"));
    assert!(!format!("{t:?}").contains(&d[..16]));
}

#[test]
fn the_clock_is_read_only_for_tokens_that_expire() {
    let forever = TokenHash::from_hex(&TokenHash::digest_hex("forever"), None).unwrap();
    assert_eq!(verify("forever", std::slice::from_ref(&forever), &|| panic!("clock read")), Verdict::Valid);
    assert_eq!(verify("other", &[forever], &|| panic!("clock read")), Verdict::Unknown);
}
