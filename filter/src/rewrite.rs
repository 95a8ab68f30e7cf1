//! Tarball URL rewriting in packument responses, chunk by chunk.
//!
//! Nexus, GitLab and CodeArtifact put absolute `dist.tarball` URLs on their own host into
//! packuments; re-basing them on the client-facing URL brings the tarball downloads back
//! through the proxy. The rewriter looks for the JSON key `"tarball"` followed by a string that
//! starts with the upstream base. Inside a JSON string every quote is escaped, so `"tarball"`
//! with bare quotes can only be a key: README text cannot trigger a rewrite.

use crate::config::Rewrite;

const KEY: &[u8] = b"\"tarball\"";
/// JSON allows any whitespace around ':'; more than this and we stop looking (and hold less).
const MAX_WS: usize = 64;

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

/// Streaming rewriter: feed chunks, get output; bytes that might be the start of a match are
/// held back until the next chunk (at most the key, whitespace and the upstream base).
#[derive(Debug)]
pub struct Rewriter {
    upstream: Vec<u8>,
    client: Vec<u8>,
    carry: Vec<u8>,
    rewritten: usize,
}

enum Probe {
    /// A match: the URL's upstream base spans `start..end`.
    Match {
        start: usize,
        end: usize,
    },
    NoMatch,
    /// The buffer ends before we can tell.
    Incomplete,
}

impl Rewriter {
    pub fn new(rule: &Rewrite) -> Self {
        Rewriter {
            upstream: rule.upstream.as_bytes().to_vec(),
            client: rule.client.as_bytes().to_vec(),
            carry: Vec::new(),
            rewritten: 0,
        }
    }

    /// How many URLs have been rewritten so far.
    pub fn rewritten(&self) -> usize {
        self.rewritten
    }

    /// Looks at the bytes after a `"tarball"` key found at `key_at`.
    fn probe(&self, buf: &[u8], key_at: usize) -> Probe {
        let skip_ws = |mut i: usize| -> Option<usize> {
            let start = i;
            while i < buf.len() && matches!(buf[i], b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
                if i - start > MAX_WS {
                    return None;
                }
            }
            Some(i)
        };
        let Some(i) = skip_ws(key_at + KEY.len()) else {
            return Probe::NoMatch;
        };
        match buf.get(i) {
            None => return Probe::Incomplete,
            Some(b':') => {}
            Some(_) => return Probe::NoMatch,
        }
        let Some(i) = skip_ws(i + 1) else {
            return Probe::NoMatch;
        };
        match buf.get(i) {
            None => return Probe::Incomplete,
            Some(b'"') => {}
            Some(_) => return Probe::NoMatch,
        }
        let start = i + 1;
        let have = &buf[start.min(buf.len())..];
        if have.len() >= self.upstream.len() {
            if have.starts_with(&self.upstream) {
                Probe::Match { start, end: start + self.upstream.len() }
            } else {
                Probe::NoMatch
            }
        } else if self.upstream.starts_with(have) {
            Probe::Incomplete
        } else {
            Probe::NoMatch
        }
    }

    /// Rewrites one chunk; returns what may be sent on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buf.len() + 64);
        let mut emitted = 0;
        let mut search = 0;
        while let Some(rel) = find(&buf[search..], KEY) {
            let key_at = search + rel;
            match self.probe(&buf, key_at) {
                Probe::Match { start, end } => {
                    out.extend_from_slice(&buf[emitted..start]);
                    out.extend_from_slice(&self.client);
                    emitted = end;
                    search = end;
                    self.rewritten += 1;
                }
                Probe::NoMatch => search = key_at + 1,
                Probe::Incomplete => {
                    out.extend_from_slice(&buf[emitted..key_at]);
                    self.carry = buf[key_at..].to_vec();
                    return out;
                }
            }
        }
        // The tail may hold the first bytes of a key split across chunks.
        let tail = &buf[emitted..];
        let hold =
            (1..KEY.len()).rev().find(|&n| n <= tail.len() && KEY.starts_with(&tail[tail.len() - n..])).unwrap_or(0);
        let cut = buf.len() - hold;
        out.extend_from_slice(&buf[emitted..cut]);
        self.carry = buf[cut..].to_vec();
        out
    }

    /// Flushes what was held back at the end of the body.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
