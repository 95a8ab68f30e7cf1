//! The engine without the network: snapshots per node, bad manifests, expiry warnings.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::render::{Key, Mode, Sealing};
use crate::token::TokenError;

struct Counter(u32);

impl Entropy for Counter {
    fn token(&mut self) -> Result<SecretString, TokenError> {
        self.0 += 1;
        Ok(SecretString::from(format!("npmc_test{}", self.0)))
    }
}

fn manifest(expiry: Option<&str>) -> String {
    let ann = expiry.map(|e| format!("  annotations:\n    npm-connector.io/expires-at: \"{e}\"\n")).unwrap_or_default();
    format!(
        "kind: Secret\nmetadata:\n  name: s\n{ann}type: kubernetes.io/basic-auth\nstringData:\n  username: u\n  password: p\n---\n\
         kind: Connector\nmetadata:\n  name: npm\nspec:\n  connectorClassName: npm\n  address: https://registry.example/npm\n\
         \x20 auth:\n    name: basicAuth\n    secretRef:\n      name: s\n"
    )
}

fn engine(dir: &std::path::Path, clients: Option<std::path::PathBuf>) -> Engine {
    engine_with_keys(dir, clients, None)
}

fn engine_with_keys(
    dir: &std::path::Path,
    clients: Option<std::path::PathBuf>,
    keys: Option<&std::path::Path>,
) -> Engine {
    let opts = Options::new(Mode::Gateway, "127.0.0.1:10000".parse().unwrap(), Sealing::Key(Key::from_bytes([1; 32])));
    let cfg = ServeConfig {
        manifests: dir.to_owned(),
        secrets: None,
        namespace: "ns".into(),
        opts,
        xds_addr: "127.0.0.1:0".parse().unwrap(),
        state: None,
        clients,
        token_ttl: 100,
        token_keys: keys.map(std::path::Path::to_owned),
        debounce: Duration::from_millis(1),
        tick: Duration::from_secs(1),
        tls: None,
        metrics_addr: None,
        exchange: None,
        xds_tls: None,
    };
    Engine::new(cfg, Box::new(Counter(0))).unwrap()
}

fn node(id: &str, port: u16) -> NodeInfo {
    NodeInfo { id: id.into(), listen: Some(format!("127.0.0.1:{port}").parse().unwrap()) }
}

#[test]
fn nodes_get_their_own_listener_and_bad_manifests_keep_the_last_good() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.yaml"), manifest(None)).unwrap();
    let mut e = engine(d.path(), None);
    let a = e.snapshot(&node("a", 10001)).unwrap();
    let b = e.snapshot(&node("b", 10002)).unwrap();
    assert_ne!(a.types[crate::xds::LISTENER].version, b.types[crate::xds::LISTENER].version);
    assert_eq!(a.types[crate::xds::CLUSTER].version, b.types[crate::xds::CLUSTER].version);

    std::fs::write(d.path().join("c.yaml"), "kind: Connector\nspec: [").unwrap();
    e.reload();
    assert_eq!(e.snapshot(&node("a", 10001)).unwrap(), a, "the last good manifests still render");
}

#[test]
fn tokens_minted_for_clients_reach_the_snapshot_only_as_hashes() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.yaml"), manifest(None)).unwrap();
    let clients = tempfile::tempdir().unwrap();
    let mut e = engine(d.path(), Some(clients.path().to_owned()));
    let before = e.snapshot(&node("a", 1)).unwrap();
    assert!(e.tick(1000), "first tick mints");
    assert!(!e.tick(1040), "not due before half the TTL");
    assert!(e.tick(1050), "due at half the TTL");
    let after = e.snapshot(&node("a", 1)).unwrap();
    assert_ne!(before.types[crate::xds::EXTENSION_CONFIG].version, after.types[crate::xds::EXTENSION_CONFIG].version);
    assert_eq!(
        before.types[crate::xds::LISTENER].version,
        after.types[crate::xds::LISTENER].version,
        "listeners untouched"
    );
    let npmrc = std::fs::read_to_string(clients.path().join("ns/npm/.npmrc")).unwrap();
    assert!(npmrc.contains("npmc_test2"));
    let bytes: Vec<u8> =
        after.types[crate::xds::EXTENSION_CONFIG].resources.iter().flat_map(|r| r.any.value.clone()).collect();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("npmc_test") && text.contains(&crate::token::hash(&SecretString::from("npmc_test2".to_owned())))
    );
}

