//! The end-to-end scenario: a registry that demands credentials, connectors rendered from real
//! manifests, Envoy running the filter, and npm/yarn flows through it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use npm_connector::render::{self, Key, Mode, Options, Sealing, Tls};
use npm_connector::token::{Entropy, OsEntropy, TokenError};
use npm_connector::{manifest, output};
use secrecy::{ExposeSecret, SecretString};

use crate::clients::{Npm, Run};
use crate::envoy::{self, Envoy};
use crate::pki::{self, Pki};
use crate::procs::free_port;
use crate::upstream::Upstream;
use crate::verdaccio::{self, Verdaccio};

pub const REGISTRY_HOST: &str = "registry.test";
/// A second name for the same registry: team-b's connector, so that host matching picks it.
pub const REGISTRY2_HOST: &str = "registry2.test";
pub const REDIRECT_HOST: &str = "redirect.test";
/// Pinned to the registry, whose certificate does not name it: upstream SAN verification fails.
pub const MISMATCH_HOST: &str = "mismatch.test";
/// A GitLab-shaped registry: Verdaccio behind a front that serves it under GitLab's API paths.
pub const GITLAB_HOST: &str = "gitlab.test";
/// A GitHub-Packages-shaped registry whose tarballs live on a CDN (tests/cdn.rs).
pub const CDN_REGISTRY_HOST: &str = "ghreg.test";
/// The registry users: one per connector. Passwords are random per run.
pub const USERS: [&str; 2] = ["ci-a", "ci-b"];
pub const REDIRECT_CREDENTIAL_PREFIX: &str = "redirect-credential-";

/// Everything a scenario started, stopped when dropped (Envoy first, then the upstreams).
pub struct Env {
    pub envoy: Envoy,
    pub registry: Verdaccio,
    pub redirector: Upstream,
    pub cdn: Upstream,
    pub pki: Pki,
    pub out: PathBuf,
    pub mode: Mode,
    /// Every secret of this run: registry passwords, the redirect credential, client tokens.
    pub secrets: Vec<String>,
    /// Client tokens by connector id.
    pub tokens: BTreeMap<String, String>,
    /// Output of every client run, for the leak check.
    pub transcript: Vec<String>,
    /// The manifests, for rendering variants of this run.
    pub yaml: String,
    /// The sealing key Envoy holds.
    pub key: Key,
    pub dir: tempfile::TempDir,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_secret(prefix: &str) -> String {
    let t = npm_connector::token::mint().unwrap_or_else(|e| panic!("{e}"));
    format!("{prefix}{}", &t.expose_secret()[5..25])
}

/// The manifests of the scenario, as a user writes them.
fn manifests(
    registry_url: &str,
    redirect_url: Option<&str>,
    passwords: &[String],
    redirect_credential: &str,
) -> String {
    let mut y = String::new();
    for (i, user) in USERS.iter().enumerate() {
        let (team, url) = if i == 0 {
            ("team-a", registry_url.to_owned())
        } else {
            ("team-b", registry_url.replace(REGISTRY_HOST, REGISTRY2_HOST))
        };
        y += &format!(
            "kind: Secret\napiVersion: v1\nmetadata:\n  name: registry-{team}\n  namespace: {team}\n\
             type: kubernetes.io/basic-auth\nstringData:\n  username: {user}\n  password: \"{pw}\"\n---\n\
             apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: npm\n  namespace: {team}\n\
             spec:\n  connectorClassName: npm\n  address: {url}\n  auth:\n    name: basicAuth\n    secretRef:\n      name: registry-{team}\n---\n",
            pw = passwords[i]
        );
    }
    // The redirector is a plain-http registry, which https-proxy mode does not tunnel to.
    let Some(redirect_url) = redirect_url else {
        return y;
    };
    y += &format!(
        "kind: Secret\napiVersion: v1\nmetadata:\n  name: redirect-token\n  namespace: team-a\n\
         data:\n  token: {b64}\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: redirector\n  namespace: team-a\n\
         \x20 annotations:\n    npm-connector.io/allow-cleartext: \"true\"\n\
         spec:\n  connectorClassName: npm\n  address: {redirect_url}\n  auth:\n    name: bearerToken\n    secretRef:\n      name: redirect-token\n",
        b64 = base64::engine::general_purpose::STANDARD.encode(redirect_credential)
    );
    y
}

impl Env {
    /// Starts the registry and upstreams, renders for `mode` and starts Envoy.
    pub fn start(mode: Mode) -> Env {
        let dir = tempfile::Builder::new().prefix("npm-connector-e2e-").tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path().to_owned();
        let pki = pki::make(&d, &[REGISTRY_HOST, REGISTRY2_HOST, "127.0.0.1"]);
        let passwords: Vec<String> = USERS.iter().map(|_| random_secret("pw-")).collect();
        let users: Vec<(&str, &str)> = USERS.iter().copied().zip(passwords.iter().map(String::as_str)).collect();
        let vdir = d.join("verdaccio");
        std::fs::create_dir_all(&vdir).unwrap_or_else(|e| panic!("{e}"));
        let registry = verdaccio::start(&vdir, &pki, REGISTRY_HOST, &users);
        let cdn = Upstream::start(None);
        let redirector = Upstream::start(Some(format!("http://{}/cdn/file.tgz", cdn.addr)));
        let redirect_credential = random_secret(REDIRECT_CREDENTIAL_PREFIX);
        let yaml = manifests(
            &registry.public_url,
            Some(format!("http://{REDIRECT_HOST}:{}/", redirector.addr.port()).as_str())
                .filter(|_| mode != Mode::HttpsProxy),
            &passwords,
            &redirect_credential,
        );
        std::fs::write(d.join("connectors.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"));
        let mut secrets = passwords.clone();
        secrets.push(redirect_credential);
        for (u, p) in USERS.iter().zip(&passwords) {
            secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
        }
        let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));
        secrets.push(key.to_base64());
        let (envoy, tokens) = render_and_start(&d, mode, &pki.ca_cert, &key, &yaml, "out", None);
        secrets.extend(tokens.values().cloned());
        Env {
            envoy,
            registry,
            redirector,
            cdn,
            pki,
            out: d.join("out"),
            mode,
            secrets,
            tokens,
            transcript: Vec::new(),
            yaml,
            key,
            dir,
        }
    }
}

