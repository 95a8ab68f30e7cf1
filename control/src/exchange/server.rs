//! The exchange's transport: HTTPS only (rustls), `POST /v1/token` with the ID token as
//! `Authorization: Bearer` and a JSON body; answers JSON. Logs name the subject and connector,
//! never a token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Exchange, TokenRequest};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("token endpoint TLS: {0}")]
    Tls(String),
    #[error("token endpoint: cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A rustls server configuration from PEM files (certificate chain, private key).
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServerError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| ServerError::Tls(format!("{}: {e}", p.display())));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| ServerError::Tls(format!("{}: no private key", key.display())))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))
}

fn json_error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [("content-type", "application/json")], serde_json::json!({ "error": message }).to_string()).into_response()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn token(State(ex): State<Arc<Exchange>>, headers: HeaderMap, body: Bytes) -> Response {
    let req: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            ex.metrics.count_exchange("bad_request");
            return json_error(
                400,
                &format!("the body must be JSON {{\"connector\": \"ns/name\", \"tool\": ...}}: {e}"),
            );
        }
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let connector = req.connector.clone();
    match ex.exchange(bearer, req, now()).await {
        Ok(g) => {
            log::info!(
                "exchange: subject {:?} (issuer {}) granted {} until {}",
                g.subject,
                g.issuer,
                g.response.connector,
                g.response.expires_at
            );
            let body = serde_json::to_string(&g.response).unwrap_or_default();
            (StatusCode::OK, [("content-type", "application/json"), ("cache-control", "no-store")], body)
                .into_response()
        }
        Err(r) => {
            log::warn!("exchange for {connector:?} refused ({}): {}", r.reason, r.message);
            json_error(r.status, &r.message)
        }
    }
}

pub fn router(ex: Arc<Exchange>) -> axum::Router {
    axum::Router::new().route("/v1/token", post(token)).with_state(ex)
}

/// Serves the exchange over TLS on `listener` until `handle` is told to shut down.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: rustls::ServerConfig,
    ex: Arc<Exchange>,
    handle: axum_server::Handle,
) -> std::io::Result<()> {
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    // TCP_NODELAY: without it a fresh connection's response waits out the client's delayed ACK
    // (Nagle), ~40 ms per `login`.
    axum_server::from_tcp_rustls(listener, config)
        .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
        .handle(handle)
        .serve(router(ex).into_make_service())
        .await
}
