//! A streaming JSON tokenizer that rewrites exactly the `versions.*.dist.tarball` string
//! values of a packument and copies every other byte as it came.
//!
//! It keeps a frame per open container (bounded depth) and, inside strings, only what it must:
//! a decoded key while it could still be `versions`, `dist` or `tarball`, and a target value
//! (bounded). Values are compared decoded (`\/`, `\u002f` and friends), with scheme and host
//! case-insensitive, so every valid JSON spelling of a registry URL is recognised.

use crate::config::Rewrite;

mod skip;
mod text;
use skip::Skip;
use text::{escape_into, find_quote_or_backslash, split_origin};

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
    /// A container that cannot hold a target, copied as it comes.
    Skip(Skip),
    /// Not JSON: everything from here on is copied.
    GiveUp,
}

#[derive(Debug)]
pub struct JsonRewriter {
    upstream_origin: String,
    upstream_path: String,
    /// The opening quote and the client URL's JSON text: what a rewritten value starts with.
    client_open: Vec<u8>,
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
    /// The target value had an escape (its decoded text may need escaping again).
    escapes: bool,
    rewritten: usize,
}

impl JsonRewriter {
    pub fn new(rule: &Rewrite) -> Self {
        let (origin, path) = split_origin(&rule.upstream);
        JsonRewriter {
            upstream_origin: origin.to_ascii_lowercase(),
            upstream_path: path.to_owned(),
            client_open: {
                let mut open = vec![b'"'];
                escape_into(&mut open, &rule.client);
                open
            },
            frames: Vec::new(),
            lex: Lex::Between,
            key: Vec::new(),
            key_overflow: false,
            hex: 0,
            raw: Vec::new(),
            decoded: Vec::new(),
            high: None,
            bad: false,
            escapes: false,
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

    /// Whether a container opening now could hold a target: the root object, the top-level
    /// `versions` object, a version object in it, and that version's `dist` object. Anything
    /// else is skipped whole, so at most four frames are ever open.
    fn may_hold_target(&self, object: bool) -> bool {
        let f = &self.frames;
        object
            && f.iter().all(|x| x.object)
            && match f.len() {
                0 | 2 => true,
                1 => f[0].key == Key::Versions,
                3 => f[2].key == Key::Dist,
                _ => false,
            }
    }

    /// A value has been read in the innermost container.
    fn value_done(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            top.expect = Expect::Next;
        }
    }

    /// Rewrites one chunk, appending to `out` what can be sent on now. At most one target
    /// value (bounded) is held back across chunks. Output is the input copied in runs; only a
    /// target value is ever replaced.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + 64);
        let n = chunk.len();
        // Input from `emit` on is not in `out` yet (outside a held target value).
        let mut emit = 0;
        let mut i = 0;
        while i < n {
            match self.lex {
                Lex::GiveUp => i = n,
                Lex::Skip(mut skip) => match skip.run(&chunk[i..]) {
                    Some(len) => {
                        i += len;
                        self.lex = Lex::Between;
                        self.value_done();
                    }
                    None => {
                        i = n;
                        self.lex = Lex::Skip(skip);
                    }
                },
                Lex::Between => {
                    let b = chunk[i];
                    i += 1;
                    if b == b'"' && self.opens_target() {
                        // The value is held back from its opening quote on.
                        out.extend_from_slice(&chunk[emit..i - 1]);
                        self.start_target();
                    } else {
                        self.between(b);
                    }
                }
                Lex::Literal => {
                    let rest = &chunk[i..];
                    let len = rest
                        .iter()
                        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+')))
                        .unwrap_or(rest.len());
                    i += len;
                    if i < n {
                        self.lex = Lex::Between;
                        self.value_done();
                    }
                }
                Lex::InString { kind: Str::Target, escape: false, hex_left: 0 }
                    if !matches!(chunk[i], b'"' | b'\\') && self.raw.len() < MAX_VALUE =>
                {
                    // Plain text of a held value: in one go, up to the limit.
                    let rest = &chunk[i..];
                    let room = MAX_VALUE - self.raw.len();
                    let window = &rest[..rest.len().min(room)];
                    let len = find_quote_or_backslash(window).unwrap_or(window.len());
                    self.raw.extend_from_slice(&rest[..len]);
                    self.decoded.extend_from_slice(&rest[..len]);
                    i += len;
                }
                Lex::InString { kind: Str::Target, escape, hex_left } => {
                    let b = chunk[i];
                    i += 1;
                    self.raw.push(b);
                    if self.target_byte(b, escape, hex_left, out) {
                        emit = i;
                    }
                }
                Lex::InString { kind, escape: false, hex_left: 0 } => {
                    // The text of a key or of a string nobody rewrites: up to the next quote or
                    // backslash in one go (keys are decoded while short enough to matter).
                    let rest = &chunk[i..];
                    let len = find_quote_or_backslash(rest).unwrap_or(rest.len());
                    if kind == Str::Key {
                        self.key_bytes(&rest[..len]);
                    }
                    i += len;
                    if i < n {
                        let b = chunk[i];
                        i += 1;
                        if b == b'"' {
                            self.lex = Lex::Between;
                            self.string_end(kind);
                        } else {
                            self.lex = Lex::InString { kind, escape: true, hex_left: 0 };
                        }
                    }
                }
                Lex::InString { kind, escape, hex_left } => {
                    let b = chunk[i];
                    i += 1;
                    match self.escape_byte(b, kind, escape, hex_left) {
                        Some(Some(unit)) if kind == Str::Key => self.key_unit(unit),
                        Some(_) => {}
                        None => self.lex = Lex::GiveUp,
                    }
                }
            }
        }
        if !matches!(self.lex, Lex::InString { kind: Str::Target, .. }) {
            out.extend_from_slice(&chunk[emit.min(n)..]);
        }
    }