/// Renders `yaml` for `mode` into `<dir>/<out>` and starts an Envoy on it; returns the client
/// tokens by connector id.
pub fn render_and_start(
    dir: &Path,
    mode: Mode,
    ca: &Path,
    key: &Key,
    yaml: &str,
    out: &str,
    token_expires_at: Option<u64>,
) -> (Envoy, BTreeMap<String, String>) {
    start_with(dir, mode, ca, key, yaml, out, token_expires_at, render::Unmatched::Passthrough)
}

/// https-proxy mode with `--unmatched deny`.
pub fn render_deny(dir: &Path, ca: &Path, key: &Key, yaml: &str, out: &str) -> (Envoy, BTreeMap<String, String>) {
    start_with(dir, Mode::HttpsProxy, ca, key, yaml, out, None, render::Unmatched::Deny)
}

#[allow(clippy::too_many_arguments)]
fn start_with(
    dir: &Path,
    mode: Mode,
    ca: &Path,
    key: &Key,
    yaml: &str,
    out: &str,
    token_expires_at: Option<u64>,
    unmatched: render::Unmatched,
) -> (Envoy, BTreeMap<String, String>) {
    let connectors =
        manifest::load(&[("connectors.yaml".into(), yaml.to_owned())], "default").unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join(out);
    let port = free_port();
    let mut resolve: BTreeMap<String, IpAddr> = BTreeMap::new();
    // `localhost` is left to Envoy's resolver: connectors there use the shared DNS cluster.
    for h in [REGISTRY_HOST, REGISTRY2_HOST, REDIRECT_HOST, MISMATCH_HOST, GITLAB_HOST, CDN_REGISTRY_HOST] {
        resolve.insert(h.to_owned(), IpAddr::from([127, 0, 0, 1]));
    }
    let listen = format!("127.0.0.1:{port}").parse().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = Options::new(mode, listen, Sealing::Key(key.clone()));
    opts.wasm = crate::tool("NPM_CONNECTOR_WASM", "target/wasm32-wasip1/release/npm_connector_filter.wasm");
    opts.admin_socket = out.join("admin.sock");
    opts.upstream_ca = Some(ca.to_owned());
    opts.resolve = resolve;
    opts.token_expires_at = token_expires_at;
    opts.unmatched = unmatched;
    if mode == Mode::HttpsProxy {
        opts.tls = Some(connector_tls(dir, &connectors, &out));
    }
    let mut entropy = Recording(Vec::new());
    let files = render::render(&connectors, &opts, &mut entropy).unwrap_or_else(|e| panic!("{e}"));
    output::write(&out, &files).unwrap_or_else(|e| panic!("{e}"));
    let tokens = connectors.iter().map(|c| c.id()).zip(entropy.0).collect();
    let envoy = envoy::start(
        &out.join("envoy.yaml"),
        out.join("envoy.log"),
        port,
        out.join("admin.sock"),
        Some(&key.to_base64()),
    );
    (envoy, tokens)
}

