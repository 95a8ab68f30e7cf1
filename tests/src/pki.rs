//! A throwaway test CA and a server certificate for the registry's host names.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server-key.pem` into `dir`; the server certificate names
/// every entry of `names` (DNS names or IP addresses).
pub fn make(dir: &Path, names: &[&str]) -> Pki {
    let go = || -> Result<Pki, rcgen::Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "npm-connector test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let mut leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        leaf.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
        let pki = Pki {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        };
        let write = |p: &Path, s: String| std::fs::write(p, s).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        write(&pki.ca_cert, ca_cert.pem());
        write(&pki.server_cert, leaf_cert.pem());
        write(&pki.server_key, leaf_key.serialize_pem());
        Ok(pki)
    };
    go().unwrap_or_else(|e| panic!("test PKI: {e}"))
}
