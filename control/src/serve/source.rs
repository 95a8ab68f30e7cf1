//! Reading the manifests directory, laid out like a Kubernetes ConfigMap or Secret volume:
//! files at the top level (often symlinks into `..data/`, which the kubelet swaps atomically).
//! Hidden entries (`..data`, `..2026_...`) are skipped; every `*.yaml`/`*.yml`/`*.json` is read.

use std::path::Path;

use crate::manifest::{self, Connector, ManifestError};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the manifests directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("cannot read {0}: {1}")]
    File(String, std::io::Error),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Loads every connector of the directory, or says what is wrong (file, document, field).
pub fn load_dir(dir: &Path, default_namespace: &str) -> Result<Vec<Connector>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SourceError::Dir(dir.display().to_string(), e))?;
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json"))
        .collect();
    names.sort();
    let mut sources = Vec::with_capacity(names.len());
    for n in names {
        let path = dir.join(&n);
        let text = std::fs::read_to_string(&path).map_err(|e| SourceError::File(path.display().to_string(), e))?;
        sources.push((n, text));
    }
    let loaded = manifest::load_report(&sources, default_namespace)?;
    for w in manifest::warnings(&loaded.connectors) {
        log::warn!("{w}");
    }
    if loaded.connectors.is_empty() {
        log::warn!("{}", loaded.why_empty(&sources));
    }
    Ok(loaded.connectors)
}