/// The connector CA of a run (`<dir>/connector-ca`, made once) and a leaf for every registry
/// host, as `render --mode https-proxy --ca-dir` makes them.
pub fn connector_tls(dir: &Path, connectors: &[manifest::Connector], out: &Path) -> Tls {
    let ca_dir = dir.join("connector-ca");
    if !ca_dir.join(npm_connector::pki::CA_CERT).exists() {
        npm_connector::pki::init(&ca_dir, "npm-connector e2e CA").unwrap_or_else(|e| panic!("{e}"));
    }
    let ca = npm_connector::pki::Ca::load(&ca_dir).unwrap_or_else(|e| panic!("{e}"));
    let hosts = render::tls_hosts(connectors);
    let mut leaves = std::collections::BTreeMap::new();
    for group in npm_connector::pki::leaf_groups(&hosts) {
        let (leaf, _) = ca
            .mint_group(group, SystemTime::now(), std::time::Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("{e}"));
        leaves.extend(group.iter().map(|h| (h.clone(), leaf.clone())));
    }
    // The test CA stands for the public roots: blind tunnels reach test servers it signed.
    let roots = std::fs::read_to_string(dir.join(npm_connector::pki::CA_CERT)).unwrap_or_default();
    Tls {
        ca_cert: ca.cert_pem.as_str().into(),
        leaves,
        leaf_dir: out.join("tls"),
        client_dir: None,
        out: out.to_owned(),
        bundle: render::client_bundle(&ca.cert_pem, &roots),
    }
}

/// The OS's randomness, remembering the tokens it minted (the tests need them).
struct Recording(Vec<String>);

impl Entropy for Recording {
    fn token(&mut self) -> Result<SecretString, TokenError> {
        let t = OsEntropy.token()?;
        self.0.push(t.expose_secret().to_owned());
        Ok(t)
    }
}

