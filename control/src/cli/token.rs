//! `npm-connector token`: mints a client token for one connector, with a TTL. The token goes to
//! standard output; only its hash (and expiry) goes into the state directory that `serve`
//! watches, so the filter accepts it within moments.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use npm_connector::render::Accepted;
use npm_connector::serve::tokens::TokenStore;
use npm_connector::token;
use secrecy::ExposeSecret;

use super::{absolute, parse_ttl};

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The connector, as namespace/name.
    #[arg(long)]
    connector: String,
    /// How long the token is valid, e.g. 30m, 2h.
    #[arg(long, value_parser = parse_ttl, default_value = "30m")]
    ttl: u64,
    /// The state directory `serve --state` uses.
    #[arg(long)]
    state: PathBuf,
}

pub fn run(a: TokenArgs) -> Result<()> {
    let valid =
        matches!(a.connector.split_once('/'), Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/'));
    if !valid {
        bail!("--connector {:?} must be namespace/name", a.connector);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let t = token::mint()?;
    let mut store = TokenStore::open(Some(&absolute(&a.state)?));
    store.add(&a.connector, Accepted { sha256: token::hash(&t), expires_at: Some(now + a.ttl) })?;
    eprintln!("token for {} valid for {} s (until unix time {})", a.connector, a.ttl, now + a.ttl);
    println!("{}", t.expose_secret());
    Ok(())
}
