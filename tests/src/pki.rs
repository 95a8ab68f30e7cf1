//! A throwaway test CA (the control plane's own `pki`, as `ca init` makes it) and a server
//! certificate for the registry's host names.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use npm_connector::pki::{self, Ca};
use secrecy::ExposeSecret;

pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Writes `ca.pem` (and its key), `server.pem` and `server-key.pem` into `dir`; the server
/// certificate names every entry of `names` (DNS names or IP addresses) for a day.
pub fn make(dir: &Path, names: &[&str]) -> Pki {
    pki::init(dir, "npm-connector test CA").unwrap_or_else(|e| panic!("test CA: {e}"));
    leaf(dir, "server", names)
}

/// Another server certificate from the CA `make` wrote into `dir`: `<file>.pem` and
/// `<file>-key.pem`, naming `names`.
pub fn leaf(dir: &Path, file: &str, names: &[&str]) -> Pki {
    let ca = Ca::load(dir).unwrap_or_else(|e| panic!("test CA: {e}"));
    let leaf = ca.mint_leaf(names, SystemTime::now(), Duration::from_secs(86400)).unwrap_or_else(|e| panic!("{e}"));
    let pki = Pki {
        ca_cert: dir.join(pki::CA_CERT),
        server_cert: dir.join(format!("{file}.pem")),
        server_key: dir.join(format!("{file}-key.pem")),
    };
    let write = |p: &Path, s: &str| std::fs::write(p, s).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    write(&pki.server_cert, &leaf.cert_pem);
    write(&pki.server_key, leaf.key_pem.expose_secret());
    pki
}
