//! The exchange decided end to end in process: real ES256 ID tokens from a test issuer (keys in
//! a JWKS file that rotates), the policy, the rate limit and the signed token the filter checks.

use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::oidc::{IssuerConfig, Issuers, Kind, RateLimit};
use super::*;
use crate::render::{Key, Mode, Sealing};

struct TestIssuer {
    keys: Vec<(String, rcgen::KeyPair)>,
}

impl TestIssuer {
    fn new(kids: &[&str]) -> Self {
        TestIssuer {
            keys: kids
                .iter()
                .map(|k| ((*k).to_owned(), rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()))
                .collect(),
        }
    }

    fn jwks(&self) -> String {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|(kid, k)| {
                let raw = k.public_key_raw();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                       "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])})
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }

    fn sign(&self, kid: &str, claims: serde_json::Value) -> String {
        let k = &self.keys.iter().find(|(id, _)| id == kid).unwrap().1;
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_pem(k.serialize_pem().as_bytes()).unwrap()).unwrap()
    }
}

const ISS: &str = "https://cluster.test";

fn sa(ns: &str, aud: &str, exp: u64) -> serde_json::Value {
    json!({"iss": ISS, "aud": [aud], "sub": format!("system:serviceaccount:{ns}:builder"), "exp": exp,
           "iat": exp - 600, "nbf": exp - 600,
           "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": "builder", "uid": "u"}, "pod": {"name": "p", "uid": "q"}}})
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn setup(dir: &std::path::Path, rate: RateLimit) -> Exchange {
    let manifests = "kind: Secret\nmetadata:\n  name: s\n  namespace: build\ntype: kubernetes.io/basic-auth\nstringData:\n  username: u\n  password: p\n---\n\
        kind: Connector\nmetadata:\n  name: npm\n  namespace: build\n  annotations:\n    npm-connector.io/allowed-subjects: \"repo:acme/app:ref:refs/heads/main\"\n\
        spec:\n  connectorClassName: npm\n  address: https://registry.example/npm\n  auth:\n    name: basicAuth\n    secretRef:\n      name: s\n";
    let connectors = crate::manifest::load(&[("c.yaml".into(), manifests.into())], "default").unwrap();
    let opts = Options::new(Mode::Gateway, "127.0.0.1:10000".parse().unwrap(), Sealing::Key(Key::from_bytes([1; 32])));
    let token_keys = TokenKeys { keys: vec![("k1".into(), Key::from_bytes([9; 32]))] };
    let view = View { connectors: Arc::new(connectors), opts, token_keys, ttl: 900 };
    let issuers = Issuers::new(vec![
        IssuerConfig {
            name: "cluster".into(),
            kind: Kind::Kubernetes,
            issuer: ISS.into(),
            audience: None,
            jwks_file: Some(dir.join("jwks.json")),
            jwks_uri: None,
            ca_file: None,
        },
        IssuerConfig {
            name: "github".into(),
            kind: Kind::Github,
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: None,
            jwks_file: Some(dir.join("gh.json")),
            jwks_uri: None,
            ca_file: None,
        },
    ])
    .unwrap();
    Exchange::new(issuers, rate, Arc::new(RwLock::new(Arc::new(view))), Default::default())
}

fn req(tool: Option<Tool>) -> TokenRequest {
    TokenRequest { connector: "build/npm".into(), tool, dir: None, mode: None }
}

