//! https-proxy mode's leaf certificates: minted with the connector CA for every registry host
//! (`render` once; `serve` delivers them over SDS and renews them once two thirds of their
//! validity are gone).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{needs_renewal, Ca, PkiError};
use crate::render::{LeafPem, Tls};

/// Where `serve` gets its CA and how long leaves live.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The connector CA's directory (`npm-connector ca init`); the key never leaves it.
    pub ca_dir: PathBuf,
    pub leaf_ttl: Duration,
    /// Where pods mount their connector's client files (for `cafile` paths).
    pub client_dir: Option<PathBuf>,
    /// The public roots clients trust besides the connector CA [default: the system's].
    pub trust_bundle: Option<PathBuf>,
}

pub struct Leaves {
    ca: Ca,
    cfg: TlsConfig,
    /// The roots of the clients' bundle (PEM).
    roots: String,
    /// Host → leaf and its expiry (Unix seconds).
    current: BTreeMap<String, (LeafPem, u64)>,
}

impl Leaves {
    pub fn open(cfg: &TlsConfig) -> Result<Self, PkiError> {
        let roots = match &cfg.trust_bundle {
            Some(p) => std::fs::read_to_string(p).map_err(|e| PkiError::Io(p.display().to_string(), e))?,
            // Without system roots the bundle trusts only the connector CA: intercepted
            // registries still verify, blind tunnels (a CDN) do not.
            None => std::fs::read_to_string(crate::render::SYSTEM_CA).unwrap_or_else(|e| {
                log::warn!(
                    "no system trust store at {} ({e}); the clients' bundle holds only the connector CA (--trust-bundle adds roots)",
                    crate::render::SYSTEM_CA
                );
                String::new()
            }),
        };
        Ok(Leaves { ca: Ca::load(&cfg.ca_dir)?, cfg: cfg.clone(), roots, current: BTreeMap::new() })
    }

    /// Mints a leaf for every host without one or whose leaf is due for renewal, and forgets
    /// hosts no connector uses any more. Returns whether anything changed.
    pub fn refresh(&mut self, hosts: &[String], now: SystemTime) -> bool {
        let before = self.current.len();
        self.current.retain(|h, _| hosts.contains(h));
        let mut changed = before != self.current.len();
        for host in hosts {
            let due = self.current.get(host).is_none_or(|(_, exp)| needs_renewal(*exp, self.cfg.leaf_ttl, now));
            if !due {
                continue;
            }
            match self.ca.mint_leaf(&[host], now, self.cfg.leaf_ttl) {
                Ok(l) => {
                    log::info!("leaf certificate for {host} minted, valid for {} s", self.cfg.leaf_ttl.as_secs());
                    self.current.insert(host.clone(), (LeafPem { cert: l.cert_pem, key: l.key_pem }, l.not_after));
                    changed = true;
                }
                // The old leaf (if any) keeps serving until it expires.
                Err(e) => log::error!("cannot mint a leaf certificate for {host}: {e}"),
            }
        }
        changed
    }

    /// The renderer's view; `out` is where client files are written (for default cafile paths).
    pub fn tls(&self, out: &Path) -> Tls {
        Tls {
            ca_cert: self.ca.cert_pem.clone(),
            leaves: self.current.iter().map(|(h, (l, _))| (h.clone(), l.clone())).collect(),
            leaf_dir: out.join("tls"),
            client_dir: self.cfg.client_dir.clone(),
            out: out.to_owned(),
            roots: self.roots.clone(),
        }
    }
}
