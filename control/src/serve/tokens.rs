//! Client tokens the filter accepts, as hashes with expiry times, kept in a state directory so
//! that they survive a restart of `serve`: `<state>/tokens/<namespace>/<name>/<sha256>.json`.
//! `npm-connector token` adds to the same directory. Plain tokens are never stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::output;
use crate::render::{Accepted, OutFile};

#[derive(Debug, Default, Clone)]
pub struct TokenStore {
    dir: Option<PathBuf>,
    by_connector: BTreeMap<String, Vec<Accepted>>,
}

#[derive(Debug, thiserror::Error)]
#[error("token store {0}: {1}")]
pub struct StoreError(String, String);

impl TokenStore {
    /// A store persisted under `state` (or only in memory without one).
    pub fn open(state: Option<&Path>) -> Self {
        TokenStore { dir: state.map(|s| s.join("tokens")), by_connector: BTreeMap::new() }
    }

    /// Reloads what is on disk (other processes add tokens); keeps in-memory-only entries.
    pub fn reload(&mut self) {
        let Some(dir) = &self.dir else { return };
        let mut found: BTreeMap<String, Vec<Accepted>> = BTreeMap::new();
        let read = |p: &Path| std::fs::read_dir(p).into_iter().flatten().filter_map(Result::ok);
        for ns in read(dir) {
            for name in read(&ns.path()) {
                for f in read(&name.path()) {
                    let fname = f.file_name().to_string_lossy().into_owned();
                    let Some(sha256) = fname.strip_suffix(".json") else { continue };
                    let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                    let expires_at = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v.get("expires_at").and_then(serde_json::Value::as_u64));
                    let id = format!("{}/{}", ns.file_name().to_string_lossy(), name.file_name().to_string_lossy());
                    found.entry(id).or_default().push(Accepted { sha256: sha256.to_owned(), expires_at });
                }
            }
        }
        for (id, list) in found {
            let have = self.by_connector.entry(id).or_default();
            for a in list {
                if !have.contains(&a) {
                    have.push(a);
                }
            }
        }
    }

    /// Adds a token's hash for a connector, on disk too when there is a state directory.
    pub fn add(&mut self, connector: &str, a: Accepted) -> Result<(), StoreError> {
        if let Some(dir) = &self.dir {
            let body = serde_json::json!({"expires_at": a.expires_at}).to_string();
            let file = OutFile {
                path: PathBuf::from(connector).join(format!("{}.json", a.sha256)),
                contents: body.into(),
                secret: true,
            };
            output::write(dir, &[file]).map_err(|e| StoreError(dir.display().to_string(), e.to_string()))?;
        }
        let have = self.by_connector.entry(connector.to_owned()).or_default();
        if !have.contains(&a) {
            have.push(a);
        }
        Ok(())
    }

    /// Forgets tokens that expired before `cutoff` (and their files); returns whether anything
    /// went. `serve` keeps them for a grace period so their holders hear "token expired".
    pub fn prune(&mut self, cutoff: u64) -> bool {
        let mut changed = false;
        for (id, list) in self.by_connector.iter_mut() {
            list.retain(|a| {
                let keep = a.expires_at.is_none_or(|e| e > cutoff);
                if !keep {
                    changed = true;
                    if let Some(dir) = &self.dir {
                        let _ = std::fs::remove_file(dir.join(id).join(format!("{}.json", a.sha256)));
                    }
                }
                keep
            });
        }
        changed
    }

    /// What the filter should accept now, by connector id.
    pub fn accepted(&self) -> &BTreeMap<String, Vec<Accepted>> {
        &self.by_connector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_persist_reload_and_expire() {
        let d = tempfile::tempdir().unwrap();
        let mut a = TokenStore::open(Some(d.path()));
        a.add("ns/x", Accepted { sha256: "aa".repeat(32), expires_at: Some(100) }).unwrap();
        a.add("ns/x", Accepted { sha256: "bb".repeat(32), expires_at: None }).unwrap();
        let mut b = TokenStore::open(Some(d.path()));
        b.reload();
        assert_eq!(b.accepted()["ns/x"].len(), 2);
        assert!(b.prune(100));
        assert_eq!(b.accepted()["ns/x"], vec![Accepted { sha256: "bb".repeat(32), expires_at: None }]);
        let mut c = TokenStore::open(Some(d.path()));
        c.reload();
        assert_eq!(c.accepted()["ns/x"].len(), 1, "pruned from disk too");
        assert!(!c.prune(100));
    }
}
