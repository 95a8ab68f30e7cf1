//! Skipping a JSON container that cannot hold a `versions.*.dist.tarball` (dependencies,
//! maintainers, scripts, `time`, …): only bracket nesting and string state are followed, 64
//! bytes at a time with bit masks (the in-string mask is the prefix XOR of the quote mask, as
//! in simdjson's first stage), so a skipped subtree costs a few instructions per 8 bytes
//! instead of a tokenizer step per structural byte.

use super::text::find_quote_or_backslash;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Skip {
    depth: u32,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const ONES: u64 = 0x0101_0101_0101_0101;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `v` that is zero (exact per byte: no borrow between bytes).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn zero_bytes(v: u64) -> u64 {
    !(((v & LOWS).wrapping_add(LOWS)) | v | LOWS)
}

/// The high bits of the eight bytes gathered into the low eight bits, byte 0 in bit 0.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn gather(high_bits: u64) -> u64 {
    ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Quote, backslash, opening- and closing-bracket masks of 64 bytes, bit i for byte i.
/// `[` and `{` are the only bytes that are `{` once bit 5 is set (`]`, `}` likewise).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn masks(block: &[u8]) -> [u64; 4] {
    let mut m = [0u64; 4];
    for (k, word) in block.chunks_exact(8).take(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(word);
        let w = u64::from_le_bytes(b);
        let folded = w | (ONES * 0x20);
        let shift = 8 * k as u32;
        m[0] |= gather(zero_bytes(w ^ (ONES * u64::from(b'"')))) << shift;
        m[1] |= gather(zero_bytes(w ^ (ONES * u64::from(b'\\')))) << shift;
        m[2] |= gather(zero_bytes(folded ^ (ONES * u64::from(b'{')))) << shift;
        m[3] |= gather(zero_bytes(folded ^ (ONES * u64::from(b'}')))) << shift;
    }
    m
}

/// The same masks with Wasm SIMD, 16 bytes a step (V8 maps `i8x16.bitmask` to one
/// instruction on x86-64 and arm64).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn masks(block: &[u8]) -> [u64; 4] {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_eq, u8x16_splat, v128, v128_load, v128_or};
    let (quote, backslash) = (u8x16_splat(b'"'), u8x16_splat(b'\\'));
    let (open, close, fold) = (u8x16_splat(b'{'), u8x16_splat(b'}'), u8x16_splat(0x20));
    let mut m = [0u64; 4];
    for (k, lane) in block.chunks_exact(16).take(4).enumerate() {
        // SAFETY: `lane` is 16 readable bytes; v128.load has no alignment requirement.
        let v = unsafe { v128_load(lane.as_ptr().cast::<v128>()) };
        let folded = v128_or(v, fold);
        let shift = 16 * k as u32;
        m[0] |= u64::from(u8x16_bitmask(u8x16_eq(v, quote))) << shift;
        m[1] |= u64::from(u8x16_bitmask(u8x16_eq(v, backslash))) << shift;
        m[2] |= u64::from(u8x16_bitmask(u8x16_eq(folded, open))) << shift;
        m[3] |= u64::from(u8x16_bitmask(u8x16_eq(folded, close))) << shift;
    }
    m
}

/// Bit i set when an odd number of the bits 0..=i of `x` are set.
fn prefix_xor(mut x: u64) -> u64 {
    for s in [1, 2, 4, 8, 16, 32] {
        x ^= x << s;
    }
    x
}

impl Skip {
    /// A container whose opening bracket has been read.
    pub(super) fn container() -> Self {
        Skip { depth: 1, in_string: false, escaped: false }
    }

    /// Reads `s` until the container closes: `Some(n)` when it closed within the first `n`
    /// bytes of `s` (its closing bracket the last of them), `None` when all of `s` was inside.
    pub(super) fn run(&mut self, s: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < s.len() {
            if !self.escaped && s.len() - i >= 64 {
                let [quote, backslash, open, close] = masks(&s[i..i + 64]);
                if backslash == 0 {
                    if let Some(end) = self.block(quote, open, close) {
                        return Some(i + end + 1);
                    }
                    i += 64;
                    continue;
                }
            }
            let limit = s.len().min(i + 64);
            match self.scalar(&s[i..limit]) {
                Some(end) => return Some(i + end),
                None => i = limit,
            }
        }
        None
    }

    /// One block without backslashes: strings can only open and close at its quotes.
    fn block(&mut self, quote: u64, open: u64, close: u64) -> Option<usize> {
        let mut inside = prefix_xor(quote);
        if self.in_string {
            inside = !inside;
        }
        self.in_string = inside >> 63 == 1;
        let (open, close) = (open & !inside, close & !inside);
        if close == 0 {
            self.depth += open.count_ones();
            return None;
        }
        let mut events = open | close;
        while events != 0 {
            let bit = events & events.wrapping_neg();
            if open & bit != 0 {
                self.depth += 1;
            } else {
                self.depth -= 1;
                if self.depth == 0 {
                    self.in_string = false;
                    return Some(bit.trailing_zeros() as usize);
                }
            }
            events ^= bit;
        }
        None
    }

    /// Byte by byte (strings by the word scan): blocks with escapes, and the last bytes.
    fn scalar(&mut self, s: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < s.len() {
            if self.escaped {
                self.escaped = false;
                i += 1;
            } else if self.in_string {
                match find_quote_or_backslash(&s[i..]) {
                    None => return None,
                    Some(p) => {
                        i += p;
                        if s[i] == b'"' {
                            self.in_string = false;
                        } else {
                            self.escaped = true;
                        }
                        i += 1;
                    }
                }
            } else {
                match s[i] {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
