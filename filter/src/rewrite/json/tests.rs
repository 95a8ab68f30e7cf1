//! The structural rewriter against every JSON spelling, every chunk split, and serde_json.

use serde_json::Value;

use super::*;

fn rule() -> Rewrite {
    Rewrite { upstream: "https://registry.test/repository/npm/".into(), client: "http://gw:8080/ns/n/".into() }
}

fn run(chunks: &[&[u8]]) -> (String, usize) {
    let mut rw = JsonRewriter::new(&rule());
    let mut out = Vec::new();
    for c in chunks {
        rw.push(c, &mut out);
    }
    rw.finish(&mut out);
    (String::from_utf8(out).unwrap_or_default(), rw.rewritten())
}

/// What the rewrite must do, done on the parsed document.
fn expected(doc: &str) -> Value {
    let mut v: Value = serde_json::from_str(doc).unwrap();
    if let Some(versions) = v.get_mut("versions").and_then(Value::as_object_mut) {
        for ver in versions.values_mut() {
            if let Some(Value::String(t)) = ver.get_mut("dist").and_then(|d| d.get_mut("tarball")) {
                let (origin, path) = split_origin(t);
                if origin.eq_ignore_ascii_case("https://registry.test") {
                    if let Some(rest) = path.strip_prefix("/repository/npm/") {
                        *t = format!("http://gw:8080/ns/n/{rest}");
                    }
                }
            }
        }
    }
    v
}

const SPELLINGS: &[&str] = &[
    // PHP's json_encode default: escaped slashes.
    r#"{"versions":{"1.0.0":{"dist":{"tarball":"https:\/\/registry.test\/repository\/npm\/a\/-\/a-1.0.0.tgz"}}}}"#,
    r#"{"versions":{"1.0.0":{"dist":{"tarball":"https:\u002f\u002fregistry.test\u002Frepository/npm/a/-/a-1.0.0.tgz"}}}}"#,
    r#"{"versions":{"1.0.0":{"dist":{"t\u0061rball":"https://registry.test/repository/npm/a/-/a-1.0.0.tgz"}}}}"#,
    r#"{"v\u0065rsions":{"1.0.0":{"d\u0069st":{"tarball":"https://registry.test/repository/npm/a/-/a-1.0.0.tgz"}}}}"#,
    r#"{"versions":{"1.0.0":{"dist":{"tarball":"HTTPS://Registry.TEST/repository/npm/a/-/a-1.0.0.tgz"}}}}"#,
    r#"{ "versions" : { "1.0.0" : { "dist" : { "tarball" : "https://registry.test/repository/npm/a/-/a-%C3%A9.tgz" } } } }"#,
    r#"{"versions":{"1.0.0":{"x":[1,{"tarball":"https://registry.test/repository/npm/no.tgz"}],"dist":{"shasum":"s","tarball":"https://registry.test/repository/npm/a/-/\u00e9\ud83d\ude00.tgz","n":null,"t":true,"f":-1.5e3}}}}"#,
];

#[test]
fn every_json_spelling_of_the_url_is_rewritten() {
    for doc in SPELLINGS {
        let (out, n) = run(&[doc.as_bytes()]);
        assert_eq!(n, 1, "{doc}\n-> {out}");
        let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(got, expected(doc), "{doc}");
    }
}

#[test]
fn only_versions_dist_tarball_and_only_the_upstream_base() {
    let untouched = [
        r#"{"dist":{"tarball":"https://registry.test/repository/npm/a.tgz"}}"#,
        r#"{"versions":{"1":{"tarball":"https://registry.test/repository/npm/a.tgz"}}}"#,
        r#"{"versions":{"1":{"dist":{"tarball":"https://registry.test/repository/npm2/a.tgz"}}}}"#,
        r#"{"versions":{"1":{"dist":{"tarball":"https://evil.test/repository/npm/a.tgz"}}}}"#,
        r#"{"versions":{"1":{"dist":{"tarball":"http://registry.test/repository/npm/a.tgz"}}}}"#,
        r#"{"versions":{"1":{"dist":{"tarball":["https://registry.test/repository/npm/a.tgz"]}}}}"#,
        r#"{"versions":{"1":{"dist":{"tarballs":"https://registry.test/repository/npm/a.tgz"}}}}"#,
        r#"{"readme":"\"versions\":{\"1\":{\"dist\":{\"tarball\":\"https://registry.test/repository/npm/a\"}}}"}"#,
        r#"{"versions":{"1":{"dist":{"tarball""#,
        "not json at all \\x",
    ];
    for doc in untouched {
        assert_eq!(run(&[doc.as_bytes()]), (doc.to_owned(), 0), "{doc}");
    }
}

