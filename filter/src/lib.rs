//! npm-connector filter: on the route Envoy's router chose for a connector, checks the pod's
//! connector token and swaps it for the registry credential; rewrites tarball URLs in
//! packuments and `Location`s. The router is the one matcher: the filter never maps a host or
//! path to a connector itself.
//!
//! Everything but [`shim`] is plain Rust with native unit tests (also run compiled to
//! wasm32-wasip1 under Node's WASI); only the shim talks to the proxy-wasm host.

pub mod canon;
pub mod config;
pub mod credential;
pub mod decision;
pub mod rewrite;
pub mod seal;
pub mod token;

#[cfg(all(target_arch = "wasm32", not(test)))]
mod shim;
