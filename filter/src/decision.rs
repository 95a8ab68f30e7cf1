//! The per-request decision. Envoy's router has already chosen the route; the decision only
//! enforces: a connector's credential is injected only on that connector's own route, sending
//! to that connector's own cluster, for a registry method, with that connector's valid token.
//! Every other request gets no credential, whatever its `Host`, path or headers say.

use crate::canon::{check_authority, check_path};
use crate::config::{Config, Role};
use crate::token::{self, Header, Presented, Source, TokenHash};

/// What the decision reads: a few request headers and the route the router chose.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub method: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub path: Option<&'a str>,
    pub proxy_authorization: Header<'a>,
    pub authorization: Header<'a>,
    /// Inside a CONNECT tunnel: the `Proxy-Authorization` the CONNECT carried (filter state).
    pub tunnel_authorization: Option<&'a str>,
    /// The name of the route Envoy's router matched (`xds.route_name`).
    pub route: Option<&'a str>,
    /// The cluster that route sends to (`xds.cluster_name`); `None` for a direct response.
    pub cluster: Option<&'a str>,
}

/// Why a request was refused; each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingToken,
    BadToken,
    ExpiredToken,
    BadPath,
    BadAuthority,
    Method,
    /// A connector's route that sends elsewhere than the connector's cluster: a broken
    /// configuration, refused rather than trusted.
    RouteMismatch,
}

impl Reason {
    pub fn counter(self) -> &'static str {
        match self {
            Reason::MissingToken => "refused_missing_token",
            Reason::BadToken => "refused_bad_token",
            Reason::ExpiredToken => "refused_expired_token",
            Reason::BadPath => "refused_bad_path",
            Reason::BadAuthority => "refused_bad_authority",
            Reason::Method => "refused_method",
            Reason::RouteMismatch => "refused_route_mismatch",
        }
    }
}

/// A local reply. The body is `{"error": "..."}`, which npm prints; it never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: Reason,
    /// The connector whose route the request took, if any (for per-connector counters).
    pub connector: Option<usize>,
    /// `Proxy-Authenticate` or `WWW-Authenticate`, with its value.
    pub challenge: Option<(&'static str, &'static str)>,
    pub message: String,
}

impl Refusal {
    pub fn body(&self) -> String {
        // A struct of one string, not `json!`: a `serde_json::Value` would link its float
        // formatter (the zmij tables, 17 KB of the .wasm) for a body that never holds a number.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        serde_json::to_string(&Body { error: &self.message }).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a connector's route: let the router do what it chose (a direct response, or a
    /// passthrough), without `Proxy-Authorization` or an `Authorization` holding a connector
    /// token.
    Forward,
    Refuse(Refusal),
    /// Remove `Proxy-Authorization` and `Authorization`, then set the connector's credential.
    Inject {
        connector: usize,
    },
    /// A CONNECT with a valid token: to a connector's registry (intercepted), or, with
    /// `connector: None`, a blind tunnel the router sends elsewhere. Nothing is injected.
    Tunnel {
        connector: Option<usize>,
    },
}

/// The methods npm, pnpm, yarn (v1 and berry) and bun send to a registry: install and view
/// (GET, HEAD), publish, dist-tag add, deprecate, login (PUT), audit (POST), unpublish,
/// dist-tag rm, logout (DELETE).
pub const REGISTRY_METHODS: [&str; 5] = ["GET", "HEAD", "PUT", "POST", "DELETE"];

const REALM: &str = "Basic realm=\"npm-connector\"";

fn refusal(status: u16, reason: Reason, connector: Option<usize>, message: String) -> Decision {
    Decision::Refuse(Refusal { status, reason, connector, challenge: None, message })
}

/// What [`decide`] will read beyond the headers and the route. Each is a host call, about as
/// dear as the rest of the filter's work together (≈12,000 instructions under V8, make bench's
/// callgrind section), so the shim asks the host only for what the decision will look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// `xds.cluster_name`: on a connector's route (it must be the connector's cluster), and
    /// for every CONNECT route (a blind tunnel is one that has a cluster).
    pub cluster: bool,
    /// The tunnel's token (filter state): only a connector's route inside a tunnel takes it.
    pub tunnel_token: bool,
}

pub fn needs(config: &Config, route: Option<&str>) -> Needs {
    let owned = route.and_then(|r| config.route(r)).is_some_and(|o| !o.is_empty());
    Needs { cluster: owned || config.role == Role::Connect, tunnel_token: owned && config.role == Role::Tunnel }
}