    /// The end of the body: anything held back goes out as it came.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.raw);
    }

    /// Whether a string opening now (a value, not a key) is a target.
    fn opens_target(&self) -> bool {
        !matches!(self.frames.last().map(|f| f.expect), Some(Expect::Key)) && self.at_target()
    }

    fn start_target(&mut self) {
        self.raw.clear();
        self.raw.push(b'"');
        self.decoded.clear();
        self.high = None;
        self.bad = false;
        self.escapes = false;
        self.lex = Lex::InString { kind: Str::Target, escape: false, hex_left: 0 };
    }

    /// A structural byte (or whitespace) outside strings; `"` here opens a key or a string
    /// that is not a target.
    fn between(&mut self, b: u8) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => {
                let object = b == b'{';
                if !self.may_hold_target(object) {
                    self.lex = Lex::Skip(Skip::container());
                    return;
                }
                let expect = if object { Expect::Key } else { Expect::Value };
                self.frames.push(Frame { object, expect, key: Key::Other });
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
                let kind = if matches!(self.frames.last().map(|f| f.expect), Some(Expect::Key)) {
                    self.key.clear();
                    self.key_overflow = false;
                    Str::Key
                } else {
                    Str::Other
                };
                self.lex = Lex::InString { kind, escape: false, hex_left: 0 };
            }
            _ => self.lex = Lex::Literal,
        }
    }

    fn key_bytes(&mut self, bytes: &[u8]) {
        if self.key_overflow || self.key.len() + bytes.len() > MAX_KEY || !bytes.is_ascii() {
            self.key_overflow = !bytes.is_empty() || self.key_overflow;
            return;
        }
        self.key.extend_from_slice(bytes);
    }

    fn key_unit(&mut self, unit: u16) {
        match u8::try_from(unit) {
            Ok(a) if a < 0x80 && self.key.len() < MAX_KEY => self.key.push(a),
            _ => self.key_overflow = true,
        }
    }

    /// One byte of an escape (after `\`, or a hex digit of `\uXXXX`): `None` if this is not
    /// JSON, `Some(None)` while the escape goes on, `Some(Some(unit))` once it decodes.
    fn escape_byte(&mut self, b: u8, kind: Str, escape: bool, hex_left: u8) -> Option<Option<u16>> {
        if hex_left > 0 {
            let d = (b as char).to_digit(16)?;
            self.hex = self.hex * 16 + d;
            let left = hex_left - 1;
            self.lex = Lex::InString { kind, escape: false, hex_left: left };
            return Some((left == 0).then_some(self.hex as u16));
        }
        debug_assert!(escape);
        self.lex = Lex::InString { kind, escape: false, hex_left: 0 };
        let unit = match b {
            b'u' => {
                self.hex = 0;
                self.lex = Lex::InString { kind, escape: false, hex_left: 4 };
                return Some(None);
            }
            b'"' | b'\\' | b'/' => u16::from(b),
            b'b' => 8,
            b'f' => 12,
            b'n' => 10,
            b'r' => 13,
            b't' => 9,
            _ => return None,
        };
        Some(Some(unit))
    }

    /// One byte of a held target value (already in `raw`); true once the value has been
    /// written to `out` (its closing quote, or given up on).
    fn target_byte(&mut self, b: u8, escape: bool, hex_left: u8, out: &mut Vec<u8>) -> bool {
        if escape || hex_left > 0 {
            match self.escape_byte(b, Str::Target, escape, hex_left) {
                Some(Some(unit)) => self.push_unit(unit),
                Some(None) => {}
                None => {
                    out.append(&mut self.raw);
                    self.lex = Lex::GiveUp;
                    return true;
                }
            }
            return false;
        }
        match b {
            b'\\' => {
                self.escapes = true;
                self.lex = Lex::InString { kind: Str::Target, escape: true, hex_left: 0 };
                false
            }
            b'"' => {
                self.lex = Lex::Between;
                match self.rebased() {
                    Some(rest) => {
                        out.extend_from_slice(&self.client_open);
                        if self.escapes {
                            escape_into(out, rest);
                        } else {
                            // Text that came without escapes needs none.
                            out.extend_from_slice(rest.as_bytes());
                        }
                        out.push(b'"');
                        self.rewritten += 1;
                    }
                    None => out.extend_from_slice(&self.raw),
                }
                self.raw.clear();
                self.value_done();
                true
            }
            _ => {
                self.decoded.push(b);
                if self.raw.len() > MAX_VALUE {
                    // Too long to be a tarball URL worth holding: let it through as it is.
                    out.append(&mut self.raw);
                    self.decoded.clear();
                    self.lex = Lex::InString { kind: Str::Other, escape: false, hex_left: 0 };
                    return true;
                }
                false
            }
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

    /// The end of a key or of a string that is not a target.
    fn string_end(&mut self, kind: Str) {
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
            Str::Target | Str::Other => self.value_done(),
        }
    }

    /// What follows the upstream base in the decoded target value, if it is on that base (the
    /// value becomes the client URL followed by it).
    fn rebased(&self) -> Option<&str> {
        if self.bad || self.high.is_some() {
            return None;
        }
        let value = std::str::from_utf8(&self.decoded).ok()?;
        // `scheme://authority` compared without case, and ending where the path begins.
        let origin = self.upstream_origin.len();
        let head = value.get(..origin)?;
        if !head.eq_ignore_ascii_case(&self.upstream_origin) {
            return None;
        }
        let path = match value.as_bytes().get(origin) {
            None => "/",
            Some(b'/') => &value[origin..],
            Some(_) => return None,
        };
        path.strip_prefix(self.upstream_path.as_str())
    }
}

#[cfg(test)]
mod tests;
