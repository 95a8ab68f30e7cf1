//! A streaming JSON tokenizer that rewrites exactly the `versions.*.dist.tarball` string
//! values of a packument and copies every other byte as it came.
//!
//! It keeps a frame per open container (bounded depth) and, inside strings, only what it must:
//! a decoded key while it could still be `versions`, `dist` or `tarball`, and a target value
//! (bounded). Values are compared decoded (`\/`, `\u002f` and friends), with scheme and host
//! case-insensitive, so every valid JSON spelling of a registry URL is recognised.

use crate::config::Rewrite;

/// Deeper documents are passed through untouched from that point on.
const MAX_DEPTH: usize = 256;
/// Keys are decoded only while this short: the ones we look for are shorter.
const MAX_KEY: usize = 16;
/// A tarball URL longer than this is passed through unchanged.
const MAX_VALUE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Versions,
    Dist,
    Tarball,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An object member's key (or the end of the object).
    Key,
    /// A value (after ':' in an object, or in an array).
    Value,
    /// ',' or the end of the container.
    Next,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    expect: Expect,
    key: Key,
}

/// What a string being read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    Key,
    /// A `versions.*.dist.tarball` value: buffered.
    Target,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between,
    InString {
        kind: Str,
        escape: bool,
        hex_left: u8,
    },
    /// A number, `true`, `false` or `null`.
    Literal,
    /// Too deep or not JSON: everything from here on is copied.
    GiveUp,
}

#[derive(Debug)]
pub struct JsonRewriter {
    upstream_origin: String,
    upstream_path: String,
    client: String,
    frames: Vec<Frame>,
    lex: Lex,
    /// The decoded key being read (while short enough to matter).
    key: Vec<u8>,
    key_overflow: bool,
    hex: u32,
    /// A target value: its raw bytes (quotes included) and its decoded UTF-8; a pending high
    /// surrogate of a `\u` pair; whether it decoded to something that is not text.
    raw: Vec<u8>,
    decoded: Vec<u8>,
    high: Option<u16>,
    bad: bool,
    rewritten: usize,
}

impl JsonRewriter {
    pub fn new(rule: &Rewrite) -> Self {
        let (origin, path) = split_origin(&rule.upstream);
        JsonRewriter {
            upstream_origin: origin.to_ascii_lowercase(),
            upstream_path: path.to_owned(),
            client: rule.client.clone(),
            frames: Vec::new(),
            lex: Lex::Between,
            key: Vec::new(),
            key_overflow: false,
            hex: 0,
            raw: Vec::new(),
            decoded: Vec::new(),
            high: None,
            bad: false,
            rewritten: 0,
        }
    }

    pub fn rewritten(&self) -> usize {
        self.rewritten
    }

    /// Whether a string value starting now is a `versions.*.dist.tarball`.
    fn at_target(&self) -> bool {
        let f = &self.frames;
        f.len() == 4
            && f.iter().all(|x| x.object)
            && f[0].key == Key::Versions
            && f[2].key == Key::Dist
            && f[3].key == Key::Tarball
    }

