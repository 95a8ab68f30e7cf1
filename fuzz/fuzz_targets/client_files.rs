//! The client-file renderers: for any Connector the manifest parser accepts (address, scope,
//! publish address, names) and any token, every mode's `.yarnrc.yml` parses as YAML and
//! `bunfig.toml` as TOML with the registry and token they were given, and `.npmrc` /
//! `connector.env` are `key=value` lines with no line smuggled in.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use npm_connector::render::{self, Mode, Options, Sealing};
use secrecy::SecretString;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    namespace: String,
    name: String,
    https: bool,
    host: String,
    path: String,
    scope: Option<String>,
    /// A publish path on the same origin.
    publish: Option<String>,
    token: String,
    mode: u8,
}

fn q(s: &str) -> String {
    Value::from(s).to_string()
}

fuzz_target!(|i: Input| {
    let mut ann = String::from("  annotations:\n    npm-connector.io/allow-cleartext: \"true\"\n");
    if let Some(s) = &i.scope {
        ann += &format!("    npm-connector.io/scope: {}\n", q(s));
    }
    let origin = format!("{}://{}", if i.https { "https" } else { "http" }, i.host);
    if let Some(p) = &i.publish {
        ann += &format!("    npm-connector.io/publish-address: {}\n", q(&format!("{origin}/{p}")));
    }
    let yaml = format!(
        "kind: Secret\nmetadata: {{name: s, namespace: {ns}}}\nstringData: {{token: t}}\n---\n\
         kind: Connector\nmetadata:\n  name: {name}\n  namespace: {ns}\n{ann}spec:\n  connectorClassName: npm\n  address: {addr}\n\
         \x20 auth: {{name: bearerToken, secretRef: {{name: s}}}}\n",
        ns = q(&i.namespace),
        name = q(&i.name),
        addr = q(&format!("{origin}/{}", i.path))
    );
    let Ok(cs) = npm_connector::manifest::load(&[("f.yaml".to_owned(), yaml)], "default") else { return };
    // Tokens are minted by npm-connector: `npmc_` and URL-safe characters.
    if !i.token.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return;
    }
    let token = SecretString::from(format!("npmc_{}", i.token));
    let mode = [Mode::Gateway, Mode::HttpsProxy, Mode::Sidecar][i.mode as usize % 3];
    let mut opts = Options::new(mode, "127.0.0.1:10000".parse().unwrap_or_else(|_| unreachable!()), Sealing::Plaintext);
    if mode.terminates_tls() {
        opts.tls = Some(render::Tls {
            ca_cert: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into(),
            leaves: Default::default(),
            leaf_dir: "/tls".into(),
            client_dir: None,
            out: "/out".into(),
            bundle: render::client_bundle("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", ""),
        });
    }
    for c in &cs {
        let Ok(files) = render::client_files(c, &opts, &token) else { continue };
        for f in files {
            let name = f.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let text = &f.contents;
            match name.as_str() {
                ".yarnrc.yml" => {
                    let v: Value = serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("yarnrc ({e}):\n{text}"));
                    let server = v["npmRegistryServer"].as_str().or_else(|| {
                        v["npmScopes"]
                            .as_object()
                            .and_then(|o| o.values().next())
                            .and_then(|s| s["npmRegistryServer"].as_str())
                    });
                    assert!(server.is_some(), "no registry in:\n{text}");
                }
                "bunfig.toml" => {
                    let v: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("bunfig ({e}):\n{text}"));
                    assert!(v.get("install").is_some(), "{text}");
                }
                ".npmrc" | "yarn-classic.npmrc" | "connector.env" => {
                    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with([';', '#'])) {
                        let (k, _) =
                            line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line:?} in\n{text}"));
                        assert!(!k.is_empty() && !k.contains(char::is_whitespace), "bad key {k:?} in\n{text}");
                    }
                    let known = [
                        "registry",
                        "https-proxy",
                        "cafile",
                        "always-auth",
                        "HTTPS_PROXY",
                        "https_proxy",
                        "NO_PROXY",
                        "no_proxy",
                        "NODE_EXTRA_CA_CERTS",
                        "SSL_CERT_FILE",
                        "REQUESTS_CA_BUNDLE",
                        "CURL_CA_BUNDLE",
                    ];
                    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with([';', '#'])) {
                        let k = line.split_once('=').map(|(k, _)| k).unwrap_or_default();
                        assert!(
                            known.contains(&k) || k.ends_with(":registry") || k.ends_with(":_authToken"),
                            "smuggled {line:?} in\n{text}"
                        );
                    }
                }
                _ => {}
            }
        }
    }
});
