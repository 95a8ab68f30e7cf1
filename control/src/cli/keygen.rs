//! `npm-connector keygen`: a fresh 256-bit sealing key, base64, written 0600.

use std::path::PathBuf;

use anyhow::Result;
use npm_connector::render::OutFile;
use npm_connector::{output, token};

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Write the key to this file (mode 0600) instead of standard output.
    #[arg(short = 'o', long = "output")]
    out: Option<PathBuf>,
    /// Replace an existing key file. Every credential sealed with the old key stops opening
    /// until Envoy and every renderer get the new key.
    #[arg(long, requires = "out")]
    force: bool,
}

pub fn run(a: KeygenArgs) -> Result<()> {
    let key = token::new_key()?.to_base64();
    match a.out {
        None => println!("{key}"),
        Some(path) => {
            if path.exists() && !a.force {
                anyhow::bail!(
                    "{} exists: it may be the key Envoy opens credentials with; pass --force to replace it",
                    path.display()
                );
            }
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            let name = path.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("key"));
            output::write(&dir, &[OutFile { path: name, contents: format!("{key}\n").into(), secret: true }])?;
            eprintln!("wrote {}; give Envoy NPM_CONNECTOR_KEY=$(cat {})", path.display(), path.display());
        }
    }
    Ok(())
}
