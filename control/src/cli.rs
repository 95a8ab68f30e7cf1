//! The subcommands of the `npm-connector` binary and what they share.

pub mod keygen;
pub mod render;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use npm_connector::render::{Key, Sealing};

/// How credentials are protected in what Envoy receives.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// Sealing key file (from `npm-connector keygen`) [default: $NPM_CONNECTOR_KEY]. Envoy needs
    /// the same key in its environment as NPM_CONNECTOR_KEY.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Put credentials in clear in Envoy's configuration, readable by anyone who can read the
    /// bootstrap or the admin API's /config_dump. Not recommended.
    #[arg(long)]
    pub plaintext_credentials: bool,
}

impl KeyArgs {
    pub fn sealing(&self) -> Result<Sealing> {
        if self.plaintext_credentials {
            eprintln!("warning: --plaintext-credentials: registry credentials will be readable in Envoy's configuration and /config_dump");
            return Ok(Sealing::Plaintext);
        }
        let text = match (&self.key_file, std::env::var(npm_connector_filter::seal::KEY_ENV)) {
            (Some(f), _) => {
                std::fs::read_to_string(f).with_context(|| format!("cannot read key file {}", f.display()))?
            }
            (None, Ok(k)) => k,
            (None, Err(_)) => bail!(
                "no sealing key: make one with `npm-connector keygen -o key`, then pass --key-file key \
                 (and give Envoy NPM_CONNECTOR_KEY=$(cat key)), or opt out with --plaintext-credentials"
            ),
        };
        let key = Key::from_base64(&text).map_err(|e| anyhow::anyhow!("sealing key: {e}"))?;
        Ok(Sealing::Key(key))
    }
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a number with an optional s, m, h or d"))?;
    if n == 0 {
        return Err("a TTL of zero would mint tokens that are already expired".into());
    }
    Ok(n * mul)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_owned() } else { std::env::current_dir()?.join(p) })
}