/// `now_unix` is called only when a matched token carries an expiry.
pub fn decide(config: &Config, req: &Request<'_>, now_unix: &dyn Fn() -> u64) -> Decision {
    let method = req.method.unwrap_or("");
    let connect = method == "CONNECT";
    // TRACE and TRACK echo the request, Authorization included: never forwarded anywhere.
    if method.eq_ignore_ascii_case("TRACE") || method.eq_ignore_ascii_case("TRACK") {
        return refusal(405, Reason::Method, None, format!("npm-connector: method {method} is not allowed"));
    }
    if let Err(e) = check_authority(req.authority.unwrap_or(""), connect) {
        return refusal(400, Reason::BadAuthority, None, format!("npm-connector: {e}"));
    }
    if config.role == Role::Connect && !connect {
        return refusal(
            405,
            Reason::Method,
            None,
            "npm-connector: this is an https proxy; send CONNECT host:port (set https-proxy / HTTPS_PROXY)".to_owned(),
        );
    }
    let owners = req.route.and_then(|r| config.route(r));
    let Some(owners) = owners.filter(|o| !o.is_empty()) else {
        return match (config.role, req.cluster) {
            // A CONNECT the router sends to a blind tunnel (no interception, no filter
            // inside): only for this proxy's clients.
            (Role::Connect, Some(_)) => connect_token(config, req, None, now_unix),
            _ => Decision::Forward,
        };
    };
    let first = owners[0];
    let own_cluster = &config.connectors[first].cluster;
    if req.cluster != Some(own_cluster.as_str()) {
        return refusal(
            502,
            Reason::RouteMismatch,
            Some(first),
            format!(
                "npm-connector: the route of {} does not send to its registry's cluster; no credential was sent",
                config.connectors[first].name
            ),
        );
    }
    if config.role == Role::Connect {
        return connect_token(config, req, Some(owners), now_unix);
    }
    let name = &config.connectors[first].name;
    if !REGISTRY_METHODS.contains(&method) {
        return refusal(
            405,
            Reason::Method,
            Some(first),
            format!("npm-connector: method {method} is not a registry method; {name} allows GET, HEAD, PUT, POST and DELETE"),
        );
    }
    if let Err(e) = check_path(req.path.unwrap_or("/")) {
        return refusal(400, Reason::BadPath, Some(first), format!("npm-connector: {e}; request the canonical path"));
    }
    let (source, header) = match config.role {
        Role::Tunnel => (Source::Tunnel, req.tunnel_authorization.map_or(Header::Absent, Header::One)),
        _ => (Source::Authorization, req.authorization),
    };
    let refuse = |status, reason, challenge, message: String| {
        Decision::Refuse(Refusal { status, reason, connector: Some(first), challenge, message })
    };
    match token::presented(header) {
        Presented::Missing if source == Source::Tunnel => refuse(
            403,
            Reason::MissingToken,
            None,
            format!("npm-connector: the tunnel carries no connector token for {name}; set the proxy URL's userinfo"),
        ),
        Presented::Missing => refuse(
            401,
            Reason::MissingToken,
            Some(("www-authenticate", REALM)),
            format!("npm-connector: no connector token for {name}; use the rendered .npmrc, whose _authToken carries it"),
        ),
        Presented::Malformed => refuse(
            403,
            Reason::BadToken,
            None,
            format!(
                "npm-connector: {} must be sent once, as Basic or Bearer with a connector token for {name}",
                source.describe()
            ),
        ),
        Presented::Token(tok) => match verify(config, &tok, |c| c == first, now_unix) {
            Verdict::Valid(_) => Decision::Inject { connector: first },
            Verdict::Expired => refuse(
                403,
                Reason::ExpiredToken,
                None,
                format!("npm-connector: token expired for {name}; fetch fresh client files"),
            ),
            Verdict::Unknown => refuse(
                403,
                Reason::BadToken,
                None,
                format!(
                    "npm-connector: the connector token in {} is not valid for {name}; use the client files rendered for this connector",
                    source.describe()
                ),
            ),
        },
    }
}

/// A CONNECT: to a connector's `host:port` (`owners`: the token must be one of theirs), or
/// blind to another destination (`None`: any of this proxy's tokens).
fn connect_token(config: &Config, req: &Request<'_>, owners: Option<&[usize]>, now_unix: &dyn Fn() -> u64) -> Decision {
    let host = req.authority.unwrap_or_default();
    let first = owners.and_then(|o| o.first().copied());
    let refuse = |status, reason, challenge, message: String| {
        Decision::Refuse(Refusal { status, reason, connector: first, challenge, message })
    };
    match token::presented(req.proxy_authorization) {
        Presented::Missing => refuse(
            407,
            Reason::MissingToken,
            Some(("proxy-authenticate", REALM)),
            format!("npm-connector: no connector token for {host}; the proxy URL's userinfo must carry it"),
        ),
        Presented::Malformed => refuse(
            403,
            Reason::BadToken,
            None,
            "npm-connector: Proxy-Authorization must be sent once, as Basic or Bearer with a connector token"
                .to_owned(),
        ),
        Presented::Token(tok) => match verify(config, &tok, |c| owners.is_none_or(|o| o.contains(&c)), now_unix) {
            Verdict::Valid(connector) => Decision::Tunnel { connector: owners.map(|_| connector) },
            Verdict::Expired => refuse(
                403,
                Reason::ExpiredToken,
                None,
                format!("npm-connector: token expired for {host}; fetch fresh client files"),
            ),
            Verdict::Unknown => refuse(
                403,
                Reason::BadToken,
                None,
                format!("npm-connector: the connector token in Proxy-Authorization is not valid for {host}"),
            ),
        },
    }
}

/// A presented token against the configuration.
enum Verdict {
    /// Accepted, for this connector.
    Valid(usize),
    Expired,
    /// Nobody's, or not a connector `accepts` takes.
    Unknown,
}

/// Checks a signed token's signature, or looks a minted one up by its hash; `accepts` says which connectors may own it here. The clock
/// is read only for a token that carries an expiry.
fn verify(config: &Config, token: &str, accepts: impl Fn(usize) -> bool, now_unix: &dyn Fn() -> u64) -> Verdict {
    let grant = if token.starts_with(token::signed::PREFIX) {
        config.signed_grant(token)
    } else {
        config.grant(&TokenHash::of(token))
    };
    match grant {
        Some(g) if accepts(g.connector) => match g.expires_at {
            Some(exp) if now_unix() >= exp => Verdict::Expired,
            _ => Verdict::Valid(g.connector),
        },
        _ => Verdict::Unknown,
    }
}

#[cfg(test)]
mod tests;