#[tokio::test]
async fn id_tokens_are_exchanged_for_signed_connector_tokens_or_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let cluster = TestIssuer::new(&["a", "b"]);
    let github = TestIssuer::new(&["gh"]);
    std::fs::write(d.path().join("jwks.json"), cluster.jwks()).unwrap();
    std::fs::write(d.path().join("gh.json"), github.jwks()).unwrap();
    let ex = setup(d.path(), RateLimit { per_minute: 600, burst: 100 });
    let t = now();

    // A ServiceAccount of the connector's namespace: a token the filter accepts, and files.
    let jwt = cluster.sign("a", sa("build", "npm-connector", t + 600));
    let g = ex.exchange(Some(&jwt), req(Some(Tool::Npm)), t).await.unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(
        (g.response.connector.as_str(), g.response.expires_at, g.response.mode.as_str()),
        ("build/npm", t + 900, "gateway")
    );
    assert_eq!(g.subject, "system:serviceaccount:build:builder");
    let verifier: std::collections::HashMap<_, _> =
        [("k1".to_owned(), Key::from_bytes([9; 32]).signing_key("k1").unwrap())].into();
    let claims = npm_connector_filter::token::signed::verify(&g.response.token, &verifier).unwrap();
    assert_eq!((claims.connector.as_str(), claims.expires_at), ("build/npm", t + 900));
    assert_eq!(g.response.files.keys().collect::<Vec<_>>(), [".npmrc"]);
    assert!(g.response.files[".npmrc"].contains(&format!("_authToken={}", g.response.token)));
    // A GitHub Actions job listed in the annotation.
    let gh = github.sign(
        "gh",
        json!({"iss": "https://token.actions.githubusercontent.com", "aud": "npm-connector", "exp": t + 300,
               "sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app", "ref": "refs/heads/main"}),
    );
    assert!(ex.exchange(Some(&gh), req(None), t).await.is_ok());

    let refusals: Vec<(String, TokenRequest, u16, &str)> = vec![
        (cluster.sign("a", sa("build", "npm-connector", t - 100)), req(None), 401, "the ID token expired"),
        (cluster.sign("a", sa("build", "vault", t + 600)), req(None), 401, "wrong audience: the ID token must be minted for \"npm-connector\""),
        (cluster.sign("a", sa("other", "npm-connector", t + 600)), req(None), 403, "subject \"system:serviceaccount:other:builder\" (issuer cluster) is not allowed for build/npm"),
        (cluster.sign("a", { let mut c = sa("build", "npm-connector", t + 600); c["iss"] = json!("https://evil.test"); c }), req(None), 401, "the ID token's issuer \"https://evil.test\" is not configured"),
        (github.sign("gh", json!({"iss": "https://token.actions.githubusercontent.com", "aud": "npm-connector", "exp": t + 300, "sub": "repo:acme/app:ref:refs/heads/dev"})), req(None), 403, "subject \"repo:acme/app:ref:refs/heads/dev\" (issuer github) is not allowed"),
        // Signed by GitHub's key but claiming the cluster issuer.
        (github.sign("gh", sa("build", "npm-connector", t + 600)), req(None), 401, "the ID token's signing key \"gh\" is not among issuer cluster's keys"),
        (cluster.sign("a", sa("build", "npm-connector", t + 600)), TokenRequest { connector: "build/none".into(), ..req(None) }, 404, "no connector \"build/none\""),
        (cluster.sign("a", sa("build", "npm-connector", t + 600)), TokenRequest { mode: Some("https-proxy".into()), ..req(None) }, 400, "this server renders gateway client files, not https-proxy"),
        ("not.a.jwt".into(), req(None), 401, "the ID token is not a JWT"),
        (jsonwebtoken::encode(&Header::new(Algorithm::HS256), &sa("build", "npm-connector", t + 600), &EncodingKey::from_secret(b"k")).unwrap(), req(None), 401, "the ID token is signed with \"HS256\""),
    ];
    for (jwt, r, status, msg) in refusals {
        let e = ex.exchange(Some(&jwt), r, t).await.err().unwrap_or_else(|| panic!("granted: {msg}"));
        assert_eq!(e.status, status, "{msg}: {e:?}");
        assert!(e.message.starts_with(msg), "{msg}: {}", e.message);
        assert!(!e.message.contains(&jwt), "the token is never echoed");
    }
    let missing = ex.exchange(None, req(None), t).await.err().unwrap();
    assert_eq!((missing.status, missing.reason), (401, "missing"));

    // The issuer rotates: key a leaves its JWKS, c arrives. A token signed with c verifies (an
    // unknown kid re-reads the keys); one signed with a, accepted before, no longer does.
    let by_a = cluster.sign("a", sa("build", "npm-connector", t + 600));
    let rotated = TestIssuer {
        keys: vec![
            cluster.keys.into_iter().nth(1).unwrap(),
            ("c".into(), rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()),
        ],
    };
    std::fs::write(d.path().join("jwks.json"), rotated.jwks()).unwrap();
    let c = rotated.sign("c", sa("build", "npm-connector", t + 600));
    assert!(ex.exchange(Some(&c), req(None), t).await.is_ok(), "a new issuer key is picked up");
    let e = ex.exchange(Some(&by_a), req(None), t).await.err().unwrap();
    assert_eq!((e.status, e.reason), (401, "signature"), "{e:?}");
    assert_eq!(e.message, "the ID token's signing key \"a\" is not among issuer cluster's keys");

    let text = crate::serve::metrics::render(&ex.metrics, &crate::xds::cache::Cache::new().0, t);
    assert!(text.contains("npm_connector_serve_exchanges_total{outcome=\"granted\"} 3"), "{text}");
    assert!(text.contains("npm_connector_serve_exchanges_total{outcome=\"expired\"} 1"), "{text}");
}

#[tokio::test]
async fn exchanges_are_rate_limited_per_subject() {
    let d = tempfile::tempdir().unwrap();
    let cluster = TestIssuer::new(&["a"]);
    std::fs::write(d.path().join("jwks.json"), cluster.jwks()).unwrap();
    std::fs::write(d.path().join("gh.json"), r#"{"keys":[]}"#).unwrap();
    let ex = setup(d.path(), RateLimit { per_minute: 1, burst: 2 });
    let t = now();
    let jwt = cluster.sign("a", sa("build", "npm-connector", t + 600));
    assert!(ex.exchange(Some(&jwt), req(None), t).await.is_ok());
    assert!(ex.exchange(Some(&jwt), req(None), t).await.is_ok());
    let e = ex.exchange(Some(&jwt), req(None), t).await.err().unwrap();
    assert_eq!((e.status, e.reason), (429, "rate_limited"));
    assert!(e.message.contains("system:serviceaccount:build:builder"), "{}", e.message);
}
