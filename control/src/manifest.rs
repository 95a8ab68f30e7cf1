//! Connector and Secret manifests (Kubernetes-style, multi-document YAML) parsed into raw types,
//! then resolved into validated connectors with their credentials.

use std::collections::BTreeMap;

use base64::Engine as _;
use secrecy::SecretString;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// Annotation on a Connector that sends its token Secret in a header of that name instead of
/// `Authorization: Bearer` (GitLab's `Private-Token`, for example).
pub const AUTH_HEADER_ANNOTATION: &str = "npm-connector.io/auth-header";

/// Annotation on a Secret: when its credential expires (RFC 3339). `serve` warns as the
/// expiry nears and the Secret has not changed.
pub const EXPIRES_AT_ANNOTATION: &str = "npm-connector.io/expires-at";
/// On a Connector: the npm scope (`@acme`) it serves; client files then configure only that
/// scope's registry (`@acme:registry=`), as GitLab's instance-level endpoint is used.
pub const SCOPE_ANNOTATION: &str = "npm-connector.io/scope";
/// On a Connector: where packages are published if not at `spec.address` (GitLab's
/// project-level `/api/v4/projects/<id>/packages/npm/`). Same scheme, host and port.
pub const PUBLISH_ANNOTATION: &str = "npm-connector.io/publish-address";
/// On a Connector: `"true"` accepts an `http://` registry, whose credential then travels in
/// clear (a warning on every render). Without it an http address is refused.
pub const CLEARTEXT_ANNOTATION: &str = "npm-connector.io/allow-cleartext";
/// On a Connector: `host[:port]` list (comma-separated, port 443 by default) that https-proxy
/// mode tunnels blind even under `--unmatched deny`: the CDN a registry redirects tarball
/// downloads to. Never intercepted, never given a credential.
pub const TUNNEL_HOSTS_ANNOTATION: &str = "npm-connector.io/tunnel-hosts";
/// On a Connector: subjects (`sub` claims of ID tokens from a configured issuer) that may
/// exchange their token for this connector's, besides the ServiceAccounts of its namespace:
/// comma-separated patterns where `*` matches any run of characters and `?` one
/// (`system:serviceaccount:build:*`, `repo:acme/app:ref:refs/heads/main`).
pub const ALLOWED_SUBJECTS_ANNOTATION: &str = "npm-connector.io/allowed-subjects";

fn parse_time(t: &str) -> Option<u64> {
    let st = humantime::parse_rfc3339_weak(t.trim()).ok()?;
    st.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// What is wrong, and where: file, 1-based document number (0: not a YAML document, such as
/// a Secret volume) and field path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}, {}{field}: {message}", if *.doc == 0 { String::new() } else { format!("document {}, ", .doc) })]
pub struct ManifestError {
    pub file: String,
    pub doc: usize,
    pub field: String,
    pub message: String,
}

/// A Kubernetes Secret mounted as a volume: a directory named after the Secret, one file per
/// key (the kubelet's `..data` indirection resolved by the reader).
#[derive(Debug, Clone)]
pub struct SecretVolume {
    pub name: String,
    /// Where it was read, for messages.
    pub path: String,
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: Metadata,
    #[serde(rename = "type", default)]
    type_: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, Value>,
    #[serde(rename = "stringData", default)]
    string_data: BTreeMap<String, Value>,
    #[serde(rename = "immutable")]
    _immutable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: Metadata,
    spec: RawSpec,
    #[serde(rename = "status")]
    _status: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(rename = "connectorClassName")]
    connector_class_name: String,
    address: String,
    auth: Option<RawAuth>,
    #[serde(rename = "params")]
    _params: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    name: String,
    #[serde(rename = "secretRef")]
    secret_ref: SecretRef,
    #[serde(rename = "params")]
    _params: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRef {
    name: String,
    namespace: Option<String>,
}

/// The registry credential a connector injects.
#[derive(Debug)]
pub enum Credential {
    Basic { username: String, password: SecretString },
    Bearer { token: SecretString },
    Header { name: String, value: SecretString },
}

impl Credential {
    /// A hash of the credential, to notice that it changed without keeping or logging it.
    pub fn fingerprint(&self) -> [u8; 32] {
        use secrecy::ExposeSecret;
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        match self {
            Credential::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.expose_secret().as_bytes());
            }
            Credential::Bearer { token } => {
                h.update(b"bearer\0");
                h.update(token.expose_secret().as_bytes());
            }
            Credential::Header { name, value } => {
                h.update(b"header\0");
                h.update(name.as_bytes());
                h.update(b"\0");
                h.update(value.expose_secret().as_bytes());
            }
        }
        h.finalize().into()
    }
}

/// A validated npm connector.
#[derive(Debug)]
pub struct Connector {
    pub namespace: String,
    pub name: String,
    /// The registry URL, with a path that ends in '/'.
    pub address: url::Url,
    pub credential: Credential,
    /// When the credential stops working (the Secret's expiry annotation), Unix seconds.
    pub credential_expires_at: Option<u64>,
    /// The npm scope (`@acme`) this connector serves, if scoped.
    pub scope: Option<String>,
    /// The publish registry URL, if not `address` (same origin, path ends in '/').
    pub publish: Option<url::Url>,
    /// `host:port`s https-proxy mode may tunnel blind for this connector's clients (a CDN).
    pub tunnel_hosts: Vec<String>,
    /// Subject patterns allowed to exchange an ID token for this connector's token.
    pub allowed_subjects: Vec<String>,
}

