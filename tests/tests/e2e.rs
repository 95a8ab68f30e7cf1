//! End to end in gateway mode, for real: Verdaccio over HTTPS demanding credentials, Envoy
//! running the built filter on a config rendered from Connector manifests, and npm/yarn/pnpm/bun
//! with only the rendered client files, which hold a connector token and never the registry
//! credential. (https-proxy mode has its own file.)

use std::path::Path;

use npm_connector::render::Mode;
use npm_connector_tests::clients::{self, Npm};
use npm_connector_tests::scenario::{self, Env, REGISTRY_HOST};

const A: &str = "team-a/npm";
const B: &str = "team-b/npm";

/// Publishes a small tree through the proxy, then installs, views, tags, unpublishes and hits
/// registry errors through it, from a fresh cache.
fn npm_flows(env: &mut Env, npm: &Npm) {
    let p = env.package("dep-a", "1.0.0", &[]);
    env.npm_ok(npm, &p, &["publish"]);
    let p = env.package("app-b", "1.0.0", &[("dep-a", "^1.0.0")]);
    env.npm_ok(npm, &p, &["publish"]);
    let p = env.package("@acme/c", "1.0.0", &[("dep-a", "^1.0.0")]);
    env.npm_ok(npm, &p, &["publish", "--access", "public"]);

    // Install from a fresh cache (a new HOME): packuments, then tarballs through the proxy.
    let fresh = env.npm(&format!("home-install-{:?}", env.mode), &npm.userconfig);
    let project = env.path(&format!("consumer-{:?}", env.mode));
    std::fs::write(project.join("package.json"), r#"{"name":"consumer","version":"1.0.0","private":true}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    env.npm_ok(&fresh, &project, &["install", "app-b@1.0.0", "@acme/c@1.0.0"]);
    for installed in ["app-b", "@acme/c", "dep-a"] {
        assert!(
            project.join("node_modules").join(installed).join("package.json").exists(),
            "{installed} not installed"
        );
    }
    // Tarball URLs were re-based on the client-facing URL, so they came through the proxy.
    let lock = std::fs::read_to_string(project.join("package-lock.json")).unwrap_or_default();
    let registry_https = env.registry.public_url.clone();
    assert!(!lock.contains(&registry_https), "lockfile still has upstream tarball URLs:\n{lock}");
    assert!(lock.contains("/dep-a/-/dep-a-1.0.0.tgz"), "{lock}");

    let r = env.npm_ok(npm, &project, &["view", "app-b", "version"]);
    assert_eq!(r.stdout.trim(), "1.0.0");

    env.npm_ok(npm, &project, &["dist-tag", "add", "app-b@1.0.0", "beta"]);
    let r = env.npm_ok(npm, &project, &["dist-tag", "ls", "app-b"]);
    assert!(r.stdout.contains("beta: 1.0.0"), "{}", r.all());
    env.npm_ok(npm, &project, &["dist-tag", "rm", "app-b", "beta"]);
    let r = env.npm_ok(npm, &project, &["dist-tag", "ls", "app-b"]);
    assert!(!r.stdout.contains("beta"), "{}", r.all());

    let p = env.package("app-b", "1.0.1", &[("dep-a", "^1.0.0")]);
    env.npm_ok(npm, &p, &["publish"]);
    env.npm_ok(npm, &project, &["unpublish", "app-b@1.0.1", "--force"]);
    let r = env.npm_ok(npm, &project, &["view", "app-b", "versions", "--json"]);
    assert!(r.stdout.contains("1.0.0") && !r.stdout.contains("1.0.1"), "{}", r.all());

    // Registry errors pass through unchanged.
    let r = env.npm_run(npm, &project, &["view", "no-such-package-here"]);
    assert!(!r.ok && r.all().contains("E404"), "{}", r.all());
    // npm itself refuses to re-publish a version it sees in the packument...
    let p = env.package("dep-a", "1.0.0", &[]);
    let r = env.npm_run(npm, &p, &["publish"]);
    assert!(!r.ok && r.all().contains("previously published"), "{}", r.all());
    // ...so send the publish document by hand: the registry's refusal comes back unchanged.
    let (via, direct) = (put_existing(env, true), put_existing(env, false));
    assert_eq!(via, direct, "status and body through the proxy equal the registry's own");
    assert!(via.starts_with("409") && via.contains("already present"), "{via}");
}

/// PUTs a publish document for dep-a@1.0.0, which exists, through the proxy or straight at the
/// registry with the real credential; returns "status body".
fn put_existing(env: &Env, through_proxy: bool) -> String {
    let doc = r#"{"_id":"dep-a","name":"dep-a","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{"name":"dep-a","version":"1.0.0","dist":{"tarball":"http://x/dep-a-1.0.0.tgz","shasum":"0"}}},"_attachments":{"dep-a-1.0.0.tgz":{"content_type":"application/octet-stream","data":"AAAA","length":3}}}"#;
    let token = env.tokens[A].clone();
    let mut args: Vec<String> = vec![
        "-X".into(),
        "PUT".into(),
        "-H".into(),
        "content-type: application/json".into(),
        "--data-binary".into(),
        doc.into(),
        "-w".into(),
        " %{http_code}".into(),
    ];
    let port = env.registry.port;
    match (through_proxy, env.mode) {
        (true, Mode::Gateway | Mode::HttpsProxy | Mode::Sidecar) => {
            args.extend(["-H".into(), format!("authorization: Bearer {token}")]);
            args.push(format!("http://127.0.0.1:{}/team-a/npm/dep-a", env.envoy.port));
        }
        (false, _) => {
            let pw = env.secrets[0].clone();
            args.extend(["--cacert".into(), env.pki.ca_cert.display().to_string(), "-u".into(), format!("ci-a:{pw}")]);
            args.extend(["--resolve".into(), format!("{REGISTRY_HOST}:{port}:127.0.0.1")]);
            args.push(format!("https://{REGISTRY_HOST}:{port}/dep-a"));
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = clients::curl(&refs);
    let (body, status) = r.stdout.rsplit_once(' ').unwrap_or_default();
    format!("{status} {}", body.trim())
}

/// yarn berry installs with the rendered `.yarnrc.yml` (plus project settings).
fn yarn_flow(env: &mut Env, connector: &str) {
    let project = env.path(&format!("yarn-{:?}", env.mode));
    let home = env.path(&format!("home-yarn-{:?}", env.mode));
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"yarn-consumer","version":"1.0.0","private":true,"dependencies":{"app-b":"1.0.0","@acme/c":"1.0.0"}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rendered =
        std::fs::read_to_string(env.out.join(connector).join(".yarnrc.yml")).unwrap_or_else(|e| panic!("{e}"));
    let settings = format!(
        // Test-only: packages published seconds ago would be quarantined by yarn's age gate.
        "{rendered}nodeLinker: node-modules\nenableGlobalCache: false\ncacheFolder: {}\nenableTelemetry: false\nnpmMinimalAgeGate: 0\n",
        home.join("yarn-cache").display()
    );
    std::fs::write(project.join(".yarnrc.yml"), settings).unwrap_or_else(|e| panic!("{e}"));
    let r = clients::yarn(&home, &project, &["install"]);
    env.transcript.push(r.all());
    assert!(
        r.ok,
        "yarn install failed:\n{}\n--- envoy log:\n{}",
        r.all(),
        scenario::tail(&env.envoy.daemon.log_text())
    );
    assert!(project.join("node_modules/dep-a/package.json").exists());
    assert!(project.join("node_modules/@acme/c/package.json").exists());
}

/// pnpm and bun install the published tree with the rendered `.npmrc`, or `bunfig.toml` and
/// `connector.env` (which holds the proxy bun needs in forward mode).
fn pnpm_and_bun_install(env: &mut Env, connector: &str) {
    let mode = format!("{:?}", env.mode);
    let deps = r#""app-b":"1.0.0","@acme/c":"1.0.0""#;
    let project = env.path(&format!("pnpm-{mode}"));
    std::fs::write(
        project.join("package.json"),
        format!(r#"{{"name":"pnpm-consumer","version":"1.0.0","private":true,"dependencies":{{{deps}}}}}"#),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Test-only: packages published seconds ago would wait out pnpm's release-age gate.
    std::fs::write(project.join("pnpm-workspace.yaml"), "minimumReleaseAge: 0\n").unwrap_or_else(|e| panic!("{e}"));
    let home = env.path(&format!("home-pnpm-{mode}"));
    let r = clients::pnpm(&home, &env.npmrc(connector), &project, &["install"]);
    env.transcript.push(r.all());
    assert!(r.ok, "pnpm install ({mode}):\n{}\n{}", r.all(), scenario::tail(&env.envoy.daemon.log_text()));
    assert!(project.join("node_modules/app-b/package.json").exists());

    let project = env.path(&format!("bun-{mode}"));
    std::fs::write(
        project.join("package.json"),
        format!(r#"{{"name":"bun-consumer","version":"1.0.0","private":true,"dependencies":{{{deps}}}}}"#),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let files = env.out.join(connector);
    std::fs::copy(files.join("bunfig.toml"), project.join("bunfig.toml")).unwrap_or_else(|e| panic!("{e}"));
    let vars =
        if files.join("connector.env").exists() { clients::env_file(&files.join("connector.env")) } else { vec![] };
    let home = env.path(&format!("home-bun-{mode}"));
    let r = clients::bun(&home, &project, &vars, &["install"]);
    env.transcript.push(r.all());
    assert!(r.ok, "bun install ({mode}):\n{}\n{}", r.all(), scenario::tail(&env.envoy.daemon.log_text()));
    assert!(project.join("node_modules/@acme/c/package.json").exists());
    assert!(project.join("node_modules/dep-a/package.json").exists());
}

/// An npmrc for the negative cases, written next to the others.
fn npmrc(env: &Env, name: &str, text: &str) -> std::path::PathBuf {
    let p = env.path("npmrcs").join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
    p
}

/// Without npm-connector, the same commands fail: the injected credential is what works.
fn direct_at_registry_fails(env: &mut Env, dir: &Path) {
    let direct = format!("https://127.0.0.1:{}/", env.registry.port);
    let ca = env.pki.ca_cert.display().to_string();
    let token = env.tokens[A].clone();
    for (name, rc) in [
        ("direct-none", format!("registry={direct}\ncafile={ca}\n")),
        (
            "direct-token",
            format!("registry={direct}\ncafile={ca}\n//127.0.0.1:{}/:_authToken={token}\n", env.registry.port),
        ),
    ] {
        let npm = env.npm(&format!("home-{name}"), &npmrc(env, name, &rc));
        let r = env.npm_run(&npm, dir, &["view", "dep-a", "version"]);
        assert!(!r.ok && r.all().contains("E401"), "{name}: {}", r.all());
    }
}

#[test]
fn gateway_mode_end_to_end() {
    let mut env = Env::start(Mode::Gateway);
    let npm = env.npm("home-a", &env.npmrc(A));
    npm_flows(&mut env, &npm);
    yarn_flow(&mut env, A);
    env.yarn_classic_flow(A);
    pnpm_and_bun_install(&mut env, A);
    let dir = env.path("neg");

    // Each connector's path carries its own credential: the registry sees two users.
    let r = env.npm_ok(&npm, &dir, &["whoami"]);
    assert_eq!(r.stdout.trim(), "ci-a");
    let npm_b = env.npm("home-b", &env.npmrc(B));
    let r = env.npm_ok(&npm_b, &dir, &["whoami"]);
    assert_eq!(r.stdout.trim(), "ci-b");

    // No token: 401; a wrong one: 403.
    let registry = format!("http://127.0.0.1:{}/team-a/npm/", env.envoy.port);
    let none = env.npm("home-none", &npmrc(&env, "none", &format!("registry={registry}\n")));
    let r = env.npm_run(&none, &dir, &["view", "dep-a", "version"]);
    assert!(!r.ok && r.all().contains("E401"), "{}", r.all());
    let wrong = format!("registry={registry}\n//127.0.0.1:{}/team-a/npm/:_authToken=npmc_wrong\n", env.envoy.port);
    let wrong = env.npm("home-wrong", &npmrc(&env, "wrong", &wrong));
    let r = env.npm_run(&wrong, &dir, &["view", "dep-a", "version"]);
    assert!(!r.ok && r.all().contains("E403"), "{}", r.all());

    // A path no connector has: 404 from the gateway, nothing sent upstream.
    let r = clients::curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{}/nobody/x", env.envoy.port),
    ]);
    assert_eq!(r.stdout.trim(), "404");

    // An expired token: 403 "token expired" (a second Envoy, rendered with tokens already expired).
    let (expired_envoy, expired_tokens) = scenario::render_and_start(
        env.dir.path(),
        Mode::Gateway,
        &env.pki.ca_cert,
        &env.key,
        &env.yaml,
        "out-expired",
        Some(scenario::expired_at()),
    );
    env.secrets.extend(expired_tokens.values().cloned());
    let reg = format!("http://127.0.0.1:{}/team-a/npm/", expired_envoy.port);
    let rc =
        format!("registry={reg}\n//127.0.0.1:{}/team-a/npm/:_authToken={}\n", expired_envoy.port, expired_tokens[A]);
    let expired = env.npm("home-expired", &npmrc(&env, "expired", &rc));
    let r = env.npm_run(&expired, &dir, &["view", "dep-a", "version"]);
    assert!(!r.ok && r.all().contains("E403") && r.all().contains("token expired"), "{}", r.all());
    let mut expired_envoy = expired_envoy;
    expired_envoy.daemon.terminate();
    let expired_log = expired_envoy.daemon.log_text();
    assert!(expired_log.contains(" 403 "), "the expired Envoy's access log was read");
    drop(expired_envoy);

    // A redirect from a connector's upstream to another host reaches the client unchanged; the
    // client follows it directly and the credential does not follow.
    let redirect_token = env.tokens["team-a/redirector"].clone();
    let url = format!("http://127.0.0.1:{}/team-a/redirector/redirect/x", env.envoy.port);
    let auth = format!("authorization: Bearer {redirect_token}");
    let r = clients::curl(&["-L", "-H", &auth, &url]);
    assert!(r.ok && r.stdout.contains("recorded"), "{}", r.all());
    let at_redirector = env.redirector.seen();
    assert_eq!(at_redirector.len(), 1, "{at_redirector:?}");
    let injected = at_redirector[0].header("authorization").unwrap_or_default().to_owned();
    assert!(injected.starts_with("Bearer redirect-credential-"), "the connector's credential was injected");
    let at_cdn = env.cdn.seen();
    assert_eq!(at_cdn.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/cdn/file.tgz"]);
    for s in &at_cdn {
        assert!(s.header("authorization").is_none() && s.header("proxy-authorization").is_none(), "{s:?}");
    }

    // Dot segments could escape a path prefix. Envoy's normalisation resolves plain and
    // %2e-encoded ones before any filter runs (so routing sees the path the registry gets);
    // those hidden behind an encoded slash or backslash, which Envoy keeps, get 400 from the filter.
    let token_a = env.tokens[A].clone();
    let auth_a = format!("authorization: Bearer {token_a}");
    let status = |path: &str| {
        let url = format!("http://127.0.0.1:{}/team-a/npm{path}", env.envoy.port);
        clients::curl(&["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "-H", &auth_a, &url]).stdout
    };
    for path in ["/x/..%2fdep-a", "/x/..%2Fdep-a", "/x/%2e%2e%2fdep-a", "/x/..%5cdep-a", "/x/%2e%2e%5Cdep-a"] {
        assert_eq!(status(path), "400", "{path}");
    }
    assert_eq!(status("/x/%2e%2e/dep-a"), "200", "normalised to /dep-a by Envoy");

    direct_at_registry_fails(&mut env, &dir);
    // The filter's counters are in Envoy's /stats.
    assert!(env.envoy.counter("wasmcustom.npm_connector.injected.connector=team-a/npm") > 10);
    assert!(env.envoy.counter("wasmcustom.npm_connector.refused_missing_token.connector=team-a/npm") >= 1);
    assert!(env.envoy.counter("wasmcustom.npm_connector.refused_bad_token.connector=team-a/npm") >= 1);
    assert!(env.envoy.counter("wasmcustom.npm_connector.rewritten_responses.connector=team-a/npm") >= 1);
    assert!(env.envoy.counter("wasmcustom.npm_connector.injected.connector=team-b/npm") >= 1);
    // Prometheus sees one metric per counter with the connector as a label (Envoy exports
    // the wasmcustom namespace without its prefix).
    let prom = env.envoy.admin("/stats/prometheus");
    for want in [
        "npm_connector_injected{connector=\"team-a/npm\"}",
        "npm_connector_injected{connector=\"team-b/npm\"}",
        "npm_connector_refused_bad_token{connector=\"team-a/npm\"}",
    ] {
        assert!(
            prom.contains(want),
            "{want} not in:\n{}",
            prom.lines().filter(|l| l.contains("injected") || l.contains("refused")).collect::<Vec<_>>().join("\n")
        );
    }
    env.transcript.push(expired_log);
    env.assert_nothing_leaked();
}
