//! https-proxy mode end to end: clients keep the registry's real https URL and CONNECT
//! through Envoy, which terminates TLS with a leaf of the connector CA (clients trust it via
//! cafile; strict TLS stays on), injects the credential and re-originates verified TLS to a
//! real HTTPS Verdaccio that writes absolute https tarball URLs.

use std::path::{Path, PathBuf};

use npm_connector::render::Mode;
use npm_connector_tests::clients::{self, Run};
use npm_connector_tests::scenario::{self, Env, MISMATCH_HOST, REGISTRY2_HOST, REGISTRY_HOST};

const A: &str = "team-a/npm";
const B: &str = "team-b/npm";

fn ok(env: &mut Env, what: &str, r: Run) -> Run {
    env.transcript.push(r.all());
    assert!(r.ok, "{what} failed:\n{}\n--- envoy log tail:\n{}", r.all(), scenario::tail(&env.envoy.daemon.log_text()));
    r
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn consumer(env: &Env, name: &str, deps: &str) -> PathBuf {
    let project = env.path(name);
    write(
        &project.join("package.json"),
        &format!(r#"{{"name":"{name}","version":"1.0.0","private":true,"dependencies":{{{deps}}}}}"#),
    );
    project
}

/// npm: publish a small tree, install it from a fresh cache, then `npm ci` from the lockfile
/// (v3, `resolved` on the registry's https host) in a fresh HOME.
fn npm_flows(env: &mut Env) -> PathBuf {
    let npm = env.npm("home-publish", &env.npmrc(A));
    let p = env.package("dep-a", "1.0.0", &[]);
    env.npm_ok(&npm, &p, &["publish"]);
    let p = env.package("app-b", "1.0.0", &[("dep-a", "^1.0.0")]);
    env.npm_ok(&npm, &p, &["publish"]);
    let p = env.package("@acme/c", "1.0.0", &[("dep-a", "^1.0.0")]);
    env.npm_ok(&npm, &p, &["publish", "--access", "public"]);

    let fresh = env.npm("home-install", &env.npmrc(A));
    let project = consumer(env, "npm-consumer", "");
    env.npm_ok(&fresh, &project, &["install", "app-b@1.0.0", "@acme/c@1.0.0"]);
    for installed in ["app-b", "@acme/c", "dep-a"] {
        assert!(project.join("node_modules").join(installed).join("package.json").exists(), "{installed}");
    }
    let lock = std::fs::read_to_string(project.join("package-lock.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&lock).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["lockfileVersion"], 3);
    let https = format!("https://{REGISTRY_HOST}:{}/", env.registry.port);
    assert!(lock.contains(&format!("\"resolved\": \"{https}dep-a/-/dep-a-1.0.0.tgz\"")), "{lock}");

    // npm ci: a fresh HOME and cache, only the lockfile's absolute https URLs.
    let ci_home = env.npm("home-ci", &env.npmrc(A));
    let ci = env.path("npm-ci");
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(project.join(f), ci.join(f)).unwrap_or_else(|e| panic!("{e}"));
    }
    env.npm_ok(&ci_home, &ci, &["ci"]);
    assert!(ci.join("node_modules/dep-a/package.json").exists());
    project
}

/// A raw CONNECT (curl hides the refusal's body): the response head and body.
fn raw_connect(port: u16, authority: &str, proxy_auth: Option<&str>, version: &str) -> String {
    let auth = proxy_auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
    clients::raw_http(port, &format!("CONNECT {authority} {version}\r\nHost: {authority}\r\n{auth}\r\n"))
}

fn basic(user: &str, token: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
}

/// A rendered connector.env with another token in its proxy URL.
fn proxy_with(vars: &[(String, String)], token: &str, other: &str) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.clone(), v.replace(token, other))).collect()
}

/// What a prefetcher does with a lockfile: fetch every `resolved` URL through the proxy with
/// only `connector.env`, and check each `integrity` (sha512).
fn prefetch_with_curl(env: &mut Env, lock: &Path) -> usize {
    use base64::Engine as _;
    use sha2::Digest as _;
    let vars = clients::env_file(&env.out.join(A).join("connector.env"));
    let home = env.path("home-curl");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lock).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    for (name, pkg) in v["packages"].as_object().into_iter().flatten() {
        let (Some(url), Some(integrity)) = (pkg["resolved"].as_str(), pkg["integrity"].as_str()) else { continue };
        let file = home.join(format!("fetched-{n}.tgz"));
        let r = clients::curl_env(&home, &vars, &["-f", "-o", &file.display().to_string(), url]);
        env.transcript.push(r.all());
        assert!(r.ok, "curl {name} {url}: {}", r.all());
        let bytes = std::fs::read(&file).unwrap_or_default();
        let got = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&bytes)));
        assert_eq!(got, integrity, "{name}: integrity of what came through the proxy");
        n += 1;
    }
    n
}

