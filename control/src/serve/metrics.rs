//! serve's own health and metrics: the counters the engine and the ADS streams keep, their
//! Prometheus text, and the small HTTP server (axum, transport only) for `/healthz` and
//! `/metrics` on `--metrics-listen`, apart from the xDS port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing::get;

use crate::xds::cache::Cache;

/// What the engine records; cheap to update from anywhere.
#[derive(Default, Debug)]
pub struct ServeMetrics {
    /// A snapshot has been built at least once: Envoys can be served.
    pub ready: AtomicBool,
    pub snapshot_builds: AtomicU64,
    pub snapshot_failures: AtomicU64,
    pub reload_errors: AtomicU64,
    /// The last reload was rejected (the last good manifests still serve).
    pub last_reload_failed: AtomicBool,
    pub tokens_minted: AtomicU64,
    pub connectors: AtomicU64,
    /// Connector → when its registry credential expires (Unix seconds), where known.
    pub expiries: Mutex<BTreeMap<String, u64>>,
    /// Token exchanges by outcome (`granted` or the refusal reason).
    pub exchanges: Mutex<BTreeMap<&'static str, u64>>,
}

impl ServeMetrics {
    pub fn count_exchange(&self, outcome: &'static str) {
        if let Ok(mut e) = self.exchanges.lock() {
            *e.entry(outcome).or_default() += 1;
        }
    }
}

fn line(out: &mut String, help: &str, kind: &str, name: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn one(v: u64) -> Vec<(String, f64)> {
    vec![(String::new(), v as f64)]
}

/// Prometheus label value escaping.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The Prometheus text of `/metrics` at `now` (Unix seconds).
pub fn render(m: &ServeMetrics, cache: &Cache, now: u64) -> String {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let b = |a: &AtomicBool| u64::from(a.load(Ordering::Relaxed));
    let mut out = String::new();
    line(&mut out, "1 once a snapshot has been built", "gauge", "npm_connector_serve_ready", &one(b(&m.ready)));
    line(&mut out, "connectors loaded", "gauge", "npm_connector_serve_connectors", &one(g(&m.connectors)));
    line(
        &mut out,
        "snapshots built",
        "counter",
        "npm_connector_serve_snapshot_builds_total",
        &one(g(&m.snapshot_builds)),
    );
    line(
        &mut out,
        "snapshots that failed to build (the node keeps its last)",
        "counter",
        "npm_connector_serve_snapshot_failures_total",
        &one(g(&m.snapshot_failures)),
    );
    let versions: Vec<(String, f64)> = cache
        .versions()
        .into_iter()
        .flat_map(|(node, types)| {
            types.into_iter().map(move |(t, v)| {
                let short = t.rsplit('.').next().unwrap_or(&t).to_owned();
                (format!("{{node=\"{}\",type=\"{}\",version=\"{}\"}}", esc(&node), esc(&short), esc(&v)), 1.0)
            })
        })
        .collect();
    line(
        &mut out,
        "the snapshot version per node and type",
        "gauge",
        "npm_connector_serve_snapshot_version",
        &versions,
    );
    let s = &cache.stats;
    line(&mut out, "ADS streams open", "gauge", "npm_connector_serve_connected_nodes", &one(g(&s.connected)));
    line(&mut out, "ACKs received", "counter", "npm_connector_serve_acks_total", &one(g(&s.acks)));
    line(&mut out, "NACKs received", "counter", "npm_connector_serve_nacks_total", &one(g(&s.nacks)));
    line(&mut out, "xDS responses sent", "counter", "npm_connector_serve_responses_sent_total", &one(g(&s.sent)));
    line(
        &mut out,
        "rejected manifest reloads",
        "counter",
        "npm_connector_serve_reload_errors_total",
        &one(g(&m.reload_errors)),
    );
    line(
        &mut out,
        "1 if the last reload was rejected (the last good manifests still serve)",
        "gauge",
        "npm_connector_serve_last_reload_failed",
        &one(b(&m.last_reload_failed)),
    );
    line(
        &mut out,
        "client tokens minted",
        "counter",
        "npm_connector_serve_tokens_minted_total",
        &one(g(&m.tokens_minted)),
    );
    let exchanges: Vec<(String, f64)> = m
        .exchanges
        .lock()
        .map(|e| e.iter().map(|(o, n)| (format!("{{outcome=\"{o}\"}}"), *n as f64)).collect())
        .unwrap_or_default();
    line(
        &mut out,
        "ID-token exchanges at /v1/token, by outcome (granted, or why refused)",
        "counter",
        "npm_connector_serve_exchanges_total",
        &exchanges,
    );
    let expiries: Vec<(String, f64)> = m
        .expiries
        .lock()
        .map(|e| e.iter().map(|(c, exp)| (format!("{{connector=\"{}\"}}", esc(c)), *exp as f64 - now as f64)).collect())
        .unwrap_or_default();
    line(
        &mut out,
        "seconds until the registry credential expires (npm-connector.io/expires-at), negative once expired",
        "gauge",
        "npm_connector_serve_credential_expiry_seconds",
        &expiries,
    );
    out
}

/// Serves `/healthz` (200 once ready, else 503) and `/metrics` until the task is dropped.
pub async fn serve_http(listener: tokio::net::TcpListener, metrics: Arc<ServeMetrics>, cache: Arc<Cache>) {
    let health = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let ready = health.ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "no snapshot built yet\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let text = render(&metrics, &cache, now);
                async move { ([("content-type", "text/plain; version=0.0.4")], text) }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        log::error!("metrics server stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_figure() {
        let (cache, _rx) = Cache::new();
        let m = ServeMetrics::default();
        m.ready.store(true, Ordering::Relaxed);
        m.tokens_minted.fetch_add(3, Ordering::Relaxed);
        m.expiries.lock().unwrap().insert("team/npm".into(), 1_000);
        cache.stats.nacks.fetch_add(1, Ordering::Relaxed);
        let text = render(&m, &cache, 900);
        for want in [
            "npm_connector_serve_ready 1",
            "npm_connector_serve_tokens_minted_total 3",
            "npm_connector_serve_nacks_total 1",
            "npm_connector_serve_connected_nodes 0",
            "npm_connector_serve_credential_expiry_seconds{connector=\"team/npm\"} 100",
            "# TYPE npm_connector_serve_acks_total counter",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} in:\n{text}");
        }
    }
}
