//! OIDC ID tokens from configured issuers (a Kubernetes cluster's service-account issuer,
//! GitHub Actions, GitLab, any OIDC provider): keys from discovery + JWKS or a static JWKS
//! file, cached and refreshed (an unknown `kid` refetches, so a rotated issuer key is picked
//! up); signature, `iss`, `aud`, `exp`, `nbf` and the algorithm checked by `jsonwebtoken`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The audience ID tokens must be minted for, unless an issuer says otherwise.
pub const DEFAULT_AUDIENCE: &str = "npm-connector";

/// Cached keys older than this are refetched before use.
const MAX_AGE: Duration = Duration::from_secs(600);
/// An unknown `kid` refetches the keys at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(5);

/// Who issues the tokens: decides the default policy and how claims are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Projected ServiceAccount tokens: `sub` is `system:serviceaccount:<ns>:<sa>` and the
    /// `kubernetes.io` claim names the namespace; a ServiceAccount may use its namespace's
    /// connectors.
    Kubernetes,
    Github,
    Gitlab,
    Oidc,
}

/// The issuers file (`serve --issuers FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuersFile {
    pub issuers: Vec<IssuerConfig>,
    /// Exchanges per subject: a burst, refilled at `perMinute`.
    #[serde(default)]
    pub rate_limit: RateLimit,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_minute: 30, burst: 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerConfig {
    /// A short name for logs and metrics.
    pub name: String,
    pub kind: Kind,
    /// The exact `iss` value.
    pub issuer: String,
    #[serde(default)]
    pub audience: Option<String>,
    /// A JWKS document on disk, for issuers serve cannot reach (a cluster's
    /// `kubectl get --raw /openid/v1/jwks`); re-read when a token names an unknown key.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The JWKS URL, if not found by discovery (`<issuer>/.well-known/openid-configuration`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// CA certificates (PEM) to verify the issuer's HTTPS with, besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Why an ID token was not accepted: each says what to fix and never echoes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a JWT")]
    Malformed,
    #[error("the ID token's issuer {0:?} is not configured")]
    UnknownIssuer(String),
    #[error("the ID token expired; request a fresh one")]
    Expired,
    #[error("the ID token is not valid yet (nbf)")]
    NotYetValid,
    #[error("wrong audience: the ID token must be minted for {0:?}")]
    Audience(String),
    #[error("the ID token is signed with {0:?}; only asymmetric algorithms (RS*, PS*, ES*, EdDSA) are accepted")]
    Algorithm(String),
    #[error("the ID token's signing key {kid:?} is not among issuer {issuer}'s keys")]
    UnknownKey { issuer: String, kid: String },
    #[error("the ID token's signature does not verify with issuer {0}'s keys")]
    Signature(String),
    #[error("the ID token lacks the {0} claim")]
    MissingClaim(String),
    #[error("issuer {0}'s keys cannot be loaded: {1}")]
    Keys(String, String),
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The configured issuer's name.
    pub issuer: String,
    pub kind: Kind,
    pub sub: String,
    /// Kubernetes: the ServiceAccount's namespace (from the `kubernetes.io` claim).
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Peek {
    iss: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(rename = "kubernetes.io", default)]
    kubernetes: Option<KubernetesClaim>,
}

#[derive(Debug, Deserialize)]
struct KubernetesClaim {
    namespace: Option<String>,
}

struct Cached {
    keys: JwkSet,
    fetched: Instant,
}

pub struct Issuer {
    pub cfg: IssuerConfig,
    cache: tokio::sync::Mutex<Option<Cached>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issuer({})", self.cfg.name)
    }
}

fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl Issuer {
    pub fn new(cfg: IssuerConfig) -> Result<Self, IdTokenError> {
        let http = http_client(cfg.ca_file.as_deref()).map_err(|e| IdTokenError::Keys(cfg.name.clone(), e))?;
        Ok(Issuer { cfg, cache: tokio::sync::Mutex::new(None), http })
    }

    fn audience(&self) -> &str {
        self.cfg.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE)
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        if let Some(f) = &self.cfg.jwks_file {
            let text = tokio::fs::read_to_string(f).await.map_err(|e| format!("{}: {e}", f.display()))?;
            return serde_json::from_str(&text).map_err(|e| format!("{}: not a JWKS document: {e}", f.display()));
        }
        let uri = match &self.cfg.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
                let doc: serde_json::Value = self.get_json(&url).await?;
                doc.get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
            }
        };
        serde_json::from_value(self.get_json(&uri).await?).map_err(|e| format!("{uri}: not a JWKS document: {e}"))
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let resp =
            self.http.get(url).timeout(Duration::from_secs(10)).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        resp.json().await.map_err(|e| format!("{url}: {e}"))
    }

    /// The key for `kid` (or the only key), refetching when stale or unknown.
    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, IdTokenError> {
        let mut cache = self.cache.lock().await;
        let pick = |set: &JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let fresh = cache.as_ref().is_some_and(|c| c.fetched.elapsed() < MAX_AGE);
        if fresh {
            if let Some(k) = cache.as_ref().and_then(|c| pick(&c.keys)) {
                return Ok(k);
            }
        }
        // A file is cheap to re-read; an issuer's endpoint is asked at most every MIN_REFETCH.
        let may_refetch =
            self.cfg.jwks_file.is_some() || cache.as_ref().is_none_or(|c| !fresh || c.fetched.elapsed() >= MIN_REFETCH);
        if may_refetch {
            match self.fetch().await {
                Ok(keys) => *cache = Some(Cached { keys, fetched: Instant::now() }),
                Err(e) if cache.is_none() => return Err(IdTokenError::Keys(self.cfg.name.clone(), e)),
                // Keep the last keys if the issuer is briefly unreachable.
                Err(e) => log::warn!("issuer {}: keys not refreshed: {e}", self.cfg.name),
            }
        }
        cache.as_ref().and_then(|c| pick(&c.keys)).ok_or_else(|| IdTokenError::UnknownKey {
            issuer: self.cfg.name.clone(),
            kid: kid.unwrap_or("(none)").chars().take(64).collect(),
        })
    }

    async fn verify(&self, jwt: &str, header: &jsonwebtoken::Header) -> Result<Identity, IdTokenError> {
        let jwk = self.key(header.kid.as_deref()).await?;
        if let Some(ka) = jwk.common.key_algorithm {
            if format!("{ka:?}") != format!("{:?}", header.alg) {
                return Err(IdTokenError::Signature(self.cfg.name.clone()));
            }
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| IdTokenError::Keys(self.cfg.name.clone(), e.to_string()))?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[self.audience()]);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(jwt, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => IdTokenError::Expired,
            ErrorKind::ImmatureSignature => IdTokenError::NotYetValid,
            ErrorKind::InvalidAudience => IdTokenError::Audience(self.audience().to_owned()),
            ErrorKind::MissingRequiredClaim(c) => IdTokenError::MissingClaim(c.clone()),
            ErrorKind::InvalidIssuer => IdTokenError::UnknownIssuer(self.cfg.issuer.clone()),
            _ => IdTokenError::Signature(self.cfg.name.clone()),
        })?;
        let namespace = match self.cfg.kind {
            Kind::Kubernetes => data.claims.kubernetes.and_then(|k| k.namespace),
            _ => None,
        };
        Ok(Identity { issuer: self.cfg.name.clone(), kind: self.cfg.kind, sub: data.claims.sub, namespace })
    }
}

/// The configured issuers.
#[derive(Debug, Clone)]
pub struct Issuers(pub Arc<Vec<Issuer>>);

impl Issuers {
    pub fn new(cfgs: Vec<IssuerConfig>) -> Result<Self, IdTokenError> {
        Ok(Issuers(Arc::new(cfgs.into_iter().map(Issuer::new).collect::<Result<_, _>>()?)))
    }

    /// Verifies an ID token against the issuer its `iss` names.
    pub async fn verify(&self, jwt: &str) -> Result<Identity, IdTokenError> {
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| IdTokenError::Malformed)?;
        if !asymmetric(header.alg) {
            return Err(IdTokenError::Algorithm(format!("{:?}", header.alg)));
        }
        // Which issuer: read `iss` before any key is chosen; the signature is checked below
        // with that issuer's keys only.
        let mut peek = Validation::new(header.alg);
        peek.insecure_disable_signature_validation();
        peek.validate_aud = false;
        peek.validate_exp = false;
        peek.required_spec_claims.clear();
        let iss = jsonwebtoken::decode::<Peek>(jwt, &DecodingKey::from_secret(&[]), &peek)
            .map_err(|_| IdTokenError::Malformed)?
            .claims
            .iss
            .ok_or_else(|| IdTokenError::MissingClaim("iss".into()))?;
        let issuer = self
            .0
            .iter()
            .find(|i| i.cfg.issuer == iss)
            .ok_or_else(|| IdTokenError::UnknownIssuer(iss.chars().take(200).collect()))?;
        issuer.verify(jwt, &header).await
    }
}

/// An HTTPS client trusting the public web roots and `ca_file` (PEM), if given.
pub fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(f) = ca_file {
        let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("{}: {e}", f.display()))?;
            roots.add(cert).map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).build().map_err(|e| e.to_string())
}
