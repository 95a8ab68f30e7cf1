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
    for f in files {
        let path = dir.join(&f.path);
        let wrap = |source| WriteError { path: path.display().to_string(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(wrap)?;
        }
        let tmp = path.with_extension("tmp~");
        let mode = if f.secret { 0o600 } else { 0o644 };
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(wrap)?;
        file.write_all(f.contents.as_bytes()).map_err(wrap)?;
        file.sync_all().map_err(wrap)?;
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
