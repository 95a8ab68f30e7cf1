//! The proxy-wasm shim: each callback reads what the core needs from the host, calls the core
//! and applies its answer. No decisions are made here.

use std::cell::Cell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::decision::{self, Decision, Reason, Request};
use crate::rewrite::{self, Eligibility, Rewriter};
use crate::seal::{Key, KEY_ENV};
use crate::token::{self, Header};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { compiled: None }) });
}}

/// A connector's counters; names are `npm_connector.<counter>.connector=<ns>/<name>`, shown by
/// Envoy as `wasmcustom.npm_connector...` in `/stats`.
#[derive(Clone, Copy)]
enum Count {
    Injected,
    Missing,
    Bad,
    Expired,
    Rewritten,
    RewriteSkipped,
    Tunnels,
}

const COUNTS: usize = 7;

impl Count {
    fn name(self) -> &'static str {
        match self {
            Count::Injected => "injected",
            Count::Missing => "refused_missing_token",
            Count::Bad => "refused_bad_token",
            Count::Expired => "refused_expired_token",
            Count::Rewritten => "rewritten_responses",
            Count::RewriteSkipped => "rewrite_skipped_encoded",
            Count::Tunnels => "tunnels_opened",
        }
    }
}

struct Compiled {
    config: Config,
    /// Per connector and count, the metric id once defined: a connector's counters are
    /// defined on first use (each definition is a host call that creates an Envoy stat, which
    /// for every connector up front made a 10,000-connector configuration take seconds and
    /// tens of megabytes per VM).
    ids: Vec<Cell<u32>>,
    bad_path: u32,
    bad_authority: u32,
    method: u32,
    route_mismatch: u32,
    blind_tunnels: u32,
    /// Token refusals of CONNECTs that no connector owns (blind tunnels).
    blind_refused: u32,
}

fn counter(name: &str) -> u32 {
    // A metric the host refuses to define must not take the filter down: id 0 is never valid,
    // so increments on it are ignored by the host.
    hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0)
}

