//! A test OIDC issuer: ES256 keys, ID tokens in the claim shapes of Kubernetes projected
//! ServiceAccount tokens and GitHub Actions, and an HTTPS server (Python's, on the test CA's
//! leaf) answering OIDC discovery and a JWKS that can rotate mid-test.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::procs::{free_port, Daemon};

pub struct Keys(pub Vec<(String, rcgen::KeyPair)>);

impl Keys {
    pub fn new(kids: &[&str]) -> Keys {
        Keys(kids.iter().map(|k| ((*k).to_owned(), new_key())).collect())
    }

    pub fn jwks(&self) -> String {
        let keys: Vec<Value> = self
            .0
            .iter()
            .map(|(kid, k)| {
                let raw = k.public_key_raw();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                       "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])})
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }

    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let k = &self.0.iter().find(|(id, _)| id == kid).unwrap_or_else(|| panic!("no key {kid}")).1;
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_owned());
        let key = EncodingKey::from_ec_pem(k.serialize_pem().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        jsonwebtoken::encode(&h, claims, &key).unwrap_or_else(|e| panic!("{e}"))
    }
}

pub fn new_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"))
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A projected ServiceAccount token's claims (audience `aud`, valid until `exp`).
pub fn service_account(iss: &str, ns: &str, sa: &str, aud: &str, exp: u64) -> Value {
    json!({"iss": iss, "aud": [aud], "sub": format!("system:serviceaccount:{ns}:{sa}"), "exp": exp,
           "iat": (exp - 600).min(now()), "nbf": (exp - 600).min(now()),
           "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": "3a4f-sa"},
                             "pod": {"name": format!("{sa}-pod"), "uid": "7b1c-pod"}}})
}

/// A GitHub Actions ID token's claims for a workflow run of `repo` on `git_ref`.
pub fn github_actions(repo: &str, git_ref: &str, aud: &str, exp: u64) -> Value {
    json!({"iss": "https://token.actions.githubusercontent.com", "aud": aud, "exp": exp, "iat": exp - 300,
           "sub": format!("repo:{repo}:ref:{git_ref}"), "repository": repo, "ref": git_ref,
           "repository_owner": repo.split('/').next().unwrap_or_default(), "workflow": "ci", "event_name": "push"})
}

/// OIDC discovery and JWKS over HTTPS from a directory; [`IssuerServer::publish`] rotates.
pub struct IssuerServer {
    pub url: String,
    dir: PathBuf,
    _daemon: Daemon,
}

const SERVER: &str = r#"
import http.server, ssl, sys, os
root, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith('/gh-token?'):
            # GitHub Actions' ID-token request endpoint: the job's request token as bearer.
            if (self.headers.get('Authorization') or '').lower() != 'bearer request-token' or 'audience=npm-connector' not in self.path:
                self.send_response(401); self.end_headers(); return
            self.path = '/gh-token'
        name = {'/gh-token': 'gh-token.json', '/.well-known/openid-configuration': 'discovery.json', '/jwks': 'jwks.json'}.get(self.path)
        if name is None:
            self.send_response(404); self.end_headers(); return
        body = open(os.path.join(root, name), 'rb').read()
        self.send_response(200)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print('GET', self.path, flush=True)
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print('ready', flush=True)
srv.serve_forever()
"#;

impl IssuerServer {
    pub fn start(dir: &Path, pki: &crate::pki::Pki, keys: &Keys) -> IssuerServer {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks"),
                               "id_token_signing_alg_values_supported": ["ES256"]});
        std::fs::write(dir.join("discovery.json"), discovery.to_string()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("jwks.json"), keys.jwks()).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(SERVER).arg(dir).arg(port.to_string()).arg(&pki.server_cert).arg(&pki.server_key);
        let daemon = Daemon::spawn("oidc issuer", cmd, dir.join("issuer.log"));
        crate::control::wait_for("the test issuer", std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(&daemon.log).ok().filter(|l| l.contains("ready"))
        });
        IssuerServer { url, dir: dir.to_owned(), _daemon: daemon }
    }

    /// Publishes a new JWKS (the issuer rotated its keys).
    pub fn publish(&self, keys: &Keys) {
        let tmp = self.dir.join("jwks.json.tmp");
        std::fs::write(&tmp, keys.jwks()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(tmp, self.dir.join("jwks.json")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// What GitHub Actions' ID-token endpoint (`<url>/gh-token?...`) answers from now on.
    pub fn github_token(&self, jwt: &str) {
        std::fs::write(self.dir.join("gh-token.json"), json!({ "value": jwt }).to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        std::fs::read_to_string(self.dir.join("issuer.log")).unwrap_or_default().matches("GET /jwks").count()
    }
}
