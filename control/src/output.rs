//! Writing a rendered output directory: each file replaced atomically (write, then rename), and
//! files holding a credential or token created with mode 0600. Files that share their contents
//! (every connector's CA bundle) are written once and hard-linked: 10,000 connectors' bundles
//! take one bundle's space and time.

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
    // Shared contents (and their mode) → the first file written with them.
    let mut written: std::collections::HashMap<(*const u8, bool), std::path::PathBuf> = Default::default();
    for f in files {
        let path = dir.join(&f.path);
        let wrap = |source| WriteError { path: path.display().to_string(), source };
        if let Some(parent) = path.parent() {
            if made.insert(parent.to_owned()) {
                std::fs::create_dir_all(parent).map_err(wrap)?;
            }
        }
        let tmp = path.with_extension("tmp~");
        let shared = std::sync::Arc::strong_count(&f.contents) > 1;
        if let Some(first) = shared.then(|| written.get(&(f.contents.as_ptr(), f.secret))).flatten() {
            // A new link, then the same atomic rename; across file systems, a copy as below.
            let _ = std::fs::remove_file(&tmp);
            if std::fs::hard_link(first, &tmp).is_ok() {
                std::fs::rename(&tmp, &path).map_err(wrap)?;
                continue;
            }
        }
        let mode = if f.secret { 0o600 } else { 0o644 };
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(wrap)?;
        // A leftover temporary file keeps its old mode: make sure.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(wrap)?;
        // Write then rename: readers (Envoy watching an xDS directory, pods reading client
        // files) see the old file or the new one, never half of one.
        file.write_all(f.contents.as_bytes()).map_err(wrap)?;
        std::fs::rename(&tmp, &path).map_err(wrap)?;
        if shared {
            written.insert((f.contents.as_ptr(), f.secret), path.clone());
        }
    }
    Ok(())
}

/// In a rendered output directory: the files the last render wrote there, one relative path
/// per line, so the next render removes the ones it no longer writes (and nothing else).
pub const RENDERED_LIST: &str = ".npm-connector-rendered";

/// Writes `files` into `dir` like [`write`], then removes the files the previous render into
/// `dir` wrote and this one did not (a removed connector's client files, an old leaf); returns
/// those. Files the renderer never wrote are left alone.
pub fn write_owned(dir: &Path, files: &[OutFile]) -> Result<Vec<std::path::PathBuf>, WriteError> {
    let before: Vec<String> = std::fs::read_to_string(dir.join(RENDERED_LIST))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    write(dir, files)?;
    let now: std::collections::BTreeSet<String> =
        files.iter().filter(|f| f.path.is_relative()).map(|f| f.path.display().to_string()).collect();
    let list = now.iter().map(|p| format!("{p}\n")).collect::<String>();
    write(dir, &[OutFile { path: RENDERED_LIST.into(), contents: list.into(), secret: false }])?;
    let mut removed = Vec::new();
    for stale in before.iter().filter(|p| !now.contains(*p)) {
        let rel = Path::new(stale);
        // Only plain relative paths inside the directory.
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            continue;
        }
        let path = dir.join(rel);
        if std::fs::remove_file(&path).is_ok() {
            // Drop directories the removal emptied (a removed connector's <ns>/<name>/).
            let mut parent = path.parent();
            while let Some(p) = parent.filter(|p| *p != dir) {
                if std::fs::remove_dir(p).is_err() {
                    break;
                }
                parent = p.parent();
            }
            removed.push(path);
        }
    }
    Ok(removed)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str) -> OutFile {
        OutFile { path: path.into(), contents: "x".into(), secret: true }
    }

    #[test]
    fn a_render_removes_only_what_the_last_one_wrote_and_this_one_does_not() {
        let d = tempfile::tempdir().unwrap();
        write_owned(d.path(), &[f("envoy.yaml"), f("a/one/.npmrc"), f("b/two/.npmrc")]).unwrap();
        std::fs::write(d.path().join("notes.txt"), "the user's").unwrap();
        let removed = write_owned(d.path(), &[f("envoy.yaml"), f("a/one/.npmrc")]).unwrap();
        assert_eq!(removed, vec![d.path().join("b/two/.npmrc")]);
        assert!(!d.path().join("b").exists(), "emptied directories go too");
        assert!(d.path().join("a/one/.npmrc").exists() && d.path().join("notes.txt").exists());
        // A list naming paths outside the directory is ignored.
        std::fs::write(d.path().join(RENDERED_LIST), "../outside\n/etc/passwd\n").unwrap();
        assert!(write_owned(d.path(), &[f("envoy.yaml")]).unwrap().is_empty());
    }

    #[test]
    fn files_sharing_contents_are_written_once_and_linked_with_their_own_mode() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let d = tempfile::tempdir().unwrap();
        let bundle: std::sync::Arc<str> = "the bundle\n".into();
        let file = |path: &str, secret| OutFile { path: path.into(), contents: bundle.clone(), secret };
        let files = [file("a/ca-bundle.pem", false), file("b/ca-bundle.pem", false), file("c/secret.pem", true)];
        // Twice: the second render replaces links as atomically as files.
        for _ in 0..2 {
            write(d.path(), &files).unwrap();
            let meta = |p: &str| std::fs::metadata(d.path().join(p)).unwrap();
            let (a, b, c) = (meta("a/ca-bundle.pem"), meta("b/ca-bundle.pem"), meta("c/secret.pem"));
            assert_eq!(a.ino(), b.ino(), "one inode for the shared bundle");
            assert_eq!(a.nlink(), 2);
            assert_ne!(a.ino(), c.ino(), "a file of another mode is not a link to it");
            assert_eq!((a.permissions().mode() & 0o777, c.permissions().mode() & 0o777), (0o644, 0o600));
            assert_eq!(std::fs::read_to_string(d.path().join("b/ca-bundle.pem")).unwrap(), "the bundle\n");
        }
        // Contents that are equal but not shared are separate files.
        let same = |path: &str| OutFile { path: path.into(), contents: "same".into(), secret: false };
        write(d.path(), &[same("x"), same("y")]).unwrap();
        let ino = |p: &str| std::fs::metadata(d.path().join(p)).unwrap().ino();
        assert_ne!(ino("x"), ino("y"));
    }
}
