//! Configuration parsing and validation, including that errors never echo secrets.

use secrecy::ExposeSecret;
use serde_json::json;

use super::*;
use crate::token::TokenHash;

pub(crate) fn hash(t: &str) -> String {
    crate::token::TokenHash::digest_hex(t)
}

fn base() -> serde_json::Value {
    json!({
        "role": "gateway",
        "connectors": [{
            "name": "team-a/npm",
            "route": "team-a/npm",
            "cluster": "registry_registry.test_443",
            "credential": {"basic": {"username": "ci", "password": "hunter2"}},
            "tokens": [{"sha256": hash("tok")}]
        }]
    })
}

fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes(), None)
}

#[test]
fn minimal_config_indexes_routes_and_tokens() {
    let c = parse(&base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.role, Role::Gateway);
    assert_eq!(c.route("team-a/npm"), Some(&[0][..]));
    assert_eq!(c.route("other"), None);
    assert_eq!(c.grant(&TokenHash::of("tok")), Some(Grant { connector: 0, expires_at: None }));
    assert_eq!(c.grant(&TokenHash::of("nope")), None);
    let cred = c.connectors[0].credential.as_ref().unwrap();
    assert_eq!(cred.header, "authorization");
    assert_eq!(cred.value.expose_secret(), "Basic Y2k6aHVudGVyMg==");
}

fn cred(c: &Config) -> &Credential {
    c.connectors[0].credential.as_ref().unwrap_or_else(|| panic!("no credential"))
}

#[test]
fn connect_configs_hold_no_credential_and_may_share_a_route() {
    let mut v = base();
    v["role"] = json!("connect");
    assert_eq!(parse(&v).unwrap_err(), ConfigError::CredentialOnConnect("team-a/npm".into()));
    if let Some(o) = v["connectors"][0].as_object_mut() {
        o.remove("credential");
    }
    let mut second = v["connectors"][0].clone();
    second["name"] = json!("team-b/npm");
    second["tokens"] = json!([{"sha256": hash("tok-b")}]);
    if let Some(a) = v["connectors"].as_array_mut() {
        a.push(second);
    }
    let c = parse(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.route("team-a/npm"), Some(&[0, 1][..]));
    // Gateway routes select one connector.
    let mut g = v.clone();
    g["role"] = json!("gateway");
    for i in 0..2 {
        g["connectors"][i]["credential"] = json!({"bearer": {"token": "x"}});
    }
    assert!(matches!(parse(&g), Err(ConfigError::SharedRoute { .. })));
}

#[test]
fn the_raw_types_round_trip_through_serde() {
    let raw: RawConfig = serde_json::from_value(base()).unwrap();
    let back = serde_json::to_value(&raw).unwrap();
    assert_eq!(back, base());
}

#[test]
fn credential_kinds_render_their_header() {
    let mut v = base();
    v["connectors"][0]["credential"] = json!({"bearer": {"token": "glpat-x"}});
    let c = parse(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cred(&c).value.expose_secret(), "Bearer glpat-x");
    v["connectors"][0]["credential"] = json!({"header": {"name": "Private-Token", "value": "glpat-y"}});
    let c = parse(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cred(&c).header, "private-token");
    assert_eq!(cred(&c).value.expose_secret(), "glpat-y");
}