/// With token keys, tokens are signed: minting (for client files, and 10,000 more as the
/// exchange endpoint would) changes no resource; the keys reach the filter sealed; a key
/// removed from the directory leaves the configuration on reload.
#[test]
fn signed_tokens_change_no_resource_and_keys_reach_the_filter_sealed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.yaml"), manifest(None)).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k1, k2) = (Key::from_bytes([5; 32]), Key::from_bytes([6; 32]));
    std::fs::write(keys.path().join("k1"), k1.to_base64()).unwrap();
    std::fs::write(keys.path().join("k2"), k2.to_base64()).unwrap();
    let clients = tempfile::tempdir().unwrap();
    let mut e = engine_with_keys(d.path(), Some(clients.path().to_owned()), Some(keys.path()));
    let before = e.snapshot(&node("a", 1)).unwrap();
    assert!(!e.tick(1000), "minting a signed token changes no configuration");
    for i in 0..10_000u64 {
        let t = e.token_keys.mint("ns/npm", 2000 + i).unwrap().unwrap();
        assert!(t.expose_secret().starts_with("npmc_s1."));
    }
    assert_eq!(e.snapshot(&node("a", 1)).unwrap(), before, "10,000 mints: nothing to push");
    let npmrc = std::fs::read_to_string(clients.path().join("ns/npm/.npmrc")).unwrap();
    assert!(npmrc.contains("_authToken=npmc_s1."), "{npmrc}");
    let ecds = |s: &Snapshot| -> String {
        let bytes: Vec<u8> =
            s.types[crate::xds::EXTENSION_CONFIG].resources.iter().flat_map(|r| r.any.value.clone()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let text = ecds(&before);
    assert!(text.contains(r#""kid":"k1""#) && text.contains(r#""kid":"k2""#) && text.contains("sealed"), "{text}");
    assert!(!text.contains(&k1.to_base64()) && !text.contains(&k2.to_base64()));
    // Removing k1 revokes its tokens: the configuration changes on reload.
    std::fs::remove_file(keys.path().join("k1")).unwrap();
    assert!(e.reload());
    let after = ecds(&e.snapshot(&node("a", 1)).unwrap());
    assert!(!after.contains(r#""kid":"k1""#) && after.contains(r#""kid":"k2""#));
    // A bad key file keeps the last good keys.
    std::fs::write(keys.path().join("k3"), "short").unwrap();
    e.reload();
    assert_eq!(ecds(&e.snapshot(&node("a", 1)).unwrap()), after);
}

#[test]
fn expiry_warnings_come_within_the_last_tenth_once() {
    let d = tempfile::tempdir().unwrap();
    // Expires 1000 s after it is first seen.
    let start = now();
    let exp = humantime::format_rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(start + 1000)).to_string();
    std::fs::write(d.path().join("c.yaml"), manifest(Some(&exp))).unwrap();
    let mut e = engine(d.path(), None);
    assert!(e.check_expiry(start + 850).is_empty(), "15% left: quiet");
    let w = e.check_expiry(start + 901);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("ns/npm") && w[0].contains("expires in 99 s"), "{w:?}");
    assert!(e.check_expiry(start + 950).is_empty(), "said once");
}

/// `serve` refuses an http registry like `render` does (file, document, field), and keeps the
/// connectors it had; with the opt-in annotation it loads it.
#[test]
fn serve_refuses_a_cleartext_registry_without_the_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let http = manifest(None).replace("https://", "http://");
    std::fs::write(dir.path().join("c.yaml"), &http).unwrap();
    let e = source::load_dir(dir.path(), "ns").unwrap_err().to_string();
    assert!(e.starts_with("c.yaml, document 2, spec.address:") && e.contains("allow-cleartext"), "{e}");
    let opted =
        http.replace("  name: npm\n", "  name: npm\n  annotations:\n    npm-connector.io/allow-cleartext: \"true\"\n");
    std::fs::write(dir.path().join("c.yaml"), opted).unwrap();
    let cs = source::load_dir(dir.path(), "ns").unwrap();
    assert_eq!(cs[0].address.scheme(), "http");
}

/// Removing the last connector revokes it: the snapshot has no cluster, no route and a filter
/// configuration without connectors (gateway and https-proxy).
#[test]
fn an_empty_manifest_set_revokes_every_connector() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.yaml"), manifest(None)).unwrap();
    let mut e = engine(d.path(), None);
    let before = e.snapshot(&node("a", 1)).unwrap();
    assert_eq!(before.types[crate::xds::CLUSTER].resources.len(), 1);
    std::fs::write(d.path().join("c.yaml"), "# nothing here any more\n").unwrap();
    e.reload();
    let after = e.snapshot(&node("a", 1)).unwrap();
    assert!(after.types[crate::xds::CLUSTER].resources.is_empty());
    let bytes: Vec<u8> =
        after.types[crate::xds::EXTENSION_CONFIG].resources.iter().flat_map(|r| r.any.value.clone()).collect();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(r#""connectors":[]"#) && !text.contains("ns/npm"), "{text}");
}

/// A manifests directory that is gone (an unmounted volume) is an error, not an empty set:
/// the last good snapshot stays.
#[test]
fn a_missing_directory_keeps_the_last_good_snapshot() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("c.yaml"), manifest(None)).unwrap();
    let mut e = engine(&dir, None);
    let before = e.snapshot(&node("a", 1)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    e.reload();
    assert_eq!(e.snapshot(&node("a", 1)).unwrap(), before);
    assert!(source::load_dir(&dir, "ns").unwrap_err().to_string().contains("cannot read the manifests directory"));
}

/// A Secret mounted as a volume (kubelet layout: files are symlinks through `..data`) is found
/// by a Connector's secretRef; its kind follows from its keys.
#[test]
fn secrets_come_from_mounted_volumes() {
    use std::os::unix::fs::symlink;
    let d = tempfile::tempdir().unwrap();
    let manifests = d.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let only_connector = manifest(None).split("---\n").nth(1).unwrap().to_owned();
    std::fs::write(manifests.join("c.yaml"), &only_connector).unwrap();
    let vol = d.path().join("secrets/s");
    std::fs::create_dir_all(vol.join("..2026_11_22")).unwrap();
    std::fs::write(vol.join("..2026_11_22/username"), "vol-user").unwrap();
    std::fs::write(vol.join("..2026_11_22/password"), "vol-pass\n").unwrap();
    symlink("..2026_11_22", vol.join("..data")).unwrap();
    for k in ["username", "password"] {
        symlink(format!("..data/{k}"), vol.join(k)).unwrap();
    }
    let cs = source::load(&manifests, Some(&d.path().join("secrets")), "ns").unwrap();
    match &cs[0].credential {
        crate::manifest::Credential::Basic { username, password } => {
            assert_eq!(username, "vol-user");
            assert_eq!(password.expose_secret(), "vol-pass", "one trailing newline dropped");
        }
        other => panic!("{other:?}"),
    }
    // Without the volume, the error says where Secrets may come from.
    let e = source::load(&manifests, None, "ns").unwrap_err().to_string();
    assert!(e.contains("no Secret ns/s in the given files or Secret volumes (--secrets-dir)"), "{e}");
    // A volume missing a key names the file.
    std::fs::remove_file(vol.join("password")).unwrap();
    let e = source::load(&manifests, Some(&d.path().join("secrets")), "ns").unwrap_err().to_string();
    assert!(e.contains("secrets/s, file password: missing"), "{e}");
}
