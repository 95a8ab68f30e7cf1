//! The `:authority` parser: no panic; an accepted authority is written the one canonical way
//! (no userinfo, no percent, no trailing dot, a port of 1-65535 without sign or leading zero).
#![no_main]

use libfuzzer_sys::fuzz_target;
use npm_connector_filter::canon::check_authority;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for port_required in [false, true] {
        if check_authority(s, port_required).is_err() {
            continue;
        }
        assert!(!s.is_empty() && !s.contains(['@', '%', ' ', '/', '\\', ',']), "accepted {s:?}");
        let (host, port) = match s.rsplit_once(':').filter(|_| !s.ends_with(']')) {
            Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => (h, Some(p)),
            _ => (s, None),
        };
        assert!(!host.ends_with('.'), "accepted a trailing dot: {s:?}");
        if let Some(p) = port {
            let n: u32 = p.parse().unwrap_or_else(|_| panic!("accepted port {p:?} in {s:?}"));
            assert!((1..=65535).contains(&n) && !p.starts_with(['0', '+']), "accepted port {p:?}");
        } else {
            assert!(!port_required, "accepted {s:?} without the port a CONNECT needs");
        }
    }
});
