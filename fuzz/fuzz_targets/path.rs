//! Path canonicalisation: no panic; an accepted path has no `.`/`..` segment once decoded
//! (the property the filter promises the registry).
#![no_main]

use libfuzzer_sys::fuzz_target;
use npm_connector_filter::canon::check_path;

/// The path's segments after one round of percent-decoding, split at '/' and '\\' (what a
/// registry behind the proxy might do with it).
fn decoded_segments(p: &str) -> Vec<String> {
    let path = p.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).split(['/', '\\']).map(str::to_owned).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if check_path(s).is_ok() {
        for seg in decoded_segments(s) {
            assert!(seg != "." && seg != "..", "accepted {s:?} with a dot segment");
        }
    }
});
