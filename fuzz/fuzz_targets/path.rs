//! Path canonicalisation: no panic; an accepted path has no `.`/`..` segment once decoded
//! (the property the filter promises the registry).
#![no_main]

use libfuzzer_sys::fuzz_target;
use npm_connector_filter::canon::check_path;

/// The path's segments after one round of percent-decoding (the percent-encoding crate, not
/// the filter's own decoder), split at '/' and '\\' (what a registry behind the proxy might do).
fn decoded_segments(p: &str) -> Vec<String> {
    let path = p.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
    String::from_utf8_lossy(&decoded).split(['/', '\\']).map(str::to_owned).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if check_path(s).is_ok() {
        for seg in decoded_segments(s) {
            assert!(seg != "." && seg != "..", "accepted {s:?} with a dot segment");
        }
    }
});
