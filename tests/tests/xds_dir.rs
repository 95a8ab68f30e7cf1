//! File-based xDS (`render --xds-dir`): no control-plane process; Envoy watches a directory
//! whose files `render` replaces atomically, and a new credential applies without a restart.

use std::time::Duration;

use npm_connector_tests::control::{self, npmrc_token, wait_for};
use npm_connector_tests::envoy;
use npm_connector_tests::plane::{manifest, wait_user, whoami, World, CONNECTOR};
use npm_connector_tests::procs::free_port;
use npm_connector_tests::verdaccio;

#[test]
fn file_based_xds_applies_a_new_credential_live() {
    let mut w = World::start("npm-connector-xdsdir-");
    let d = w.dir().to_owned();
    let (xds, out) = (d.join("xds"), d.join("out"));
    let listen = free_port();
    let render = |w: &World| {
        let mut args: Vec<String> = vec![
            "render".into(),
            "-f".into(),
            w.manifests.dir.join("connectors.yaml").display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--xds-dir".into(),
            xds.display().to_string(),
            "--key-file".into(),
            w.key_file.display().to_string(),
            "--envoy".into(),
            envoy::binary().display().to_string(),
        ];
        args.extend(w.plane.deploy_args(listen));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        control::run(&refs)
    };
    let said = render(&w);
    assert!(said.contains("--mode validate: OK"), "{said}");
    let mut e =
        envoy::start(&out.join("envoy.yaml"), out.join("envoy.log"), listen, out.join("admin.sock"), Some(&w.key));
    let token = npmrc_token(&out.join(CONNECTOR).join(".npmrc")).unwrap_or_default();
    assert_eq!(wait_user(listen, &token), "ci-0");

    // Rotate: the registry accepts both users, the Secret names the new one, render again.
    let new_pw = format!("{}-1", w.password);
    verdaccio::write_users(&d.join("verdaccio"), &[("ci-0", &w.password), ("ci-1", &new_pw)]);
    w.manifests.write(&[("connectors.yaml", &manifest(&w.registry.public_url, "ci-1", &new_pw))]);
    render(&w);
    let token = npmrc_token(&out.join(CONNECTOR).join(".npmrc")).unwrap_or_default();
    wait_for("Envoy to load the new files", Duration::from_secs(20), || {
        (whoami(listen, &token) == (200, Some("ci-1".to_owned()))).then_some(())
    });
    e.daemon.assert_running();
    let listeners = e.admin("/listeners");
    assert!(listeners.contains(&listen.to_string()), "the listener was not replaced: {listeners}");
    let dump = e.admin("/config_dump");
    assert!(!dump.contains(&new_pw) && !dump.contains(&w.password) && !dump.contains(&token));
}
