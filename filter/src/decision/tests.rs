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
    let req = Request {
        authority: Some(authority),
        path: Some(path),
        proxy_authorization: pa,
        authorization: a,
        method: Some("GET"),
        ..Request::default()
    };
    decide(c, &req, &|| 50)
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Refuse(r) => r.status,
        Decision::Inject { .. } => 0,
        Decision::PassThrough => 1,
        Decision::Tunnel { .. } => 2,
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

/// https-proxy mode, outer listener: a CONNECT is decided on host:port and token; the token
/// picks among connectors on the same host, and nothing is injected.
#[test]
fn connect_decisions() {
    let c = config(json!({"connect": true, "unmatched": "deny"}));
    let connect = |authority: &str, pa: Option<&str>| {
        let req = Request {
            method: Some("CONNECT"),
            authority: Some(authority),
            proxy_authorization: pa,
            ..Request::default()
        };
        decide(&c, &req, &|| 50)
    };
    let (pa, pb, old) =
        (proxy_basic("team-a/npm", "tok-a"), proxy_basic("team-b/private", "tok-b"), proxy_basic("x", "old-a"));
    assert_eq!(connect("registry.test:443", Some(&pa)), Decision::Tunnel { connector: 0 });
    // Same host, the other connector's token: its own connector, whatever the username says.
    assert_eq!(connect("registry.test:443", Some(&pb)), Decision::Tunnel { connector: 1 });
    assert_eq!(connect("registry.test:443", Some("Bearer tok-b")), Decision::Tunnel { connector: 1 });
    let refused = |d: Decision| match d {
        Decision::Refuse(r) => (r.status, r.reason, r.challenge.is_some(), r.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (st, reason, challenge, _) = refused(connect("registry.test:443", None));
    assert_eq!((st, reason, challenge), (407, Reason::MissingToken, true));
    let (st, reason, _, msg) = refused(connect("registry.test:443", Some(&old)));
    assert_eq!((st, reason), (403, Reason::ExpiredToken));
    assert!(msg.contains("token expired"), "{msg}");
    let (st, reason, _, msg) = refused(connect("registry.test:443", Some(&proxy_basic("team-a/npm", "nope"))));
    assert_eq!((st, reason), (403, Reason::BadToken));
    assert!(!msg.contains("nope"));
    assert_eq!(refused(connect("registry.test:443", Some("Digest x"))).1, Reason::BadToken);
    // Another host or port: no tunnel, whatever the token.
    assert_eq!(refused(connect("elsewhere.test:443", Some(&pa))).1, Reason::Unmatched);
    let c2 = config(json!({"connect": true}));
    let req = Request {
        method: Some("CONNECT"),
        authority: Some("evil.test:443"),
        proxy_authorization: Some(&pa),
        ..Request::default()
    };
    assert_eq!(status(&decide(&c2, &req, &|| 50)), 403, "even with unmatched passthrough, no tunnel to other hosts");
    // A plain request on the CONNECT listener gets 405, never a credential.
    let req = Request {
        method: Some("GET"),
        authority: Some("registry.test:443"),
        path: Some("/repository/npm/x"),
        proxy_authorization: Some(&pa),
        ..Request::default()
    };
    assert_eq!(status(&decide(&c, &req, &|| 50)), 405);
    // Without `connect`, a CONNECT is an ordinary request (forward mode).
    let plain = config(json!({}));
    let req = Request {
        method: Some("CONNECT"),
        authority: Some("registry.test:443"),
        proxy_authorization: Some(&pa),
        ..Request::default()
    };
    assert!(!matches!(decide(&plain, &req, &|| 50), Decision::Tunnel { .. }));
}

/// https-proxy mode, internal listener: the token is the tunnel's, the Host must be the TLS
/// server name, and connectors on one host stay apart by their tokens and prefixes.
#[test]
fn tunnelled_requests() {
    let c = config(
        json!({"proxy_listener": false, "unmatched": "deny", "tunnel_token": "npm_connector.proxy_authorization"}),
    );
    let pa = proxy_basic("team-a%2Fnpm", "tok-a");
    let pb = proxy_basic("team-b/private", "tok-b");
    let inner = |host: &str, sni: Option<&str>, path: &str, tunnel: Option<&str>, auth: Option<&str>| {
        let req = Request {
            method: Some("GET"),
            authority: Some(host),
            path: Some(path),
            authorization: auth,
            tunnel_authorization: tunnel,
            server_name: sni,
            ..Request::default()
        };
        decide(&c, &req, &|| 50)
    };
    let sni = Some("registry.test");
    assert_eq!(
        inner("registry.test", sni, "/repository/npm/lodash", Some(&pa), Some("Bearer placeholder")),
        Decision::Inject { connector: 0 }
    );
    assert_eq!(
        inner("Registry.Test:443", sni, "/repository/npm/lodash", Some(&pa), None),
        Decision::Inject { connector: 0 }
    );
    assert_eq!(
        inner("registry.test", sni, "/repository/npm/private/x", Some(&pb), None),
        Decision::Inject { connector: 1 }
    );
    // A's tunnel cannot reach B's prefix, nor the reverse.
    assert_eq!(status(&inner("registry.test", sni, "/repository/npm/private/x", Some(&pa), None)), 403);
    assert_eq!(status(&inner("registry.test", sni, "/repository/npm/lodash", Some(&pb), None)), 403);
    // The Authorization header (npm's placeholder) is never the token here.
    assert_eq!(status(&inner("registry.test", sni, "/repository/npm/lodash", None, Some("Bearer tok-a"))), 403);
    // Another Host than the tunnel's, or no server name: refused before any connector is looked at.
    for (host, sni) in
        [("mirror.test", sni), ("a.mirror.test", sni), ("registry.test", None), ("registry.test", Some("other.test"))]
    {
        match inner(host, sni, "/repository/npm/lodash", Some(&pa), None) {
            Decision::Refuse(r) => assert_eq!((r.status, r.reason), (403, Reason::WrongHost), "{host} {sni:?}"),
            other => panic!("{host} {sni:?}: {other:?}"),
        }
    }
    match inner("registry.test", sni, "/repository/npm/lodash", None, None) {
        Decision::Refuse(r) => {
            assert_eq!((r.status, r.reason, r.challenge), (403, Reason::MissingToken, None));
        }
        other => panic!("{other:?}"),
    }
}

/// A connector's publish prefix (GitLab's project endpoint) gets its credential too; paths
/// under neither prefix do not.
#[test]
fn publish_prefix_is_owned_too() {
    let text = json!({"proxy_listener": true, "connectors": [{
        "name": "team-g/gitlab", "hosts": ["gitlab.test"], "path_prefix": "/api/v4/packages/npm/",
        "publish_prefix": "/api/v4/projects/42/packages/npm/",
        "credential": {"bearer": {"token": "glpat"}}, "tokens": [{"sha256": hash("tok-g")}]}]});
    let c = Config::from_json(text.to_string().as_bytes(), None).unwrap_or_else(|e| panic!("{e}"));
    let pa = proxy_basic("team-g/gitlab", "tok-g");
    for path in ["/api/v4/packages/npm/@acme%2fx", "/api/v4/projects/42/packages/npm/@acme%2fx"] {
        assert_eq!(decide_at(&c, "gitlab.test", path, Some(&pa), None), Decision::Inject { connector: 0 }, "{path}");
    }
    for path in ["/api/v4/user", "/api/v4/projects/43/packages/npm/x"] {
        assert_eq!(decide_at(&c, "gitlab.test", path, Some(&pa), None), Decision::PassThrough, "{path}");
    }
}
