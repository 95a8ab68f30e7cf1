//! Writing a rendered output directory: each file replaced atomically (write, then rename), and
//! files holding a credential or token created with mode 0600.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use base64::Engine as _;
use secrecy::ExposeSecret;

use crate::manifest::{Connector, Credential};
use crate::render::OutFile;

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    path: String,
    source: std::io::Error,
}

pub fn write(dir: &Path, files: &[OutFile]) -> Result<(), WriteError> {
    let mut made: std::collections::HashSet<std::path::PathBuf> = std::collections::HashSet::new();
    for f in files {
        let path = dir.join(&f.path);
        let wrap = |source| WriteError { path: path.display().to_string(), source };
        if let Some(parent) = path.parent() {
            if made.insert(parent.to_owned()) {
                std::fs::create_dir_all(parent).map_err(wrap)?;
            }
        }
        let tmp = path.with_extension("tmp~");
        let mode = if f.secret { 0o600 } else { 0o644 };
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(wrap)?;
        // A leftover temporary file keeps its old mode: make sure.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(wrap)?;
        // Write then rename: readers (Envoy watching an xDS directory, pods reading client
        // files) see the old file or the new one, never half of one.
        file.write_all(f.contents.as_bytes()).map_err(wrap)?;
        std::fs::rename(&tmp, &path).map_err(wrap)?;
    }
    Ok(())
}

/// Replaces every form in which a connector's credential could appear (plain, and as the
/// base64 of a Basic header) with `<redacted>`, for text from other tools such as Envoy's errors.
pub fn redact(text: &str, connectors: &[Connector]) -> String {
    let mut out = text.to_owned();
    for c in connectors {
        let secrets: Vec<String> = match &c.credential {
            Credential::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose_secret());
                vec![password.expose_secret().to_owned(), base64::engine::general_purpose::STANDARD.encode(pair)]
            }
            Credential::Bearer { token } => vec![token.expose_secret().to_owned()],
            Credential::Header { value, .. } => vec![value.expose_secret().to_owned()],
        };
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}
