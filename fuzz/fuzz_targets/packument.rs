//! The packument rewriter, differentially: for any valid JSON document, fed in chunks split
//! where the input says, the output parses and equals the transform done on the parsed
//! document with serde_json (exactly `versions.*.dist.tarball` values on the registry's base
//! re-based on the client URL, scheme and host compared case-insensitively). Invalid JSON
//! must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use npm_connector_filter::config::Rewrite;
use npm_connector_filter::rewrite::Rewriter;
use serde_json::Value;

const UPSTREAM_ORIGIN: &str = "https://registry.test";
const UPSTREAM_PATH: &str = "/repository/npm/";
const CLIENT: &str = "http://gw:8080/ns/n/";

fn split_origin(url: &str) -> (&str, &str) {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => url.split_at(after + i),
        None => (url, "/"),
    }
}

fn expected(mut v: Value) -> Value {
    if let Some(versions) = v.get_mut("versions").and_then(Value::as_object_mut) {
        for ver in versions.values_mut() {
            if let Some(Value::String(t)) = ver.get_mut("dist").and_then(|d| d.get_mut("tarball")) {
                let (origin, path) = split_origin(t);
                if origin.eq_ignore_ascii_case(UPSTREAM_ORIGIN) {
                    if let Some(rest) = path.strip_prefix(UPSTREAM_PATH) {
                        *t = format!("{CLIENT}{rest}");
                    }
                }
            }
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the chunk boundaries; the rest is the document. Values the
    // rewriter holds are bounded at 16 KiB: so is the input.
    if data.len() < 2 || data.len() > 16 * 1024 {
        return;
    }
    let (cuts, doc) = data.split_at(2);
    let rule = Rewrite { upstream: format!("{UPSTREAM_ORIGIN}{UPSTREAM_PATH}"), client: CLIENT.to_owned() };
    let mut rw = Rewriter::new(&rule);
    let mut out = Vec::new();
    let (a, b) = (cuts[0] as usize % (doc.len() + 1), cuts[1] as usize % (doc.len() + 1));
    let (a, b) = (a.min(b), a.max(b));
    for chunk in [&doc[..a], &doc[a..b], &doc[b..]] {
        rw.push(chunk, &mut out);
    }
    rw.finish(&mut out);
    let Ok(parsed) = serde_json::from_slice::<Value>(doc) else { return };
    let got: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("output does not parse ({e}): {}", String::from_utf8_lossy(&out)));
    assert_eq!(got, expected(parsed), "input {}", String::from_utf8_lossy(doc));
});
