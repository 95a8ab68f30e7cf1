//! Request matching: host patterns (exact, `*.suffix`, optional port), path prefixes, and the
//! path canonicalisation that keeps prefix matching from being fooled by percent-encoding.

use std::fmt;

/// What part of the host a pattern names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostKind {
    /// Any host: used by gateway listeners, where the path alone selects the connector.
    Any,
    Exact(String),
    /// `*.example.com` is stored as `.example.com`: at least one label must stand before it.
    Suffix(String),
}

/// A host pattern from the configuration, already lower-cased and in ASCII (punycode) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    kind: HostKind,
    port: Option<u16>,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            HostKind::Any => f.write_str("*")?,
            HostKind::Exact(h) => f.write_str(h)?,
            HostKind::Suffix(s) => write!(f, "*{s}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// Splits `host[:port]` or `[v6]:port`; the port must be a number when present.
fn split_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed '[' in IPv6 host")?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("junk after IPv6 host"),
        };
        (&s[..end + 2], port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| "port is not a number from 0 to 65535")?),
    };
    Ok((host, port))
}

/// Lower-cases and drops one trailing dot. Internationalised names must come in their ASCII
/// (punycode, `xn--`) form, which is what clients send in `:authority`; the control plane
/// converts Unicode names when it renders the configuration.
fn canonical_host(host: &str) -> Result<String, &'static str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err("host is empty");
    }
    if host.starts_with('[') {
        return Ok(host.to_ascii_lowercase());
    }
    if !host.is_ascii() {
        return Err("host is not ASCII: write an internationalised name in its punycode (xn--) form");
    }
    let lower = host.to_ascii_lowercase();
    let ok = lower.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok && !lower.contains("..") {
        Ok(lower)
    } else {
        Err("host has characters a DNS name cannot have")
    }
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<Self, &'static str> {
        let pattern = pattern.trim();
        if pattern == "*" {
            return Ok(HostPattern { kind: HostKind::Any, port: None });
        }
        let (host, port) = split_port(pattern)?;
        let kind = if let Some(suffix) = host.strip_prefix("*.") {
            let s = canonical_host(suffix)?;
            if s.contains('*') {
                return Err("'*' may only be the whole first label");
            }
            HostKind::Suffix(format!(".{s}"))
        } else {
            if host.contains('*') {
                return Err("'*' may only be the whole first label, as in *.example.com");
            }
            HostKind::Exact(canonical_host(host)?)
        };
        Ok(HostPattern { kind, port })
    }

    /// `authority` is the request's `:authority` (`host[:port]`).
    pub fn matches(&self, req: &Authority) -> bool {
        if let Some(p) = self.port {
            if req.port != Some(p) {
                return false;
            }
        }
        match &self.kind {
            HostKind::Any => true,
            HostKind::Exact(h) => req.host == *h,
            HostKind::Suffix(s) => req.host.len() > s.len() && req.host.ends_with(s.as_str()),
        }
    }
}

/// A request's `:authority`, canonicalised like patterns are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    pub fn parse(authority: &str) -> Option<Self> {
        // userinfo is not allowed in :authority over HTTP; refuse rather than guess.
        if authority.contains('@') {
            return None;
        }
        let (host, port) = split_port(authority).ok()?;
        Some(Authority { host: canonical_host(host).ok()?, port })
    }
}

/// A connector's path prefix, always ending in '/' so `/npm` never matches `/npm-evil/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(String);

impl PathPrefix {
    pub fn parse(prefix: &str) -> Option<Self> {
        if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
            return None;
        }
        let canon = canonical_path(prefix).ok()?;
        let with_slash = if canon.ends_with('/') { canon } else { format!("{canon}/") };
        Some(PathPrefix(with_slash))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `path` must be the output of [`canonical_path`].
    pub fn matches(&self, path: &str) -> bool {
        path.starts_with(&self.0) || path == &self.0[..self.0.len() - 1]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a path cannot be matched safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path has '.' or '..' segments once percent-decoded, which could escape a connector's path prefix")]
    DotSegment,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The form of a request path used for prefix matching: the query is dropped, every
/// percent-escape is decoded except `%2F`, which npm uses inside scoped names
/// (`/@scope%2fname`) and which stays a literal, upper-cased `%2F`. A path whose fully decoded
/// form has a `.` or `..` segment (split on `/` and `\`) is refused.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut matching = Vec::with_capacity(bytes.len());
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let v = h * 16 + l;
                decoded.push(v);
                if v == b'/' {
                    matching.extend_from_slice(b"%2F");
                } else {
                    matching.push(v);
                }
                i += 3;
                continue;
            }
        }
        decoded.push(b);
        matching.push(b);
        i += 1;
    }
    if decoded.split(|&c| c == b'/' || c == b'\\').any(|seg| seg == b"." || seg == b"..") {
        return Err(PathError::DotSegment);
    }
    Ok(String::from_utf8_lossy(&matching).into_owned())
}

#[cfg(test)]
mod tests;