/// Differential: for each document split at every pair of points, the output parses and
/// equals the transform done with serde_json; bytes outside rewritten values are unchanged.
#[test]
fn every_split_equals_the_serde_json_transform() {
    for doc in SPELLINGS {
        let b = doc.as_bytes();
        let want = expected(doc);
        for i in 0..=b.len() {
            for j in (i..=b.len()).step_by(7) {
                let (out, n) = run(&[&b[..i], &b[i..j], &b[j..]]);
                let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("split {i},{j}: {e}: {out}"));
                assert_eq!((got, n), (want.clone(), 1), "split {i},{j} of {doc}");
            }
        }
    }
}

#[test]
fn bytes_outside_the_values_are_kept_exactly() {
    let doc = r#"{ "versions" :{"1":{ "dist":{"tarball" :  "https:\/\/registry.test\/repository\/npm\/a.tgz" , "x" : [ 1 , 2 ] }}}, "z":"\u00e9" }"#;
    let (out, _) = run(&[doc.as_bytes()]);
    assert_eq!(
        out,
        r#"{ "versions" :{"1":{ "dist":{"tarball" :  "http://gw:8080/ns/n/a.tgz" , "x" : [ 1 , 2 ] }}}, "z":"\u00e9" }"#
    );
}

#[test]
fn held_back_bytes_are_bounded() {
    // A huge tarball value is let through, not buffered whole.
    let long = "x".repeat(MAX_VALUE * 2);
    let doc =
        format!(r#"{{"versions":{{"1":{{"dist":{{"tarball":"https://registry.test/repository/npm/{long}"}}}}}}}}"#);
    let mut rw = JsonRewriter::new(&rule());
    let mut out = Vec::new();
    for c in doc.as_bytes().chunks(4096) {
        rw.push(c, &mut out);
        assert!(rw.raw.len() <= MAX_VALUE + 1);
    }
    rw.finish(&mut out);
    assert_eq!(String::from_utf8(out).unwrap(), doc);
    // Deep nesting is passed through.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    assert_eq!(run(&[deep.as_bytes()]).0, deep);
}

#[test]
fn the_word_scan_finds_the_first_quote_or_backslash() {
    for n in 0..40 {
        for c in [b'"', b'\\'] {
            let mut v = vec![b'a'; n];
            assert_eq!(text::find_quote_or_backslash(&v), None);
            v.push(c);
            v.extend_from_slice(b"zz\"");
            assert_eq!(text::find_quote_or_backslash(&v), Some(n), "{n} {c}");
        }
    }
    // Bytes that differ from the targets by one bit, and high bytes.
    assert_eq!(text::find_quote_or_backslash(b"#!#!\xa2\xdc]]]]]]]]\""), Some(14));
}

/// Skipped containers long enough for the 64-byte block scan, holding brackets, quotes and
/// escapes in strings and decoy `tarball` members, split at every point.
#[test]
fn skipped_containers_of_any_length_end_where_they_end() {
    let decoy = r#"{"tarball":"https://registry.test/repository/npm/decoy.tgz","s":"]}\"[{\\","n":[1,[2,{"x":"}"}]]}"#;
    let doc = format!(
        r#"{{"time":{{"a":"{long}","b":{decoy}}},"versions":{{"1.0.0":{{"deps":{{"a":"^1","b":{decoy},"c":"{long}"}},"x":[{decoy},"]"],"dist":{{"sig":[{decoy}],"tarball":"https://registry.test/repository/npm/a/-/a-1.0.0.tgz"}},"after":{decoy}}},"2.0.0":{{"dist":{{"tarball":"https:\/\/registry.test\/repository\/npm\/b.tgz"}}}}}},"readme":{decoy}}}"#,
        long = "z\\\"]}".repeat(40),
    );
    let want = expected(&doc);
    let b = doc.as_bytes();
    for i in 0..=b.len() {
        let (out, n) = run(&[&b[..i], &b[i..]]);
        let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("split {i}: {e}: {out}"));
        assert_eq!((got, n), (want.clone(), 2), "split {i}");
    }
}
