//! The Connector + Secret manifest parser: any text gives connectors or an error naming what
//! to fix, never a panic, and never the Secret's value in the message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match npm_connector::manifest::load(&[("f.yaml".to_owned(), text.to_owned())], "default") {
        Ok(connectors) => {
            for c in connectors {
                assert!(c.address.path().ends_with('/'), "{}: address path must end in '/'", c.id());
                assert!(matches!(c.address.scheme(), "https" | "http"), "{}", c.address);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains("SECRET-MARKER"), "an error echoed a secret: {msg}");
        }
    }
});
