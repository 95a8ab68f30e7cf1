//! `npm-connector ca init`: the connector CA for HTTPS-proxy mode (its key stays in DIR, 0600);
//! `ca leaf`: a server certificate from it (the token exchange's, `serve --token-tls-cert`).

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
    /// Issue a server (or --client) certificate from the CA: <out>/tls.crt and <out>/tls.key (0600).
    Leaf {
        /// The CA's directory (from `ca init`).
        #[arg(long)]
        dir: PathBuf,
        /// DNS names or IP addresses the certificate is for (repeat).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Where to write tls.crt and tls.key.
        #[arg(long)]
        out: PathBuf,
        /// Validity, e.g. 90d.
        #[arg(long, value_parser = super::parse_ttl, default_value = "90d")]
        ttl: u64,
        /// A client certificate (an Envoy's, for `render --xds-client-cert`), not a server's.
        #[arg(long)]
        client: bool,
    },
}

pub fn run(a: CaArgs) -> Result<()> {
    match a.command {
        CaCmd::Init { dir, name } => {
            let cert = pki::init(&dir, &name)?;
            println!("created {} (clients trust it); the key stays in {}", cert.display(), dir.display());
        }
        CaCmd::Leaf { dir, hosts, out, ttl, client } => {
            let ca = pki::Ca::load(&dir)?;
            let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let (now, validity) = (std::time::SystemTime::now(), std::time::Duration::from_secs(ttl));
            let leaf =
                if client { ca.mint_client(&names, now, validity)? } else { ca.mint_leaf(&names, now, validity)? };
            use secrecy::ExposeSecret as _;
            let files = [
                npm_connector::render::OutFile {
                    path: "tls.crt".into(),
                    contents: leaf.cert_pem.into(),
                    secret: false,
                },
                npm_connector::render::OutFile {
                    path: "tls.key".into(),
                    contents: leaf.key_pem.expose_secret().into(),
                    secret: true,
                },
            ];
            npm_connector::output::write(&out, &files)?;
            println!("wrote {0}/tls.crt and {0}/tls.key for {1}", out.display(), hosts.join(", "));
        }
    }
    Ok(())
}