impl Env {
    pub fn path(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// The rendered `.npmrc` of a connector.
    pub fn npmrc(&self, id: &str) -> PathBuf {
        self.out.join(id).join(".npmrc")
    }

    /// An npm with its own HOME using the given user config.
    pub fn npm(&self, home: &str, userconfig: &Path) -> Npm {
        Npm::new(&self.path(home), userconfig)
    }

    /// Runs npm and keeps its output for the leak check.
    pub fn npm_run(&mut self, npm: &Npm, dir: &Path, args: &[&str]) -> Run {
        let r = npm.run(dir, args);
        self.transcript.push(r.all());
        r
    }

    pub fn npm_ok(&mut self, npm: &Npm, dir: &Path, args: &[&str]) -> Run {
        let r = self.npm_run(npm, dir, args);
        assert!(
            r.ok,
            "npm {args:?} failed:\n{}\n--- envoy log tail:\n{}",
            r.all(),
            tail(&self.envoy.daemon.log_text())
        );
        r
    }

    /// Writes a package to publish and returns its directory.
    pub fn package(&self, name: &str, version: &str, deps: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(&format!("pkgs/{}-{version}", name.replace('/', "+")));
        let deps: serde_json::Map<String, serde_json::Value> =
            deps.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect();
        let pj = serde_json::json!({"name": name, "version": version, "main": "index.js", "dependencies": deps});
        std::fs::write(dir.join("package.json"), pj.to_string()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("index.js"), format!("module.exports = {:?};\n", format!("{name}@{version}")))
            .unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    /// yarn classic (v1), from a fresh cache, with only the rendered `yarn-classic.npmrc`:
    /// publishes a package, then installs it with the published tree (unscoped and scoped).
    pub fn yarn_classic_flow(&mut self, connector: &str) {
        let rc = self.out.join(connector).join(render::YARN_CLASSIC_FILE);
        let mode = format!("{:?}", self.mode);
        let home = self.path(&format!("home-yarn1-{mode}"));
        let name = format!("y1-pub-{}", mode.to_ascii_lowercase());
        let p = self.package(&name, "1.0.0", &[("dep-a", "^1.0.0")]);
        let r = crate::clients::yarn_classic(
            &home,
            &rc,
            &p,
            &["publish", "--new-version", "1.0.0", "--no-git-tag-version"],
        );
        self.transcript.push(r.all());
        assert!(r.ok, "yarn classic publish ({mode}):\n{}\n{}", r.all(), tail(&self.envoy.daemon.log_text()));
        let project = self.path(&format!("yarn1-{mode}"));
        let pj = format!(
            r#"{{"name":"yarn1-consumer","version":"1.0.0","private":true,"dependencies":{{"app-b":"1.0.0","@acme/c":"1.0.0","{name}":"1.0.0"}}}}"#
        );
        std::fs::write(project.join("package.json"), pj).unwrap_or_else(|e| panic!("{e}"));
        let r = crate::clients::yarn_classic(&home, &rc, &project, &["install"]);
        self.transcript.push(r.all());
        assert!(r.ok, "yarn classic install ({mode}):\n{}\n{}", r.all(), tail(&self.envoy.daemon.log_text()));
        for installed in [name.as_str(), "app-b", "@acme/c", "dep-a"] {
            assert!(project.join("node_modules").join(installed).join("package.json").exists(), "{installed}");
        }
        let lock = std::fs::read_to_string(project.join("yarn.lock")).unwrap_or_default();
        assert!(lock.contains("dep-a-1.0.0.tgz"), "{lock}");
        // npm reads only its own .npmrc, which has nothing it warns about.
        let npm = self.npm(&format!("home-npm-warn-{mode}"), &self.npmrc(connector));
        let r = npm.run(&project, &["config", "get", "registry"]);
        assert!(r.ok && !r.all().contains("npm warn"), "{}", r.all());
    }

    /// Stops Envoy (flushing its logs) and asserts that no secret of this run appears in its
    /// log (access log included) or in any client's output.
    pub fn assert_nothing_leaked(&mut self) {
        // The admin API's dump shows the sealed form, never the credential or a token.
        let dump = self.envoy.admin("/config_dump");
        assert!(dump.contains(r#"\"credential\":{\"sealed\":"#), "the dump shows the sealed credential");
        self.transcript.push(dump);
        self.envoy.daemon.terminate();
        assert!(self.envoy.daemon.log_text().contains("\" 200 "), "the access log was read in full");
        let mut haystacks: Vec<(String, String)> = vec![("envoy log".into(), self.envoy.daemon.log_text())];
        for (i, t) in self.transcript.iter().enumerate() {
            haystacks.push((format!("client run #{i}"), t.clone()));
        }
        let tokens: Vec<&String> = self.tokens.values().collect();
        for (what, text) in &haystacks {
            for s in &self.secrets {
                assert!(!text.contains(s.as_str()), "a secret leaked into {what}");
            }
            for t in &tokens {
                assert!(!text.contains(t.as_str()), "a client token leaked into {what}");
            }
        }
    }
}

/// The last lines of a log, without Envoy's start-up chatter.
pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.contains("][info][main]")).collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub fn expired_at() -> u64 {
    now().saturating_sub(60)
}
