//! The `npm-connector` binary as users run it: help, a render of the seed manifest (validated
//! by the real Envoy when one is installed), and a bad manifest.

#![allow(clippy::unwrap_used, clippy::panic)] // test code: a failed step is a failed test

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npm-connector")).args(args).current_dir(root()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn help_on_every_command() {
    let commands: [&[&str]; 7] = [
        &["--help"],
        &["render", "--help"],
        &["serve", "--help"],
        &["token", "--help"],
        &["keygen", "--help"],
        &["ca", "--help"],
        &["ca", "init", "--help"],
    ];
    for args in commands {
        let o = cli(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        let usage = format!(
            "Usage: npm-connector {}",
            args.iter().take_while(|a| **a != "--help").copied().collect::<Vec<_>>().join(" ")
        );
        assert!(text(&o).contains(usage.trim_end()), "{args:?} shows {usage:?}: {}", text(&o));
    }
    // Every subcommand the binary has is in the list above.
    let top = text(&cli(&["--help"]));
    for cmd in ["render", "serve", "token", "keygen", "ca"] {
        assert!(top.contains(&format!("  {cmd} ")), "{cmd} in:\n{top}");
    }
}

#[test]
fn renders_the_seed_manifest_and_validates_it() {
    let out = tempfile::tempdir().unwrap();
    let wasm = root().join("target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let o = cli(&[
        "render",
        "-f",
        "examples/connectors.yaml",
        "-o",
        out.path().to_str().unwrap(),
        "--wasm",
        wasm.to_str().unwrap(),
        "--key-file",
        "envoy/examples/example.key",
    ]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    for f in ["envoy.yaml", "default/npm-connector/.npmrc", "default/npm-connector/.yarnrc.yml"] {
        let mode = std::fs::metadata(out.path().join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // With an Envoy installed (as `make test` does), the rendered bootstrap is validated by it.
    let envoy = std::env::var_os("ENVOY_BIN").map(PathBuf::from).filter(|p| p.exists());
    match envoy {
        Some(_) if wasm.exists() => assert!(said.contains("--mode validate: OK"), "{said}"),
        _ => assert!(said.contains("not validated") || said.contains("--mode validate: OK"), "{said}"),
    }
    assert!(!said.contains("your-registry-password"), "{said}");
}

#[test]
fn a_bad_manifest_names_file_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(root().join("examples/connectors.yaml")).unwrap().replace("address:", "adress:");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let o = cli(&["render", "-f", path.to_str().unwrap(), "-o", dir.path().join("out").to_str().unwrap()]);
    let said = text(&o);
    assert!(!o.status.success());
    assert!(said.contains("bad.yaml, document 2, spec.adress: unknown field `adress`"), "{said}");
    assert!(!said.contains("your-registry-password"));
    assert!(!Path::new(&dir.path().join("out/envoy.yaml")).exists(), "nothing written on error");
}

#[test]
fn sealing_needs_a_key_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_npm-connector"))
        .args(["render", "-f", "examples/connectors.yaml", "--no-validate", "-o"])
        .arg(&out)
        .env_remove("NPM_CONNECTOR_KEY")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("npm-connector keygen"), "{}", text(&o));

    let o = cli(&[
        "render",
        "-f",
        "examples/connectors.yaml",
        "--no-validate",
        "--plaintext-credentials",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: --plaintext-credentials"));

    let key = dir.path().join("k");
    let o = cli(&["keygen", "-o", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let k = std::fs::read_to_string(&key).unwrap();
    assert!(npm_connector_filter::seal::Key::from_base64(&k).is_ok());
    // An existing key is never replaced silently.
    let o = cli(&["keygen", "-o", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), k, "unchanged");
    let o = cli(&["keygen", "-o", key.to_str().unwrap(), "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(std::fs::read_to_string(&key).unwrap(), k, "replaced with --force");
    let o = cli(&["keygen", "-o", key.to_str().unwrap(), "--force"]);
    assert!(o.status.success());
    let k = std::fs::read_to_string(&key).unwrap();
    let o = cli(&[
        "render",
        "-f",
        "examples/connectors.yaml",
        "--no-validate",
        "--key-file",
        key.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let envoy = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
    assert!(envoy.contains("sealed") && !envoy.contains("your-registry-password") && !envoy.contains(k.trim()));
}

#[test]
fn ca_init_keeps_the_key_private_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("ca");
    let o = cli(&["ca", "init", "--dir", d.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::metadata(d.join("ca-key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(d.join("ca.pem")).unwrap().contains("BEGIN CERTIFICATE"));
    let o = cli(&["ca", "init", "--dir", d.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("already has a CA"), "{}", text(&o));
}

#[test]
fn forward_mode_is_gone_and_names_the_replacement() {
    let out = tempfile::tempdir().unwrap();
    let o = cli(&[
        "render",
        "-f",
        "examples/connectors.yaml",
        "-o",
        out.path().to_str().unwrap(),
        "--mode",
        "forward",
        "--key-file",
        "envoy/examples/example.key",
    ]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("forward mode was removed") && said.contains("--mode https-proxy"), "{said}");
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "nothing written");
}

#[test]
fn an_http_registry_needs_the_cleartext_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(root().join("examples/connectors.yaml")).unwrap();
    let http = dir.path().join("http.yaml");
    std::fs::write(&http, seed.replace("https://", "http://")).unwrap();
    let out = dir.path().join("out");
    let wasm = root().join("target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let args = |f: &str| {
        let (o, w) = (out.to_str().unwrap(), wasm.to_str().unwrap());
        cli(&["render", "-f", f, "-o", o, "--key-file", "envoy/examples/example.key", "--wasm", w])
    };
    let o = args(http.to_str().unwrap());
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("document 2, spec.address") && said.contains("npm-connector.io/allow-cleartext"), "{said}");
    let opted = dir.path().join("opted.yaml");
    std::fs::write(
        &opted,
        seed.replace("https://", "http://").replace(
            "  name: npm-connector\n",
            "  name: npm-connector\n  annotations:\n    npm-connector.io/allow-cleartext: \"true\"\n",
        ),
    )
    .unwrap();
    let o = args(opted.to_str().unwrap());
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("warning: connector default/npm-connector") && said.contains("in clear"), "{said}");
}

#[test]
fn serve_help_lists_only_what_serve_uses_and_one_wasm_default() {
    let said = text(&cli(&["serve", "--help"]));
    assert!(!said.contains("--admin-socket"), "a bootstrap option: {said}");
    assert!(said.contains("--xds-listen") && said.contains("--clients"), "{said}");
    for cmd in ["serve", "render"] {
        let said = text(&cli(&[cmd, "--help"]));
        assert!(said.contains("[default: /etc/npm-connector/npm_connector_filter.wasm]"), "{cmd}: {said}");
    }
    assert_eq!(npm_connector::render::DEFAULT_WASM, "/etc/npm-connector/npm_connector_filter.wasm");
}

#[test]
fn nothing_to_render_says_which_files_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(root().join("examples/connectors.yaml")).unwrap();
    let maven = dir.path().join("maven.yaml");
    std::fs::write(&maven, seed.replace("connectorClassName: npm", "connectorClassName: maven")).unwrap();
    let out = dir.path().join("out");
    let o = cli(&["render", "-f", maven.to_str().unwrap(), "-o", out.to_str().unwrap(), "--plaintext-credentials"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("no npm connectors in") && said.contains("connectorClassName \"maven\""), "{said}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn render_validates_before_writing_and_owns_its_output() {
    let envoy = std::env::var_os("ENVOY_BIN").map(PathBuf::from).filter(|p| p.exists());
    let wasm = root().join("target/wasm32-wasip1/release/npm_connector_filter.wasm");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let render = |file: &Path, wasm: &Path| {
        cli(&[
            "render",
            "-f",
            file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--key-file",
            "envoy/examples/example.key",
            "--wasm",
            wasm.to_str().unwrap(),
        ])
    };
    let seed = root().join("examples/connectors.yaml");
    if envoy.is_some() {
        // Envoy rejects the bootstrap (no such filter file): nothing is written, no token minted.
        let o = render(&seed, Path::new("/nonexistent/filter.wasm"));
        let said = text(&o);
        assert!(!o.status.success() && said.contains("nothing was written"), "{said}");
        assert!(!out.exists(), "{said}");
        assert!(!dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("staging")));
    }
    // Two connectors, then one: the removed connector's files go, nothing else does.
    let text2 = std::fs::read_to_string(&seed).unwrap();
    let second = text2.split("---").nth(1).unwrap().replace("name: npm-connector", "name: second");
    let two = dir.path().join("two.yaml");
    std::fs::write(&two, format!("{text2}\n---{second}")).unwrap();
    let o = render(&two, &wasm);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("default/second/.npmrc").exists());
    std::fs::write(out.join("mine.txt"), "not the renderer's").unwrap();
    let o = render(&seed, &wasm);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed") && !out.join("default/second").exists(), "{}", text(&o));
    assert!(out.join("default/npm-connector/.npmrc").exists() && out.join("mine.txt").exists());
}

/// `render --xds-dir` writes JSON (`lds.json`, `cds.json`, `ecds-*.json`), and removes the
/// `.yaml` files earlier releases wrote there, saying to restart Envoy on the new bootstrap;
/// files it never wrote stay.
#[test]
fn xds_dir_files_are_json_and_old_yaml_ones_go() {
    let dir = tempfile::tempdir().unwrap();
    let (out, xds) = (dir.path().join("out"), dir.path().join("xds"));
    std::fs::create_dir_all(&xds).unwrap();
    for old in ["lds.yaml", "cds.yaml", "ecds-npm_connector.yaml", "notes.yaml"] {
        std::fs::write(xds.join(old), "# old\n").unwrap();
    }
    let o = cli(&[
        "render",
        "-f",
        "examples/connectors.yaml",
        "-o",
        out.to_str().unwrap(),
        "--xds-dir",
        xds.to_str().unwrap(),
        "--key-file",
        "envoy/examples/example.key",
        "--no-validate",
    ]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    let mut names: Vec<String> =
        xds.read_dir().unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["cds.json", "ecds-npm_connector.json", "lds.json", "notes.yaml"], "{said}");
    for name in ["cds.json", "ecds-npm_connector.json", "lds.json"] {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(xds.join(name)).unwrap()).unwrap();
        assert!(doc["resources"].is_array(), "{name}");
    }
    let restart = format!("the xDS files are .json now; restart Envoy with {}", out.join("envoy.yaml").display());
    for old in ["lds.yaml", "cds.yaml", "ecds-npm_connector.yaml"] {
        assert!(said.contains(&format!("removed {}: {restart}", xds.join(old).display())), "{old}: {said}");
    }
    let bootstrap = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
    assert!(bootstrap.contains(&format!("path: {}", xds.join("lds.json").display())), "{bootstrap}");
}
