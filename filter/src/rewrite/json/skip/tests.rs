//! The block skipper against a byte-at-a-time reference, on generated containers split anywhere.

use super::*;

/// Where the container opened before `s` closes, byte by byte.
fn reference(s: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (1u32, false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if in_string {
            match b {
                b'"' => in_string = false,
                b'\\' => escaped = true,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// A small deterministic generator (xorshift) of container bodies rich in the bytes that matter.
fn body(seed: u64, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"\"\"\"\\{}[]{}[]:, abcXYZ[{\xc3\xa9}]";
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(ALPHABET[(x % ALPHABET.len() as u64) as usize]);
    }
    out
}

fn run_split(s: &[u8], at: &[usize]) -> Option<usize> {
    let mut skip = Skip::container();
    let mut start = 0;
    for &end in at.iter().chain(std::iter::once(&s.len())) {
        let end = end.clamp(start, s.len());
        if let Some(n) = skip.run(&s[start..end]) {
            return Some(start + n);
        }
        start = end;
    }
    None
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[test]
fn gather_and_zero_bytes_are_exact() {
    for pattern in 0u64..256 {
        let mut bytes = [b'a'; 8];
        for (i, b) in bytes.iter_mut().enumerate() {
            if pattern >> i & 1 == 1 {
                *b = b'"';
            }
        }
        let w = u64::from_le_bytes(bytes);
        assert_eq!(gather(zero_bytes(w ^ (ONES * u64::from(b'"')))), pattern);
    }
    // A zero byte next to 0x01 and 0x80: no borrow marks a neighbour.
    let w = u64::from_le_bytes([0x22, 0x23, 0x21, 0xa2, 0x22, 0x02, 0x22, 0xff]);
    assert_eq!(gather(zero_bytes(w ^ (ONES * 0x22))), 0b0101_0001);
}

#[test]
fn block_masks_match_a_byte_by_byte_reading() {
    for seed in 0..200u64 {
        let block = body(seed.wrapping_mul(0x2545_f491_4f6c_dd1d), 64);
        let bit = |f: &dyn Fn(u8) -> bool| block.iter().enumerate().fold(0u64, |m, (i, &b)| m | u64::from(f(b)) << i);
        let want = [
            bit(&|b| b == b'"'),
            bit(&|b| b == b'\\'),
            bit(&|b| b == b'{' || b == b'['),
            bit(&|b| b == b'}' || b == b']'),
        ];
        assert_eq!(masks(&block), want, "{block:?}");
    }
}

#[test]
fn matches_the_reference_on_generated_containers_split_anywhere() {
    for seed in 0..3000u64 {
        let len = (seed as usize * 7) % 400 + 1;
        let s = body(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), len);
        let want = reference(&s);
        assert_eq!(run_split(&s, &[]), want, "seed {seed}");
        for cut in [1, 63, 64, 65, 100, 128, 129] {
            assert_eq!(run_split(&s, &[cut]), want, "seed {seed} cut {cut}");
            assert_eq!(run_split(&s, &[cut / 2, cut]), want, "seed {seed} cuts {} {cut}", cut / 2);
        }
    }
}

#[test]
fn long_plain_containers_close_where_they_close() {
    let mut s = br#"{"a":[1,2,{"b":"}]}\"x"}],"c":"#.to_vec();
    s.extend(std::iter::once(b'"').chain(std::iter::repeat_n(b'x', 300)).chain(*b"\"}"));
    s.extend_from_slice(b"} tail");
    let want = s.len() - 5;
    assert_eq!(reference(&s), Some(want));
    for cut in 0..s.len() {
        assert_eq!(run_split(&s, &[cut]), Some(want), "cut {cut}");
    }
}
