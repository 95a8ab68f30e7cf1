//! Two `serve` replicas over the same manifests and keys, xDS over mutual TLS, one Envoy whose
//! bootstrap lists both: tokens minted by either work, a replica killed under load loses no
//! request and no configuration change, and a client without a certificate gets nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use npm_connector_tests::control::{self, npmrc_token, wait_for};
use npm_connector_tests::plane::{manifest, serve_metric, wait_user, whoami, Replica, WhoamiLoop, World};
use npm_connector_tests::procs::free_port;
use npm_connector_tests::verdaccio;

#[test]
fn two_replicas_over_mutual_tls_fail_over_under_load() {
    let w = World::start("npm-connector-ha-");
    let World { tmp, registry, manifests: mut cm, password, key_file, key, plane, .. } = w;
    let d = tmp.path().to_owned();
    let ds = d.display().to_string();
    // serve's certificate and the Envoy's client certificate, from the CA in `d` (`ca init`).
    control::run(&["ca", "leaf", "--dir", &ds, "--host", "127.0.0.1", "--out", &format!("{ds}/xds-tls")]);
    control::run(&["ca", "leaf", "--client", "--dir", &ds, "--host", "envoy-gw", "--out", &format!("{ds}/envoy-tls")]);
    let keys = d.join("token-keys");
    std::fs::create_dir_all(&keys).unwrap_or_else(|e| panic!("{e}"));
    control::keygen(&keys.join("k1"));
    let ca = plane.ca.display().to_string();
    let shared: Vec<String> = [
        "--token-keys",
        &keys.display().to_string(),
        "--xds-tls-cert",
        &format!("{ds}/xds-tls/tls.crt"),
        "--xds-tls-key",
        &format!("{ds}/xds-tls/tls.key"),
        "--xds-client-ca",
        &ca,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ra = Replica { xds_port: free_port(), metrics_port: free_port(), state: "state-a", clients: "clients-a" };
    let rb = Replica { xds_port: free_port(), metrics_port: free_port(), state: "state-b", clients: "clients-b" };
    let serve_a = plane.serve_replica(&ra, &key_file, "serve-a.log", "30m", &shared);
    let serve_b = plane.serve_replica(&rb, &key_file, "serve-b.log", "30m", &shared);
    let xds: Vec<String> = [
        "--xds",
        &format!("grpc://127.0.0.1:{}", ra.xds_port),
        "--xds",
        &format!("grpc://127.0.0.1:{}", rb.xds_port),
        "--xds-client-cert",
        &format!("{ds}/envoy-tls/tls.crt"),
        "--xds-client-key",
        &format!("{ds}/envoy-tls/tls.key"),
        "--xds-ca",
        &ca,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let envoy = plane.envoy_xds("gw", &key, free_port(), &xds);
    let token_of = |dir: &str| {
        wait_for("client files", Duration::from_secs(20), || npmrc_token(&d.join(dir).join("team/npm/.npmrc")))
    };
    // Tokens minted by either replica work at the Envoy, whichever replica feeds it.
    let (ta, tb) = (token_of("clients-a"), token_of("clients-b"));
    assert_ne!(ta, tb);
    assert_eq!(wait_user(envoy.port, &ta), "ci-0");
    assert_eq!(whoami(envoy.port, &tb), (200, Some("ci-0".to_owned())));

    // Which replica the Envoy's ADS stream is on.
    let connected = |port| serve_metric(port, "npm_connector_serve_connected_nodes").unwrap_or(0.0) as u32;
    let (on_a, on_b) = (connected(ra.metrics_port), connected(rb.metrics_port));
    assert_eq!(on_a + on_b, 1, "one ADS stream");
    let (victim, mut survivor, survivor_metrics) =
        if on_a == 1 { (serve_a, serve_b, rb.metrics_port) } else { (serve_b, serve_a, ra.metrics_port) };

    // Under load, kill the replica the Envoy is on; the Envoy reconnects to the other.
    let looper = WhoamiLoop::start(envoy.port, &ta);
    wait_for("load", Duration::from_secs(10), || (looper.seen.lock().map(|s| s.len()).unwrap_or(0) > 20).then_some(()));
    let killed = Instant::now();
    drop(victim);
    wait_for("the Envoy to reconnect to the other replica", Duration::from_secs(30), || {
        (connected(survivor_metrics) == 1).then_some(())
    });
    let reconnect = killed.elapsed();
    // A configuration change after the failover arrives from the survivor.
    let new_pw = format!("pw-{}-ha", std::process::id());
    verdaccio::write_users(&d.join("verdaccio"), &[("ci-0", &password), ("ci-ha", &new_pw)]);
    let changed = Instant::now();
    cm.write(&[("connectors.yaml", &manifest(&registry.public_url, "ci-ha", &new_pw))]);
    wait_for("the change to reach the Envoy through the survivor", Duration::from_secs(30), || {
        let seen = looper.seen.lock().ok()?;
        seen.iter().any(|(t, s, u)| *t > changed && *s == 200 && u.as_deref() == Some("ci-ha")).then_some(())
    });
    let propagated = changed.elapsed();
    let seen = looper.stop();
    let failures: Vec<_> = seen.iter().filter(|(_, s, _)| *s != 200).collect();
    println!(
        "failover: {} requests under load, {} failed; Envoy on the other replica {:?} after the kill; a change after it reached the Envoy in {:?}",
        seen.len(),
        failures.len(),
        reconnect,
        propagated
    );
    assert!(failures.is_empty(), "requests failed: {:?}", &failures[..failures.len().min(5)]);
    survivor.assert_running();

    // The xDS port requires a client certificate: without one, no TLS session, no gRPC.
    let port = if on_a == 1 { rb.xds_port } else { ra.xds_port };
    let url = format!(
        "https://127.0.0.1:{port}/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
    );
    let curl = |extra: &[&str]| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--http2", "--cacert", &ca, "-X", "POST"])
            .args(extra)
            .arg(&url);
        let out = c.output().unwrap_or_else(|e| panic!("{e}"));
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, status) = curl(&[]);
    assert!(code != 0 && status == "000", "no certificate: refused in the handshake (curl {code}, HTTP {status})");
    let (code, status) =
        curl(&["--cert", &format!("{ds}/envoy-tls/tls.crt"), "--key", &format!("{ds}/envoy-tls/tls.key")]);
    assert_eq!((code, status.as_str()), (0, "200"), "with the Envoy's certificate the gRPC service answers");
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--http2-prior-knowledge",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000", "no plaintext xDS");
    drop(envoy);
}
