//! End-to-end test harness: starts the real components (Envoy with the built filter, an HTTPS
//! Verdaccio that demands credentials, npm and yarn with their own HOME) on 127.0.0.1, and
//! stops each with the test that started it.

pub mod clients;
pub mod configmap;
pub mod control;
pub mod envoy;
pub mod front;
pub mod netns;
pub mod oidc;
pub mod pki;
pub mod plane;
pub mod procs;
pub mod scenario;
pub mod sidecar;
pub mod upstream;
pub mod verdaccio;

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A tool the Makefile installs; its absence is a set-up error, never a skipped test.
pub fn tool(env_var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(env_var).map(PathBuf::from).unwrap_or_else(|| root().join(default));
    assert!(
        p.exists(),
        "{} not found at {}: run the tests through `make test` or `make e2e`, which install it",
        env_var,
        p.display()
    );
    p
}
