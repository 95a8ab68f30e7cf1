//! The streaming rewriter, fed whole and in every possible split.

use super::*;

fn rule() -> Rewrite {
    Rewrite { upstream: "https://registry.test/repository/npm/".into(), client: "http://127.0.0.1:10001/ns/n/".into() }
}

fn run(chunks: &[&[u8]]) -> (String, usize) {
    let mut rw = Rewriter::new(&rule());
    let mut out = Vec::new();
    for c in chunks {
        rw.push(c, &mut out);
    }
    rw.finish(&mut out);
    (String::from_utf8(out).unwrap_or_default(), rw.rewritten())
}

const DOC: &str = r#"{"name":"a","versions":{"1.0.0":{"dist":{"tarball" : "https://registry.test/repository/npm/a/-/a-1.0.0.tgz","shasum":"x"}},"2.0.0":{"dist":{"tarball":"https://registry.test/repository/npm/a/-/a-2.0.0.tgz"}}},"readme":"see \"tarball\":\"https://registry.test/repository/npm/x\"","homepage":"https://registry.test/repository/npm/","dist":{"tarball":"https://registry.test/repository/npm/not-a-version.tgz"}}"#;

fn expected() -> String {
    DOC.replace(
        r#""tarball" : "https://registry.test/repository/npm/a/"#,
        r#""tarball" : "http://127.0.0.1:10001/ns/n/a/"#,
    )
    .replace(
        r#""tarball":"https://registry.test/repository/npm/a/-/a-2"#,
        r#""tarball":"http://127.0.0.1:10001/ns/n/a/-/a-2"#,
    )
}

#[test]
fn rewrites_only_tarball_keys() {
    let (out, n) = run(&[DOC.as_bytes()]);
    assert_eq!(out, expected());
    assert_eq!(n, 2);
    assert!(out.contains(r#"see \"tarball\":\"https://registry.test/"#), "escaped text untouched");
    assert!(out.contains(r#""homepage":"https://registry.test/repository/npm/""#), "other keys untouched");
}

#[test]
fn every_two_way_split_gives_the_same_output() {
    let b = DOC.as_bytes();
    for i in 0..=b.len() {
        let (out, n) = run(&[&b[..i], &b[i..]]);
        assert_eq!((out.as_str(), n), (expected().as_str(), 2), "split at {i}");
    }
}

#[test]
fn byte_at_a_time() {
    let chunks: Vec<&[u8]> = DOC.as_bytes().chunks(1).collect();
    assert_eq!(run(&chunks).0, expected());
}

#[test]
fn other_hosts_and_near_misses_are_left_alone() {
    for doc in [
        r#"{"dist":{"tarball":"https://registry.test/repository/npm2/a.tgz"}}"#,
        r#"{"dist":{"tarball":"https://evil.test/repository/npm/a.tgz"}}"#,
        r#"{"dist":{"tarball":"http://registry.test/repository/npm/a.tgz"}}"#,
        r#"{"dist":{"xtarball":"https://registry.test/repository/npm/a.tgz"}}"#,
        r#"{"dist":{"tarball":["https://registry.test/repository/npm/a.tgz"]}}"#,
        r#"{"dist":{"tarball""#,
    ] {
        assert_eq!(run(&[doc.as_bytes()]), (doc.to_owned(), 0), "{doc}");
    }
}

#[test]
fn eligibility_table() {
    use Eligibility::*;
    let cases = [
        (200, Some("application/json"), None, Rewrite),
        (200, Some("application/json; charset=utf-8"), None, Rewrite),
        (200, Some("Application/JSON"), Some("identity"), Rewrite),
        (200, Some("application/vnd.npm.install-v1+json"), None, Rewrite),
        (200, Some("application/json"), Some("gzip"), Encoded),
        (200, Some("application/octet-stream"), None, NotPackument),
        (200, None, None, NotPackument),
        (404, Some("application/json"), None, NotPackument),
        (304, Some("application/json"), None, NotPackument),
    ];
    for (status, ct, ce, want) in cases {
        assert_eq!(eligibility(status, ct, ce), want, "{status} {ct:?} {ce:?}");
    }
}

#[test]
fn write_true_packuments_are_never_rewritten() {
    assert!(request_allows_rewrite("/app-b"));
    assert!(request_allows_rewrite("/app-b?foo=bar"));
    assert!(!request_allows_rewrite("/app-b?write=true"));
    assert!(!request_allows_rewrite("/@s%2fp?x=1&write=true"));
    assert!(request_allows_rewrite("/write=true"));
}

#[test]
fn locations_on_the_registry_are_rebased_and_others_kept() {
    let rule = Rewrite {
        upstream: "https://registry.test/repository/npm/".to_owned(),
        client: "http://proxy.local:8080/team-a/npm/".to_owned(),
    };
    let cases: &[(&str, Option<&str>)] = &[
        ("/repository/npm/pkg/-/pkg-1.0.0.tgz", Some("http://proxy.local:8080/team-a/npm/pkg/-/pkg-1.0.0.tgz")),
        ("https://registry.test/repository/npm/pkg", Some("http://proxy.local:8080/team-a/npm/pkg")),
        ("HTTPS://REGISTRY.TEST/repository/npm/x", Some("http://proxy.local:8080/team-a/npm/x")),
        ("https://cdn.test/signed/pkg.tgz?sig=abc", None),
        ("https://registry.test/other/x", None),
        ("/other/path", None),
        ("//cdn.test/x", None),
        ("relative/x", None),
    ];
    for (loc, want) in cases {
        assert_eq!(rebase_location(loc, &rule).as_deref(), *want, "{loc}");
    }
}
