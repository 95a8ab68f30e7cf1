//! The per-request decision: which connector a request belongs to, and whether it gets the
//! registry credential, a refusal, or passes through untouched.

use crate::config::{Config, Unmatched};
use crate::matcher::{canonical_path, Authority};
use crate::token::{self, Presented, Source, Verdict};

/// The request headers the decision needs; the shim reads only these.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub method: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub path: Option<&'a str>,
    pub proxy_authorization: Option<&'a str>,
    pub authorization: Option<&'a str>,
    /// Inside a CONNECT tunnel: the `Proxy-Authorization` the CONNECT carried (filter state).
    pub tunnel_authorization: Option<&'a str>,
    /// Inside a CONNECT tunnel: the TLS server name the client asked for.
    pub server_name: Option<&'a str>,
}

/// Why a request was refused; each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingToken,
    BadToken,
    ExpiredToken,
    BadPath,
    Unmatched,
    /// A tunnelled request for another host than the tunnel's.
    WrongHost,
}

impl Reason {
    pub fn counter(self) -> &'static str {
        match self {
            Reason::MissingToken => "refused_missing_token",
            Reason::BadToken => "refused_bad_token",
            Reason::ExpiredToken => "refused_expired_token",
            Reason::BadPath => "refused_bad_path",
            Reason::Unmatched => "refused_unmatched",
            Reason::WrongHost => "refused_wrong_host",
        }
    }
}

/// A local reply. The body is `{"error": "..."}`, which npm prints; it never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: Reason,
    /// The connector the request matched, if any (for per-connector counters).
    pub connector: Option<usize>,
    /// `Proxy-Authenticate` or `WWW-Authenticate`, with its value.
    pub challenge: Option<(&'static str, &'static str)>,
    pub message: String,
}

impl Refusal {
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.message }).to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No connector claims the request: forward it, minus the hop-by-hop `Proxy-Authorization`.
    PassThrough,
    Refuse(Refusal),
    /// Remove `Proxy-Authorization` and `Authorization`, then set the connector's credential.
    Inject {
        connector: usize,
    },
    /// A CONNECT with a valid token: let Envoy open the tunnel, touch nothing (no credential
    /// ever travels on a CONNECT).
    Tunnel {
        connector: usize,
    },
}

const REALM: &str = "Basic realm=\"npm-connector\"";

/// Picks the connector for a host and canonical path: of those whose host pattern matches, the
/// one with the longest matching path prefix.
pub fn select(config: &Config, authority: &Authority, path: &str) -> Option<usize> {
    config
        .connectors
        .iter()
        .enumerate()
        .filter(|(_, c)| c.hosts.iter().any(|h| h.matches(authority)))
        .filter_map(|(i, c)| c.matched_prefix_len(path).map(|len| (i, len)))
        .max_by_key(|&(_, len)| len)
        .map(|(i, _)| i)
}

/// `now_unix` is called only when a matched token carries an expiry.
pub fn decide(config: &Config, req: &Request<'_>, now_unix: &dyn Fn() -> u64) -> Decision {
    if config.connect {
        if req.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT")) {
            return decide_connect(config, req, now_unix);
        }
        // An https proxy: a plain request (an absolute-URL GET) never reaches a registry.
        return Decision::Refuse(Refusal {
            status: 405,
            reason: Reason::Unmatched,
            connector: None,
            challenge: None,
            message: "npm-connector: this is an https proxy; send CONNECT host:port (set https-proxy / HTTPS_PROXY)"
                .to_owned(),
        });
    }
    let mut authority = req.authority.and_then(Authority::parse);
    if config.tunnel_token.is_some() {
        // Inside a TLS tunnel a Host without a port means 443.
        if let Some(a) = authority.as_mut() {
            a.port = a.port.or(Some(443));
        }
        // The tunnel was opened for the TLS server name; a request inside it for another host
        // must not pick up that host's credential with this tunnel's token.
        let same = match (&authority, req.server_name.and_then(Authority::parse)) {
            (Some(a), Some(sni)) => a.host == sni.host,
            _ => false,
        };
        if !same {
            return Decision::Refuse(Refusal {
                status: 403,
                reason: Reason::WrongHost,
                connector: None,
                challenge: None,
                message: "npm-connector: the Host of a tunnelled request must be the host the tunnel was opened for"
                    .to_owned(),
            });
        }
    }
    let host_claimed =
        authority.as_ref().is_some_and(|a| config.connectors.iter().any(|c| c.hosts.iter().any(|h| h.matches(a))));
    let path = match canonical_path(req.path.unwrap_or("/")) {
        Ok(p) => p,
        Err(e) if host_claimed => {
            return Decision::Refuse(Refusal {
                status: 400,
                reason: Reason::BadPath,
                connector: None,
                challenge: None,
                message: format!("npm-connector: {e}; request the canonical path"),
            })
        }
        // A host no connector claims gets no credential whatever its path.
        Err(_) => return unmatched(config),
    };
    let Some(index) = authority.as_ref().and_then(|a| select(config, a, &path)) else {
        return unmatched(config);
    };
    let name = &config.connectors[index].name;
    let refuse = |status, reason, challenge, message: String| {
        Decision::Refuse(Refusal { status, reason, connector: Some(index), challenge, message })
    };
    let presented = match config.tunnel_token {
        Some(_) => token::presented_in_tunnel(req.tunnel_authorization),
        None => token::presented(req.proxy_authorization, req.authorization),
    };
    match presented {
        Presented::Missing if config.tunnel_token.is_some() => refuse(
            403,
            Reason::MissingToken,
            None,
            format!("npm-connector: the tunnel carries no connector token for {name}; set the proxy URL's userinfo"),
        ),
        Presented::Missing if config.proxy_listener => refuse(
            407,
            Reason::MissingToken,
            Some(("proxy-authenticate", REALM)),
            format!(
                "npm-connector: no connector token for {name}; use the rendered .npmrc, whose proxy URL carries it"
            ),
        ),
        Presented::Missing => refuse(
            401,
            Reason::MissingToken,
            Some(("www-authenticate", REALM)),
            format!("npm-connector: no connector token for {name}; use the rendered .npmrc, whose _authToken carries it"),
        ),
        Presented::Malformed(source) => refuse(
            403,
            Reason::BadToken,
            None,
            format!(
                "npm-connector: the {} header is neither Basic nor Bearer with a connector token for {name}",
                header_name(source)
            ),
        ),
        Presented::Token(source, tok) => match token::verify(&tok, &config.connectors[index].tokens, now_unix) {
            Verdict::Valid => Decision::Inject { connector: index },
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
                    header_name(source)
                ),
            ),
        },
    }
}