#[test]
fn invalid_configs_say_what_is_wrong() {
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|v| v["extra"] = json!(1)), "unknown field `extra`"),
        (Box::new(|v| v["connectors"][0]["hosts"] = json!([])), "unknown field `hosts`"),
        (Box::new(|v| v["connectors"][0]["name"] = json!("nonamespace")), "must be namespace/name"),
        (Box::new(|v| v["connectors"][0]["route"] = json!("")), "route must not be empty"),
        (Box::new(|v| v["connectors"][0]["cluster"] = json!("")), "cluster must not be empty"),
        (Box::new(|v| v["role"] = json!("forward")), "unknown variant `forward`"),
        // Found by fuzzing: a name the input wrote is shown only when it looks like a field.
        (Box::new(|v| v["Hunter2-Secret"] = json!(1)), "unknown field (name not shown), expected one of"),
        (Box::new(|v| v["role`x`hunter2"] = json!(1)), "unknown field (name not shown), expected one of `role`"),
        (Box::new(|v| v["role"] = json!("Hunter2-Secret")), "unknown variant (name not shown), expected"),
        (Box::new(|v| v["tunnel_token"] = json!("k")), "tunnel_token"),
        (
            Box::new(|v| v["connectors"][0].as_object_mut().map(|o| o.remove("credential")).map_or((), |_| ())),
            "credential is missing",
        ),
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
                c["route"] = json!("team-b/npm");
                if let Some(a) = v["connectors"].as_array_mut() {
                    a.push(c);
                }
            }),
            "accept the same token",
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
    assert_eq!(cred(&c).value.expose_secret(), "Basic Y2k6aHVudGVyMg==");

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
    let mut v = base();
    v["role"] = json!("tunnel");
    assert_eq!(parse(&v).unwrap_err(), ConfigError::BadTunnelKey);
    v["tunnel_token"] = json!("npm_connector.proxy-auth");
    let ok = parse(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.tunnel_token.as_deref(), Some("npm_connector.proxy-auth"));
    for bad in ["", "a b", "x\"y"] {
        v["tunnel_token"] = json!(bad);
        assert_eq!(parse(&v).unwrap_err(), ConfigError::BadTunnelKey, "{bad:?}");
    }
}

#[test]
fn token_keys_are_checked_and_sealed_ones_opened() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let with = |keys: serde_json::Value| {
        let v = serde_json::json!({"role": "gateway", "connectors": [], "token_keys": keys});
        Config::from_json(v.to_string().as_bytes(), None).map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(with(serde_json::json!([{"kid": "k1", "key": {"plain": b64(&[7; 32])}}])), Ok(()));
    let refused = [
        (serde_json::json!([{"kid": "k 1", "key": {"plain": b64(&[7; 32])}}]), "token_keys[0]: a token key id is"),
        (serde_json::json!([{"kid": "k1", "key": {"plain": b64(&[7; 16])}}]), "token_keys[0]: a token key is 32 bytes"),
        (serde_json::json!([{"kid": "k1", "key": {"plain": "%%%"}}]), "token_keys[0]: key.plain is not base64"),
        (
            serde_json::json!([{"kid": "k1", "key": {"plain": b64(&[7; 32])}}, {"kid": "k1", "key": {"plain": b64(&[8; 32])}}]),
            "token key \"k1\" is listed twice",
        ),
        (
            serde_json::json!([{"kid": "k1", "key": {"sealed": "AAAA"}}]),
            "token key \"k1\" is sealed but Envoy has no key",
        ),
    ];
    for (keys, want) in refused {
        let err = with(keys.clone()).err().unwrap_or_default();
        assert!(err.starts_with(want), "{keys}: {err}");
        assert!(!err.contains(&b64(&[7; 32])), "{err}");
    }
    // Sealed under the Envoy key, bound to its kid.
    let key = crate::seal::Key::from_bytes([3; 32]);
    let sealed = key.seal(&token_key_aad("k1"), &[7; 32]).unwrap_or_else(|e| panic!("{e}"));
    let v = serde_json::json!({"role": "gateway", "connectors": [], "token_keys": [{"kid": "k1", "key": {"sealed": sealed}}]});
    assert!(Config::from_json(v.to_string().as_bytes(), Some(&key)).is_ok());
    let moved = serde_json::json!({"role": "gateway", "connectors": [], "token_keys": [{"kid": "k2", "key": {"sealed": sealed}}]});
    let err = Config::from_json(moved.to_string().as_bytes(), Some(&key)).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("token key \"k2\": cannot unseal it: wrong NPM_CONNECTOR_KEY, or the sealed value was altered")
    );
}

#[test]
fn sidecar_configs_take_no_rewrite() {
    let mut v = base();
    v["role"] = json!("sidecar");
    assert_eq!(parse(&v).map(|c| c.role).unwrap_or_else(|e| panic!("{e}")), Role::Sidecar);
    v["connectors"][0]["rewrite"] = json!({"upstream": "https://registry.test/", "client": "http://gw/team-a/npm/"});
    assert_eq!(parse(&v).err(), Some(ConfigError::RewriteOnSidecar("team-a/npm".into())));
}
