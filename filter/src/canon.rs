//! Canonical request forms. Envoy's router picks the route from `:authority` and `:path`; a
//! request whose authority has several spellings (trailing dot, `0443`, `+443`, userinfo, a
//! merged duplicate Host) or whose path hides dot segments behind escapes is refused before
//! anything acts on it, so what the router matched is what the registry sees.

/// Why an authority is not canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("the request has no Host")]
    Empty,
    #[error("the Host carries userinfo ('@'); send credentials in headers")]
    Userinfo,
    #[error("the Host has characters a host name cannot have (or was sent twice)")]
    BadHost,
    #[error("the Host ends in '.'; use the name without the trailing dot")]
    TrailingDot,
    #[error("the port is not a number from 1 to 65535 written without sign or leading zeros")]
    BadPort,
    #[error("a CONNECT must name host:port")]
    NoPort,
}

/// Checks `host[:port]` (or `[v6]:port`) is written the one way the routes are.
pub fn check_authority(authority: &str, port_required: bool) -> Result<(), AuthorityError> {
    if authority.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if authority.contains('@') {
        return Err(AuthorityError::Userinfo);
    }
    let port = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or(AuthorityError::BadHost)?;
        let v6 = &rest[..end];
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(AuthorityError::BadHost);
        }
        match &rest[end + 1..] {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or(AuthorityError::BadHost)?),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(AuthorityError::Empty);
        }
        if host.ends_with('.') {
            return Err(AuthorityError::TrailingDot);
        }
        let label_ok =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !host.split('.').all(label_ok) {
            return Err(AuthorityError::BadHost);
        }
        port
    };
    match port {
        None if port_required => Err(AuthorityError::NoPort),
        None => Ok(()),
        Some(p) => {
            let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            if digits && !p.starts_with('0') && p.parse::<u32>().is_ok_and(|n| n <= 65535) {
                Ok(())
            } else {
                Err(AuthorityError::BadPort)
            }
        }
    }
}

/// Why a path cannot be forwarded with a credential.
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

/// Envoy's RFC 3986 normalisation resolves plain and `%2e` dot segments before any filter, but
/// keeps `%2F` (npm asks for scoped packages as `/@scope%2fname`). A registry that decodes it
/// would see `..%2f` as a step up, out of the connector's prefix: refuse a path whose fully
/// decoded form (split on `/` and `\`) has a `.` or `..` segment. The query is not looked at.
pub fn check_path(raw: &str) -> Result<(), PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                decoded.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        decoded.push(b);
        i += 1;
    }
    if decoded.split(|&c| c == b'/' || c == b'\\').any(|seg| seg == b"." || seg == b"..") {
        return Err(PathError::DotSegment);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
