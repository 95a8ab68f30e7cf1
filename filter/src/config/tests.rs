//! Configuration parsing and validation, including that errors never echo secrets.

use secrecy::ExposeSecret;
use serde_json::json;

use super::*;

pub(crate) fn hash(t: &str) -> String {
    crate::token::TokenHash::digest_hex(t)
}

fn base() -> serde_json::Value {
    json!({
        "connectors": [{
            "name": "team-a/npm",
            "hosts": ["registry.test"],
            "credential": {"basic": {"username": "ci", "password": "hunter2"}},
            "tokens": [{"sha256": hash("tok")}]
        }]
    })
}

fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes(), None)
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(&base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.unmatched, Unmatched::Passthrough);
    assert!(!c.proxy_listener);
    assert_eq!(c.connectors[0].prefix.as_str(), "/");
    assert_eq!(c.connectors[0].credential.header, "authorization");
    assert_eq!(c.connectors[0].credential.value.expose_secret(), "Basic Y2k6aHVudGVyMg==");
}

#[test]
fn credential_kinds_render_their_header() {
    let mut v = base();
    v["connectors"][0]["credential"] = json!({"bearer": {"token": "glpat-x"}});
    let c = parse(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.connectors[0].credential.value.expose_secret(), "Bearer glpat-x");
    v["connectors"][0]["credential"] = json!({"header": {"name": "Private-Token", "value": "glpat-y"}});
    let c = parse(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.connectors[0].credential.header, "private-token");
    assert_eq!(c.connectors[0].credential.value.expose_secret(), "glpat-y");
}

#[test]
fn invalid_configs_say_what_is_wrong() {
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|v| v["extra"] = json!(1)), "unknown field `extra`"),
        (Box::new(|v| v["connectors"][0]["hostz"] = json!([])), "unknown field `hostz`"),
        (Box::new(|v| v["connectors"] = json!([])), "no connectors"),
        (Box::new(|v| v["connectors"][0]["name"] = json!("nonamespace")), "must be namespace/name"),
        (Box::new(|v| v["connectors"][0]["hosts"] = json!([])), "hosts must not be empty"),
        (Box::new(|v| v["connectors"][0]["hosts"] = json!(["a*b.com"])), "'*' may only be"),
        (Box::new(|v| v["connectors"][0]["path_prefix"] = json!("/a/../b")), "path_prefix"),
        (Box::new(|v| v["connectors"][0]["tokens"] = json!([{"sha256": "abc"}])), "tokens[0].sha256"),
        (
            Box::new(|v| v["connectors"][0]["credential"] = json!({"header": {"name": "bad name", "value": "x"}})),
            "not a valid HTTP header name",
        ),
        (Box::new(|v| v["connectors"][0]["credential"] = json!({"bearer": {"token": "a\nb"}})), "control characters"),
        (
            Box::new(|v| v["connectors"][0]["rewrite"] = json!({"upstream": "https://x/", "client": "nope"})),
            "rewrite.client",
        ),
        (Box::new(|v| v["unmatched"] = json!("maybe")), "unknown variant `maybe`"),
        (
            Box::new(|v| {
                let c = v["connectors"][0].clone();
                v["connectors"] = json!([c.clone(), c]);
            }),
            "used twice",
        ),
        (
            Box::new(|v| {
                let mut c = v["connectors"][0].clone();
                c["name"] = json!("team-b/npm");
                if let Some(a) = v["connectors"].as_array_mut() {
                    a.push(c);
                }
            }),
            "both claim host",
        ),
    ];
    for (mutate, want) in cases {
        let mut v = base();
        mutate(&mut v);
        match parse(&v) {
            Ok(_) => panic!("accepted {v}"),
            Err(e) => assert!(e.to_string().contains(want), "error {e:?} should contain {want:?}"),
        }
    }
}

#[test]
fn errors_and_debug_never_echo_secrets() {
    // A wrongly-typed password: serde would quote the value; we must not.
    let mut v = base();
    v["connectors"][0]["credential"] = json!({"basic": {"username": "ci", "password": 987654321}});
    let e = parse(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!e.is_empty() && !e.contains("987654321"), "{e}");
    // A secret in a control-character error is not echoed either.
    let mut v = base();
    v["connectors"][0]["credential"] = json!({"bearer": {"token": "sekrit\u{7}"}});
    let e = parse(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!e.is_empty() && !e.contains("sekrit"), "{e}");
    // Debug of a whole valid config.
    let c = parse(&base()).unwrap_or_else(|e| panic!("{e}"));
    let d = format!("{c:?}");
    assert!(!d.contains("hunter2") && !d.contains("Y2k6aHVudGVyMg"), "{d}");
    assert!(d.contains("redacted"));
}

#[test]
fn malformed_json_reports_position() {
    let e = Config::from_json(b"{\"connectors\": [", None).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn sealed_credentials_open_once_with_the_key() {
    use crate::seal::Key;
    let key = Key::from_bytes([3; 32]);
    let inner = json!({"basic": {"username": "ci", "password": "hunter2"}}).to_string();
    let sealed = key.seal("team-a/npm", inner.as_bytes()).unwrap();
    let mut v = base();
    v["connectors"][0]["credential"] = json!({ "sealed": sealed });
    let text = v.to_string();
    assert!(!text.contains("hunter2"));
    let c = Config::from_json(text.as_bytes(), Some(&key)).unwrap();
    assert_eq!(c.connectors[0].credential.value.expose_secret(), "Basic Y2k6aHVudGVyMg==");

    let e = Config::from_json(text.as_bytes(), None).unwrap_err();
    assert!(e.to_string().contains("NPM_CONNECTOR_KEY"), "{e}");
    let e = Config::from_json(text.as_bytes(), Some(&Key::from_bytes([4; 32]))).unwrap_err();
    assert_eq!(e, ConfigError::Unseal { connector: "team-a/npm".into() });
    // Moved to another connector, the sealed value does not open.
    let moved = text.replace("team-a/npm", "team-b/npm");
    assert!(matches!(Config::from_json(moved.as_bytes(), Some(&key)), Err(ConfigError::Unseal { .. })));
    // Sealed garbage and sealed-in-sealed are refused with a reason.
    let junk = key.seal("team-a/npm", b"not json").unwrap();
    v["connectors"][0]["credential"] = json!({ "sealed": junk });
    let e = Config::from_json(v.to_string().as_bytes(), Some(&key)).unwrap_err();
    assert!(e.to_string().contains("does not hold a credential"), "{e}");
}

#[test]
fn tunnel_token_keys_are_checked() {
    let base = |extra: &str| {
        format!(
            r#"{{{extra}"connectors":[{{"name":"a/b","hosts":["r.test"],"credential":{{"bearer":{{"token":"t"}}}},"tokens":[]}}]}}"#
        )
    };
    let ok = Config::from_json(base(r#""connect":true,"tunnel_token":"npm_connector.proxy-auth","#).as_bytes(), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.connect);
    assert_eq!(ok.tunnel_token.as_deref(), Some("npm_connector.proxy-auth"));
    for bad in ["", "a b", "x\"y"] {
        let text = base(&format!(r#""tunnel_token":{},"#, serde_json::Value::from(bad)));
        assert!(matches!(Config::from_json(text.as_bytes(), None), Err(ConfigError::BadTunnelKey(_))), "{bad:?}");
    }
}
