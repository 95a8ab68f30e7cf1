//! Request decisions: the route the router chose decides; headers never do.

use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::config::tests::hash;

const CLUSTER: &str = "registry_registry.test_443";

fn config(role: &str) -> Config {
    let connect = role == "connect";
    let mut v = json!({
        "role": role,
        "connectors": [
            {
                "name": "team-a/npm",
                "route": if connect { "connect/registry.test:443" } else { "team-a/npm" },
                "cluster": if connect { "https_tunnel" } else { CLUSTER },
                "credential": {"basic": {"username": "ci", "password": "pw"}},
                "tokens": [{"sha256": hash("tok-a")}, {"sha256": hash("old-a"), "expires_at": 10}]
            },
            {
                "name": "team-b/private",
                "route": if connect { "connect/registry.test:443" } else { "team-b/private" },
                "cluster": if connect { "https_tunnel" } else { CLUSTER },
                "credential": {"bearer": {"token": "b"}},
                "tokens": [{"sha256": hash("tok-b")}]
            }
        ]
    });
    if connect {
        for c in v["connectors"].as_array_mut().into_iter().flatten() {
            if let Some(o) = c.as_object_mut() {
                o.remove("credential");
            }
        }
    }
    if role == "tunnel" {
        v["tunnel_token"] = json!("tok.key");
    }
    Config::from_json(v.to_string().as_bytes(), None).unwrap_or_else(|e| panic!("{e}"))
}

fn basic(user: &str, token: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
}

fn get<'a>(route: Option<&'a str>, cluster: Option<&'a str>) -> Request<'a> {
    Request {
        method: Some("GET"),
        authority: Some("127.0.0.1:8080"),
        path: Some("/team-a/npm/pkg"),
        route,
        cluster,
        ..Request::default()
    }
}

/// Status of a refusal, or a marker for the other outcomes.
fn outcome(d: &Decision) -> String {
    match d {
        Decision::Refuse(r) => format!("{} {:?}", r.status, r.reason),
        Decision::Inject { connector } => format!("inject {connector}"),
        Decision::Forward => "forward".to_owned(),
        Decision::Tunnel { connector } => format!("tunnel {connector:?}"),
    }
}

