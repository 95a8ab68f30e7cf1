//! Renderer tests: where tokens and credentials may and may not appear, the client files of
//! each mode, and golden files for the checked-in rendered configurations.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::*;
use crate::manifest;

const FIXED_TOKEN: &str = "npmc_GOLDEN-fixture-token-not-a-secret-000000000";
/// The key the checked-in examples are sealed with: published, so not a secret
/// (`envoy/examples/example.key`).
const EXAMPLE_KEY: [u8; 32] = [0x42; 32];

/// Fixed tokens, so rendered files are reproducible.
struct Fixed;

impl crate::token::Entropy for Fixed {
    fn token(&mut self) -> Result<SecretString, crate::token::TokenError> {
        Ok(SecretString::from(FIXED_TOKEN.to_owned()))
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(path: &str) -> Vec<Connector> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    manifest::load(&[(path.to_owned(), text)], "default").unwrap()
}

fn opts(mode: Mode) -> Options {
    Options {
        mode,
        listen: "127.0.0.1:10000".parse().unwrap(),
        public_url: None,
        wasm: "/etc/npm-connector/npm_connector_filter.wasm".into(),
        admin_socket: "/run/npm-connector/admin.sock".into(),
        upstream_ca: None,
        resolve: BTreeMap::new(),
        unmatched: Unmatched::Passthrough,
        token_expires_at: None,
        sealing: Sealing::Key(Key::from_bytes(EXAMPLE_KEY)),
    }
}

fn render_fixed(connectors: &[Connector], o: &Options) -> Vec<OutFile> {
    render(connectors, o, &mut Fixed).unwrap()
}

fn file<'a>(files: &'a [OutFile], path: &str) -> &'a str {
    files.iter().find(|f| f.path == Path::new(path)).map(|f| f.contents.as_str()).unwrap_or_else(|| panic!("no {path}"))
}

