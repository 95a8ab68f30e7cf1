//! Reading the manifests directory, laid out like a Kubernetes ConfigMap or Secret volume:
//! files at the top level (often symlinks into `..data/`, which the kubelet swaps atomically).
//! Hidden entries (`..data`, `..2026_...`) are skipped; every `*.yaml`/`*.yml`/`*.json` is read.
//! Secrets may also come as mounted Secret volumes (`--secrets-dir`): one subdirectory per
//! Secret, named after it, one file per key.

use std::path::Path;

use crate::manifest::{self, Connector, ManifestError, SecretVolume};

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
    load(dir, None, default_namespace)
}

/// The visible (non-hidden) entries of a directory, sorted.
fn visible(dir: &Path) -> Result<Vec<String>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SourceError::Dir(dir.display().to_string(), e))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Every Secret volume under `dir`: each subdirectory is a Secret of that name; its visible
/// files (symlinks through the kubelet's `..data`, followed) are its keys. One trailing newline
/// of a value is dropped (`--from-file` keeps the file's).
pub fn read_secret_volumes(dir: &Path) -> Result<Vec<SecretVolume>, SourceError> {
    let mut out = Vec::new();
    for name in visible(dir)? {
        let sub = dir.join(&name);
        if !sub.is_dir() {
            continue;
        }
        let mut values = std::collections::BTreeMap::new();
        for key in visible(&sub)? {
            let path = sub.join(&key);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| SourceError::File(path.display().to_string(), e))?;
            let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            values.insert(key, text.to_owned());
        }
        out.push(SecretVolume { name, path: sub.display().to_string(), values });
    }
    Ok(out)
}

/// Connectors from the manifests directory, with Secrets also from `secrets` (volumes).
pub fn load(dir: &Path, secrets: Option<&Path>, default_namespace: &str) -> Result<Vec<Connector>, SourceError> {
    let volumes = match secrets {
        Some(s) => read_secret_volumes(s)?,
        None => Vec::new(),
    };
    let names: Vec<String> = visible(dir)?
        .into_iter()
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json"))
        .collect();
    let mut sources = Vec::with_capacity(names.len());
    for n in names {
        let path = dir.join(&n);
        let text = std::fs::read_to_string(&path).map_err(|e| SourceError::File(path.display().to_string(), e))?;
        sources.push((n, text));
    }
    let loaded = manifest::load_report_with(&sources, default_namespace, &volumes)?;
    for w in manifest::warnings(&loaded.connectors) {
        log::warn!("{w}");
    }
    if loaded.connectors.is_empty() {
        log::warn!("{}", loaded.why_empty(&sources));
    }
    Ok(loaded.connectors)
}
