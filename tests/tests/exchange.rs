//! Workload identity for real: a test OIDC issuer over HTTPS (discovery + JWKS, rotating its key
//! mid-test), `serve` with the token exchange and token keys, an Envoy gateway on its xDS, an
//! HTTPS Verdaccio, and npm using the files `npm-connector login` wrote — no credential and no
//! distributed token anywhere on the client side.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use npm_connector_tests::clients::{Npm, Run};
use npm_connector_tests::control::{self, wait_for};
use npm_connector_tests::oidc::{github_actions, now, service_account, IssuerServer, Keys};
use npm_connector_tests::plane::{manifest, serve_metric, wait_user, whoami, World};
use npm_connector_tests::procs::free_port;

/// The binary `login` runs from: the static (musl) build where `make e2e` made one, as a build
/// image would carry it.
fn login_binary() -> std::path::PathBuf {
    std::env::var_os("NPM_CONNECTOR_LOGIN_BIN").map(Into::into).unwrap_or_else(control::binary)
}

/// `npm-connector login` with a private HOME and only `env` besides PATH.
fn login(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(login_binary());
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.arg("login").args(args).output().unwrap_or_else(|e| panic!("{e}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn token_of(npmrc: &Path) -> String {
    control::npmrc_token(npmrc).unwrap_or_else(|| panic!("no token in {}", npmrc.display()))
}

#[test]
fn pods_and_ci_jobs_exchange_their_id_tokens_for_connector_tokens() {
    let w = World::start("npm-connector-exchange-");
    let World { tmp, pki, registry, manifests: mut cm, password, key_file, key, plane, .. } = w;
    let d = tmp.path().to_owned();
    // team/npm: team's ServiceAccounts, and acme/app's main branch on GitHub Actions.
    let m = manifest(&registry.public_url, "ci-0", &password).replace(
        "  name: npm\n  namespace: team\n",
        "  name: npm\n  namespace: team\n  annotations:\n    npm-connector.io/allowed-subjects: \"repo:acme/app:ref:refs/heads/main\"\n",
    );
    // A second connector of the namespace, to show a token of one is refused for the other.
    let other = manifest(&registry.public_url, "ci-0", &password)
        .replace("name: login", "name: login-other")
        .replace("  name: npm\n", "  name: other\n");
    cm.write(&[("connectors.yaml", &format!("{m}---\n{other}"))]);

    // The cluster's issuer (discovery over HTTPS) and GitHub's (a JWKS file: not reachable here).
    let cluster = Keys::new(&["a", "b"]);
    let issuer = IssuerServer::start(&d.join("issuer"), &pki, &cluster);
    let github = Keys::new(&["gh"]);
    std::fs::write(d.join("github-jwks.json"), github.jwks()).unwrap_or_else(|e| panic!("{e}"));
    let issuers = d.join("issuers.yaml");
    std::fs::write(
        &issuers,
        format!(
            "issuers:\n- name: cluster\n  kind: kubernetes\n  issuer: {}\n  caFile: {}\n\
             - name: github\n  kind: github\n  issuer: https://token.actions.githubusercontent.com\n  jwksFile: {}\n\
             rateLimit: {{perMinute: 600000, burst: 20000}}\n",
            issuer.url,
            pki.ca_cert.display(),
            d.join("github-jwks.json").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let keys_dir = d.join("token-keys");
    std::fs::create_dir_all(&keys_dir).unwrap_or_else(|e| panic!("{e}"));
    control::keygen(&keys_dir.join("2026-11-01"));
    let (gw_port, tx_port) = (free_port(), free_port());
    // The exchange's certificate, from the connector CA (the test CA was made by `ca init`).
    let tx_tls = d.join("exchange-tls");
    control::run(&[
        "ca",
        "leaf",
        "--dir",
        &d.display().to_string(),
        "--host",
        "127.0.0.1",
        "--out",
        &tx_tls.display().to_string(),
    ]);
    let server = format!("https://127.0.0.1:{tx_port}");
    let extra: Vec<String> = [
        "--token-keys",
        &keys_dir.display().to_string(),
        "--token-listen",
        &format!("127.0.0.1:{tx_port}"),
        "--token-tls-cert",
        &tx_tls.join("tls.crt").display().to_string(),
        "--token-tls-key",
        &tx_tls.join("tls.key").display().to_string(),
        "--issuers",
        &issuers.display().to_string(),
        "--public-url",
        &format!("http://127.0.0.1:{gw_port}/"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let serve = plane.serve_with(&key_file, "serve.log", "30m", &extra);
    let envoy = plane.envoy_on("gw", &key, gw_port);
    let served = wait_for("client files from serve --clients", Duration::from_secs(20), || plane.client_token());
    assert_eq!(wait_user(envoy.port, &served), "ci-0");

    if std::env::var_os("NPM_CONNECTOR_LOGIN_BIN").is_some() {
        let ldd = Command::new("ldd").arg(login_binary()).output().unwrap_or_else(|e| panic!("{e}"));
        let text = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
        assert!(
            text.contains("statically linked") || text.contains("not a dynamic executable"),
            "login binary: {text}"
        );
    }
    // A build pod: its projected ServiceAccount token in a file.
    let home = d.join("pod-home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{e}"));
    let ca = pki.ca_cert.display().to_string();
    let id_token = |claims: &serde_json::Value, kid: &str, keys: &Keys, name: &str| -> String {
        let f = d.join(name);
        std::fs::write(&f, keys.sign(kid, claims)).unwrap_or_else(|e| panic!("{e}"));
        f.display().to_string()
    };
    let sa =
        id_token(&service_account(&issuer.url, "team", "builder", "npm-connector", now() + 600), "a", &cluster, "sa");
    let files = d.join("npm-files");
    let r = login(
        &home,
        &[],
        &[
            "--server",
            &server,
            "--connector",
            "team/npm",
            "--tool",
            "npm",
            "--id-token-file",
            &sa,
            "--dir",
            &files.display().to_string(),
            "--ca-file",
            &ca,
        ],
    );
    assert!(r.ok, "{}", r.all());
    assert!(r.stdout.contains(&format!("wrote {}", files.join(".npmrc").display())), "{}", r.stdout);
    assert!(r.stdout.contains("token for team/npm (gateway mode) expires at "), "{}", r.stdout);
    let npmrc = files.join(".npmrc");
    let token = token_of(&npmrc);
    assert!(token.starts_with("npmc_s1."), "a signed token");
    assert!(!std::fs::read_to_string(&npmrc).unwrap_or_default().contains(&password));

    // npm publishes and installs with nothing but those files.
    let npm = Npm::new(&home, &npmrc);
    let pkg = d.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pkg.join("package.json"), r#"{"name":"exchanged","version":"1.0.0"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    npm.ok(&pkg, &["publish"]);
    let app = d.join("app");
    std::fs::create_dir_all(&app).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(app.join("package.json"), r#"{"name":"app","version":"1.0.0"}"#).unwrap_or_else(|e| panic!("{e}"));
    npm.ok(&app, &["install", "exchanged@1.0.0"]);
    assert!(app.join("node_modules/exchanged/package.json").exists());

    // A GitHub Actions job on acme/app's main branch, through the job's ID-token endpoint.
    issuer
        .github_token(&github.sign("gh", &github_actions("acme/app", "refs/heads/main", "npm-connector", now() + 300)));
    let gh_url = format!("{}/gh-token?api-version=2.0", issuer.url);
    let gh_dir = d.join("gh-files");
    let r = login(
        &d.join("gh-home"),
        &[("ACTIONS_ID_TOKEN_REQUEST_URL", &gh_url), ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token")],
        &[
            "--server",
            &server,
            "--connector",
            "team/npm",
            "--tool",
            "all",
            "--github-actions",
            "--dir",
            &gh_dir.display().to_string(),
            "--ca-file",
            &ca,
        ],
    );
    assert!(r.ok, "{}", r.all());
    for f in [".npmrc", ".yarnrc.yml", "bunfig.toml", "yarn-classic.npmrc"] {
        assert!(gh_dir.join(f).exists(), "{f}");
    }
    assert_eq!(whoami(envoy.port, &token_of(&gh_dir.join(".npmrc"))), (200, Some("ci-0".to_owned())));

    // GitLab CI: the job's id_tokens variable.
    let gl_dir = d.join("gl-files");
    let sa_jwt = std::fs::read_to_string(&sa).unwrap_or_default();
    let r = login(
        &d.join("gl-home"),
        &[("NPM_CONNECTOR_ID_TOKEN", &sa_jwt)],
        &[
            "--server",
            &server,
            "--connector",
            "team/other",
            "--gitlab",
            "--dir",
            &gl_dir.display().to_string(),
            "--ca-file",
            &ca,
        ],
    );
    assert!(r.ok, "{}", r.all());
    // A token of team/other is not one of team/npm's.
    let other_token = token_of(&gl_dir.join(".npmrc"));
    assert_eq!(whoami(envoy.port, &other_token).0, 403, "a token of connector A used for B");
    let r =
        login(&d.join("gl-home"), &[], &["--server", &server, "--connector", "team/npm", "--gitlab", "--ca-file", &ca]);
    assert!(!r.ok && r.stderr.contains("$NPM_CONNECTOR_ID_TOKEN is not set"), "{}", r.all());

    // Refusals, each with its reason (and never the token).
    let refused_jwt = |jwt: &str, want: &str| {
        let f = d.join("refused-token");
        std::fs::write(&f, jwt).unwrap_or_else(|e| panic!("{e}"));
        let r = login(
            &home,
            &[],
            &[
                "--server",
                &server,
                "--connector",
                "team/npm",
                "--id-token-file",
                &f.display().to_string(),
                "--dir",
                &d.join("refused").display().to_string(),
                "--ca-file",
                &ca,
            ],
        );
        assert!(!r.ok && r.stderr.contains(want), "want {want:?}:\n{}", r.all());
        assert!(!r.all().contains(jwt), "the ID token is never echoed");
    };
    let refused =
        |claims: serde_json::Value, kid: &str, keys: &Keys, want: &str| refused_jwt(&keys.sign(kid, &claims), want);
    let iss = issuer.url.clone();
    refused(
        service_account(&iss, "team", "builder", "npm-connector", now() - 120),
        "a",
        &cluster,
        "HTTP 401 Unauthorized: the ID token expired",
    );
    refused(
        service_account(&iss, "team", "builder", "vault", now() + 600),
        "a",
        &cluster,
        "HTTP 401 Unauthorized: wrong audience: the ID token must be minted for \"npm-connector\"",
    );
    refused(
        service_account("https://other.test", "team", "builder", "npm-connector", now() + 600),
        "a",
        &cluster,
        "the ID token's issuer \"https://other.test\" is not configured",
    );
    refused(service_account(&iss, "other", "builder", "npm-connector", now() + 600), "a", &cluster,
            "HTTP 403 Forbidden: subject \"system:serviceaccount:other:builder\" (issuer cluster) is not allowed for team/npm");
    refused(
        github_actions("acme/app", "refs/heads/dev", "npm-connector", now() + 300),
        "gh",
        &github,
        "subject \"repo:acme/app:ref:refs/heads/dev\" (issuer github) is not allowed for team/npm",
    );
    let forged = Keys::new(&["a"]);
    refused(
        service_account(&iss, "team", "builder", "npm-connector", now() + 600),
        "a",
        &forged,
        "the ID token's signature does not verify with issuer cluster's keys",
    );

    // The issuer rotates: a leaves the JWKS, c arrives. A token signed by c is accepted once
    // serve refetches (an unknown kid triggers it); then a's tokens are refused.
    let by_a = cluster.sign("a", &service_account(&iss, "team", "builder", "npm-connector", now() + 600));
    let rotated = Keys(vec![
        cluster.0.into_iter().nth(1).unwrap_or_else(|| panic!("b")),
        ("c".to_owned(), npm_connector_tests::oidc::new_key()),
    ]);
    let fetched = issuer.jwks_fetches();
    issuer.publish(&rotated);
    let c = id_token(&service_account(&iss, "team", "builder", "npm-connector", now() + 600), "c", &rotated, "c");
    let c_dir = d.join("c-files").display().to_string();
    wait_for("serve to pick up the issuer's new key", Duration::from_secs(20), || {
        login(
            &home,
            &[],
            &["--server", &server, "--connector", "team/npm", "--id-token-file", &c, "--dir", &c_dir, "--ca-file", &ca],
        )
        .ok
        .then_some(())
    });
    assert!(issuer.jwks_fetches() > fetched, "the keys were refetched");
    refused_jwt(&by_a, "HTTP 401 Unauthorized: the ID token's signing key \"a\" is not among issuer cluster's keys");

    // Minting is stateless: 10,000 more exchanges (one kept-alive HTTPS connection) push
    // nothing to Envoy: serve sends no xDS response, and Envoy's ECDS counters do not move.
    let m = plane.metrics_port;
    let sent = serve_metric(m, "npm_connector_serve_responses_sent_total");
    let ecds_reloads = || -> u64 {
        // extension_config_discovery.<prefix>.<filter config name>.config_reload, one per ECDS resource
        envoy
            .admin("/stats?filter=^extension_config_discovery\\..*\\.config_reload$")
            .lines()
            .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
            .sum()
    };
    let reloads = ecds_reloads();
    assert!(reloads >= 1, "the filter's configuration arrived over ECDS");
    let jwt = std::fs::read_to_string(&c).unwrap_or_default();
    let client = npm_connector::exchange::oidc::http_client(Some(Path::new(&ca))).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let mut minted = std::collections::HashSet::new();
    rt.block_on(async {
        for i in 0..10_000 {
            let r = client
                .post(format!("{server}/v1/token"))
                .bearer_auth(jwt.trim())
                .body(r#"{"connector":"team/npm"}"#)
                .send()
                .await
                .unwrap_or_else(|e| panic!("exchange {i}: {e}"));
            assert_eq!(r.status().as_u16(), 200, "exchange {i}");
            let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default();
            minted.insert(v["token"].as_str().unwrap_or_default().to_owned());
        }
    });
    assert_eq!(minted.len(), 10_000, "10,000 distinct connector tokens");
    let last = minted.iter().next().cloned().unwrap_or_default();
    assert_eq!(whoami(envoy.port, &last), (200, Some("ci-0".to_owned())), "a minted token works at once");
    assert_eq!(ecds_reloads(), reloads, "no ECDS update reached Envoy");
    assert_eq!(serve_metric(m, "npm_connector_serve_responses_sent_total"), sent, "no xDS response sent");
    assert!(serve_metric(m, "npm_connector_serve_exchanges_total{outcome=\"granted\"}").unwrap_or(0.0) >= 10_003.0);
    assert_eq!(serve_metric(m, "npm_connector_serve_exchanges_total{outcome=\"expired\"}"), Some(1.0));
    // Plain http is refused: the exchange is TLS only.
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-d",
            "{}",
            &format!("http://127.0.0.1:{tx_port}/v1/token"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");

    // Token keys rotate: a new key signs from now on, the old one's tokens keep working until
    // it is removed, which revokes them at the Envoy.
    control::keygen(&keys_dir.join("2026-12-01"));
    let k2_dir = d.join("k2-files");
    wait_for("the new token key to sign", Duration::from_secs(20), || {
        let r = login(
            &home,
            &[],
            &[
                "--server",
                &server,
                "--connector",
                "team/npm",
                "--id-token-file",
                &c,
                "--dir",
                &k2_dir.display().to_string(),
                "--ca-file",
                &ca,
            ],
        );
        assert!(r.ok, "{}", r.all());
        let t = token_of(&k2_dir.join(".npmrc"));
        (t != token && claims_kid(&t) == "2026-12-01").then_some(t)
    });
    let new_token = token_of(&k2_dir.join(".npmrc"));
    assert_eq!(wait_user(envoy.port, &new_token), "ci-0");
    assert_eq!(whoami(envoy.port, &token).0, 200, "the old key's tokens still work");
    std::fs::remove_file(keys_dir.join("2026-11-01")).unwrap_or_else(|e| panic!("{e}"));
    wait_for("the removed key's tokens to be refused", Duration::from_secs(20), || {
        (whoami(envoy.port, &token).0 == 403).then_some(())
    });
    assert_eq!(whoami(envoy.port, &new_token), (200, Some("ci-0".to_owned())));

    // login never overwrites a file it did not write.
    let mine = d.join("mine");
    std::fs::create_dir_all(&mine).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(mine.join(".npmrc"), "registry=https://example.test/\n").unwrap_or_else(|e| panic!("{e}"));
    let r = login(
        &home,
        &[],
        &[
            "--server",
            &server,
            "--connector",
            "team/npm",
            "--id-token-file",
            &c,
            "--dir",
            &mine.display().to_string(),
            "--ca-file",
            &ca,
        ],
    );
    assert!(!r.ok && r.stderr.contains("was not written by npm-connector login"), "{}", r.all());
    assert_eq!(std::fs::read_to_string(mine.join(".npmrc")).unwrap_or_default(), "registry=https://example.test/\n");

    // Logs name subjects and connectors, never a token.
    let log = serve.log_text();
    assert!(
        log.contains("exchange: subject \"system:serviceaccount:team:builder\" (issuer cluster) granted team/npm"),
        "{log}"
    );
    assert!(log.contains("refused (not_allowed)"), "{log}");
    for secret in [&token, &new_token, &std::fs::read_to_string(&c).unwrap_or_default(), &password] {
        assert!(!log.contains(secret.as_str()), "a secret in serve's log");
    }
    drop(envoy);
    drop(serve);
}

/// The `kid` a signed connector token names.
fn claims_kid(token: &str) -> String {
    use base64::Engine as _;
    let claims = token.trim_start_matches("npmc_s1.").split('.').next().unwrap_or_default();
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap_or_default();
    String::from_utf8_lossy(&text).split(':').next().unwrap_or_default().to_owned()
}

/// https-proxy mode: `login` writes npm's files (proxy URL with the token, the registry's real
/// https URL, a `cafile` bundle in the login directory) and npm publishes and installs.
#[test]
fn login_in_https_proxy_mode_then_npm_publishes_and_installs() {
    let mut w = World::start("npm-connector-exchange-https-");
    let d = w.dir().to_owned();
    let ca_dir = d.join("connector-ca");
    control::run(&["ca", "init", "--dir", &ca_dir.display().to_string()]);
    let cluster = Keys::new(&["a"]);
    std::fs::write(d.join("jwks.json"), cluster.jwks()).unwrap_or_else(|e| panic!("{e}"));
    let iss = "https://cluster.test";
    std::fs::write(
        d.join("issuers.yaml"),
        format!(
            "issuers:\n- {{name: cluster, kind: kubernetes, issuer: \"{iss}\", jwksFile: {}}}\n",
            d.join("jwks.json").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let keys_dir = d.join("token-keys");
    std::fs::create_dir_all(&keys_dir).unwrap_or_else(|e| panic!("{e}"));
    control::keygen(&keys_dir.join("k1"));
    let (proxy_port, tx_port) = (free_port(), free_port());
    w.plane.mode = "https-proxy";
    w.plane.extra = vec!["--ca-dir".into(), ca_dir.display().to_string()];
    let extra: Vec<String> = [
        "--token-keys",
        &keys_dir.display().to_string(),
        "--token-listen",
        &format!("127.0.0.1:{tx_port}"),
        "--token-tls-cert",
        &w.pki.server_cert.display().to_string(),
        "--token-tls-key",
        &w.pki.server_key.display().to_string(),
        "--issuers",
        &d.join("issuers.yaml").display().to_string(),
        "--public-url",
        &format!("http://127.0.0.1:{proxy_port}/"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _serve = w.plane.serve_with(&w.key_file, "serve.log", "30m", &extra);
    let envoy = w.plane.envoy_on("proxy", &w.key, proxy_port);
    wait_for("serve's own client files", Duration::from_secs(20), || {
        std::fs::read_to_string(d.join("clients/team/npm/.npmrc")).ok()
    });

    let sa = d.join("sa-token");
    std::fs::write(&sa, cluster.sign("a", &service_account(iss, "team", "builder", "npm-connector", now() + 600)))
        .unwrap_or_else(|e| panic!("{e}"));
    let files = d.join("npm-files");
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{e}"));
    let r = login(
        &home,
        &[],
        &[
            "--server",
            &format!("https://127.0.0.1:{tx_port}"),
            "--connector",
            "team/npm",
            "--tool",
            "npm",
            "--mode",
            "https-proxy",
            "--id-token-file",
            &sa.display().to_string(),
            "--dir",
            &files.display().to_string(),
            "--ca-file",
            &w.pki.ca_cert.display().to_string(),
        ],
    );
    assert!(r.ok, "{}", r.all());
    assert!(r.stdout.contains("(https-proxy mode)"), "{}", r.stdout);
    let npmrc_text = std::fs::read_to_string(files.join(".npmrc")).unwrap_or_default();
    assert!(npmrc_text.contains(&format!("cafile={}", files.join("ca-bundle.pem").display())), "{npmrc_text}");
    assert!(npmrc_text.contains(&w.registry.public_url), "the registry's own https URL: {npmrc_text}");
    assert!(files.join("ca-bundle.pem").exists() && files.join("connector.env").exists());

    let npm = Npm::new(&home, &files.join(".npmrc"));
    let pkg = d.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pkg.join("package.json"), r#"{"name":"via-proxy","version":"1.0.0"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    npm.ok(&pkg, &["publish"]);
    let app = d.join("app");
    std::fs::create_dir_all(&app).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(app.join("package.json"), r#"{"name":"app","version":"1.0.0"}"#).unwrap_or_else(|e| panic!("{e}"));
    npm.ok(&app, &["install", "via-proxy@1.0.0"]);
    assert!(app.join("node_modules/via-proxy/package.json").exists());
    let lock = std::fs::read_to_string(app.join("package-lock.json")).unwrap_or_default();
    assert!(lock.contains(&format!("{}via-proxy/-/via-proxy-1.0.0.tgz", w.registry.public_url)), "{lock}");
    // The refusal for the wrong mode names both.
    let r = login(
        &home,
        &[],
        &[
            "--server",
            &format!("https://127.0.0.1:{tx_port}"),
            "--connector",
            "team/npm",
            "--mode",
            "gateway",
            "--id-token-file",
            &sa.display().to_string(),
            "--dir",
            &d.join("x").display().to_string(),
            "--ca-file",
            &w.pki.ca_cert.display().to_string(),
        ],
    );
    assert!(!r.ok && r.stderr.contains("this server renders https-proxy client files, not gateway"), "{}", r.all());
    drop(envoy);
}