#[test]
fn gateway_injects_only_on_the_connectors_own_route_and_cluster() {
    let c = config("gateway");
    let a = Header::One("Bearer tok-a");
    let b = Header::One("Bearer tok-b");
    let cases: Vec<(&str, Request<'_>, &str)> = vec![
        ("own route, own token", Request { authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) }, "inject 0"),
        (
            "other connector's token",
            Request { authorization: b, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "403 BadToken",
        ),
        ("second connector", Request { authorization: b, ..get(Some("team-b/private"), Some(CLUSTER)) }, "inject 1"),
        ("no token", get(Some("team-a/npm"), Some(CLUSTER)), "401 MissingToken"),
        (
            "expired",
            Request { authorization: Header::One("Bearer old-a"), ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "403 ExpiredToken",
        ),
        (
            "two Authorization headers",
            Request { authorization: Header::Many, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "403 BadToken",
        ),
        (
            "merged Authorization",
            Request {
                authorization: Header::One("Bearer tok-a,Bearer tok-b"),
                ..get(Some("team-a/npm"), Some(CLUSTER))
            },
            "403 BadToken",
        ),
        // The router chose something else: nothing the headers say makes it a connector's.
        ("direct response", Request { authorization: a, ..get(Some("not_found"), None) }, "forward"),
        ("unnamed route", Request { authorization: a, ..get(None, Some("passthrough")) }, "forward"),
        (
            "connector route to another cluster",
            Request { authorization: a, ..get(Some("team-a/npm"), Some("passthrough")) },
            "502 RouteMismatch",
        ),
        (
            "connector route, no cluster",
            Request { authorization: a, ..get(Some("team-a/npm"), None) },
            "502 RouteMismatch",
        ),
        (
            "TRACE",
            Request { method: Some("TRACE"), authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "405 Method",
        ),
        ("trace anywhere", Request { method: Some("trace"), ..get(None, None) }, "405 Method"),
        (
            "OPTIONS",
            Request { method: Some("OPTIONS"), authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "405 Method",
        ),
        (
            "PATCH",
            Request { method: Some("PATCH"), authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "405 Method",
        ),
        (
            "PUT",
            Request { method: Some("PUT"), authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "inject 0",
        ),
        (
            "DELETE",
            Request { method: Some("DELETE"), authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "inject 0",
        ),
        (
            "dot segment",
            Request {
                path: Some("/team-a/npm/..%2f..%2fx"),
                authorization: a,
                ..get(Some("team-a/npm"), Some(CLUSTER))
            },
            "400 BadPath",
        ),
        (
            "trailing dot",
            Request { authority: Some("127.0.0.1."), authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "400 BadAuthority",
        ),
        (
            "userinfo",
            Request { authority: Some("u@127.0.0.1:8080"), authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "400 BadAuthority",
        ),
        (
            "no Host",
            Request { authority: None, authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) },
            "400 BadAuthority",
        ),
        (
            "CONNECT on a gateway",
            Request { method: Some("CONNECT"), authority: Some("registry.test:443"), ..get(None, None) },
            "forward",
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(outcome(&decide(&c, &req, &|| 50)), want, "{name}");
    }
}

#[test]
fn connect_opens_tunnels_for_the_hosts_connectors_and_blind_ones_for_any_client() {
    let c = config("connect");
    let route = Some("connect/registry.test:443");
    let connect = |pa: Header<'static>, route: Option<&'static str>, cluster: Option<&'static str>| Request {
        method: Some("CONNECT"),
        authority: Some("registry.test:443"),
        path: None,
        proxy_authorization: pa,
        route,
        cluster,
        ..Request::default()
    };
    let a = Box::leak(basic("team-a/npm", "tok-a").into_boxed_str());
    let b = Box::leak(basic("team-b/private", "tok-b").into_boxed_str());
    let cases: Vec<(&str, Request<'_>, &str)> = vec![
        ("connector a", connect(Header::One(a), route, Some("https_tunnel")), "tunnel Some(0)"),
        ("connector b on the same host", connect(Header::One(b), route, Some("https_tunnel")), "tunnel Some(1)"),
        ("no token", connect(Header::Absent, route, Some("https_tunnel")), "407 MissingToken"),
        ("unknown token", connect(Header::One("Bearer nope"), route, Some("https_tunnel")), "403 BadToken"),
        ("two Proxy-Authorization", connect(Header::Many, route, Some("https_tunnel")), "403 BadToken"),
        ("expired", connect(Header::One("Bearer old-a"), route, Some("https_tunnel")), "403 ExpiredToken"),
        ("route to another cluster", connect(Header::One(a), route, Some("passthrough")), "502 RouteMismatch"),
        ("blind tunnel with a token", connect(Header::One(a), Some("passthrough"), Some("passthrough")), "tunnel None"),
        ("blind tunnel without", connect(Header::Absent, Some("passthrough"), Some("passthrough")), "407 MissingToken"),
        ("blind tunnel, bad token", connect(Header::One("Bearer x"), None, Some("passthrough")), "403 BadToken"),
        ("refused by the router", connect(Header::Absent, Some("deny"), None), "forward"),
        (
            "plain GET",
            Request { method: Some("GET"), ..connect(Header::One(a), route, Some("https_tunnel")) },
            "405 Method",
        ),
        (
            "port 0443",
            Request { authority: Some("registry.test:0443"), ..connect(Header::One(a), None, Some("passthrough")) },
            "400 BadAuthority",
        ),
        (
            "no port",
            Request { authority: Some("registry.test"), ..connect(Header::One(a), None, Some("passthrough")) },
            "400 BadAuthority",
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(outcome(&decide(&c, &req, &|| 50)), want, "{name}");
    }
}

#[test]
fn tunnel_takes_the_token_from_the_tunnel_only() {
    let c = config("tunnel");
    let a = basic("team-a/npm", "tok-a");
    let inside = |ta: Option<&'static str>, auth: Header<'static>| Request {
        authority: Some("registry.test"),
        tunnel_authorization: ta,
        authorization: auth,
        ..get(Some("team-a/npm"), Some(CLUSTER))
    };
    let a: &'static str = Box::leak(a.into_boxed_str());
    assert_eq!(outcome(&decide(&c, &inside(Some(a), Header::One("Bearer placeholder")), &|| 50)), "inject 0");
    // A token in Authorization does not count inside a tunnel.
    assert_eq!(outcome(&decide(&c, &inside(None, Header::One("Bearer tok-a")), &|| 50)), "403 MissingToken");
    let b: &'static str = Box::leak(basic("team-b/private", "tok-b").into_boxed_str());
    assert_eq!(outcome(&decide(&c, &inside(Some(b), Header::Absent), &|| 50)), "403 BadToken");
}

#[test]
fn refusals_say_why_in_json_and_never_echo_the_token() {
    let c = config("gateway");
    let req = Request { authorization: Header::One("Bearer wrong-secret"), ..get(Some("team-a/npm"), Some(CLUSTER)) };
    let Decision::Refuse(r) = decide(&c, &req, &|| 50) else { panic!("not refused") };
    let body: serde_json::Value = serde_json::from_str(&r.body()).unwrap_or_default();
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("team-a/npm") && msg.contains("not valid"), "{msg}");
    assert!(!r.body().contains("wrong-secret"));
    let missing = decide(&c, &get(Some("team-a/npm"), Some(CLUSTER)), &|| 50);
    let Decision::Refuse(r) = missing else { panic!("not refused") };
    assert_eq!(r.challenge, Some(("www-authenticate", REALM)));
}

#[test]
fn the_clock_is_read_only_for_tokens_that_expire() {
    let c = config("gateway");
    let req = Request { authorization: Header::One("Bearer tok-a"), ..get(Some("team-a/npm"), Some(CLUSTER)) };
    assert_eq!(decide(&c, &req, &|| panic!("clock read")), Decision::Inject { connector: 0 });
    let req = Request { authorization: Header::One("Bearer old-a"), ..get(Some("team-a/npm"), Some(CLUSTER)) };
    assert_eq!(outcome(&decide(&c, &req, &|| 9)), "inject 0");
    assert_eq!(outcome(&decide(&c, &req, &|| 10)), "403 ExpiredToken");
}

/// Stateless tokens: signed under a configured key, for the connector whose route it is, until
/// they expire; a removed key revokes them.
#[test]
fn signed_tokens_grant_their_connector_until_they_expire() {
    use crate::token::signed::SigningKey;
    let with_keys = |kids: &[(&str, u8)]| {
        let mut v: serde_json::Value = serde_json::from_str(&format!(
            r#"{{"role":"gateway","connectors":[
                {{"name":"team-a/npm","route":"team-a/npm","cluster":"{CLUSTER}","credential":{{"bearer":{{"token":"a"}}}},"tokens":[]}},
                {{"name":"team-b/private","route":"team-b/private","cluster":"{CLUSTER}","credential":{{"bearer":{{"token":"b"}}}},"tokens":[]}}]}}"#
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        v["token_keys"] = kids
            .iter()
            .map(|(kid, b)| json!({"kid": kid, "key": {"plain": base64::engine::general_purpose::STANDARD.encode([*b; 32])}}))
            .collect();
        Config::from_json(v.to_string().as_bytes(), None).unwrap_or_else(|e| panic!("{e}"))
    };
    let k1 = SigningKey::new("k1", &[1; 32]).unwrap_or_else(|e| panic!("{e}"));
    let now = || 1_000u64;
    let a = format!("Bearer {}", k1.mint("team-a/npm", 2_000, "j1"));
    let old = format!("Bearer {}", k1.mint("team-a/npm", 1_000, "j2"));
    let unknown = format!("Bearer {}", k1.mint("team-z/none", 2_000, "j3"));
    let c = with_keys(&[("k1", 1), ("k2", 2)]);
    let on = |route: &'static str, auth: &str, cfg: &Config| {
        let req = Request { authorization: Header::One(auth), ..get(Some(route), Some(CLUSTER)) };
        outcome(&decide(cfg, &req, &now))
    };
    assert_eq!(on("team-a/npm", &a, &c), "inject 0");
    assert_eq!(on("team-b/private", &a, &c), "403 BadToken", "a token of A used for B");
    assert_eq!(on("team-a/npm", &old, &c), "403 ExpiredToken");
    assert_eq!(on("team-a/npm", &unknown, &c), "403 BadToken", "a connector this proxy does not have");
    assert_eq!(on("team-a/npm", &a, &with_keys(&[("k2", 2)])), "403 BadToken", "key k1 removed: revoked");
    assert_eq!(on("team-a/npm", &a, &with_keys(&[])), "403 BadToken");
    // In a proxy URL's userinfo (Basic) too.
    let token = a.trim_start_matches("Bearer ");
    assert_eq!(on("team-a/npm", &basic("team-a/npm", token), &c), "inject 0");
}

#[test]
fn sidecar_takes_the_token_from_authorization_and_injects_on_the_own_route_only() {
    let c = config("sidecar");
    let a = Header::One("Bearer tok-a");
    let host = |r: Request<'static>| Request { authority: Some("registry.test"), path: Some("/pkg"), ..r };
    let cases: Vec<(&str, Request<'_>, &str)> = vec![
        (
            "own route, own token",
            host(Request { authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) }),
            "inject 0",
        ),
        ("no token", host(get(Some("team-a/npm"), Some(CLUSTER))), "401 MissingToken"),
        (
            "another connector's token",
            host(Request { authorization: Header::One("Bearer tok-b"), ..get(Some("team-a/npm"), Some(CLUSTER)) }),
            "403 BadToken",
        ),
        (
            "a token in Proxy-Authorization does not count",
            host(Request { proxy_authorization: a, ..get(Some("team-a/npm"), Some(CLUSTER)) }),
            "401 MissingToken",
        ),
        (
            "unowned path (direct response)",
            host(Request { authorization: a, ..get(Some("unowned_path"), None) }),
            "forward",
        ),
        (
            "route to another cluster",
            host(Request { authorization: a, ..get(Some("team-a/npm"), Some("passthrough")) }),
            "502 RouteMismatch",
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(outcome(&decide(&c, &req, &|| 100)), want, "{name}");
    }
}

/// The shim asks the host only for what [`needs`] names: leaving the rest out never changes a
/// decision, in any role, for any route, cluster, method and token placement.
#[test]
fn what_the_decision_does_not_need_never_changes_it() {
    let tok = basic("team-a/npm", "tok-a");
    let auths = [Header::Absent, Header::One("Bearer tok-a"), Header::One(tok.as_str()), Header::Many];
    let mut checked = 0;
    for role in ["gateway", "connect", "tunnel", "sidecar"] {
        let c = config(role);
        for route in
            [None, Some("team-a/npm"), Some("team-b/private"), Some("connect/registry.test:443"), Some("other")]
        {
            let needs = needs(&c, route);
            for cluster in [None, Some(CLUSTER), Some("https_tunnel"), Some("elsewhere")] {
                for (method, authority) in [("GET", "127.0.0.1:8080"), ("CONNECT", "registry.test:443")] {
                    for auth in auths {
                        for tunnel in [None, Some(tok.as_str()), Some("Bearer nope")] {
                            let full = Request {
                                method: Some(method),
                                authority: Some(authority),
                                path: (method != "CONNECT").then_some("/team-a/npm/pkg"),
                                proxy_authorization: auth,
                                authorization: auth,
                                tunnel_authorization: tunnel,
                                route,
                                cluster,
                            };
                            let asked = Request {
                                cluster: if needs.cluster { cluster } else { None },
                                tunnel_authorization: if needs.tunnel_token { tunnel } else { None },
                                ..full
                            };
                            let now = || 100;
                            assert_eq!(decide(&c, &full, &now), decide(&c, &asked, &now), "{role} {full:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * 5 * 4 * 2 * 4 * 3);
    // Off a connector's route nothing more is asked, but a CONNECT route's cluster is.
    assert_eq!(needs(&config("gateway"), Some("other")), Needs { cluster: false, tunnel_token: false });
    assert_eq!(needs(&config("tunnel"), Some("team-a/npm")), Needs { cluster: true, tunnel_token: true });
    assert_eq!(needs(&config("connect"), None), Needs { cluster: true, tunnel_token: false });
}
