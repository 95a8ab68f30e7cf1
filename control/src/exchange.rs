//! Token exchange (`POST /v1/token` on `serve --token-listen`): a pod or CI job presents the
//! OIDC ID token it already has (a projected ServiceAccount token, a GitHub Actions or GitLab
//! ID token) and gets a short-lived, signed connector token — and, if asked, its client files.
//! Nothing is distributed ahead of time and minting changes no Envoy configuration.
//!
//! This module decides (issuer, policy, rate, minting); [`server`] is the HTTPS transport.

pub mod oidc;
pub mod policy;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use governor::{DefaultKeyedRateLimiter, Quota};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::manifest::Connector;
use crate::render::{self, Options};
use crate::serve::metrics::ServeMetrics;
use crate::token::TokenKeys;
use oidc::{IdTokenError, Issuers, RateLimit};

/// What the exchange needs of the control plane's current state; `serve` replaces it on every
/// reload.
#[derive(Debug)]
pub struct View {
    pub connectors: Arc<Vec<Connector>>,
    pub opts: Options,
    pub token_keys: TokenKeys,
    /// Lifetime of the tokens minted, seconds.
    pub ttl: u64,
}

/// Which client's files to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Npm,
    Pnpm,
    Yarn,
    YarnClassic,
    Bun,
    All,
}

impl Tool {
    /// Whether a rendered client file is this tool's (proxy settings and CA files go to all).
    fn wants(self, file: &str) -> bool {
        match file {
            ".npmrc" => matches!(self, Tool::Npm | Tool::Pnpm | Tool::All),
            ".yarnrc.yml" => matches!(self, Tool::Yarn | Tool::All),
            render::YARN_CLASSIC_FILE => matches!(self, Tool::YarnClassic | Tool::All),
            "bunfig.toml" => matches!(self, Tool::Bun | Tool::All),
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `namespace/name`.
    pub connector: String,
    /// Return this tool's client files too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<Tool>,
    /// Where the client will put the files (absolute): `cafile` paths point there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The client mode the caller expects (`gateway`, `https-proxy`, `sidecar`); refused if this server
    /// renders another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    pub connector: String,
    pub token: String,
    pub expires_at: u64,
    pub mode: String,
    /// File name → contents, for `tool`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A refusal: HTTP status, a counter label, and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

fn refused(status: u16, reason: &'static str, message: impl Into<String>) -> Refused {
    Refused { status, reason, message: message.into() }
}

impl From<IdTokenError> for Refused {
    fn from(e: IdTokenError) -> Self {
        let reason = match &e {
            IdTokenError::Malformed => "malformed",
            IdTokenError::UnknownIssuer(_) => "unknown_issuer",
            IdTokenError::Expired => "expired",
            IdTokenError::NotYetValid => "not_yet_valid",
            IdTokenError::Audience(_) => "wrong_audience",
            IdTokenError::Algorithm(_) => "algorithm",
            IdTokenError::UnknownKey { .. } | IdTokenError::Signature(_) => "signature",
            IdTokenError::MissingClaim(_) => "missing_claim",
            IdTokenError::Keys(..) => "issuer_keys",
        };
        let status = if matches!(e, IdTokenError::Keys(..)) { 503 } else { 401 };
        refused(status, reason, e.to_string())
    }
}

/// Granted token and files; `Debug` never shows the token.
pub struct Granted {
    pub response: TokenResponse,
    pub subject: String,
    pub issuer: String,
}

pub struct Exchange {
    pub issuers: Issuers,
    pub view: Arc<RwLock<Arc<View>>>,
    limiter: DefaultKeyedRateLimiter<String>,
    pub metrics: Arc<ServeMetrics>,
}

impl Exchange {
    pub fn new(issuers: Issuers, rate: RateLimit, view: Arc<RwLock<Arc<View>>>, metrics: Arc<ServeMetrics>) -> Self {
        let per_minute = std::num::NonZeroU32::new(rate.per_minute.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let burst = std::num::NonZeroU32::new(rate.burst.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let limiter = governor::RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst));
        Exchange { issuers, view, limiter, metrics }
    }

    /// One exchange: `bearer` is the ID token from `Authorization: Bearer`.
    pub async fn exchange(&self, bearer: Option<&str>, req: TokenRequest, now: u64) -> Result<Granted, Refused> {
        let result = self.decide(bearer, req, now).await;
        self.metrics.count_exchange(match &result {
            Ok(_) => "granted",
            Err(r) => r.reason,
        });
        result
    }

    async fn decide(&self, bearer: Option<&str>, req: TokenRequest, now: u64) -> Result<Granted, Refused> {
        let jwt = bearer.ok_or_else(|| {
            refused(401, "missing", "send the ID token as Authorization: Bearer <token> (npm-connector login does)")
        })?;
        let who = self.issuers.verify(jwt).await?;
        if self.limiter.check_key(&who.sub).is_err() {
            return Err(refused(
                429,
                "rate_limited",
                format!("too many exchanges for subject {:?}; retry later", who.sub),
            ));
        }
        let view = Arc::clone(&*self.view.read().map_err(|_| refused(500, "internal", "state unavailable"))?);
        let connector = view.connectors.iter().find(|c| c.id() == req.connector).ok_or_else(|| {
            refused(404, "unknown_connector", format!("no connector {:?} on this server", req.connector))
        })?;
        policy::allowed(&who, connector).map_err(|m| refused(403, "not_allowed", m))?;
        let mode = view.opts.mode.name();
        if let Some(m) = req.mode.as_deref().filter(|m| *m != mode) {
            return Err(refused(400, "mode", format!("this server renders {mode} client files, not {m}")));
        }
        let expires_at = now + view.ttl;
        let token = view
            .token_keys
            .mint(&connector.id(), expires_at)
            .map_err(|e| refused(500, "internal", e.to_string()))?
            .ok_or_else(|| {
                refused(503, "no_token_keys", "serve has no token keys (--token-keys); it cannot mint tokens")
            })?;
        let files = match req.tool {
            None => BTreeMap::new(),
            Some(tool) => client_files(connector, &view.opts, &token, tool, req.dir)?,
        };
        use secrecy::ExposeSecret as _;
        let t = token.expose_secret();
        Ok(Granted {
            subject: who.sub,
            issuer: who.issuer,
            response: TokenResponse {
                connector: connector.id(),
                token: t.to_owned(),
                expires_at,
                mode: mode.to_owned(),
                files,
            },
        })
    }
}

fn client_files(
    c: &Connector,
    opts: &Options,
    token: &SecretString,
    tool: Tool,
    dir: Option<PathBuf>,
) -> Result<BTreeMap<String, String>, Refused> {
    let mut opts = opts.clone();
    if let Some(tls) = opts.tls.as_mut() {
        let dir = dir.filter(|d| d.is_absolute()).ok_or_else(|| {
            refused(400, "dir", "https-proxy client files point at their CA file: send the absolute dir they go to")
        })?;
        tls.client_dir = Some(dir);
    }
    let files = render::client_files(c, &opts, token).map_err(|e| refused(500, "internal", e.to_string()))?;
    Ok(files
        .into_iter()
        .filter_map(|f| {
            let name = f.path.file_name()?.to_string_lossy().into_owned();
            tool.wants(&name).then_some((name, f.contents.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests;
