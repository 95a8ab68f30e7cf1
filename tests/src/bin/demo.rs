//! `make demo`: a local Verdaccio that demands credentials, a connector rendered for it by the
//! `npm-connector` CLI, Envoy running the filter, and npm publishing and installing through it
//! with a client file that holds only a connector token. Everything stops at the end.

use std::process::Command;

use npm_connector_tests::clients::Npm;
use npm_connector_tests::procs::free_port;
use npm_connector_tests::{envoy, pki, root, verdaccio};

fn step(s: &str) {
    println!("\n\x1b[1m==> {s}\x1b[0m");
}

fn main() {
    let dir = tempfile::Builder::new().prefix("npm-connector-demo-").tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let password = format!("demo-{}", std::process::id());

    step("starting Verdaccio on https://registry.test (127.0.0.1), which demands a login for every read and write");
    let pki = pki::make(d, &["registry.test", "127.0.0.1"]);
    std::fs::create_dir_all(d.join("verdaccio")).unwrap_or_else(|e| panic!("{e}"));
    let registry = verdaccio::start(&d.join("verdaccio"), &pki, "registry.test", &[("demo", &password)]);
    println!("registry: {}", registry.public_url);

    step("the Connector and its Secret (the credential lives only here and in Envoy)");
    let manifests = format!(
        "kind: Secret\napiVersion: v1\nmetadata:\n  name: registry-login\ntype: kubernetes.io/basic-auth\n\
         stringData:\n  username: demo\n  password: \"{password}\"\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: demo-npm\n\
         spec:\n  connectorClassName: npm\n  address: {}\n  auth:\n    name: basicAuth\n    secretRef:\n      name: registry-login\n",
        registry.public_url
    );
    std::fs::write(d.join("connectors.yaml"), &manifests).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", manifests.replace(&password, "********"));

    let port = free_port();
    let out = d.join("out");
    let wasm = root().join("target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let args = [
        "render".to_owned(),
        "-f".into(),
        d.join("connectors.yaml").display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--resolve".into(),
        "registry.test=127.0.0.1".into(),
        "--upstream-ca".into(),
        pki.ca_cert.display().to_string(),
        "--wasm".into(),
        wasm.display().to_string(),
        "--envoy".into(),
        envoy::binary().display().to_string(),
        "--key-file".into(),
        d.join("key").display().to_string(),
    ];
    let cli = root().join("target/debug/npm-connector");
    step(&format!(
        "npm-connector keygen -o {}   (the key that seals the credential; only Envoy's environment gets it)",
        d.join("key").display()
    ));
    let st = Command::new(&cli).args(["keygen", "-o"]).arg(d.join("key")).status().unwrap_or_else(|e| panic!("{e}"));
    assert!(st.success(), "keygen failed");
    let key = std::fs::read_to_string(d.join("key")).unwrap_or_default().trim().to_owned();
    step(&format!("npm-connector {}", args.join(" ")));
    let st = Command::new(&cli).args(&args).status().unwrap_or_else(|e| panic!("{}: {e}", cli.display()));
    assert!(st.success(), "render failed");

    let npmrc = out.join("default/demo-npm/.npmrc");
    let token = std::fs::read_to_string(&npmrc).unwrap_or_default();
    let token = token.lines().find_map(|l| l.split_once(":_authToken=").map(|(_, t)| t.to_owned())).unwrap_or_default();
    step("the pod's .npmrc: a connector token, no registry credential");
    println!("{}", std::fs::read_to_string(&npmrc).unwrap_or_default().replace(&token, "npmc_…"));

    step("starting Envoy with the filter");
    let mut envoy =
        envoy::start(&out.join("envoy.yaml"), out.join("envoy.log"), port, out.join("admin.sock"), Some(&key));
    println!("envoy: listening on 127.0.0.1:{port}, admin API on {}", out.join("admin.sock").display());

    let npm = Npm::new(&d.join("home"), &npmrc);
    let pkg = d.join("hello-connector");
    std::fs::create_dir_all(&pkg).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pkg.join("package.json"), r#"{"name":"hello-connector","version":"1.0.0","main":"index.js"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pkg.join("index.js"), "module.exports = 'hello through npm-connector';\n")
        .unwrap_or_else(|e| panic!("{e}"));
    step("npm publish (through the proxy)");
    let r = npm.run(&pkg, &["publish", "--loglevel", "notice"]);
    print!("{}", r.all().replace(&token, "npmc_…"));
    assert!(r.ok, "publish failed");

    let app = d.join("app");
    std::fs::create_dir_all(&app).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(app.join("package.json"), r#"{"name":"app","version":"1.0.0","private":true}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    step("npm install hello-connector (fresh cache, through the proxy)");
    let fresh = Npm::new(&d.join("home2"), &npmrc);
    let r = fresh.run(&app, &["install", "hello-connector", "--loglevel", "http"]);
    print!("{}", r.all().replace(&token, "npmc_…"));
    assert!(r.ok, "install failed");
    let out_js = Command::new("node").arg("-p").arg("require('hello-connector')").current_dir(&app).output();
    println!(
        "node -p \"require('hello-connector')\" → {}",
        out_js.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
    );

    step("the same install straight at the registry, without npm-connector");
    let direct = d.join("direct.npmrc");
    std::fs::write(
        &direct,
        format!("registry=https://127.0.0.1:{}/\ncafile={}\n", registry.port, pki.ca_cert.display()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = Npm::new(&d.join("home3"), &direct).run(&app, &["view", "hello-connector", "version"]);
    println!("{}", r.all().lines().filter(|l| l.contains("E401") || l.contains("401")).collect::<Vec<_>>().join("\n"));
    assert!(!r.ok, "the registry must refuse a client without the credential");

    step("the filter's counters (Envoy /stats) and access log (no credentials, no tokens)");
    print!("{}", envoy.admin("/stats?filter=wasmcustom"));
    envoy.daemon.terminate();
    for l in envoy.daemon.log_text().lines().filter(|l| l.contains(" HTTP/1.1\" ")) {
        println!("{l}");
    }
    assert!(!envoy.daemon.log_text().contains(&password) && !envoy.daemon.log_text().contains(&token));
    step("done: published and installed through npm-connector; stopping Envoy and Verdaccio");
    drop(registry);
}
