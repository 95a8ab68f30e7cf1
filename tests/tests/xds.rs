//! The xDS control plane for real: `npm-connector serve` over a ConfigMap-style directory, two
//! Envoys bootstrapped by `render --xds`, an HTTPS Verdaccio whose users rotate, and clients
//! using the client files `serve --clients` keeps fresh.

use std::time::{Duration, Instant};

use npm_connector_tests::control::{self, wait_for};
use npm_connector_tests::plane::{
    manifest, percentile, serve_http, serve_metric, wait_user, whoami, WhoamiLoop, World,
};
use npm_connector_tests::verdaccio;

#[test]
fn xds_control_plane_end_to_end() {
    let w = World::start("npm-connector-xds-");
    let World { tmp, registry, manifests: mut cm, password, key_file, key, plane, .. } = w;
    let d = tmp.path();
    let vdir = d.join("verdaccio");
    let mut passwords: Vec<String> = vec![password];
    let mut serve = plane.serve(&key_file, "serve.log", "30m");

    // Two Envoys, two nodes, each with its own listener from its own snapshot.
    let envoy_a = plane.envoy("envoy-a", &key);
    let envoy_b = plane.envoy("envoy-b", &key);
    let token = wait_for("client files from serve --clients", Duration::from_secs(20), || plane.client_token());
    for e in [&envoy_a, &envoy_b] {
        assert_eq!(wait_user(e.port, &token), "ci-0");
    }
    assert_eq!(whoami(envoy_a.port, "npmc_wrong").0, 403);
    // serve's own health and metrics, on their own port.
    let m = plane.metrics_port;
    assert_eq!(serve_http(m, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(serve_metric(m, "npm_connector_serve_connected_nodes"), Some(2.0));
    assert_eq!(serve_metric(m, "npm_connector_serve_connectors"), Some(1.0));
    assert!(serve_metric(m, "npm_connector_serve_acks_total").unwrap_or(0.0) >= 6.0, "LDS, CDS, ECDS acked by 2 nodes");
    assert!(serve_metric(m, "npm_connector_serve_tokens_minted_total").unwrap_or(0.0) >= 1.0);
    let (_, text) = serve_http(m, "/metrics");
    assert!(text.contains("npm_connector_serve_snapshot_version{node=\"envoy-a\",type=\"Listener\""), "{text}");

    // Rotation under load: a client loop keeps asking who it is while the credential rotates
    // 50 times. During each switch-over the registry accepts the old and the new user, so no
    // request may fail; the time from the file change to the first request carrying the new
    // credential is the window a registry without overlap would fail in.
    let looper = WhoamiLoop::start(envoy_a.port, &token);
    // Credential changes push only the filter's configuration (ECDS): count the other ACKs.
    let other_acks = |log: &str| log.matches(" acked Listener ").count() + log.matches(" acked Cluster ").count();
    let other_before = other_acks(&serve.log_text());
    let mut latencies = Vec::new();
    for i in 1..=50 {
        passwords.push(format!("pw-{}-{i}", std::process::id()));
        let (old, new) = (format!("ci-{}", i - 1), format!("ci-{i}"));
        verdaccio::write_users(&vdir, &[(&old, &passwords[i - 1]), (&new, &passwords[i])]);
        let t0 = Instant::now();
        cm.write(&[("connectors.yaml", &manifest(&registry.public_url, &new, &passwords[i]))]);
        let t1 = wait_for(&format!("rotation {i} to reach the registry"), Duration::from_secs(20), || {
            looper
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|(t, s, u)| *t >= t0 && *s == 200 && u.as_deref() == Some(&new))
                .map(|(t, _, _)| *t)
        });
        latencies.push(t1 - t0);
        // Every request after the first new one carries the new credential (requests already on
        // their way may not): once two more have come back with it, retire the old user.
        wait_for(&format!("rotation {i} settled"), Duration::from_secs(20), || {
            let after = looper
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, s, u)| *t > t1 && *s == 200 && u.as_deref() == Some(&new))
                .count();
            (after >= 2).then_some(())
        });
        verdaccio::write_users(&vdir, &[(&new, &passwords[i])]);
    }
    let seen = looper.stop();
    let failures: Vec<_> = seen.iter().filter(|(_, s, _)| *s != 200).collect();
    latencies.sort();
    println!(
        "rotation: 50 credential rotations under load, {} requests, {} failed; file change -> first request with the new credential: p50 {:?}, p99 {:?}, max {:?}",
        seen.len(),
        failures.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    assert!(seen.len() > 100, "the client loop ran");
    assert_eq!(other_acks(&serve.log_text()), other_before, "rotations pushed listeners or clusters");
    assert!(failures.is_empty(), "requests failed during rotation: {:?}", &failures[..failures.len().min(5)]);
    drop(seen);
    let last = "ci-50".to_owned();

    // A bad manifest: serve says what to fix and keeps serving the last good configuration.
    cm.write(&[(
        "connectors.yaml",
        &manifest(&registry.public_url, &last, &passwords[50]).replace("address:", "adress:"),
    )]);
    wait_for("serve to reject the manifest", Duration::from_secs(10), || {
        serve.log_text().contains("manifests rejected").then_some(())
    });
    assert_eq!(serve_metric(plane.metrics_port, "npm_connector_serve_last_reload_failed"), Some(1.0));
    assert_eq!(serve_metric(plane.metrics_port, "npm_connector_serve_reload_errors_total"), Some(1.0));
    let log = serve.log_text();
    assert!(log.contains("connectors.yaml, document 2, spec.adress: unknown field `adress`"), "{log}");
    serve.assert_running();
    assert_eq!(whoami(envoy_a.port, &token), (200, Some(last.clone())));
    cm.write(&[("connectors.yaml", &manifest(&registry.public_url, &last, &passwords[50]))]);

    // SIGTERM with two Envoys connected: serve ends their streams and exits within 2 s.
    let took = serve.terminate_within(Duration::from_secs(2));
    assert!(took.is_some(), "serve did not exit within 2 s of SIGTERM:\n{}", serve.log_text());
    assert!(serve.log_text().contains("stopped"), "{}", serve.log_text());
    eprintln!("serve exited {took:?} after SIGTERM with 2 Envoys connected");

    // A configuration the filter rejects: serve restarted with another key seals with it; the
    // Envoys NACK (serve logs their error) and keep the last good configuration.
    let other_key = d.join("other-key");
    control::keygen(&other_key);
    let wrong = plane.serve(&other_key, "serve-wrong-key.log", "30m");
    wait_for("a NACK from each Envoy", Duration::from_secs(20), || {
        let log = wrong.log_text();
        (log.contains("node envoy-a rejected") && log.contains("node envoy-b rejected")).then_some(())
    });
    // A rejected version is not pushed again. serve's own record (its "sent" lines) shows the
    // ECDS version each node rejected was sent once, even after a SIGHUP reload and publish.
    let sighup = std::process::Command::new("kill").args(["-HUP", &wrong.pid().to_string()]).status().unwrap();
    assert!(sighup.success());
    wait_for("the reload's snapshots", Duration::from_secs(10), || {
        let log = wrong.log_text();
        let after = log.split("SIGHUP: reloading").nth(1)?;
        (after.contains("node envoy-a: snapshot") && after.contains("node envoy-b: snapshot")).then_some(())
    });
    let log = wrong.log_text();
    for node in ["envoy-a", "envoy-b"] {
        let rejected = log
            .lines()
            .find_map(|l| {
                l.split(&format!("node {node} rejected TypedExtensionConfig version ")).nth(1)?.split(' ').next()
            })
            .unwrap_or_else(|| panic!("no ECDS NACK from {node}:\n{log}"));
        let sent = format!("node {node} sent TypedExtensionConfig version {rejected}");
        assert_eq!(log.matches(&sent).count(), 1, "{sent}:\n{log}");
    }
    assert!(log.contains("Unable to create Wasm plugin npm_connector"), "Envoy's error detail is logged:\n{log}");
    assert!(serve_metric(plane.metrics_port, "npm_connector_serve_nacks_total").unwrap_or(0.0) >= 2.0);
    assert_eq!(log.matches("node envoy-a rejected").count(), 1, "{log}");
    let envoy_log = envoy_a.daemon.log_text();
    assert!(
        envoy_log.contains("configuration rejected: connector team/npm: cannot unseal the credential"),
        "{envoy_log}"
    );
    let token_now = plane.client_token().unwrap();
    assert_eq!(whoami(envoy_a.port, &token).0, 200, "the last good configuration still serves");
    assert_eq!(whoami(envoy_b.port, &token_now).0, 403, "tokens minted by the rejected snapshot do not work");
    drop(wrong); // killed: the control plane is down

    // Control plane down: Envoy keeps serving; a change made meanwhile applies after restart.
    assert_eq!(whoami(envoy_a.port, &token), (200, Some(last.clone())));
    passwords.push(format!("pw-{}-51", std::process::id()));
    verdaccio::write_users(&vdir, &[(&last, &passwords[50]), ("ci-51", &passwords[51])]);
    cm.write(&[("connectors.yaml", &manifest(&registry.public_url, "ci-51", &passwords[51]))]);
    // Envoy has noticed the control plane is gone (it failed to reconnect) and still serves.
    let fails = "cluster.npm_connector_xds.upstream_cx_connect_fail";
    let before = envoy_a.counter(fails);
    wait_for("Envoy to fail to reach the control plane", Duration::from_secs(30), || {
        (envoy_a.counter(fails) > before).then_some(())
    });
    assert_eq!(whoami(envoy_a.port, &token), (200, Some(last.clone())), "no control plane: unchanged");
    let mut serve = plane.serve(&key_file, "serve-restarted.log", "30m");
    let fresh = plane.client_token().unwrap();
    for e in [&envoy_a, &envoy_b] {
        wait_for("resync after restart", Duration::from_secs(30), || {
            (whoami(e.port, &fresh) == (200, Some("ci-51".to_owned()))).then_some(())
        });
    }
    assert_eq!(whoami(envoy_a.port, &token).0, 200, "tokens from before the restart stay valid (state dir)");

    // SIGHUP reloads too.
    let hup = std::process::Command::new("kill").args(["-HUP", &serve.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    wait_for("a reload on SIGHUP", Duration::from_secs(10), || {
        serve.log_text().contains("SIGHUP: reloading").then_some(())
    });
    serve.assert_running();

    // Nothing leaks: neither the admin dump nor any log holds a password or a client token.
    let mut secrets: Vec<String> = passwords.clone();
    secrets.extend([token.clone(), fresh.clone(), key.clone()]);
    let mut envoys = [envoy_a, envoy_b];
    let mut texts = Vec::new();
    for e in &envoys {
        let dump = e.admin("/config_dump");
        assert!(dump.contains(r#"\"credential\":{\"sealed\":"#), "the sealed form is in the dump");
        texts.push(dump);
    }

    // Removing the last connector revokes it on every Envoy: its path is gone (404), so its
    // credential goes nowhere.
    cm.write(&[("connectors.yaml", "# no connectors\n")]);
    for e in &envoys {
        wait_for("the connector revoked", Duration::from_secs(30), || (whoami(e.port, &fresh).0 == 404).then_some(()));
    }
    assert!(serve.log_text().contains("no npm connectors in"), "{}", serve.log_text());

    serve.terminate();
    for e in envoys.iter_mut() {
        e.daemon.terminate();
        texts.push(e.daemon.log_text());
    }
    for log in ["serve.log", "serve-wrong-key.log", "serve-restarted.log", "envoy-envoy-a/envoy.yaml"] {
        texts.push(std::fs::read_to_string(d.join(log)).unwrap());
    }
    for (i, t) in texts.iter().enumerate() {
        for s in &secrets {
            assert!(!t.contains(s.as_str()), "a secret leaked into text #{i}");
        }
    }
    drop(registry);
}
