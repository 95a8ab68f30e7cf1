//! https-proxy mode's leaf certificates: minted with the connector CA for every registry host
//! (`render` once; `serve` delivers them over SDS and renews them once two thirds of their
//! validity are gone).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use super::{leaf_groups, needs_renewal, Ca, PkiError};
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
    /// The clients' `ca-bundle.pem`: the connector CA and the roots, built once.
    bundle: Arc<str>,
    /// Host → its leaf (shared by the hosts of its group) and the leaf's expiry (Unix seconds).
    current: BTreeMap<String, (Arc<LeafPem>, u64)>,
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
        let ca = Ca::load(&cfg.ca_dir)?;
        let bundle = crate::render::client_bundle(&ca.cert_pem, &roots);
        Ok(Leaves { ca, cfg: cfg.clone(), bundle, current: BTreeMap::new() })
    }

    /// Mints a leaf for every group of hosts (sorted, see [`leaf_groups`]) whose leaf names
    /// other hosts or is due for renewal, and forgets hosts no connector uses any more.
    /// Returns whether anything changed.
    pub fn refresh(&mut self, hosts: &[String], now: SystemTime) -> bool {
        let mut hosts = hosts.to_vec();
        hosts.sort();
        hosts.dedup();
        let mut next = BTreeMap::new();
        let mut changed = false;
        let ttl = self.cfg.leaf_ttl;
        // One line for the whole refresh: 10,000 hosts are 100 leaves, not 100 log lines.
        let (mut minted_leaves, mut minted_hosts) = (0usize, 0usize);
        for group in leaf_groups(&hosts) {
            let first = group.first().and_then(|h| self.current.get(h));
            let keep = first.filter(|(l, exp)| l.hosts == group && !needs_renewal(*exp, ttl, now)).cloned();
            if let Some(kept) = keep {
                next.extend(group.iter().map(|h| (h.clone(), kept.clone())));
                continue;
            }
            changed = true;
            match self.ca.mint_group(group, now, ttl) {
                Ok(minted) => {
                    minted_leaves += 1;
                    minted_hosts += group.len();
                    next.extend(group.iter().map(|h| (h.clone(), minted.clone())));
                }
                // A host the CA cannot name must not cost the others theirs: one leaf each.
                // A host left without one makes the render fail, and the last good
                // configuration keeps serving.
                Err(e) => {
                    log::error!(
                        "cannot mint a leaf certificate for {} host(s) from {}: {e}; one per host",
                        group.len(),
                        group[0]
                    );
                    for h in group {
                        match self.ca.mint_group(std::slice::from_ref(h), now, ttl) {
                            Ok(minted) => {
                                minted_leaves += 1;
                                minted_hosts += 1;
                                next.insert(h.clone(), minted);
                            }
                            Err(e) => log::error!("cannot mint a leaf certificate for {h}: {e}"),
                        }
                    }
                }
            }
        }
        if minted_leaves > 0 {
            log::info!(
                "{minted_leaves} leaf certificate(s) minted for {minted_hosts} host(s), valid for {} s",
                ttl.as_secs()
            );
        }
        changed |= next.len() != self.current.len() || next.keys().ne(self.current.keys());
        self.current = next;
        changed
    }

    /// The renderer's view; `out` is where client files are written (for default cafile paths).
    pub fn tls(&self, out: &Path) -> Tls {
        Tls {
            ca_cert: self.ca.cert_pem.as_str().into(),
            leaves: self.current.iter().map(|(h, (l, _))| (h.clone(), l.clone())).collect(),
            leaf_dir: out.join("tls"),
            client_dir: self.cfg.client_dir.clone(),
            out: out.to_owned(),
            bundle: self.bundle.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::HOSTS_PER_LEAF;

    fn sans(pem: &str) -> Vec<String> {
        let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = der.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn hosts_share_leaves_in_sorted_groups_renewed_and_reminted_only_when_due_or_changed() {
        let d = tempfile::tempdir().unwrap();
        crate::pki::init(&d.path().join("ca"), "test CA").unwrap();
        let ttl = Duration::from_secs(3000);
        let cfg = TlsConfig { ca_dir: d.path().join("ca"), leaf_ttl: ttl, client_dir: None, trust_bundle: None };
        let mut leaves = Leaves::open(&cfg).unwrap();
        let hosts: Vec<String> = (0..2 * HOSTS_PER_LEAF + 50).map(|i| format!("r{i:04}.example.com")).collect();
        let now = SystemTime::now();
        assert!(leaves.refresh(&hosts, now));
        let tls = leaves.tls(d.path());
        let distinct = tls.leaves_for(&hosts).unwrap();
        assert_eq!(distinct.iter().map(|l| l.hosts.len()).collect::<Vec<_>>(), [HOSTS_PER_LEAF, HOSTS_PER_LEAF, 50]);
        for leaf in &distinct {
            assert_eq!(sans(&leaf.cert), leaf.hosts, "a leaf's SANs are exactly its group");
            assert!(leaf.hosts.iter().all(|h| Arc::ptr_eq(&tls.leaves[h], leaf)));
        }
        assert_eq!(distinct[1].name(), format!("leaf_{}", hosts[HOSTS_PER_LEAF]));

        // Nothing due, nothing new: the same leaves.
        assert!(!leaves.refresh(&hosts, now + Duration::from_secs(10)));
        assert!(Arc::ptr_eq(&leaves.tls(d.path()).leaves[&hosts[0]], distinct[0]));
        // A host removed from the last group: only that group is minted again.
        let fewer = &hosts[..hosts.len() - 1];
        assert!(leaves.refresh(fewer, now));
        let after = leaves.tls(d.path());
        assert!(Arc::ptr_eq(&after.leaves[&hosts[0]], distinct[0]));
        assert!(!Arc::ptr_eq(&after.leaves[&hosts[2 * HOSTS_PER_LEAF]], distinct[2]));
        assert_eq!(after.leaves[&hosts[2 * HOSTS_PER_LEAF]].hosts.len(), 49);
        assert!(!after.leaves.contains_key(&hosts[hosts.len() - 1]));
        // Two thirds of the validity gone: every group renewed.
        assert!(leaves.refresh(fewer, now + Duration::from_secs(2000)));
        assert!(!Arc::ptr_eq(&leaves.tls(d.path()).leaves[&hosts[0]], distinct[0]));
    }
}
