//! The filter's configuration parser and validator: any bytes give a Config or an error that
//! never echoes a secret (a marker planted in the input must not come back in the message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use npm_connector_filter::config::Config;
use npm_connector_filter::seal::Key;

fuzz_target!(|data: &[u8]| {
    let key = Key::from_bytes([7; 32]);
    for k in [None, Some(&key)] {
        match Config::from_json(data, k) {
            Ok(c) => {
                // Every route the configuration lists resolves to its own connector.
                for (i, conn) in c.connectors.iter().enumerate() {
                    let owners = c.route(&conn.route).unwrap_or_default();
                    assert!(owners.contains(&i), "connector {i} not an owner of its own route");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains("SECRET-MARKER"), "an error echoed input: {msg}");
            }
        }
    }
});
