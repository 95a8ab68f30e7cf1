//! `npm-connector ca init`: the connector CA for HTTPS-proxy mode (its key stays in DIR, 0600).

use std::path::PathBuf;

use anyhow::Result;
use npm_connector::pki;

#[derive(clap::Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCmd,
}

#[derive(clap::Subcommand)]
enum CaCmd {
    /// Create the CA in a directory: ca.pem (give it to clients as cafile) and ca-key.pem (0600).
    Init {
        /// The control plane's directory for the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "npm-connector CA")]
        name: String,
    },
}

pub fn run(a: CaArgs) -> Result<()> {
    match a.command {
        CaCmd::Init { dir, name } => {
            let cert = pki::init(&dir, &name)?;
            println!("created {} (clients trust it); the key stays in {}", cert.display(), dir.display());
        }
    }
    Ok(())
}