fn header_name(source: Source) -> &'static str {
    match source {
        Source::ProxyAuthorization => "Proxy-Authorization",
        Source::Authorization => "Authorization",
        Source::Tunnel => "the tunnel's Proxy-Authorization",
    }
}

/// A CONNECT (https-proxy mode): the host:port must be a connector's, and the token valid for
/// one of the connectors on it. Nothing else about the tunnel is known yet: the requests
/// inside are decided one by one on the internal listener.
fn decide_connect(config: &Config, req: &Request<'_>, now_unix: &dyn Fn() -> u64) -> Decision {
    let authority = req.authority.and_then(Authority::parse);
    let candidates: Vec<usize> = match &authority {
        Some(a) => {
            (0..config.connectors.len()).filter(|&i| config.connectors[i].hosts.iter().any(|h| h.matches(a))).collect()
        }
        None => Vec::new(),
    };
    let Some(&first) = candidates.first() else {
        return Decision::Refuse(Refusal {
            status: 403,
            reason: Reason::Unmatched,
            connector: None,
            challenge: None,
            message: "npm-connector: no connector for this host and port; this proxy only tunnels to its connectors' registries".to_owned(),
        });
    };
    let refuse = |status, reason, challenge, message: String| {
        Decision::Refuse(Refusal { status, reason, connector: Some(first), challenge, message })
    };
    let host = req.authority.unwrap_or_default();
    match token::presented(req.proxy_authorization, None) {
        Presented::Missing => refuse(
            407,
            Reason::MissingToken,
            Some(("proxy-authenticate", REALM)),
            format!("npm-connector: no connector token for {host}; the proxy URL's userinfo must carry it"),
        ),
        Presented::Malformed(_) | Presented::Token(Source::Tunnel | Source::Authorization, _) => refuse(
            403,
            Reason::BadToken,
            None,
            "npm-connector: Proxy-Authorization is neither Basic nor Bearer with a connector token".to_owned(),
        ),
        Presented::Token(Source::ProxyAuthorization, tok) => {
            let mut expired = false;
            for &i in &candidates {
                match token::verify(&tok, &config.connectors[i].tokens, now_unix) {
                    Verdict::Valid => return Decision::Tunnel { connector: i },
                    Verdict::Expired => expired = true,
                    Verdict::Unknown => {}
                }
            }
            if expired {
                refuse(
                    403,
                    Reason::ExpiredToken,
                    None,
                    format!("npm-connector: token expired for {host}; fetch fresh client files"),
                )
            } else {
                refuse(
                    403,
                    Reason::BadToken,
                    None,
                    format!("npm-connector: the connector token in Proxy-Authorization is not valid for {host}"),
                )
            }
        }
    }
}

fn unmatched(config: &Config) -> Decision {
    match config.unmatched {
        Unmatched::Passthrough => Decision::PassThrough,
        Unmatched::Deny => Decision::Refuse(Refusal {
            status: 403,
            reason: Reason::Unmatched,
            connector: None,
            challenge: None,
            message: "npm-connector: no connector matches this host and path, and this proxy only allows its connectors' registries".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
