//! Sidecar mode with real kernel interception (network namespaces, veth, the rendered
//! iptables rules): clients in the "pod" use the registry's real https URL with no proxy
//! setting; Envoy, under its own uid in the same namespace, intercepts TLS to the connectors'
//! registry hosts only, and everything else reaches its own destination untouched.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use npm_connector_tests::clients::{self, Npm, Run};
use npm_connector_tests::netns;
use npm_connector_tests::sidecar::{Pod, OTHER_BODY, OTHER_HOST, REGISTRY2_HOST, REGISTRY_HOST};

const A: &str = "team/npm";
const B: &str = "other-team/npm";

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn ok(pod: &Pod, transcript: &mut Vec<String>, what: &str, r: Run) -> Run {
    transcript.push(r.all());
    let log = pod.envoy_log();
    let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(r.ok, "{what} failed:\n{}\n--- sidecar envoy log tail:\n{tail}", r.all());
    r
}

fn package(pod: &Pod, name: &str, deps: &str) -> PathBuf {
    let dir = pod.path(&format!("pkgs/{name}"));
    write(
        &dir.join("package.json"),
        &format!(r#"{{"name":"{name}","version":"1.0.0","main":"index.js","dependencies":{{{deps}}}}}"#),
    );
    write(&dir.join("index.js"), &format!("module.exports = {name:?};\n"));
    dir
}

fn consumer(pod: &Pod, name: &str, deps: &str) -> PathBuf {
    let dir = pod.path(name);
    write(
        &dir.join("package.json"),
        &format!(r#"{{"name":"{name}","version":"1.0.0","private":true,"dependencies":{{{deps}}}}}"#),
    );
    dir
}

fn token(pod: &Pod, connector: &str) -> String {
    npm_connector_tests::control::npmrc_token(&pod.out.join(connector).join(".npmrc")).unwrap_or_default()
}

/// npm publishes and installs through the sidecar; `npm ci` installs a lockfile that npm made
/// straight against the registry (from the registry's namespace, with the real credential).
fn npm_flows(pod: &Pod, t: &mut Vec<String>) {
    let npm = Npm::new(&pod.path("home-npm"), &pod.out.join(A).join(".npmrc"));
    let r = npm.run(&pod.path("whoami"), &["whoami"]);
    assert_eq!(ok(pod, t, "npm whoami", r).stdout.trim(), "ci-a", "the credential reached its own registry");
    for (name, deps) in [("dep-a", ""), ("app-b", r#""dep-a":"^1.0.0""#), ("@acme/c", r#""dep-a":"^1.0.0""#)] {
        let r = npm.run(&package(pod, name, deps), &["publish", "--access", "public"]);
        ok(pod, t, &format!("npm publish {name}"), r);
    }
    let fresh = Npm::new(&pod.path("home-npm-install"), &pod.out.join(A).join(".npmrc"));
    let project = consumer(pod, "npm-consumer", "");
    let r = fresh.run(&project, &["install", "app-b@1.0.0", "@acme/c@1.0.0"]);
    ok(pod, t, "npm install", r);
    let lock = std::fs::read_to_string(project.join("package-lock.json")).unwrap_or_default();
    assert!(lock.contains(&format!("\"resolved\": \"https://{REGISTRY_HOST}/dep-a/-/dep-a-1.0.0.tgz\"")), "{lock}");

    // A lockfile made directly against the registry, outside any proxy.
    clients::run_in_netns(Some(&pod.hosts.registry));
    let direct_rc = pod.path("direct").join(".npmrc");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("ci-a:{}", pod.password));
    write(
        &direct_rc,
        &format!(
            "registry=https://{REGISTRY_HOST}/\n//{REGISTRY_HOST}/:_auth={auth}\ncafile={}\n",
            pod.pki.ca_cert.display()
        ),
    );
    let direct = Npm::new(&pod.path("home-direct"), &direct_rc);
    let made = consumer(pod, "direct-lock", r#""app-b":"1.0.0""#);
    let r = direct.run(&made, &["install", "--package-lock-only"]);
    clients::run_in_netns(Some(&pod.hosts.pod));
    assert!(r.ok, "npm straight at the registry: {}", r.all());
    let ci = consumer(pod, "npm-ci", "");
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(made.join(f), ci.join(f)).unwrap_or_else(|e| panic!("{e}"));
    }
    let ci_npm = Npm::new(&pod.path("home-npm-ci"), &pod.out.join(A).join(".npmrc"));
    let r = ci_npm.run(&ci, &["ci"]);
    ok(pod, t, "npm ci (lockfile made against the registry)", r);
    assert!(ci.join("node_modules/dep-a/package.json").exists());
}

fn other_clients(pod: &Pod, t: &mut Vec<String>) {
    let dir = pod.out.join(A);
    // pnpm
    let home = pod.path("home-pnpm");
    let npmrc = dir.join(".npmrc");
    let r =
        clients::pnpm(&home, &npmrc, &package(pod, "pnpm-pub", r#""dep-a":"^1.0.0""#), &["publish", "--no-git-checks"]);
    ok(pod, t, "pnpm publish", r);
    let project = consumer(pod, "pnpm-consumer", r#""app-b":"1.0.0","pnpm-pub":"1.0.0""#);
    write(&project.join("pnpm-workspace.yaml"), "minimumReleaseAge: 0\n");
    ok(pod, t, "pnpm install", clients::pnpm(&home, &npmrc, &project, &["install"]));
    assert!(project.join("node_modules/pnpm-pub/package.json").exists());

    // yarn berry
    let home = pod.path("home-yarn");
    let rendered = std::fs::read_to_string(dir.join(".yarnrc.yml")).unwrap_or_default();
    let settings = format!(
        "{rendered}nodeLinker: node-modules\nenableGlobalCache: false\ncacheFolder: {}\nenableTelemetry: false\nnpmMinimalAgeGate: 0\n",
        home.join("yarn-cache").display()
    );
    let p = package(pod, "yarn-pub", "");
    write(&p.join(".yarnrc.yml"), &settings);
    write(&p.join("yarn.lock"), "");
    ok(pod, t, "yarn install (publisher)", clients::yarn(&home, &p, &["install"]));
    ok(pod, t, "yarn npm publish", clients::yarn(&home, &p, &["npm", "publish"]));
    let project = consumer(pod, "yarn-consumer", r#""app-b":"1.0.0","yarn-pub":"1.0.0""#);
    write(&project.join(".yarnrc.yml"), &settings);
    ok(pod, t, "yarn install", clients::yarn(&home, &project, &["install"]));
    assert!(project.join("node_modules/yarn-pub/package.json").exists());

    // yarn classic (v1)
    let home = pod.path("home-yarn1");
    let rc = dir.join(npm_connector::render::YARN_CLASSIC_FILE);
    let p = package(pod, "y1-pub", r#""dep-a":"^1.0.0""#);
    let r = clients::yarn_classic(&home, &rc, &p, &["publish", "--new-version", "1.0.0", "--no-git-tag-version"]);
    ok(pod, t, "yarn classic publish", r);
    let project = consumer(pod, "yarn1-consumer", r#""app-b":"1.0.0","y1-pub":"1.0.0""#);
    ok(pod, t, "yarn classic install", clients::yarn_classic(&home, &rc, &project, &["install"]));
    assert!(project.join("node_modules/y1-pub/package.json").exists());

    // bun: its bunfig and connector.env (the CA only; no proxy)
    let home = pod.path("home-bun");
    let vars = clients::env_file(&dir.join("connector.env"));
    assert!(vars.iter().all(|(k, _)| !k.to_ascii_lowercase().contains("proxy")), "{vars:?}");
    let p = package(pod, "bun-pub", "");
    std::fs::copy(dir.join("bunfig.toml"), p.join("bunfig.toml")).unwrap_or_else(|e| panic!("{e}"));
    ok(pod, t, "bun publish", clients::bun(&home, &p, &vars, &["publish"]));
    let project = consumer(pod, "bun-consumer", r#""app-b":"1.0.0","bun-pub":"1.0.0""#);
    std::fs::copy(dir.join("bunfig.toml"), project.join("bunfig.toml")).unwrap_or_else(|e| panic!("{e}"));
    ok(pod, t, "bun install", clients::bun(&home, &project, &vars, &["install"]));
    assert!(project.join("node_modules/dep-a/package.json").exists());
}

/// curl: the status and body.
fn curl(args: &[&str]) -> (String, String) {
    let r = clients::curl(&[&["-s", "-w", "\n%{http_code}"][..], args].concat());
    let (body, status) = r.stdout.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_owned(), body.to_owned())
}

fn passthrough_and_refusals(pod: &Pod) {
    let test_ca = pod.pki.ca_cert.display().to_string();
    let bundle = pod.out.join(A).join("ca-bundle.pem").display().to_string();
    // The unrelated host, over TLS, verified with only the CA that signed *its* certificate: the
    // sidecar did not intercept (its leaves come from the connector CA).
    let seen_before = pod.other_seen().len();
    let (status, body) =
        curl(&["--cacert", &test_ca, "-H", "Authorization: Bearer not-for-you", &format!("https://{OTHER_HOST}/x")]);
    assert_eq!((status.as_str(), body.as_str()), ("200", OTHER_BODY), "other.test over TLS");
    let (status, body) = curl(&[&format!("http://{OTHER_HOST}/y")]);
    assert_eq!((status.as_str(), body.as_str()), ("200", OTHER_BODY), "other.test over plain http");
    // Its access log is flushed every 100 ms: wait for both lines.
    let seen =
        npm_connector_tests::control::wait_for("other.test's access log", std::time::Duration::from_secs(10), || {
            let seen = pod.other_seen();
            (seen.len() >= seen_before + 2).then_some(seen)
        });
    assert_eq!(
        seen[seen_before..].to_vec(),
        vec![
            format!("tls {OTHER_HOST} /x authorization=Bearer not-for-you"),
            format!("cleartext {OTHER_HOST} /y authorization=-"),
        ],
        "other.test saw exactly what the client sent, nothing injected"
    );

    // No token: the filter's 401. Another connector's token: 403. Plain http to the registry: 403.
    let url = format!("https://{REGISTRY_HOST}/dep-a");
    let (status, body) = curl(&["--cacert", &bundle, &url]);
    assert_eq!(status, "401", "{body}");
    assert_eq!(
        body,
        r#"{"error":"npm-connector: no connector token for team/npm; use the rendered .npmrc, whose _authToken carries it"}"#
    );
    let (status, body) = curl(&["--cacert", &bundle, "-H", &format!("Authorization: Bearer {}", token(pod, B)), &url]);
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("is not valid for team/npm"), "{body}");
    let (status, body) = curl(&["--cacert", &bundle, "-H", &format!("Authorization: Bearer {}", token(pod, A)), &url]);
    assert_eq!(status, "200", "{body}");
    let (status, body) =
        curl(&["-H", &format!("Authorization: Bearer {}", token(pod, A)), &format!("http://{REGISTRY_HOST}/dep-a")]);
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("this registry is https only"), "{body}");
    // B's connector works on its own host with its own token (the registry's ci-b).
    let r = Npm::new(&pod.path("home-npm-b"), &pod.out.join(B).join(".npmrc")).run(&pod.path("whoami-b"), &["whoami"]);
    assert_eq!(r.stdout.trim(), "ci-b", "{}", r.all());
    // A client that trusts only its system store refuses the sidecar's leaf: interception is
    // visible and verified, never silent.
    let r = clients::curl(&["--cacert", "/etc/ssl/certs/ca-certificates.crt", &url]);
    assert!(!r.ok && r.stderr.contains("certificate"), "{}", r.all());
    let _ = REGISTRY2_HOST;
}

/// The sidecar listener's filter configuration as the running Envoy reports it.
fn running_filter_config(dump: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(dump).unwrap_or_else(|e| panic!("config_dump: {e}"));
    let mut found = None;
    fn walk(v: &serde_json::Value, found: &mut Option<serde_json::Value>) {
        match v {
            serde_json::Value::String(s) if s.contains(r#""role":"sidecar""#) => {
                *found = serde_json::from_str(s).ok();
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    walk(&v, &mut found);
    found.unwrap_or_else(|| panic!("no sidecar filter configuration in /config_dump"))
}

#[test]
fn sidecar_intercepts_only_the_registry_and_every_client_works_without_proxy_settings() {
    if let Err(why) = netns::available() {
        assert!(std::env::var_os("CI").is_none(), "CI runs the sidecar tests, but: {why}");
        eprintln!("SKIPPED sidecar tests: network namespaces are not available here: {why}");
        return;
    }
    let pod = Pod::start();
    clients::run_in_netns(Some(&pod.hosts.pod));
    let mut transcript = Vec::new();
    npm_flows(&pod, &mut transcript);
    other_clients(&pod, &mut transcript);
    passthrough_and_refusals(&pod);
    clients::run_in_netns(None);

    // Nothing leaks: not in the sidecar's log or access log, not in /config_dump (sealed), not
    // at the unrelated host, not in any client's output.
    let dump = pod.admin("/config_dump");
    assert!(dump.contains("npm_connector_sidecar"), "config_dump answered");
    // One renderer: the Istio WasmPlugin rendered with this pod carries the very filter
    // configuration this sidecar Envoy runs (as its /config_dump shows it).
    let running = running_filter_config(&dump);
    let istio = std::fs::read_to_string(pod.out.join("istio/istio.yaml")).unwrap_or_default();
    let plugin = istio
        .split("\n---\n")
        .filter_map(|d| serde_yaml_ng::from_str::<serde_json::Value>(d).ok())
        .find(|d| d["kind"] == "WasmPlugin")
        .unwrap_or_else(|| panic!("no WasmPlugin in {istio}"));
    assert_eq!(plugin["spec"]["pluginConfig"], running, "pluginConfig = the running sidecar's filter configuration");
    let other = pod.other_seen().join("\n");
    let log = pod.envoy_log();
    for s in &pod.secrets {
        assert!(!log.contains(s.as_str()), "a secret in the sidecar's log");
        assert!(!dump.contains(s.as_str()), "a secret in /config_dump");
        assert!(!other.contains(s.as_str()), "a secret at the unrelated host");
        for t in &transcript {
            assert!(!t.contains(s.as_str()), "a secret in a client's output");
        }
    }
    let credential = base64::engine::general_purpose::STANDARD.encode(format!("ci-a:{}", pod.password));
    assert!(!log.contains(&credential) && !dump.contains(&credential) && !other.contains(&credential));
    assert!(log.contains(&format!("\"GET {REGISTRY_HOST}/dep-a")), "the access log shows intercepted requests");
    let stats = pod.admin("/stats?filter=^wasmcustom\\.npm_connector\\.injected");
    let injected: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("wasmcustom.npm_connector.injected.connector=team/npm: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(injected >= 40, "every client's requests were intercepted and injected: {stats}");

    // The same pod fed by `serve --mode sidecar`: leaves over SDS, client files from serve.
    let mut pod = pod;
    let served = pod.switch_to_serve();
    clients::run_in_netns(Some(&pod.hosts.pod));
    let npm = Npm::new(&pod.path("home-npm-served"), &served.join(A).join(".npmrc"));
    let r = npm.run(&pod.path("whoami-served"), &["whoami"]);
    assert_eq!(r.stdout.trim(), "ci-a", "through the xDS-fed sidecar: {}", r.all());
    let project = consumer(&pod, "npm-served", "");
    let r = npm.run(&project, &["install", "app-b@1.0.0"]);
    assert!(r.ok, "npm install through the xDS-fed sidecar: {}", r.all());
    let dump = pod.admin("/config_dump");
    assert!(dump.contains("dynamic_active_secrets") && dump.contains("leaf_registry.test"), "the leaves came over SDS");
    assert!(!dump.contains("PRIVATE KEY"), "leaf keys are redacted in /config_dump");
    clients::run_in_netns(None);
}