impl Connector {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

mod docs;
mod resolve;

use docs::Parsed;
use resolve::resolve;
pub use resolve::warnings;

/// A Secret's values, decoded; kept only until connectors are resolved.
struct Secret {
    type_: Option<String>,
    values: BTreeMap<String, String>,
    expires_at: Option<u64>,
    at: (String, usize),
    /// From a Secret volume (keys are files), not a YAML document.
    volume: bool,
}

struct Pending {
    connector: RawConnector,
    namespace: String,
    at: (String, usize),
}

fn err(at: &(String, usize), field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError { file: at.0.clone(), doc: at.1, field: field.into(), message: message.into() }
}

/// serde names offending values in its messages; a Secret's value must never be echoed, so keep
/// only messages about fields and say "wrong type" otherwise.
fn describe(msg: &str) -> String {
    let safe = ["unknown field", "missing field", "duplicate field"];
    if safe.iter().any(|p| msg.starts_with(p)) {
        msg.to_owned()
    } else {
        "wrong type or value (see the Kubernetes shape of this kind)".to_owned()
    }
}

fn typed<T: for<'de> Deserialize<'de>>(value: Value, at: &(String, usize)) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        err(at, if path == "." { "document".to_owned() } else { path }, describe(&e.inner().to_string()))
    })
}

/// Loads connectors from `(file name, YAML text)` pairs. `default_namespace` applies where
/// `metadata.namespace` is absent. Connectors of other classes are skipped.
pub fn load(files: &[(String, String)], default_namespace: &str) -> Result<Vec<Connector>, ManifestError> {
    load_report(files, default_namespace).map(|l| l.connectors)
}

/// What a set of manifest files held.
#[derive(Debug)]
pub struct Loaded {
    pub connectors: Vec<Connector>,
    /// Connectors of other classes, skipped: `"c.yaml, document 2: connectorClassName \"maven\""`.
    pub skipped: Vec<String>,
}

impl Loaded {
    /// Why there is nothing to render, naming the files.
    pub fn why_empty(&self, files: &[(String, String)]) -> String {
        let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        let names = if names.is_empty() { "(no files)".to_owned() } else { names.join(", ") };
        if self.skipped.is_empty() {
            format!("no npm connectors in {names}: no Connector document with connectorClassName: npm")
        } else {
            format!("no npm connectors in {names}; skipped Connectors of other classes: {}", self.skipped.join("; "))
        }
    }
}

/// [`load`], also reporting the Connectors it skipped.
pub fn load_report(files: &[(String, String)], default_namespace: &str) -> Result<Loaded, ManifestError> {
    load_report_with(files, default_namespace, &[])
}

/// Key of Secret volumes in the Secret index: a volume has no namespace of its own, so a
/// Connector's `secretRef` finds it by name in any namespace (a YAML Secret of that namespace
/// and name wins).
const VOLUME_NS: &str = "";

/// [`load_report`] with Secrets also taken from mounted Secret volumes.
pub fn load_report_with(
    files: &[(String, String)],
    default_namespace: &str,
    volumes: &[SecretVolume],
) -> Result<Loaded, ManifestError> {
    let mut secrets: BTreeMap<(String, String), Secret> = BTreeMap::new();
    for v in volumes {
        let secret =
            Secret { type_: None, values: v.values.clone(), expires_at: None, at: (v.path.clone(), 0), volume: true };
        secrets.insert((VOLUME_NS.to_owned(), v.name.clone()), secret);
    }
    let mut pending = Vec::new();
    let mut skipped = Vec::new();
    for (file, text) in files {
        for parsed in docs::parse_file(file, text, default_namespace)? {
            match parsed {
                Parsed::Secret { namespace, name, secret } => {
                    let at = secret.at.clone();
                    if secrets.insert((namespace.clone(), name.clone()), secret).is_some() {
                        return Err(err(&at, "metadata.name", format!("Secret {namespace}/{name} is defined twice")));
                    }
                }
                Parsed::Connector(p) => pending.push(*p),
                Parsed::Skipped { at, class } => {
                    skipped.push(format!("{}, document {}: connectorClassName {class:?}", at.0, at.1))
                }
            }
        }
    }
    let mut out: Vec<Connector> = Vec::with_capacity(pending.len());
    let mut ids: std::collections::HashMap<String, (String, usize)> =
        std::collections::HashMap::with_capacity(pending.len());
    for p in pending {
        let at = p.at.clone();
        let c = resolve(p, &secrets)?;
        if let Some(first) = ids.insert(c.id(), at.clone()) {
            return Err(err(
                &at,
                "metadata.name",
                format!("connector {} is defined twice (first in {}, document {})", c.id(), first.0, first.1),
            ));
        }
        out.push(c);
    }
    Ok(Loaded { connectors: out, skipped })
}

/// `stringData` wins over `data`, as in Kubernetes; `data` values are base64.
fn secret_values(raw: &RawSecret, at: &(String, usize)) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut values = BTreeMap::new();
    for (k, v) in &raw.data {
        let field = format!("data.{k}");
        let s = v.as_str().ok_or_else(|| err(at, &field, "must be a base64 string"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| err(at, &field, "is not valid base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| err(at, &field, "does not decode to UTF-8 text"))?;
        values.insert(k.clone(), text);
    }
    for (k, v) in &raw.string_data {
        let s = v.as_str().ok_or_else(|| err(at, format!("stringData.{k}"), "must be a string (quote it)"))?;
        values.insert(k.clone(), s.to_owned());
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
