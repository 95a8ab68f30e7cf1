//! npm-connector control plane: Connector + Secret manifests in, per-connector client files
//! and an Envoy bootstrap (with the filter's configuration) out.

pub mod exchange;
pub mod image;
pub mod manifest;
pub mod output;
pub mod pki;
pub mod render;
pub mod serve;
pub mod token;
pub mod xds;
