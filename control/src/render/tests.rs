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

pub(super) fn load(path: &str) -> Vec<Connector> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    manifest::load(&[(path.to_owned(), text)], "default").unwrap()
}

fn opts(mode: Mode) -> Options {
    Options::new(mode, "127.0.0.1:10000".parse().unwrap(), Sealing::Key(Key::from_bytes(EXAMPLE_KEY)))
}

/// https-proxy mode with the published example CA and leaf (`envoy/examples/tls/`).
fn https_opts() -> Options {
    let read = |f: &str| std::fs::read_to_string(root().join("envoy/examples/tls").join(f)).unwrap();
    let mut o = opts(Mode::HttpsProxy);
    o.tls = Some(Tls {
        ca_cert: read("ca.pem").into(),
        leaves: [(
            "nexus.example.com".to_owned(),
            LeafPem {
                hosts: vec!["nexus.example.com".to_owned()],
                cert: read("leaf.pem"),
                key: read("leaf-key.pem").into(),
            }
            .into(),
        )]
        .into(),
        leaf_dir: "/etc/npm-connector/tls".into(),
        client_dir: None,
        out: "/etc/npm-connector".into(),
        bundle: super::client_bundle(&read("ca.pem"), "# the public roots would be here\n"),
    });
    o
}

/// Sidecar mode with the example CA and leaf, listening where the rendered iptables rules send
/// the pod's traffic.
pub(super) fn sidecar_opts() -> Options {
    let mut o = https_opts();
    o.mode = Mode::Sidecar;
    o.listen = "127.0.0.1:15001".parse().unwrap();
    o
}

/// Sidecar mode with the Istio objects (an egress gateway in istio-system, build pods
/// labelled `npm-connector/build: "true"`).
fn istio_opts() -> Options {
    let mut o = sidecar_opts();
    o.istio = Some(Istio {
        namespace: "istio-system".into(),
        gateway_labels: [("istio".to_owned(), "egressgateway".to_owned())].into(),
        gateway_service: "istio-egressgateway.istio-system.svc.cluster.local".into(),
        target: IstioTarget::Selector([("istio".to_owned(), "egressgateway".to_owned())].into()),
        build_pods: [("npm-connector/build".to_owned(), "true".to_owned())].into(),
        url: "oci://registry.example.com/npm-connector-filter:0.1.0".into(),
        sha256: None,
    });
    o
}

pub(super) fn render_fixed(connectors: &[Connector], o: &Options) -> Vec<OutFile> {
    render(connectors, o, &mut Fixed).unwrap()
}

pub(super) fn file<'a>(files: &'a [OutFile], path: &str) -> &'a str {
    files.iter().find(|f| f.path == Path::new(path)).map(|f| &*f.contents).unwrap_or_else(|| panic!("no {path}"))
}

