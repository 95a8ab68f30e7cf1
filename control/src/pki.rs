//! The connector CA (for HTTPS-proxy mode): `ca init` makes it, `render`/`serve` mint short-lived
//! leaf certificates for registry hosts with it. The CA's private key stays in the control
//! plane's directory (0600); Envoy only ever gets leaves and their keys.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use secrecy::{ExposeSecret, SecretString};

use crate::output;
use crate::render::{LeafPem, OutFile};

mod leaves;
pub use leaves::{Leaves, TlsConfig};

/// How many registry hosts one leaf names. Envoy builds an SSL context per certificate (about
/// 0.6 ms and 45 KB each), so 10,000 one-host leaves made Envoy take 8 s and 750 MB to start;
/// every leaf key lives in the same Envoy anyway, so sharing a leaf widens nothing a leaked key
/// would give. What it does show: a client sees the other hosts its leaf names.
pub const HOSTS_PER_LEAF: usize = 100;

/// `hosts` (sorted) in the groups that share a leaf.
pub fn leaf_groups(hosts: &[String]) -> std::slice::Chunks<'_, String> {
    hosts.chunks(HOSTS_PER_LEAF)
}

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0} already has a CA ({CA_CERT}); remove it first if you mean to replace it")]
    Exists(String),
    #[error("cannot read the CA in {0}: {1}")]
    Read(String, std::io::Error),
    #[error("cannot read the trust bundle {0}: {1}")]
    Io(String, std::io::Error),
    #[error("certificate work failed: {0}")]
    Cert(String),
    #[error(transparent)]
    Write(#[from] output::WriteError),
}

fn cert_err(e: rcgen::Error) -> PkiError {
    PkiError::Cert(e.to_string())
}

/// A loaded CA: its certificate and key (the key only in memory, never logged).
pub struct Ca {
    pub cert_pem: String,
    key_pem: SecretString,
}

/// A leaf certificate for one registry host.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: SecretString,
    /// Unix seconds.
    pub not_after: u64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn odt(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix(t) as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Creates a CA in `dir` (`ca.pem` 0644, `ca-key.pem` 0600), valid for ten years.
pub fn init(dir: &Path, name: &str) -> Result<PathBuf, PkiError> {
    if dir.join(CA_CERT).exists() {
        return Err(PkiError::Exists(dir.display().to_string()));
    }
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = SystemTime::now();
    p.not_before = odt(now - Duration::from_secs(3600));
    p.not_after = odt(now + Duration::from_secs(10 * 365 * 86400));
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = p.self_signed(&key).map_err(cert_err)?;
    output::write(
        dir,
        &[
            OutFile { path: CA_CERT.into(), contents: cert.pem().into(), secret: false },
            OutFile { path: CA_KEY.into(), contents: key.serialize_pem().into(), secret: true },
        ],
    )?;
    Ok(dir.join(CA_CERT))
}

impl Ca {
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let read =
            |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| PkiError::Read(dir.display().to_string(), e));
        Ok(Ca { cert_pem: read(CA_CERT)?, key_pem: SecretString::from(read(CA_KEY)?) })
    }

    /// Mints a leaf naming `hosts` (DNS names or IP addresses; the first is also the common
    /// name), valid from an hour ago for `validity`, signed by this CA.
    pub fn mint_leaf(&self, hosts: &[&str], now: SystemTime, validity: Duration) -> Result<Leaf, PkiError> {
        self.mint(hosts, now, validity, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// The leaf of a group of registry hosts (see [`leaf_groups`]), and its expiry.
    pub fn mint_group(
        &self,
        hosts: &[String],
        now: SystemTime,
        validity: Duration,
    ) -> Result<(std::sync::Arc<LeafPem>, u64), PkiError> {
        let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let l = self.mint_leaf(&names, now, validity)?;
        Ok((LeafPem { hosts: hosts.to_vec(), cert: l.cert_pem, key: l.key_pem }.into(), l.not_after))
    }

    /// A client certificate (an Envoy's, for mutual TLS with serve's xDS port), named like a leaf.
    pub fn mint_client(&self, names: &[&str], now: SystemTime, validity: Duration) -> Result<Leaf, PkiError> {
        self.mint(names, now, validity, rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn mint(
        &self,
        hosts: &[&str],
        now: SystemTime,
        validity: Duration,
        purpose: rcgen::ExtendedKeyUsagePurpose,
    ) -> Result<Leaf, PkiError> {
        let ca_key = KeyPair::from_pem(self.key_pem.expose_secret()).map_err(cert_err)?;
        let ca_params = CertificateParams::from_ca_cert_pem(&self.cert_pem).map_err(cert_err)?;
        let issuer = ca_params.self_signed(&ca_key).map_err(cert_err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        for host in hosts {
            p.subject_alt_names.push(match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*host).try_into().map_err(cert_err)?),
            });
        }
        p.distinguished_name.push(DnType::CommonName, hosts.first().copied().unwrap_or("npm-connector"));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![purpose];
        p.not_before = odt(now - Duration::from_secs(3600));
        let not_after = now + validity;
        p.not_after = odt(not_after);
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = p.signed_by(&key, &issuer, &ca_key).map_err(cert_err)?;
        Ok(Leaf { cert_pem: cert.pem(), key_pem: SecretString::from(key.serialize_pem()), not_after: unix(not_after) })
    }
}

/// A leaf is renewed once two thirds of its validity have passed.
pub fn needs_renewal(leaf_not_after: u64, validity: Duration, now: SystemTime) -> bool {
    unix(now) + validity.as_secs() / 3 >= leaf_not_after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_is_signed_by_the_ca_names_its_host_and_expires() {
        let d = tempfile::tempdir().unwrap();
        init(d.path(), "npm-connector test CA").unwrap();
        assert!(matches!(init(d.path(), "again"), Err(PkiError::Exists(_))), "never overwrites a CA");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join(CA_KEY)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let ca = Ca::load(d.path()).unwrap();
        let now = SystemTime::now();
        let leaf = ca.mint_leaf(&["registry.example.com"], now, Duration::from_secs(24 * 3600)).unwrap();
        let (_, ca_der) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes()).unwrap();
        let (_, leaf_der) = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap();
        let ca_cert = ca_der.parse_x509().unwrap();
        let leaf_cert = leaf_der.parse_x509().unwrap();
        leaf_cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(leaf_cert.issuer(), ca_cert.subject());
        let san = leaf_cert.subject_alternative_name().unwrap().unwrap();
        assert!(format!("{:?}", san.value.general_names).contains("registry.example.com"));
        assert!(!leaf_cert.is_ca());
        assert_eq!(leaf_cert.validity().not_after.timestamp() as u64, leaf.not_after);

        let ip_leaf = ca.mint_leaf(&["127.0.0.1", "registry.example.com"], now, Duration::from_secs(60)).unwrap();
        assert!(ip_leaf.cert_pem.contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn renewal_after_two_thirds() {
        let v = Duration::from_secs(3000);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let not_after = 1_000_000 + 3000;
        assert!(!needs_renewal(not_after, v, t0 + Duration::from_secs(1999)));
        assert!(needs_renewal(not_after, v, t0 + Duration::from_secs(2000)));
    }
}
