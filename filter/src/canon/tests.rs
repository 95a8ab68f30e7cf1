//! Authority and path tables.

use super::*;

#[test]
fn authority_table() {
    use AuthorityError::*;
    let cases: &[(&str, bool, Result<(), AuthorityError>)] = &[
        ("registry.test", false, Ok(())),
        ("registry.test:443", true, Ok(())),
        ("Registry.TEST:8443", true, Ok(())),
        ("127.0.0.1:8080", false, Ok(())),
        ("[::1]:443", true, Ok(())),
        ("[::1]", false, Ok(())),
        ("my_host.internal:1", true, Ok(())),
        ("registry.test", true, Err(NoPort)),
        ("", false, Err(Empty)),
        (":443", false, Err(Empty)),
        ("registry.test.", false, Err(TrailingDot)),
        ("registry.test.:443", true, Err(TrailingDot)),
        ("registry.test:0443", true, Err(BadPort)),
        ("registry.test:+443", true, Err(BadPort)),
        ("registry.test:0", true, Err(BadPort)),
        ("registry.test:65536", true, Err(BadPort)),
        ("registry.test:", true, Err(BadPort)),
        ("registry.test:443:443", true, Err(BadPort)),
        ("user@registry.test", false, Err(Userinfo)),
        ("registry.test@evil.test", false, Err(Userinfo)),
        ("registry.test,evil.test", false, Err(BadHost)),
        ("registry..test", false, Err(BadHost)),
        ("reg%69stry.test", false, Err(BadHost)),
        ("[registry.test", false, Err(BadHost)),
        ("[::1]x", false, Err(BadHost)),
        ("[]:443", true, Err(BadHost)),
        ("regístry.test", false, Err(BadHost)),
        ("a b", false, Err(BadHost)),
    ];
    for (a, port, want) in cases {
        assert_eq!(check_authority(a, *port), *want, "{a:?}");
    }
}

#[test]
fn path_table() {
    let ok = ["/", "/@scope%2fname", "/@scope%2Fname", "/a/b.c/..d/x..", "/pkg?x=../y", "/a%2"];
    for p in ok {
        assert_eq!(check_path(p), Ok(()), "{p}");
    }
    let bad = ["/a/..%2f..%2fb", "/a/%2e%2e/b", "/a/..\\b", "/a/.%2e", "/.", "/a/%2E/b", "/..%5c"];
    for p in bad {
        assert_eq!(check_path(p), Err(PathError::DotSegment), "{p}");
    }
}
