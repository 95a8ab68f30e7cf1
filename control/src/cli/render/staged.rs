//! Validation before anything is written: the rendered files go to a staging directory next
//! to the output (paths in them rewritten to point there), Envoy validates the staged
//! bootstrap, and the staging directory is removed whatever the verdict.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use npm_connector::manifest::Connector;
use npm_connector::output;
use npm_connector::render::{OutFile, Sealing};

/// Removes the staging directory when dropped.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn validate(
    envoy: &Path,
    files: &[OutFile],
    out: &Path,
    xds_dir: Option<&Path>,
    sealing: &Sealing,
    connectors: &[Connector],
) -> Result<()> {
    let parent = out.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = Staging(parent.join(format!(".npm-connector-staging-{}", std::process::id())));
    let (stage_out, stage_xds) = (staging.0.join("out"), staging.0.join("xds"));
    // Longest first, so an xDS directory inside the output maps to its own staged place.
    let mut moves: Vec<(String, String)> = vec![(dir_str(out), dir_str(&stage_out))];
    if let Some(x) = xds_dir {
        moves.push((dir_str(x), dir_str(&stage_xds)));
    }
    moves.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    let relocate = |text: &str| moves.iter().fold(text.to_owned(), |t, (from, to)| replace_dir(&t, from, to));
    // Files that share their contents (every connector's CA bundle) are relocated once and
    // still share it, so the staged copy is written once too.
    let mut shared: std::collections::HashMap<*const u8, std::sync::Arc<str>> = Default::default();
    let staged: Vec<OutFile> = files
        .iter()
        .map(|f| {
            let path = if f.path.is_relative() { out.join(&f.path) } else { f.path.clone() };
            let contents = shared.entry(f.contents.as_ptr()).or_insert_with(|| relocate(&f.contents).into()).clone();
            OutFile { path: PathBuf::from(relocate(&path.display().to_string())), contents, secret: f.secret }
        })
        .collect();
    output::write(Path::new("/"), &staged)?;
    let bootstrap = stage_out.join(npm_connector::render::bootstrap_path(files));
    // Validation opens the sealed credentials too, so Envoy needs the key as well.
    let mut cmd = Command::new(envoy);
    if let Sealing::Key(k) = sealing {
        cmd.env(npm_connector_filter::seal::KEY_ENV, k.to_base64());
    }
    let res = cmd
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(&bootstrap)
        .output()
        .with_context(|| format!("cannot run {}", envoy.display()))?;
    if !res.status.success() {
        // Envoy may quote the configuration it rejects: never print the credential.
        let said = format!("{}{}", String::from_utf8_lossy(&res.stdout), String::from_utf8_lossy(&res.stderr));
        let said = replace_dir(&output::redact(&said, connectors), &dir_str(&stage_out), &dir_str(out));
        bail!(
            "Envoy ({}) rejected the rendered bootstrap; nothing was written to {}:\n{said}",
            envoy.display(),
            out.display()
        );
    }
    Ok(())
}

fn dir_str(dir: &Path) -> String {
    dir.display().to_string().trim_end_matches('/').to_owned()
}

/// Replaces the directory `from` with `to` where it stands as a whole path or a path prefix
/// (followed by '/', a quote, whitespace or the end), so `/out` never matches `/output`.
fn replace_dir(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let whole = after.chars().next().is_none_or(|c| c == '/' || c == '"' || c == '\'' || c.is_whitespace());
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn directories_are_replaced_only_as_whole_paths() {
        let t = "path: /o/xds\nfile: /o/xds/lds.json\nother: /o/xdsy \"/o/xds\"";
        assert_eq!(
            super::replace_dir(t, "/o/xds", "/s/xds"),
            "path: /s/xds\nfile: /s/xds/lds.json\nother: /o/xdsy \"/s/xds\""
        );
    }
}