fn pnpm_flows(env: &mut Env) {
    let home = env.path("home-pnpm");
    let npmrc = env.npmrc(A);
    let p = env.package("pnpm-pub", "1.0.0", &[("dep-a", "^1.0.0")]);
    let r = clients::pnpm(&home, &npmrc, &p, &["publish", "--no-git-checks"]);
    ok(env, "pnpm publish", r);
    let project = consumer(env, "pnpm-consumer", r#""app-b":"1.0.0","pnpm-pub":"1.0.0""#);
    // Test-only: packages published seconds ago would wait out pnpm's release-age gate.
    write(&project.join("pnpm-workspace.yaml"), "minimumReleaseAge: 0\n");
    let r = clients::pnpm(&home, &npmrc, &project, &["install"]);
    ok(env, "pnpm install", r);
    assert!(project.join("node_modules/pnpm-pub/package.json").exists());
    assert!(project.join("node_modules/app-b/package.json").exists());
}

fn yarn_flows(env: &mut Env) {
    let home = env.path("home-yarn");
    let rendered = std::fs::read_to_string(env.out.join(A).join(".yarnrc.yml")).unwrap_or_else(|e| panic!("{e}"));
    // Test-only: yarn's age gate would quarantine packages published seconds ago.
    let settings = format!(
        "{rendered}nodeLinker: node-modules\nenableGlobalCache: false\ncacheFolder: {}\nenableTelemetry: false\nnpmMinimalAgeGate: 0\n",
        home.join("yarn-cache").display()
    );
    let p = env.package("yarn-pub", "1.0.0", &[]);
    write(&p.join(".yarnrc.yml"), &settings);
    write(&p.join("yarn.lock"), "");
    let r = clients::yarn(&home, &p, &["install"]);
    ok(env, "yarn install (publisher)", r);
    let r = clients::yarn(&home, &p, &["npm", "publish"]);
    ok(env, "yarn npm publish", r);
    let project = consumer(env, "yarn-consumer", r#""app-b":"1.0.0","@acme/c":"1.0.0","yarn-pub":"1.0.0""#);
    write(&project.join(".yarnrc.yml"), &settings);
    let r = clients::yarn(&home, &project, &["install"]);
    ok(env, "yarn install", r);
    assert!(project.join("node_modules/yarn-pub/package.json").exists());
    assert!(project.join("node_modules/@acme/c/package.json").exists());
}

fn bun_flows(env: &mut Env) {
    let home = env.path("home-bun");
    let vars = clients::env_file(&env.out.join(A).join("connector.env"));
    let bunfig = env.out.join(A).join("bunfig.toml");
    let p = env.package("bun-pub", "1.0.0", &[]);
    std::fs::copy(&bunfig, p.join("bunfig.toml")).unwrap_or_else(|e| panic!("{e}"));
    let r = clients::bun(&home, &p, &vars, &["publish"]);
    ok(env, "bun publish", r);
    let project = consumer(env, "bun-consumer", r#""app-b":"1.0.0","bun-pub":"1.0.0""#);
    std::fs::copy(&bunfig, project.join("bunfig.toml")).unwrap_or_else(|e| panic!("{e}"));
    let r = clients::bun(&home, &project, &vars, &["install"]);
    ok(env, "bun install", r);
    assert!(project.join("node_modules/bun-pub/package.json").exists());
    assert!(project.join("node_modules/dep-a/package.json").exists());
}

/// Refusals: no tunnel to anything but a connector's host:port with a valid token; a client
/// that does not trust the connector CA fails the handshake; a Host other than the tunnel's
/// gets no credential.
fn negative_cases(env: &mut Env) {
    let port = env.envoy.port;
    let reg = format!("{REGISTRY_HOST}:{}", env.registry.port);
    let (ta, tb) = (env.tokens[A].clone(), env.tokens[B].clone());
    let good = basic("team-a/npm", &ta);
    let r = raw_connect(port, &reg, Some(&good), "HTTP/1.1");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // A host:port no connector owns: a blind tunnel for this proxy's clients (--unmatched
    // passthrough, the default), 407 for anyone else. (Deny mode: tests/containment.rs.)
    let other = format!("127.0.0.1:{}", env.cdn.addr.port());
    let r = raw_connect(port, &other, Some(&good), "HTTP/1.1");
    assert!(r.starts_with("HTTP/1.1 200"), "blind tunnel: {r}");
    assert!(env.envoy.counter("wasmcustom.npm_connector.tunnels_blind") >= 1);
    for (what, authority, auth, want, body) in [
        ("another host without a token", other.clone(), None, "407", "no connector token"),
        ("another host with a wrong token", other.clone(), Some(basic("team-a/npm", "npmc_wrong")), "403", "not valid"),
        ("no token", reg.clone(), None, "407", "no connector token"),
        ("a wrong token", reg.clone(), Some(basic("team-a/npm", "npmc_wrong")), "403", "not valid"),
        ("B's token for A's host", reg.clone(), Some(basic("team-b/npm", &tb)), "403", "not valid"),
    ] {
        let r = raw_connect(port, &authority, auth.as_deref(), "HTTP/1.1");
        assert!(r.starts_with(&format!("HTTP/1.1 {want}")) && r.contains(body), "{what}: {r}");
        if want == "407" {
            assert!(r.to_ascii_lowercase().contains("proxy-authenticate: basic"), "{r}");
        }
        assert!(!r.contains(&ta) && !r.contains(&tb));
    }
    let r = raw_connect(port, &reg, Some(&good), "HTTP/1.0");
    assert!(r.contains(" 426 ") && r.contains("HTTP/1.1 CONNECT is required"), "HTTP/1.0: {r}");
    // A plain (non-CONNECT) proxy request is not forwarded anywhere.
    let r = clients::curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &format!("http://127.0.0.1:{port}"),
        "--proxy-user",
        &format!("team-a/npm:{ta}"),
        &format!("http://{reg}/dep-a"),
    ]);
    assert_eq!(r.stdout.trim(), "405", "{}", r.all());

    let vars = clients::env_file(&env.out.join(A).join("connector.env"));
    let home = env.path("home-neg");
    let url = format!("https://{reg}/dep-a");
    // Trusting only the system store, curl refuses the proxy's leaf: the interception is
    // verified, not blind.
    let untrusting: Vec<(String, String)> = vars.iter().filter(|(k, _)| k != "SSL_CERT_FILE").cloned().collect();
    let r = clients::curl_env(
        &home,
        &untrusting,
        &["--cacert", "/etc/ssl/certs/ca-certificates.crt", "-o", "/dev/null", &url],
    );
    assert!(!r.ok && r.stderr.contains("certificate"), "{}", r.all());
    let r = clients::curl_env(&home, &vars, &["-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(r.stdout.trim(), "200", "{}", r.all());
    // Inside the tunnel the Host picks the registry (one connection manager serves every
    // registry host): another connector's host needs that connector's token...
    let host = format!("Host: {REGISTRY2_HOST}:{}", env.registry.port);
    let r = clients::curl_env(&home, &vars, &["-s", "-w", " %{http_code}", "-H", &host, &url]);
    assert_eq!(
        r.stdout,
        r#"{"error":"npm-connector: the connector token in the tunnel's Proxy-Authorization is not valid for team-b/npm; use the client files rendered for this connector"} 403"#,
        "{}",
        r.all()
    );
    // ...and a host that is no connector's is refused by the router, no credential.
    let r = clients::curl_env(&home, &vars, &["-s", "-w", " %{http_code}", "-H", "Host: nobody.test", &url]);
    assert_eq!(
        r.stdout,
        r#"{"error":"npm-connector: no connector for this Host; this proxy intercepts only its connectors' registries"} 403"#,
        "{}",
        r.all()
    );
    // A wrong token in the proxy URL: refused at CONNECT (curl sees the tunnel fail).
    let r = clients::curl_env(
        &home,
        &proxy_with(&vars, &ta, "npmc_not-a-token"),
        &["-s", "-o", "/dev/null", "-w", "%{http_connect}", &url],
    );
    assert!(!r.ok && r.stdout.trim() == "403", "{}", r.all());
    // Expired tokens: the same manifests rendered with tokens that expired a minute ago.
    let ca = env.pki.ca_cert.clone();
    let (expired, tokens) = scenario::render_and_start(
        env.dir.path(),
        Mode::HttpsProxy,
        &ca,
        &env.key,
        &env.yaml,
        "out-expired",
        Some(scenario::expired_at()),
    );
    env.secrets.extend(tokens.values().cloned());
    let r = raw_connect(expired.port, &reg, Some(&basic("team-a/npm", &tokens[A])), "HTTP/1.1");
    assert!(r.starts_with("HTTP/1.1 403") && r.contains("token expired"), "{r}");
}

/// A registry whose certificate does not name the host the connector uses: Envoy's upstream
/// TLS refuses it (SAN), the client gets 503, and no request (so no credential) is sent. The
/// connector owns only `/pathed/` on that host: any other path gets the JSON 403 of the
/// tunnel's no-route mapper, before any upstream is tried.
fn upstream_san_mismatch(env: &mut Env) {
    let port = env.registry.port;
    let yaml = format!(
        "{}apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: mismatch\n  namespace: team-a\n\
         spec:\n  connectorClassName: npm\n  address: https://{MISMATCH_HOST}:{port}/pathed/\n  auth:\n    name: basicAuth\n\
         \x20   secretRef:\n      name: registry-team-a\n",
        env.yaml
    );
    let ca = env.pki.ca_cert.clone();
    let (envoy, tokens) =
        scenario::render_and_start(env.dir.path(), Mode::HttpsProxy, &ca, &env.key, &yaml, "out-mismatch", None);
    env.secrets.extend(tokens.values().cloned());
    let token = tokens["team-a/mismatch"].clone();
    let client_ca = env.dir.path().join("out-mismatch/team-a/mismatch/ca.pem");
    let proxy = format!("http://team-a%2Fmismatch:{token}@127.0.0.1:{}", envoy.port);
    let r = clients::status_through(&proxy, &client_ca, &format!("https://{MISMATCH_HOST}:{port}/pathed/dep-a"));
    assert_eq!(r.stdout.trim(), "503", "{}", r.all());
    let unowned = format!("https://{MISMATCH_HOST}:{port}/dep-a");
    let cacert = client_ca.display().to_string();
    let r = clients::curl(&["-s", "-D", "-", "-w", " %{http_code}", "-x", &proxy, "--cacert", &cacert, &unowned]);
    assert!(r.stdout.to_ascii_lowercase().contains("content-type: application/json"), "{}", r.all());
    assert!(
        r.stdout.ends_with(r#"{"error":"npm-connector: no connector owns this path on this registry host"} 403"#),
        "{}",
        r.all()
    );
    let cluster = format!("cluster.outbound|{port}||{MISMATCH_HOST}");
    assert!(envoy.counter(&format!("{cluster}.ssl.fail_verify_san")) >= 1, "{}", envoy.admin("/stats?filter=ssl"));
    assert_eq!(envoy.counter(&format!("{cluster}.upstream_rq_total")), 0, "no request reached the registry");
    // The filter did inject (the request was valid); the credential stayed inside Envoy.
    assert!(envoy.counter("wasmcustom.npm_connector.injected.connector=team-a/mismatch") >= 1);
}

#[test]
fn https_proxy_mode_end_to_end() {
    let mut env = Env::start(Mode::HttpsProxy);
    let project = npm_flows(&mut env);
    let fetched = prefetch_with_curl(&mut env, &project.join("package-lock.json"));
    assert!(fetched >= 3, "{fetched}");
    pnpm_flows(&mut env);
    yarn_flows(&mut env);
    env.yarn_classic_flow(A);
    bun_flows(&mut env);
    negative_cases(&mut env);
    upstream_san_mismatch(&mut env);
    // The access log shows the CONNECTs and the tunnelled requests, and the tokens went
    // only through the filter.
    let log = env.envoy.daemon.log_text();
    let reg = format!("{REGISTRY_HOST}:{}", env.registry.port);
    assert!(log.contains(&format!("\"CONNECT {reg}- HTTP/1.1\" 200 ")), "no CONNECT in the access log");
    assert!(log.contains(&format!("\"GET {reg}/dep-a/-/dep-a-1.0.0.tgz HTTP/1.1\" 200")), "no tunnelled tarball GET");
    // The blind tunnel is access-logged like any CONNECT.
    let blind = format!("\"CONNECT 127.0.0.1:{}- HTTP/1.1\" 200 ", env.cdn.addr.port());
    assert!(log.contains(&blind), "no blind CONNECT in the access log");
    assert!(env.envoy.counter("wasmcustom.npm_connector.tunnels_opened.connector=team-a/npm") >= 5);
    assert!(env.envoy.counter("wasmcustom.npm_connector.injected.connector=team-a/npm") >= 10);
    let format = npm_connector::render::ACCESS_LOG_FORMAT.to_ascii_lowercase();
    for h in ["authorization", "filter_state", "proxy-authorization"] {
        assert!(!format.contains(h), "the access-log format must not log {h}");
    }
    env.assert_nothing_leaked();
}
