//! Request decisions against a two-connector configuration.

use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::config::tests::hash;

fn config(extra: serde_json::Value) -> Config {
    let mut v = json!({
        "proxy_listener": true,
        "connectors": [
            {
                "name": "team-a/npm",
                "hosts": ["registry.test", "*.mirror.test"],
                "path_prefix": "/repository/npm/",
                "credential": {"basic": {"username": "ci", "password": "pw"}},
                "tokens": [{"sha256": hash("tok-a")}, {"sha256": hash("old-a"), "expires_at": 10}]
            },
            {
                "name": "team-b/private",
                "hosts": ["registry.test"],
                "path_prefix": "/repository/npm/private/",
                "credential": {"bearer": {"token": "b"}},
                "tokens": [{"sha256": hash("tok-b")}]
            }
        ]
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Config::from_json(v.to_string().as_bytes(), None).unwrap_or_else(|e| panic!("{e}"))
}

fn proxy_basic(user: &str, token: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
}

fn decide_at(c: &Config, authority: &str, path: &str, pa: Option<&str>, a: Option<&str>) -> Decision {
    let req = Request { authority: Some(authority), path: Some(path), proxy_authorization: pa, authorization: a };
    decide(c, &req, &|| 50)
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Refuse(r) => r.status,
        Decision::Inject { .. } => 0,
        Decision::PassThrough => 1,
    }
}

#[test]
fn decision_table() {
    let c = config(json!({}));
    let pa = proxy_basic("team-a/npm", "tok-a");
    let pb = proxy_basic("team-b/private", "tok-b");
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, Decision);
    let cases: Vec<Case<'_>> = vec![
        ("registry.test", "/repository/npm/lodash", Some(&pa), None, Decision::Inject { connector: 0 }),
        ("registry.test:443", "/repository/npm/@s%2fp", Some(&pa), None, Decision::Inject { connector: 0 }),
        ("x.mirror.test", "/repository/npm/lodash", None, Some("Bearer tok-a"), Decision::Inject { connector: 0 }),
        // longest prefix wins, and each connector only takes its own token
        ("registry.test", "/repository/npm/private/x", Some(&pb), None, Decision::Inject { connector: 1 }),
        ("registry.test", "/repository/npm/private/x", Some(&pa), None, Decision::Inject { connector: 99 }),
        ("registry.test", "/repository/npm/%70rivate/x", Some(&pb), None, Decision::Inject { connector: 1 }),
        // hosts and paths no connector claims pass through
        ("cdn.test", "/file.tgz", Some(&pa), None, Decision::PassThrough),
        ("registry.test", "/other/x", None, None, Decision::PassThrough),
        ("evilregistry.test", "/repository/npm/x", None, None, Decision::PassThrough),
        ("cdn.test", "/../x", None, None, Decision::PassThrough),
    ];
    for (authority, path, pa, a, want) in cases {
        let got = decide_at(&c, authority, path, pa, a);
        match want {
            Decision::Inject { connector: 99 } => {
                assert_eq!(status(&got), 403, "{authority}{path}: {got:?}")
            }
            w => assert_eq!(got, w, "{authority}{path}"),
        }
    }
}

#[test]
fn refusals_have_the_right_status_and_challenge() {
    let c = config(json!({}));
    let d = decide_at(&c, "registry.test", "/repository/npm/x", None, None);
    let Decision::Refuse(r) = d else { panic!("{d:?}") };
    assert_eq!((r.status, r.reason, r.challenge.map(|c| c.0)), (407, Reason::MissingToken, Some("proxy-authenticate")));

    let gateway = config(json!({"proxy_listener": false}));
    let d = decide_at(&gateway, "registry.test", "/repository/npm/x", None, None);
    let Decision::Refuse(r) = d else { panic!("{d:?}") };
    assert_eq!((r.status, r.challenge.map(|c| c.0)), (401, Some("www-authenticate")));

    let d = decide_at(&c, "registry.test", "/repository/npm/x", Some(&proxy_basic("team-a/npm", "old-a")), None);
    let Decision::Refuse(r) = d else { panic!("{d:?}") };
    assert_eq!((r.status, r.reason), (403, Reason::ExpiredToken));
    assert!(r.message.contains("token expired"));

    let d = decide_at(&c, "registry.test", "/repository/npm/x", Some("Digest zzz"), None);
    let Decision::Refuse(r) = d else { panic!("{d:?}") };
    assert_eq!((r.status, r.reason), (403, Reason::BadToken));

    let d = decide_at(&c, "registry.test", "/repository/npm/%2e%2e/admin", None, None);
    let Decision::Refuse(r) = d else { panic!("{d:?}") };
    assert_eq!((r.status, r.reason), (400, Reason::BadPath));
}

#[test]
fn refusal_bodies_are_json_and_never_echo_tokens() {
    let c = config(json!({}));
    for presented in ["wrong-token-123", "old-a"] {
        let pa = proxy_basic("team-a/npm", presented);
        let d = decide_at(&c, "registry.test", "/repository/npm/x", Some(&pa), Some("Bearer also-secret"));
        let Decision::Refuse(r) = d else { panic!("{d:?}") };
        let body: serde_json::Value = serde_json::from_str(&r.body()).unwrap_or_else(|e| panic!("{e}"));
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.starts_with("npm-connector: "), "{msg}");
        assert!(!msg.contains(presented) && !msg.contains("also-secret"), "{msg}");
    }
}

#[test]
fn deny_mode_refuses_unmatched() {
    let c = config(json!({"unmatched": "deny"}));
    let d = decide_at(&c, "cdn.test", "/x", None, None);
    let Decision::Refuse(r) = d else { panic!("{d:?}") };
    assert_eq!((r.status, r.reason), (403, Reason::Unmatched));
    let d = decide(&c, &Request::default(), &|| 0);
    assert_eq!(status(&d), 403);
}

#[test]
fn a_connector_without_tokens_refuses_everyone() {
    let mut v: serde_json::Value = json!({"connectors": [{
        "name": "ns/none", "hosts": ["registry.test"],
        "credential": {"bearer": {"token": "b"}}, "tokens": []
    }]});
    v["unmatched"] = json!("passthrough");
    let c = Config::from_json(v.to_string().as_bytes(), None).unwrap_or_else(|e| panic!("{e}"));
    let d = decide_at(&c, "registry.test", "/x", None, Some("Bearer anything"));
    assert_eq!(status(&d), 403);
}