#[test]
fn token_only_in_client_files_and_credential_only_in_envoy() {
    let cs = load("examples/connectors.yaml");
    for mode in [Mode::Forward, Mode::Gateway] {
        let files = render_fixed(&cs, &opts(mode));
        let envoy = file(&files, "envoy.yaml");
        assert!(envoy.contains(r#""credential":{"sealed":""#), "sealed by default");
        assert!(!envoy.contains("your-registry-password"));
        assert!(envoy.contains("host_env_keys") && envoy.contains("NPM_CONNECTOR_KEY"));
        assert!(!envoy.contains(&Key::from_bytes(EXAMPLE_KEY).to_base64()), "never the key");
        assert!(!envoy.contains(FIXED_TOKEN), "the token itself never reaches Envoy");
        assert!(envoy.contains(&crate::token::hash(&SecretString::from(FIXED_TOKEN.to_owned()))));
        for f in files.iter().filter(|f| f.path != Path::new("envoy.yaml")) {
            assert!(f.contents.contains(FIXED_TOKEN), "{:?}", f.path);
            assert!(!f.contents.contains("your-registry-password"), "{:?}", f.path);
            assert!(f.secret, "client files hold a token: 0600");
        }
        for f in &files {
            assert!(!f.contents.contains("strict-ssl"), "{:?}", f.path);
        }
    }
}

#[test]
fn forward_clients_keep_the_registry_host_and_use_the_proxy() {
    let files = render_fixed(&load("examples/connectors.yaml"), &opts(Mode::Forward));
    let npmrc = file(&files, "default/npm-connector/.npmrc");
    assert!(npmrc.contains("\nregistry=http://nexus.example.com/repository/npm/\n"), "{npmrc}");
    assert!(
        npmrc.contains(&format!("\nproxy=http://default%2Fnpm-connector:{FIXED_TOKEN}@127.0.0.1:10000/\n")),
        "{npmrc}"
    );
    assert!(npmrc.contains(&format!("\n//nexus.example.com/repository/npm/:_authToken={FIXED_TOKEN}\n")), "{npmrc}");
    let yarnrc = file(&files, "default/npm-connector/.yarnrc.yml");
    assert!(yarnrc.contains("npmAlwaysAuth: true"), "{yarnrc}");
    assert!(yarnrc.contains("httpProxy: \"http://default%2Fnpm-connector:"), "{yarnrc}");
}

#[test]
fn gateway_clients_use_a_path_on_the_proxy() {
    let mut o = opts(Mode::Gateway);
    o.public_url = Some("http://npm-connector.build.svc:8080/".parse().unwrap());
    let files = render_fixed(&load("examples/connectors.yaml"), &o);
    let npmrc = file(&files, "default/npm-connector/.npmrc");
    assert!(npmrc.contains("\nregistry=http://npm-connector.build.svc:8080/default/npm-connector/\n"), "{npmrc}");
    assert!(!npmrc.contains("proxy="), "{npmrc}");
    let envoy = file(&files, "envoy.yaml");
    assert!(envoy.contains("prefix_rewrite: /repository/npm/"), "{envoy}");
    assert!(envoy.contains("host_rewrite_literal: nexus.example.com"), "{envoy}");
    assert!(envoy.contains(r#""client":"http://npm-connector.build.svc:8080/default/npm-connector/""#), "{envoy}");
}

#[test]
fn https_upstreams_verify_chain_and_san() {
    let mut o = opts(Mode::Forward);
    o.upstream_ca = Some("/etc/ca.pem".into());
    let envoy = file(&render_fixed(&load("examples/connectors.yaml"), &o), "envoy.yaml").to_owned();
    for want in [
        "sni: nexus.example.com",
        "filename: /etc/ca.pem",
        "san_type: DNS",
        "exact: nexus.example.com",
        "type: LOGICAL_DNS",
    ] {
        assert!(envoy.contains(want), "{want}");
    }
    assert!(envoy.contains("pipe:") && !envoy.contains("port_value: 9901"), "admin on a unix socket");
    assert!(envoy.contains("normalize_path: true") && envoy.contains("KEEP_UNCHANGED"));
}

#[test]
fn deny_mode_has_no_open_forward_proxy() {
    let mut o = opts(Mode::Forward);
    o.unmatched = Unmatched::Deny;
    let envoy = file(&render_fixed(&load("examples/connectors.yaml"), &o), "envoy.yaml").to_owned();
    assert!(!envoy.contains("dynamic_forward_proxy"));
    assert!(envoy.contains(r#""unmatched":"deny""#));
}

/// (manifest, mode, options tweak, directory of the checked-in output)
fn golden_sets() -> Vec<(&'static str, Options, &'static str)> {
    let mut docker = opts(Mode::Gateway);
    docker.listen = "0.0.0.0:10000".parse().unwrap();
    docker.public_url = Some("http://envoy:10000/".parse().unwrap());
    docker.admin_socket = "/tmp/envoy-admin.sock".into();
    vec![
        ("examples/connectors.yaml", opts(Mode::Forward), "envoy/examples/forward"),
        ("examples/connectors.yaml", opts(Mode::Gateway), "envoy/examples/gateway"),
        ("envoy/docker/connectors.yaml", docker, "envoy/docker/rendered"),
    ]
}

/// Checked-in configurations are exactly what the renderer writes. `make golden` updates them.
#[test]
fn golden_files_match_the_renderer() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (manifest, o, dir) in golden_sets() {
        for f in render_fixed(&load(manifest), &o) {
            let path = root().join(dir).join(&f.path);
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &f.contents).unwrap();
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(have == f.contents, "{} is stale: run `make golden`", path.display());
        }
    }
}

#[test]
fn unicode_registry_hosts_are_rendered_as_punycode() {
    let yaml = std::fs::read_to_string(root().join("examples/connectors.yaml"))
        .unwrap()
        .replace("https://nexus.example.com/repository/npm", "https://bücher.example/npm");
    let cs = manifest::load(&[("u.yaml".into(), yaml)], "default").unwrap();
    let files = render_fixed(&cs, &opts(Mode::Forward));
    let envoy = file(&files, "envoy.yaml");
    assert!(envoy.contains(r#""hosts":["xn--bcher-kva.example"]"#), "{envoy}");
    assert!(envoy.contains("sni: xn--bcher-kva.example"));
    assert!(file(&files, "default/npm-connector/.npmrc").contains("registry=http://xn--bcher-kva.example/npm/"));
}

#[test]
fn plaintext_only_when_asked() {
    let mut o = opts(Mode::Gateway);
    o.sealing = Sealing::Plaintext;
    let envoy = file(&render_fixed(&load("examples/connectors.yaml"), &o), "envoy.yaml").to_owned();
    assert!(envoy.contains(r#""password":"your-registry-password""#));
}

#[test]
fn example_key_file_matches_the_golden_key() {
    let text = std::fs::read_to_string(root().join("envoy/examples/example.key")).unwrap();
    assert_eq!(text.trim(), Key::from_bytes(EXAMPLE_KEY).to_base64());
}

/// The `render --xds` bootstrap is checked in too.
#[test]
fn golden_xds_bootstrap() {
    let mut o = opts(Mode::Gateway);
    o.sealing = Sealing::Plaintext; // it carries no credential
    let target = XdsTarget { host: "npm-connector.build.svc".into(), port: 18000 };
    let files = xds_bootstrap(&o, "envoy-a", &target).unwrap();
    let text = &files[0].contents;
    for want in [
        "set_node_on_first_message_only: true",
        "connection_keepalive",
        "retry_back_off",
        "npm_connector_listen: 127.0.0.1:10000",
        "id: envoy-a",
    ] {
        assert!(text.contains(want), "{want}");
    }
    let path = root().join("envoy/examples/xds/envoy.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    assert!(
        std::fs::read_to_string(&path).unwrap_or_default() == *text,
        "{} is stale: run `make golden`",
        path.display()
    );
}
