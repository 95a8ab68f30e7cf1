//! Tarball URL rewriting in packument responses, chunk by chunk, and redirect re-basing.
//!
//! Nexus, GitLab and CodeArtifact put absolute `dist.tarball` URLs on their own host into
//! packuments; re-basing them on the client-facing URL brings the tarball downloads back
//! through the proxy. The rewriter ([`json`]) follows the JSON structure: exactly the
//! `versions.*.dist.tarball` string values, compared decoded.

mod json;

use crate::config::Rewrite;

pub use json::JsonRewriter as Rewriter;

/// Whether a response gets rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    Rewrite,
    /// Not a successful JSON packument: left alone.
    NotPackument,
    /// A packument the upstream compressed although we asked for identity: left alone, counted.
    Encoded,
}

/// npm fetches `?write=true` packuments to modify and PUT them back (unpublish, deprecate,
/// dist-tags on old registries): rewriting those would store client-facing URLs upstream.
pub fn request_allows_rewrite(path: &str) -> bool {
    match path.split_once('?') {
        None => true,
        Some((_, query)) => !query.split('&').any(|kv| kv.eq_ignore_ascii_case("write=true")),
    }
}

/// A redirect's `Location` as the client must see it: on the registry's own base (absolute, or
/// an absolute path under the base's path) it is re-based on the client URL; anything else
/// (another host, a path outside the registry's prefix) is left as it is.
pub fn rebase_location(location: &str, rule: &Rewrite) -> Option<String> {
    let up = rule.upstream.as_str();
    if location.len() >= up.len() && location.is_char_boundary(up.len()) {
        let (head, rest) = location.split_at(up.len());
        if head.eq_ignore_ascii_case(up) {
            return Some(format!("{}{rest}", rule.client));
        }
    }
    if location.starts_with('/') && !location.starts_with("//") {
        // The upstream's path: what follows `scheme://authority`.
        let after_scheme = up.split_once("://").map_or(up, |(_, r)| r);
        let base_path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        if let Some(rest) = location.strip_prefix(base_path) {
            return Some(format!("{}{rest}", rule.client));
        }
    }
    None
}

/// Packuments come as `application/json` or, for the abbreviated form npm asks for with
/// `Accept: application/vnd.npm.install-v1+json`, as that type.
pub fn eligibility(status: u16, content_type: Option<&str>, content_encoding: Option<&str>) -> Eligibility {
    let media = content_type.and_then(|ct| ct.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
    let json = matches!(media.as_deref(), Some("application/json") | Some("application/vnd.npm.install-v1+json"));
    if status != 200 || !json {
        return Eligibility::NotPackument;
    }
    match content_encoding.map(str::trim) {
        None | Some("") => Eligibility::Rewrite,
        Some(e) if e.eq_ignore_ascii_case("identity") => Eligibility::Rewrite,
        Some(_) => Eligibility::Encoded,
    }
}

#[cfg(test)]
mod tests;