fn bump(id: u32) {
    if id != 0 {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Compiled {
    fn new(config: Config) -> Self {
        Compiled {
            ids: (0..config.connectors.len() * COUNTS).map(|_| Cell::new(0)).collect(),
            config,
            bad_path: counter("npm_connector.refused_bad_path"),
            bad_authority: counter("npm_connector.refused_bad_authority"),
            method: counter("npm_connector.refused_method"),
            route_mismatch: counter("npm_connector.refused_route_mismatch"),
            blind_tunnels: counter("npm_connector.tunnels_blind"),
            blind_refused: counter("npm_connector.refused_blind_token"),
        }
    }

    /// Adds one to a connector's count, defining the counter the first time.
    fn count(&self, connector: usize, what: Count) {
        let (Some(slot), Some(c)) =
            (self.ids.get(connector * COUNTS + what as usize), self.config.connectors.get(connector))
        else {
            return;
        };
        if slot.get() == 0 {
            // `npm_connector.<counter>.connector=<ns>/<name>`: the rendered bootstrap's
            // stats_tags turn the suffix into a `connector` tag (Prometheus: a label); a name
            // with dots cannot collide with another, as `/` separates namespace and name.
            slot.set(counter(&format!("npm_connector.{}.connector={}", what.name(), c.name)));
        }
        bump(slot.get());
    }
}

struct Root {
    compiled: Option<Rc<Compiled>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        // The sealing key comes from Envoy's environment (vm_config host_env_keys), never from
        // the configuration; it is read here, once per configuration.
        let key = match std::env::var(KEY_ENV) {
            Ok(text) => match Key::from_base64(&text) {
                Ok(k) => Some(k),
                Err(e) => {
                    log::error!("npm-connector: configuration rejected: {KEY_ENV}: {e}");
                    return false;
                }
            },
            Err(_) => None,
        };
        match Config::from_json(&bytes, key.as_ref()) {
            Ok(config) => {
                log::info!("npm-connector: configured {} connector(s)", config.connectors.len());
                self.compiled = Some(Rc::new(Compiled::new(config)));
                true
            }
            Err(e) => {
                // Returning false makes Envoy reject this configuration and keep the last good one.
                log::error!("npm-connector: configuration rejected: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            compiled: self.compiled.clone(),
            connector: None,
            rewrite_allowed: false,
            rewriter: None,
            counted: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    compiled: Option<Rc<Compiled>>,
    connector: Option<usize>,
    rewrite_allowed: bool,
    rewriter: Option<Rewriter>,
    /// This response's rewrite has been counted.
    counted: bool,
}

impl Context for Http {}

impl Http {
    /// A string property, `None` when absent or empty.
    fn property_str(&self, name: &str) -> Option<String> {
        self.get_property(vec!["xds", name]).and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty())
    }

    fn refuse(&self, status: u16, challenge: Option<(&str, &str)>, body: &str) -> Action {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(challenge);
        self.send_http_response(u32::from(status), headers, Some(body.as_bytes()));
        Action::Pause
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(compiled) = self.compiled.clone() else {
            return self.refuse(503, None, r#"{"error":"npm-connector: filter has no configuration"}"#);
        };
        // One host call for every header: duplicates are seen, not merged away.
        let headers = self.get_http_request_headers();
        let mut method = None;
        let mut authority = None;
        let mut path = None;
        let mut proxy_authorization = Header::Absent;
        let mut authorization = Header::Absent;
        for (k, v) in &headers {
            let slot = match k.as_str() {
                ":method" => {
                    method = Some(v.as_str());
                    continue;
                }
                ":authority" => {
                    authority = Some(v.as_str());
                    continue;
                }
                ":path" => {
                    path = Some(v.as_str());
                    continue;
                }
                "proxy-authorization" => &mut proxy_authorization,
                "authorization" => &mut authorization,
                _ => continue,
            };
            *slot = match slot {
                Header::Absent => Header::One(v.as_str()),
                _ => Header::Many,
            };
        }
        // The router has chosen the route already (Envoy 1.40 exposes it to Wasm in the
        // request-headers phase as xds.route_name / xds.cluster_name; e2e tests prove it): the
        // decision follows it.
        let route = self.property_str("route_name");
        let needs = decision::needs(&compiled.config, route.as_deref());
        let cluster = if needs.cluster { self.property_str("cluster_name") } else { None };
        // Inside a tunnel (https-proxy mode): the CONNECT's Proxy-Authorization, which the
        // outer listener shared with this connection as filter state.
        let tunnel_authorization = match (&compiled.config.tunnel_token, needs.tunnel_token) {
            (Some(key), true) => self.get_property(vec!["filter_state", key]).and_then(|b| String::from_utf8(b).ok()),
            _ => None,
        };
        let req = Request {
            method,
            authority,
            path,
            proxy_authorization,
            authorization,
            tunnel_authorization: tunnel_authorization.as_deref(),
            route: route.as_deref(),
            cluster: cluster.as_deref(),
        };
        // The clock is a host call: asked only when a token with an expiry matched.
        let now = || self.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let decision = decision::decide(&compiled.config, &req, &now);
        // A connector token never leaves the proxy, whatever happens to the request.
        let strip_proxy = proxy_authorization.is_present();
        let strip_auth = match authorization {
            Header::Absent => false,
            Header::Many => true,
            Header::One(v) => token::carries_connector_token(v),
        };
        let rewrite_path = path.map(rewrite::request_allows_rewrite).unwrap_or(true);
        // Hop-by-hop, and it holds the token: gone whatever the decision.
        if strip_proxy {
            self.set_http_request_header("proxy-authorization", None);
        }
        match decision {
            Decision::Forward | Decision::Tunnel { connector: None } => {
                if strip_auth {
                    self.set_http_request_header("authorization", None);
                }
                if matches!(decision, Decision::Tunnel { .. }) {
                    bump(compiled.blind_tunnels);
                }
                Action::Continue
            }
            Decision::Refuse(r) => {
                let global = match (r.reason, r.connector) {
                    (Reason::MissingToken, Some(i)) => Err((i, Count::Missing)),
                    (Reason::BadToken, Some(i)) => Err((i, Count::Bad)),
                    (Reason::ExpiredToken, Some(i)) => Err((i, Count::Expired)),
                    (Reason::BadPath, _) => Ok(compiled.bad_path),
                    (Reason::BadAuthority, _) => Ok(compiled.bad_authority),
                    (Reason::Method, _) => Ok(compiled.method),
                    (Reason::RouteMismatch, _) => Ok(compiled.route_mismatch),
                    // Token refusals on a blind tunnel have no connector.
                    (Reason::MissingToken | Reason::BadToken | Reason::ExpiredToken, None) => {
                        Ok(compiled.blind_refused)
                    }
                };
                match global {
                    Ok(id) => bump(id),
                    Err((i, what)) => compiled.count(i, what),
                }
                self.refuse(r.status, r.challenge, &r.body())
            }
            Decision::Tunnel { connector: Some(connector) } => {
                compiled.count(connector, Count::Tunnels);
                Action::Continue
            }
            Decision::Inject { connector } => {
                let Some((c, cred)) =
                    compiled.config.connectors.get(connector).and_then(|c| c.credential.as_ref().map(|k| (c, k)))
                else {
                    return self.refuse(500, None, r#"{"error":"npm-connector: internal error"}"#);
                };
                // Each header call crosses into the host: touch only what is there. Setting
                // the credential header replaces any value the client sent.
                if authorization.is_present() && cred.header != "authorization" {
                    self.set_http_request_header("authorization", None);
                }
                self.set_http_request_header(&cred.header, Some(cred.value.expose_secret()));
                self.rewrite_allowed = c.rewrite.is_some() && rewrite_path;
                if self.rewrite_allowed {
                    // The rewrite works on plain JSON; tarballs are already gzip either way.
                    self.set_http_request_header("accept-encoding", Some("identity"));
                }
                compiled.count(connector, Count::Injected);
                self.connector = Some(connector);
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        // Only injected requests of connectors whose clients use another URL than the registry's
        // (gateway mode) have anything to re-base.
        let (Some(compiled), Some(i)) = (self.compiled.clone(), self.connector) else {
            return Action::Continue;
        };
        let Some(rule) = compiled.config.connectors.get(i).and_then(|c| c.rewrite.as_ref()) else {
            return Action::Continue;
        };
        let status: u16 = self.get_http_response_header(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        if (300..400).contains(&status) {
            // A redirect within the registry comes back through the proxy; one to another host
            // reaches the client unchanged, and the credential does not follow it.
            if let Some(loc) = self.get_http_response_header("location") {
                if let Some(rebased) = rewrite::rebase_location(&loc, rule) {
                    self.set_http_response_header("location", Some(&rebased));
                }
            }
            return Action::Continue;
        }
        if !self.rewrite_allowed {
            return Action::Continue;
        }
        let ct = self.get_http_response_header("content-type");
        let ce = self.get_http_response_header("content-encoding");
        match rewrite::eligibility(status, ct.as_deref(), ce.as_deref()) {
            Eligibility::Rewrite => {
                // The body changes length as it streams: drop content-length, Envoy re-frames.
                self.set_http_response_header("content-length", None);
                self.rewriter = Some(Rewriter::new(rule));
            }
            Eligibility::Encoded => {
                log::warn!(
                    "npm-connector: {}: packument arrived compressed; tarball URLs not rewritten",
                    compiled.config.connectors[i].name
                );
                compiled.count(i, Count::RewriteSkipped);
            }
            Eligibility::NotPackument => {}
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if self.rewriter.is_none() {
            return Action::Continue;
        }
        let chunk = self.get_http_response_body(0, size).unwrap_or_default();
        let Some(rw) = self.rewriter.as_mut() else {
            return Action::Continue;
        };
        let mut out = Vec::with_capacity(chunk.len() + 256);
        rw.push(&chunk, &mut out);
        if eos {
            rw.finish(&mut out);
        }
        // Counted once per response, however many versions it lists, as soon as one is (the
        // end of the stream may reach this filter without a body callback).
        let first_rewrite = !self.counted && rw.rewritten() > 0;
        self.set_http_response_body(0, size, &out);
        if first_rewrite {
            self.counted = true;
            if let (Some(c), Some(i)) = (self.compiled.as_ref(), self.connector) {
                c.count(i, Count::Rewritten);
            }
        }
        Action::Continue
    }
}