    /// A value has been read in the innermost container.
    fn value_done(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            top.expect = Expect::Next;
        }
    }

    /// Rewrites one chunk; what it returns can be sent on now. At most one target value
    /// (bounded) is held back across chunks.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        for &b in chunk {
            self.byte(b, &mut out);
        }
        out
    }

    /// The end of the body: anything held back goes out as it came.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.raw)
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.lex {
            Lex::GiveUp => out.push(b),
            Lex::InString { kind, escape, hex_left } => self.string_byte(b, kind, escape, hex_left, out),
            Lex::Literal => {
                if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+') {
                    out.push(b);
                } else {
                    self.lex = Lex::Between;
                    self.value_done();
                    self.between(b, out);
                }
            }
            Lex::Between => self.between(b, out),
        }
    }

    fn between(&mut self, b: u8, out: &mut Vec<u8>) {
        out.push(b);
        let expect = self.frames.last().map(|f| f.expect);
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => {
                if self.frames.len() >= MAX_DEPTH {
                    self.lex = Lex::GiveUp;
                    return;
                }
                let object = b == b'{';
                self.frames.push(Frame {
                    object,
                    expect: if object { Expect::Key } else { Expect::Value },
                    key: Key::Other,
                });
            }
            b'}' | b']' => {
                self.frames.pop();
                self.value_done();
            }
            b':' => {
                if let Some(top) = self.frames.last_mut() {
                    top.expect = Expect::Value;
                }
            }
            b',' => {
                if let Some(top) = self.frames.last_mut() {
                    top.expect = if top.object { Expect::Key } else { Expect::Value };
                }
            }
            b'"' => {
                let kind = match expect {
                    Some(Expect::Key) => {
                        self.key.clear();
                        self.key_overflow = false;
                        Str::Key
                    }
                    _ if self.at_target() => {
                        // Held back until its end: the opening quote leaves `out` again.
                        out.pop();
                        self.raw.clear();
                        self.raw.push(b'"');
                        self.decoded.clear();
                        self.high = None;
                        self.bad = false;
                        Str::Target
                    }
                    _ => Str::Other,
                };
                self.lex = Lex::InString { kind, escape: false, hex_left: 0 };
            }
            _ => self.lex = Lex::Literal,
        }
    }

    fn string_byte(&mut self, b: u8, kind: Str, escape: bool, hex_left: u8, out: &mut Vec<u8>) {
        if kind == Str::Target {
            self.raw.push(b);
        } else {
            out.push(b);
        }
        // A decoded UTF-16 unit from an escape, or a raw byte of the UTF-8 text.
        enum Unit {
            Escaped(u16),
            Byte(u8),
        }
        let decoded: Option<Unit> = if hex_left > 0 {
            let Some(d) = (b as char).to_digit(16) else {
                // Not JSON after all: stop interpreting.
                return self.give_up(out);
            };
            self.hex = self.hex * 16 + d;
            let left = hex_left - 1;
            self.lex = Lex::InString { kind, escape: false, hex_left: left };
            if left > 0 {
                return;
            }
            Some(Unit::Escaped(self.hex as u16))
        } else if escape {
            self.lex = Lex::InString { kind, escape: false, hex_left: 0 };
            match b {
                b'u' => {
                    self.hex = 0;
                    self.lex = Lex::InString { kind, escape: false, hex_left: 4 };
                    return;
                }
                b'"' | b'\\' | b'/' => Some(Unit::Escaped(u16::from(b))),
                b'b' => Some(Unit::Escaped(8)),
                b'f' => Some(Unit::Escaped(12)),
                b'n' => Some(Unit::Escaped(10)),
                b'r' => Some(Unit::Escaped(13)),
                b't' => Some(Unit::Escaped(9)),
                _ => return self.give_up(out),
            }
        } else if b == b'\\' {
            self.lex = Lex::InString { kind, escape: true, hex_left: 0 };
            return;
        } else if b == b'"' {
            self.lex = Lex::Between;
            self.string_end(kind, out);
            return;
        } else {
            Some(Unit::Byte(b))
        };
        let Some(unit) = decoded else { return };
        match kind {
            Str::Key => {
                let ascii = match unit {
                    Unit::Escaped(u) if u < 0x80 => Some(u as u8),
                    Unit::Byte(b) if b < 0x80 => Some(b),
                    _ => None,
                };
                match ascii {
                    Some(a) if self.key.len() < MAX_KEY => self.key.push(a),
                    _ => self.key_overflow = true,
                }
            }
            Str::Target => {
                match unit {
                    Unit::Byte(b) => self.decoded.push(b),
                    Unit::Escaped(u) => self.push_unit(u),
                }
                if self.raw.len() > MAX_VALUE {
                    // Too long to be a tarball URL worth holding: let it through as it is.
                    out.append(&mut self.raw);
                    self.decoded.clear();
                    self.lex = Lex::InString { kind: Str::Other, escape: false, hex_left: 0 };
                }
            }
            Str::Other => {}
        }
    }

    /// Appends a `\u`-decoded UTF-16 unit (pairing surrogates) to the decoded UTF-8.
    fn push_unit(&mut self, u: u16) {
        let c = match (self.high.take(), u) {
            (None, 0xD800..=0xDBFF) => {
                self.high = Some(u);
                return;
            }
            (Some(h), 0xDC00..=0xDFFF) => {
                char::from_u32(0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(u) - 0xDC00))
            }
            (None, _) => char::from_u32(u32::from(u)),
            (Some(_), _) => None,
        };
        match c {
            Some(c) => {
                let mut buf = [0u8; 4];
                self.decoded.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            None => self.bad = true,
        }
    }

    fn give_up(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.raw);
        self.lex = Lex::GiveUp;
    }

    fn string_end(&mut self, kind: Str, out: &mut Vec<u8>) {
        match kind {
            Str::Key => {
                let key = match (self.key_overflow, self.key.as_slice()) {
                    (false, b"versions") => Key::Versions,
                    (false, b"dist") => Key::Dist,
                    (false, b"tarball") => Key::Tarball,
                    _ => Key::Other,
                };
                if let Some(top) = self.frames.last_mut() {
                    top.key = key;
                }
            }
            Str::Target => {
                match self.rebased() {
                    Some(text) => {
                        out.extend_from_slice(&quote(&text));
                        self.rewritten += 1;
                    }
                    None => out.append(&mut self.raw),
                }
                self.raw.clear();
                self.value_done();
            }
            Str::Other => self.value_done(),
        }
    }

    /// The decoded target value re-based on the client URL, if it is on the upstream base.
    fn rebased(&self) -> Option<String> {
        if self.bad || self.high.is_some() {
            return None;
        }
        let s = std::str::from_utf8(&self.decoded).ok()?;
        self.rebase_str(s)
    }

    fn rebase_str(&self, value: &str) -> Option<String> {
        let (origin, path) = split_origin(value);
        if !origin.eq_ignore_ascii_case(&self.upstream_origin) {
            return None;
        }
        let rest = path.strip_prefix(self.upstream_path.as_str())?;
        Some(format!("{}{rest}", self.client))
    }
}

/// `scheme://authority` and the rest (from the first '/' after the authority, or "/").
fn split_origin(url: &str) -> (&str, &str) {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => url.split_at(after + i),
        None => (url, "/"),
    }
}

/// A JSON string literal for `s`, quotes included.
fn quote(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests;