#[test]
fn token_only_in_client_files_and_credential_only_in_envoy() {
    let cs = load("examples/connectors.yaml");
    for o in [opts(Mode::Gateway), https_opts()] {
        let files = render_fixed(&cs, &o);
        let envoy = file(&files, "envoy.yaml");
        assert!(envoy.contains(r#""credential":{"sealed":""#), "sealed by default");
        assert!(!envoy.contains("your-registry-password"));
        assert!(envoy.contains("host_env_keys") && envoy.contains("NPM_CONNECTOR_KEY"));
        assert!(!envoy.contains(&Key::from_bytes(EXAMPLE_KEY).to_base64()), "never the key");
        assert!(!envoy.contains(FIXED_TOKEN), "the token itself never reaches Envoy");
        assert!(envoy.contains(&crate::token::hash(&SecretString::from(FIXED_TOKEN.to_owned()))));
        for f in &files {
            assert!(!f.contents.contains("your-registry-password"), "{:?}", f.path);
            let name = f.path.display().to_string();
            if name == "envoy.yaml" || name.ends_with(".pem") {
                assert!(!f.contents.contains(FIXED_TOKEN), "{name}");
                assert_eq!(f.secret, !name.ends_with(".pem") || name.ends_with("-key.pem"), "{name}");
            } else {
                // https-proxy's bunfig has only the placeholder: bun takes the proxy URL from HTTPS_PROXY.
                let placeholder = o.mode == Mode::HttpsProxy && f.path.ends_with("bunfig.toml");
                assert_eq!(f.contents.contains(FIXED_TOKEN), !placeholder, "{:?}", f.path);
                assert!(f.secret, "client files are 0600");
            }
        }
        for f in &files {
            assert!(!f.contents.contains("strict-ssl"), "{:?}", f.path);
        }
    }
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
    // The route is named after the connector, and the filter knows it by that name and the
    // cluster it must send to: the router is the one matcher.
    assert!(envoy.contains("name: default/npm-connector\n"), "{envoy}");
    assert!(envoy.contains(r#""route":"default/npm-connector""#), "{envoy}");
    assert!(envoy.contains(r#""cluster":"registries""#), "{envoy}");
    assert!(!envoy.contains("\"hosts\""), "the filter matches no hosts itself");
    assert!(envoy.contains(r#""client":"http://npm-connector.build.svc:8080/default/npm-connector/""#), "{envoy}");
}

#[test]
fn yarn_classic_gets_always_auth_in_its_own_file_only() {
    for o in [opts(Mode::Gateway), https_opts()] {
        let files = render_fixed(&load("examples/connectors.yaml"), &o);
        let npmrc = file(&files, "default/npm-connector/.npmrc");
        let yarn1 = file(&files, "default/npm-connector/yarn-classic.npmrc");
        assert!(!npmrc.contains("always-auth"), "npm 11 warns about it:\n{npmrc}");
        assert!(yarn1.lines().any(|l| l == "always-auth=true"), "{yarn1}");
        for l in npmrc.lines().filter(|l| !l.starts_with(';')) {
            assert!(yarn1.lines().any(|y| y == l), "{l} missing from yarn-classic.npmrc");
        }
    }
}

#[test]
fn https_upstreams_verify_chain_and_san() {
    let mut o = opts(Mode::Gateway);
    o.upstream_ca = Some("/etc/ca.pem".into());
    let envoy = file(&render_fixed(&load("examples/connectors.yaml"), &o), "envoy.yaml").to_owned();
    // Reached by DNS: the shared cluster, SNI and SAN from the host the route sets.
    for want in [
        "name: registries
",
        "envoy.clusters.dynamic_forward_proxy",
        "filename: /etc/ca.pem",
        "auto_sni: true",
        "auto_san_validation: true",
        "host_rewrite_literal: nexus.example.com",
    ] {
        assert!(envoy.contains(want), "{want}\n{envoy}");
    }
    assert!(!envoy.contains("outbound|443||nexus.example.com"), "{envoy}");
    // Pinned: a cluster of its own, SNI and SAN fixed in it.
    o.resolve.insert("nexus.example.com".into(), [10, 0, 0, 7].into());
    let envoy = file(&render_fixed(&load("examples/connectors.yaml"), &o), "envoy.yaml").to_owned();
    for want in [
        "name: outbound|443||nexus.example.com",
        "sni: nexus.example.com",
        "san_type: DNS",
        "exact: nexus.example.com",
        "address: 10.0.0.7",
        "type: STATIC",
    ] {
        assert!(envoy.contains(want), "{want}\n{envoy}");
    }
    assert!(!envoy.contains("dynamic_forward_proxy"), "{envoy}");
    assert!(envoy.contains("pipe:") && !envoy.contains("port_value: 9901"), "admin on a unix socket");
    assert!(envoy.contains("normalize_path: true") && envoy.contains("KEEP_UNCHANGED"));
}

#[test]
fn https_proxy_unmatched_connects_are_blind_tunnels_or_refused() {
    let cs = load("examples/connectors.yaml");
    let envoy = file(&render_fixed(&cs, &https_opts()), "envoy.yaml").to_owned();
    assert!(envoy.contains("envoy.clusters.dynamic_forward_proxy") && envoy.contains("name: blind\n"), "{envoy}");
    // The outer listener's filter configuration holds no credential at all.
    assert_eq!(envoy.matches(r#""credential":"#).count(), 1, "only the tunnel's filter has it");
    let mut o = https_opts();
    o.unmatched = Unmatched::Deny;
    let envoy = file(&render_fixed(&cs, &o), "envoy.yaml").to_owned();
    assert!(!envoy.contains("blind_tunnel"), "{envoy}");
    // A Connector's tunnel hosts stay open under deny.
    let yaml = std::fs::read_to_string(root().join("examples/connectors.yaml")).unwrap().replace(
        "  name: npm-connector\n",
        "  name: npm-connector\n  annotations:\n    npm-connector.io/tunnel-hosts: \"cdn.example.net, objects.example.org:8443\"\n",
    );
    let cs = manifest::load(&[("x".into(), yaml)], "default").unwrap();
    let envoy = file(&render_fixed(&cs, &o), "envoy.yaml").to_owned();
    assert!(envoy.contains("cdn.example.net:443") && envoy.contains("objects.example.org:8443"), "{envoy}");
    assert!(envoy.contains("name: blind_tunnel"), "{envoy}");
}

#[test]
fn cleartext_registries_need_the_annotation_and_warn() {
    let http = std::fs::read_to_string(root().join("examples/connectors.yaml")).unwrap().replace("https://", "http://");
    let e = manifest::load(&[("c.yaml".into(), http.clone())], "default").unwrap_err().to_string();
    assert!(e.starts_with("c.yaml, document 2, spec.address:") && e.contains(manifest::CLEARTEXT_ANNOTATION), "{e}");
    let opted = http.replace(
        "  name: npm-connector\n",
        "  name: npm-connector\n  annotations:\n    npm-connector.io/allow-cleartext: \"true\"\n",
    );
    let cs = manifest::load(&[("c.yaml".into(), opted)], "default").unwrap();
    let w = manifest::warnings(&cs);
    assert!(w.len() == 1 && w[0].contains("in clear"), "{w:?}");
    let envoy = file(&render_fixed(&cs, &opts(Mode::Gateway)), "envoy.yaml").to_owned();
    assert!(envoy.contains("name: registries_cleartext") && !envoy.contains("UpstreamTlsContext"), "{envoy}");
}

/// (manifest, mode, options tweak, directory of the checked-in output)
fn golden_sets() -> Vec<(&'static str, Options, &'static str)> {
    let mut docker = opts(Mode::Gateway);
    docker.listen = "0.0.0.0:10000".parse().unwrap();
    docker.public_url = Some("http://envoy:10000/".parse().unwrap());
    docker.admin_socket = "/tmp/envoy-admin.sock".into();
    vec![
        ("examples/connectors.yaml", opts(Mode::Gateway), "envoy/examples/gateway"),
        ("examples/connectors.yaml", https_opts(), "envoy/examples/https-proxy"),
        ("examples/connectors.yaml", istio_opts(), "envoy/examples/sidecar"),
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
                std::fs::write(&path, f.contents.as_bytes()).unwrap();
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(*have == *f.contents, "{} is stale: run `make golden`", path.display());
        }
    }
}

#[test]
fn unicode_registry_hosts_are_rendered_as_punycode() {
    let yaml = std::fs::read_to_string(root().join("examples/connectors.yaml"))
        .unwrap()
        .replace("https://nexus.example.com/repository/npm", "https://bücher.example/npm");
    let cs = manifest::load(&[("u.yaml".into(), yaml)], "default").unwrap();
    let files = render_fixed(&cs, &https_opts_for("xn--bcher-kva.example"));
    let envoy = file(&files, "envoy.yaml");
    assert!(envoy.contains("xn--bcher-kva.example:443"), "{envoy}");
    assert!(envoy.contains("host_rewrite_literal: xn--bcher-kva.example\n"), "{envoy}");
    assert!(file(&files, "default/npm-connector/.npmrc").contains("registry=https://xn--bcher-kva.example/npm/"));
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
    let xds = Xds { targets: vec![XdsTarget { host: "npm-connector.build.svc".into(), port: 18000 }], tls: None };
    let files = xds_bootstrap(&o, "envoy-a", &xds).unwrap();
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
        std::fs::write(&path, text.as_bytes()).unwrap();
    }
    assert!(
        std::fs::read_to_string(&path).unwrap_or_default() == **text,
        "{} is stale: run `make golden`",
        path.display()
    );
}

/// https-proxy clients keep the registry's https URL, reach it through the proxy with the
/// token in the proxy URL, trust the connector CA and send only a placeholder as registry auth.
#[test]
fn https_proxy_client_files() {
    let files = render_fixed(&load("examples/connectors.yaml"), &https_opts());
    let dir = "default/npm-connector";
    let npmrc = file(&files, &format!("{dir}/.npmrc"));
    let proxy = format!("http://default%2Fnpm-connector:{FIXED_TOKEN}@127.0.0.1:10000/");
    let ca = "/etc/npm-connector/default/npm-connector/ca-bundle.pem";
    for line in [
        "registry=https://nexus.example.com/repository/npm/".to_owned(),
        format!("https-proxy={proxy}"),
        format!("cafile={ca}"),
        "//nexus.example.com/repository/npm/:_authToken=npm-connector-placeholder".to_owned(),
    ] {
        assert!(npmrc.lines().any(|l| l == line), "{line} in:\n{npmrc}");
    }
    let yarnrc = file(&files, &format!("{dir}/.yarnrc.yml"));
    for line in [
        r#"npmRegistryServer: "https://nexus.example.com/repository/npm/""#.to_owned(),
        format!("httpsProxy: \"{proxy}\""),
        format!("httpsCaFilePath: \"{ca}\""),
        "npmAlwaysAuth: true".to_owned(),
        r#"npmAuthToken: "npm-connector-placeholder""#.to_owned(),
    ] {
        assert!(yarnrc.lines().any(|l| l == line), "{line} in:\n{yarnrc}");
    }
    let bunfig = file(&files, &format!("{dir}/bunfig.toml"));
    assert!(bunfig.contains("HTTPS_PROXY") && bunfig.contains(&format!("cafile = \"{ca}\"")), "{bunfig}");
    let env = file(&files, &format!("{dir}/connector.env"));
    for var in ["HTTPS_PROXY", "NO_PROXY"] {
        assert!(env.lines().any(|l| l.starts_with(&format!("{var}="))), "{var} in:\n{env}");
    }
    for var in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
        assert!(env.lines().any(|l| l == format!("{var}={ca}")), "{var} in:\n{env}");
    }
    let only_ca = "/etc/npm-connector/default/npm-connector/ca.pem";
    assert!(env.lines().any(|l| l == format!("NODE_EXTRA_CA_CERTS={only_ca}")), "{env}");
    let tls = https_opts().tls.unwrap();
    assert_eq!(file(&files, &format!("{dir}/ca.pem")), &*tls.ca_cert);
    let bundle = file(&files, &format!("{dir}/ca-bundle.pem"));
    assert!(
        bundle.starts_with(tls.ca_cert.trim_end()) && bundle.ends_with("# the public roots would be here\n"),
        "{bundle}"
    );
    let envoy = file(&files, "envoy.yaml");
    assert!(envoy.contains("/etc/npm-connector/tls/leaf_nexus.example.com-key.pem"));
    assert!(!envoy.contains("PRIVATE KEY"), "the static bootstrap names the key file, never the key");
    // An http registry cannot be tunnelled to; without a CA there is nothing to terminate TLS with.
    let yaml = std::fs::read_to_string(root().join("examples/connectors.yaml"))
        .unwrap()
        .replace("https://", "http://")
        .replace(
            "  name: npm-connector\n",
            "  name: npm-connector\n  annotations:\n    npm-connector.io/allow-cleartext: \"true\"\n",
        );
    let http = manifest::load(&[("x".into(), yaml)], "default").unwrap();
    assert!(matches!(render(&http, &https_opts(), &mut Fixed), Err(RenderError::NotHttps(..))));
    let yaml = std::fs::read_to_string(root().join("examples/connectors.yaml"))
        .unwrap()
        .replace("nexus.example.com", "10.0.0.5");
    let ip = manifest::load(&[("x".into(), yaml)], "default").unwrap();
    assert!(matches!(render(&ip, &https_opts(), &mut Fixed), Err(RenderError::IpHost(..))));
    assert!(matches!(
        render(&load("examples/connectors.yaml"), &opts(Mode::HttpsProxy), &mut Fixed),
        Err(RenderError::NoCa)
    ));
}

/// A scoped connector (GitLab: install from the instance endpoint, publish to the project's)
/// configures only its scope, and publishes where the annotation says.
#[test]
fn scoped_connectors_with_a_publish_registry() {
    let yaml = "kind: Secret\nmetadata: {name: gl}\nstringData: {token: glpat}\n---\n\
        kind: Connector\nmetadata:\n  name: gitlab\n  annotations:\n    npm-connector.io/scope: \"@acme\"\n\
        \x20   npm-connector.io/publish-address: https://gitlab.example.com/api/v4/projects/42/packages/npm/\n\
        spec: {connectorClassName: npm, address: 'https://gitlab.example.com/api/v4/packages/npm/', \
        auth: {name: bearerToken, secretRef: {name: gl}}}\n";
    let cs = manifest::load(&[("gl.yaml".into(), yaml.into())], "default").unwrap();
    // Gateway mode routes only the gateway path: the token is never bound to the registry's
    // own publish host (found by fuzzing the client files).
    let gw = render_fixed(&cs, &opts(Mode::Gateway));
    let clients: Vec<&OutFile> = gw.iter().filter(|f| f.path.starts_with("default/gitlab")).collect();
    assert!(clients.len() >= 4);
    for f in clients {
        assert!(!f.contents.contains("gitlab.example.com/api/v4/projects"), "{:?}:\n{}", f.path, f.contents);
    }
    let files = render_fixed(&cs, &https_opts_for("gitlab.example.com"));
    let npmrc = file(&files, "default/gitlab/.npmrc");
    assert!(npmrc.contains("\n@acme:registry=https://gitlab.example.com/api/v4/packages/npm/\n"), "{npmrc}");
    assert!(!npmrc.contains("\nregistry="), "{npmrc}");
    assert!(npmrc.contains("//gitlab.example.com/api/v4/projects/42/packages/npm/:_authToken="), "{npmrc}");
    let yarnrc = file(&files, "default/gitlab/.yarnrc.yml");
    assert!(yarnrc.contains("npmScopes:\n  acme:\n"), "{yarnrc}");
    assert!(yarnrc.contains("npmPublishRegistry: \"https://gitlab.example.com/api/v4/projects/42/packages/npm/\""));
    let envoy = file(&files, "envoy.yaml");
    // Both prefixes are routes named after the connector, longest first.
    let publish = envoy.find("prefix: /api/v4/projects/42/packages/npm/").unwrap_or(usize::MAX);
    let install = envoy.find("prefix: /api/v4/packages/npm/").unwrap_or(0);
    assert!(publish < install, "{envoy}");
    // The publish address must be on the registry's own origin.
    let other = yaml.replace("https://gitlab.example.com/api/v4/projects", "https://evil.example.com/api/v4/projects");
    let e = manifest::load(&[("gl.yaml".into(), other)], "default").unwrap_err().to_string();
    assert!(
        e.contains("npm-connector.io/publish-address") && e.contains("origin") || e.contains("scheme, host and port"),
        "{e}"
    );
}

fn https_opts_for(host: &str) -> Options {
    let mut o = https_opts();
    if let Some(t) = o.tls.as_mut() {
        let mut leaf = LeafPem::clone(t.leaves.values().next().unwrap());
        leaf.hosts = vec![host.to_owned()];
        t.leaves = [(host.to_owned(), leaf.into())].into();
    }
    o
}

/// File-based xDS in https-proxy mode: the leaves go to `sds.json` (0600), which the internal
/// listener's chains name; the bootstrap holds no key. Every xDS file is JSON, named `.json` (Envoy
/// picks its parser by the extension), and the bootstrap and resources name those files.
#[test]
fn xds_dir_delivers_leaves_over_file_sds() {
    let files =
        xds_dir(&load("examples/connectors.yaml"), &https_opts(), Path::new("/var/lib/npm-connector/xds"), &mut Fixed)
            .unwrap();
    let sds = files.iter().find(|f| f.path == Path::new("/var/lib/npm-connector/xds/sds.json")).unwrap();
    assert!(sds.secret && sds.contents.contains("PRIVATE KEY") && sds.contents.contains("leaf_nexus.example.com"));
    let lds = file(&files, "/var/lib/npm-connector/xds/lds.json");
    assert!(lds.contains("tls_certificate_sds_secret_configs") && !lds.contains("PRIVATE KEY"));
    assert!(lds.contains(r#""path": "/var/lib/npm-connector/xds/sds.json""#), "{lds}");
    assert!(lds.contains(r#""path": "/var/lib/npm-connector/xds/ecds-npm_connector.json""#), "{lds}");
    let xds: Vec<&OutFile> = files.iter().filter(|f| f.path.starts_with("/var/lib/npm-connector/xds")).collect();
    let names: Vec<String> = xds.iter().map(|f| f.path.display().to_string()).collect();
    assert!(xds.len() >= 4 && names.iter().all(|n| n.ends_with(".json")), "{names:?}");
    for f in xds {
        let doc: serde_json::Value = serde_json::from_str(&f.contents).unwrap_or_else(|e| panic!("{names:?}: {e}"));
        assert!(doc["resources"].is_array(), "{}", f.path.display());
    }
    let envoy = file(&files, "envoy.yaml");
    assert!(!envoy.contains("PRIVATE KEY"));
    assert!(envoy.contains("path: /var/lib/npm-connector/xds/lds.json"), "{envoy}");
    assert!(envoy.contains("path: /var/lib/npm-connector/xds/cds.json"), "{envoy}");
}

/// A leaf names up to `HOSTS_PER_LEAF` hosts: 150 registry hosts make two certificates (two
/// SSL contexts in Envoy, not 150) in the static bootstrap and two secrets over xDS, each
/// named after its first host, and every host is still one server name of the one chain.
#[test]
fn hosts_share_leaves_in_the_bootstrap_and_over_sds() {
    use crate::pki::HOSTS_PER_LEAF;
    let mut yaml = String::from(
        "kind: Secret\napiVersion: v1\nmetadata: {name: reg}\ntype: kubernetes.io/basic-auth\n\
         stringData: {username: u, password: p}\n",
    );
    let n = HOSTS_PER_LEAF + 50;
    for i in 0..n {
        yaml += &format!(
            "---\napiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: c{i:03}}}\n\
             spec: {{connectorClassName: npm, address: 'https://r{i:03}.example.com/', auth: {{name: basicAuth, secretRef: {{name: reg}}}}}}\n"
        );
    }
    let connectors = manifest::load(&[("many.yaml".into(), yaml)], "default").unwrap();
    let mut o = https_opts();
    let t = o.tls.as_mut().unwrap();
    let fixture = LeafPem::clone(t.leaves.values().next().unwrap());
    let hosts = super::tls_hosts(&connectors);
    t.leaves.clear();
    for group in crate::pki::leaf_groups(&hosts) {
        let leaf = std::sync::Arc::new(LeafPem { hosts: group.to_vec(), ..fixture.clone() });
        t.leaves.extend(group.iter().map(|h| (h.clone(), leaf.clone())));
    }
    let files = render(&connectors, &o, &mut crate::token::OsEntropy).unwrap();
    let envoy = file(&files, "envoy.yaml");
    assert_eq!(envoy.matches("certificate_chain").count(), 2, "{envoy}");
    let leaf_files: Vec<_> =
        files.iter().filter(|f| f.path.starts_with("tls")).map(|f| f.path.display().to_string()).collect();
    assert_eq!(
        leaf_files,
        [
            "tls/leaf_r000.example.com.pem",
            "tls/leaf_r000.example.com-key.pem",
            &format!("tls/leaf_r{HOSTS_PER_LEAF:03}.example.com.pem"),
            &format!("tls/leaf_r{HOSTS_PER_LEAF:03}.example.com-key.pem"),
        ]
    );
    assert!((0..n).all(|i| envoy.contains(&format!("r{i:03}.example.com"))));
    let xds = xds_dir(&connectors, &o, Path::new("/x"), &mut crate::token::OsEntropy).unwrap();
    let sds = file(&xds, "/x/sds.json");
    assert_eq!(sds.matches(r#""name": "leaf_"#).count(), 2, "{sds}");
    assert_eq!(file(&xds, "/x/lds.json").matches(r#""name": "leaf_"#).count(), 2);
}
