//! https-proxy mode under `serve`: the leaf certificates reach Envoy over SDS (redacted in
//! `/config_dump`), are renewed before they expire without a restart, and clients using the
//! files `serve --clients` writes (proxy URL with the token, the connector CA) get through.

use std::path::Path;
use std::time::Duration;

use npm_connector_tests::clients;
use npm_connector_tests::control::{self, wait_for};
use npm_connector_tests::plane::{user_of, World, CONNECTOR};

/// The token in a rendered `.npmrc`'s `https-proxy=` URL.
fn proxy_token(npmrc: &Path) -> Option<String> {
    let text = std::fs::read_to_string(npmrc).ok()?;
    let url = text.lines().find_map(|l| l.strip_prefix("https-proxy="))?;
    let userinfo = url.strip_prefix("http://")?.split_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_owned())
}

/// `GET /-/whoami` through the tunnel; returns (status, user, the leaf's expiry as curl shows it).
fn whoami(port: u16, token: &str, ca: &Path, registry: &str) -> (u16, Option<String>, String) {
    let r = clients::curl(&[
        "-v",
        "-x",
        &format!("http://team%2Fnpm:{token}@127.0.0.1:{port}"),
        "--cacert",
        &ca.display().to_string(),
        "-w",
        " %{http_code}",
        &format!("{registry}-/whoami"),
    ]);
    let (body, status) = r.stdout.rsplit_once(' ').unwrap_or_default();
    let expiry = r.stderr.lines().find(|l| l.contains("expire date:")).unwrap_or_default().trim().to_owned();
    (status.trim().parse().unwrap_or(0), user_of(body), expiry)
}

#[test]
fn https_proxy_over_xds_with_sds_leaves() {
    let mut w = World::start("npm-connector-https-xds-");
    let d = w.dir().to_owned();
    let ca_dir = d.join("connector-ca");
    control::run(&["ca", "init", "--dir", &ca_dir.display().to_string()]);
    w.plane.mode = "https-proxy";
    w.plane.extra = vec!["--ca-dir".into(), ca_dir.display().to_string(), "--leaf-ttl".into(), "9s".into()];
    let serve = w.plane.serve(&w.key_file, "serve.log", "30m");
    let envoy = w.plane.envoy("envoy-h", &w.key);
    let clients_dir = d.join("clients").join(CONNECTOR);
    let token = wait_for("client files from serve --clients", Duration::from_secs(20), || {
        proxy_token(&clients_dir.join(".npmrc"))
    });
    let ca = clients_dir.join("ca.pem");
    assert!(std::fs::read_to_string(&ca).unwrap_or_default().contains("BEGIN CERTIFICATE"));
    let registry = w.registry.public_url.clone();

    let (_, _, first_leaf) = wait_for("a tunnel through the SDS leaf", Duration::from_secs(30), || {
        match whoami(envoy.port, &token, &ca, &registry) {
            (200, Some(u), leaf) if u == "ci-0" => Some(((), (), leaf)),
            _ => None,
        }
    });
    assert!(!first_leaf.is_empty());
    wait_for("the leaf's SDS ACK in serve's log", Duration::from_secs(10), || {
        serve.log_text().contains(" acked Secret version ").then_some(())
    });
    let dump = envoy.admin("/config_dump?include_eds");
    assert!(dump.contains("leaf_registry.test"), "the dump lists the SDS secret");
    assert!(!dump.contains("PRIVATE KEY"), "Envoy redacts the leaf's key in /config_dump");
    assert!(!dump.contains(&token) && !dump.contains(&w.password));

    // A 9 s leaf is renewed after 6 s: a new one arrives over SDS and new handshakes use it.
    let acks = |log: &str| log.matches(" acked Secret version ").count();
    let before = acks(&serve.log_text());
    wait_for("a renewed leaf acked", Duration::from_secs(20), || (acks(&serve.log_text()) > before).then_some(()));
    let (status, user, second_leaf) = whoami(envoy.port, &token, &ca, &registry);
    assert_eq!((status, user.as_deref()), (200, Some("ci-0")));
    assert_ne!(first_leaf, second_leaf, "the renewed leaf is the one presented");
    assert!(!serve.log_text().contains("PRIVATE KEY"));
    assert!(!envoy.daemon.log_text().contains(&token));

    // Removing the last connector revokes it: Envoy takes the empty snapshot (no internal
    // listener, no registry cluster), and the CONNECT to the registry is refused, as no token
    // of this proxy is valid any more.
    w.manifests.write(&[("connectors.yaml", "# no connectors\n")]);
    let proxy = format!("http://team%2Fnpm:{token}@127.0.0.1:{}", envoy.port);
    let url = format!("{registry}-/whoami");
    let ca_arg = ca.display().to_string();
    wait_for("the connector revoked", Duration::from_secs(30), || {
        let r =
            clients::curl(&["-s", "-o", "/dev/null", "-w", "%{http_connect}", "-x", &proxy, "--cacert", &ca_arg, &url]);
        (r.stdout.trim() == "403").then_some(())
    });
    assert!(!serve.log_text().contains(" rejected "), "{}", serve.log_text());
}
