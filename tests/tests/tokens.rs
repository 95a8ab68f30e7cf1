//! Client tokens from the control plane: `serve --clients` renews them well before they
//! expire while old ones stay valid until their own expiry; `npm-connector token` mints one
//! with a TTL; an expired token gets 403 "token expired".

use std::time::{Duration, Instant};

use npm_connector_tests::control::{self, get, wait_for};
use npm_connector_tests::plane::{wait_user, World, CONNECTOR, WHOAMI};

#[test]
fn client_tokens_renew_and_expire() {
    let w = World::start("npm-connector-tokens-");
    // 30 s tokens, renewed at half their life: margins a loaded runner cannot eat up.
    let _serve = w.plane.serve(&w.key_file, "serve.log", "30s");
    let envoy = w.plane.envoy("envoy-a", &w.key);
    let first = wait_for("client files", Duration::from_secs(20), || w.plane.client_token());
    let minted = Instant::now();
    assert_eq!(wait_user(envoy.port, &first), "ci-0");

    let second =
        wait_for("a renewed token", Duration::from_secs(40), || w.plane.client_token().filter(|t| *t != first));
    assert_eq!(wait_user(envoy.port, &second), "ci-0");
    // The first token is at most this old, and valid for 30 s: it must still work.
    let age = minted.elapsed();
    assert!(age < Duration::from_secs(25), "renewal took {age:?}, too close to the first token's expiry to test it");
    assert_eq!(get(envoy.port, WHOAMI, &first).0, 200, "the old token stays valid until its own expiry");

    // A token minted by hand, with a TTL, is accepted within moments and refused once expired.
    let state = w.dir().join("state");
    let by_hand =
        control::run(&["token", "--connector", CONNECTOR, "--ttl", "8s", "--state", &state.display().to_string()]);
    let by_hand = by_hand.trim().to_owned();
    assert!(by_hand.starts_with("npmc_"), "{by_hand}");
    wait_for("the minted token to be accepted", Duration::from_secs(8), || {
        (get(envoy.port, WHOAMI, &by_hand).0 == 200).then_some(())
    });
    let (status, body) = wait_for("the minted token to expire", Duration::from_secs(20), || {
        let r = get(envoy.port, WHOAMI, &by_hand);
        (r.0 != 200).then_some(r)
    });
    assert_eq!(status, 403);
    assert!(body.contains("token expired"), "{body}");

    // The first client token has expired by now too; the current one still works.
    wait_for("the first token to expire", Duration::from_secs(45), || {
        (get(envoy.port, WHOAMI, &first).0 == 403).then_some(())
    });
    assert!(get(envoy.port, WHOAMI, &first).1.contains("token expired"));
    let current = w.plane.client_token().unwrap_or_default();
    assert_eq!(wait_user(envoy.port, &current), "ci-0");
}
