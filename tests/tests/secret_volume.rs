//! The README's CronJob workflow: the registry credential is a Kubernetes Secret mounted into
//! `serve` as a volume (`--secrets-dir`, one directory per Secret, one file per key, updated by
//! the kubelet's `..data` swap). Rotated under load, every request succeeds and the new
//! credential reaches the registry within moments of each swap.

use std::time::{Duration, Instant};

use npm_connector_tests::configmap::ConfigMapDir;
use npm_connector_tests::control::wait_for;
use npm_connector_tests::plane::{manifest, wait_user, WhoamiLoop, World};
use npm_connector_tests::verdaccio;

#[test]
fn a_secret_volume_swapped_under_load() {
    let World { tmp, registry, manifests: mut cm, password, key_file, key, mut plane, .. } =
        World::start("npm-connector-secret-volume-");
    let d = tmp.path();
    // The manifests hold only the Connector; its Secret `login` is a mounted volume.
    let connector_only = manifest(&registry.public_url, "ci-0", &password).split("---\n").nth(1).unwrap().to_owned();
    cm.write(&[("connectors.yaml", &connector_only)]);
    let secrets = d.join("secrets");
    let mut login = ConfigMapDir::new(&secrets.join("login"));
    login.write(&[("username", "ci-0"), ("password", &password)]);
    plane.extra = vec!["--secrets-dir".into(), secrets.display().to_string()];
    let serve = plane.serve(&key_file, "serve.log", "30m");
    let envoy = plane.envoy("envoy-a", &key);
    let token = wait_for("client files from serve --clients", Duration::from_secs(20), || plane.client_token());
    assert_eq!(wait_user(envoy.port, &token), "ci-0");

    let looper = WhoamiLoop::start(envoy.port, &token);
    let vdir = d.join("verdaccio");
    let mut passwords = vec![password];
    for i in 1..=5 {
        passwords.push(format!("vol-pw-{}-{i}", std::process::id()));
        let (old, new) = (format!("ci-{}", i - 1), format!("ci-{i}"));
        // The registry accepts both during the switch-over; then only the new one.
        verdaccio::write_users(&vdir, &[(&old, &passwords[i - 1]), (&new, &passwords[i])]);
        let t0 = Instant::now();
        login.write(&[("username", &new), ("password", &passwords[i])]);
        wait_for(&format!("swap {i} to reach the registry"), Duration::from_secs(20), || {
            looper
                .seen
                .lock()
                .unwrap()
                .iter()
                .any(|(t, s, u)| *t >= t0 && *s == 200 && u.as_deref() == Some(&new))
                .then_some(())
        });
        verdaccio::write_users(&vdir, &[(&new, &passwords[i])]);
    }
    let seen = looper.stop();
    let failed: Vec<_> = seen.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(seen.len() > 20, "the client loop ran");
    assert!(failed.is_empty(), "requests failed during the swaps: {:?}", &failed[..failed.len().min(5)]);
    assert!(!serve.log_text().contains("manifests rejected"), "{}", serve.log_text());
    let log = serve.log_text();
    for p in &passwords {
        assert!(!log.contains(p.as_str()), "a password reached serve's log");
    }
    drop(registry);
}
