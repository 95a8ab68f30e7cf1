//! Table tests for host patterns, prefixes and path canonicalisation.

use super::*;

fn m(pattern: &str, authority: &str) -> bool {
    let p = HostPattern::parse(pattern).unwrap_or_else(|e| panic!("pattern {pattern}: {e}"));
    match Authority::parse(authority) {
        Some(a) => p.matches(&a),
        None => false,
    }
}

#[test]
fn host_table() {
    let cases: &[(&str, &str, bool)] = &[
        // exact
        ("registry.example.com", "registry.example.com", true),
        ("registry.example.com", "registry.example.com:443", true),
        ("registry.example.com", "registry.example.com:8080", true),
        ("registry.example.com", "other.example.com", false),
        ("registry.example.com", "registry.example.com.evil.io", false),
        ("registry.example.com", "xregistry.example.com", false),
        // case and trailing dots
        ("Registry.Example.COM", "registry.example.com", true),
        ("registry.example.com", "REGISTRY.EXAMPLE.COM", true),
        ("registry.example.com.", "registry.example.com", true),
        ("registry.example.com", "registry.example.com.", true),
        ("registry.example.com", "registry.example.com.:8443", true),
        // ports
        ("registry.example.com:8443", "registry.example.com:8443", true),
        ("registry.example.com:8443", "registry.example.com", false),
        ("registry.example.com:8443", "registry.example.com:443", false),
        // wildcards
        ("*.example.com", "npm.example.com", true),
        ("*.example.com", "a.b.example.com", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", "evilexample.com", false),
        ("*.example.com", "example.com.evil.io", false),
        ("*.example.com", ".example.com", false),
        ("*.example.com:443", "npm.example.com:443", true),
        ("*.example.com:443", "npm.example.com:80", false),
        ("*.EXAMPLE.com", "Npm.Example.Com", true),
        // punycode: internationalised names match in the ASCII form clients send
        ("xn--bcher-kva.example", "xn--bcher-kva.example", true),
        ("xn--bcher-kva.example", "XN--BCHER-KVA.example.", true),
        ("*.xn--bcher-kva.example", "npm.xn--bcher-kva.example", true),
        ("xn--bcher-kva.example", "bucher.example", false),
        ("xn--bcher-kva.example", "bücher.example", false),
        // IP literals
        ("127.0.0.1", "127.0.0.1:4873", true),
        ("127.0.0.1:4873", "127.0.0.1:4874", false),
        ("[::1]:8080", "[::1]:8080", true),
        ("[::1]", "[::1]:8080", true),
        ("[::1]", "[::2]", false),
        // any
        ("*", "anything.example:1234", true),
        // malformed request authorities never match
        ("registry.example.com", "user@registry.example.com", false),
        ("registry.example.com", "registry.example.com:notaport", false),
        ("registry.example.com", "", false),
    ];
    for (pattern, authority, want) in cases {
        assert_eq!(m(pattern, authority), *want, "pattern {pattern:?} vs authority {authority:?}");
    }
    assert!(cases.len() >= 25);
}

#[test]
fn bad_patterns_are_rejected() {
    for p in [
        "",
        "ex*mple.com",
        "*.*.example.com",
        "a.*.example.com",
        "host:99999",
        "host:x",
        "exa mple.com",
        "[::1",
        "a..b",
    ] {
        assert!(HostPattern::parse(p).is_err(), "{p:?} should be rejected");
    }
}

#[test]
fn prefix_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("/", "/anything", true),
        ("/repository/npm", "/repository/npm/lodash", true),
        ("/repository/npm/", "/repository/npm/lodash", true),
        ("/repository/npm/", "/repository/npm", true),
        ("/repository/npm/", "/repository/npm-evil/lodash", false),
        ("/repository/npm/", "/repository/", false),
        ("/repository/npm/", "/Repository/npm/x", false),
        ("/api/v4/packages/npm/", "/api/v4/packages/npm/@scope%2Fpkg", true),
    ];
    for (prefix, path, want) in cases {
        let p = PathPrefix::parse(prefix).unwrap_or_else(|| panic!("prefix {prefix}"));
        let c = canonical_path(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(p.matches(&c), *want, "prefix {prefix:?} vs path {path:?}");
    }
}

#[test]
fn canonical_path_decodes_all_but_slash() {
    assert_eq!(canonical_path("/%72epository/npm/x").as_deref(), Ok("/repository/npm/x"));
    assert_eq!(canonical_path("/@scope%2fname").as_deref(), Ok("/@scope%2Fname"));
    assert_eq!(canonical_path("/@scope%2Fname?write=true").as_deref(), Ok("/@scope%2Fname"));
    assert_eq!(canonical_path("/a%zz").as_deref(), Ok("/a%zz"));
    assert_eq!(canonical_path("/trailing%").as_deref(), Ok("/trailing%"));
    assert_eq!(canonical_path("/x/.../y").as_deref(), Ok("/x/.../y"));
    assert_eq!(canonical_path("/pkg/-/pkg-1.0.0.tgz").as_deref(), Ok("/pkg/-/pkg-1.0.0.tgz"));
}

#[test]
fn dot_segments_are_refused_however_encoded() {
    for p in [
        "/repository/npm/../admin",
        "/repository/npm/./x",
        "/repository/npm/%2e%2e/admin",
        "/repository/npm/%2E%2e/admin",
        "/repository/npm/.%2e/admin",
        "/repository/npm%2f..%2fadmin",
        "/repository/npm/..",
        "/repository/npm\\..\\admin",
        "/repository/npm/%5c..%5cadmin",
        "/..",
    ] {
        assert_eq!(canonical_path(p), Err(PathError::DotSegment), "{p}");
    }
}

#[test]
fn prefixes_are_canonicalised_and_checked() {
    assert_eq!(PathPrefix::parse("/a/b").map(|p| p.as_str().to_owned()), Some("/a/b/".to_owned()));
    assert!(PathPrefix::parse("a/b").is_none());
    assert!(PathPrefix::parse("/a/../b").is_none());
    assert!(PathPrefix::parse("/a?x").is_none());
}
