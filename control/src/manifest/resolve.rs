//! A Connector resolved against its Secret: address, cleartext opt-in, credential kind,
//! annotations (scope, publish address, tunnel hosts), each error naming file, document and
//! field.

use super::*;

pub(super) fn resolve(p: Pending, secrets: &BTreeMap<(String, String), Secret>) -> Result<Connector, ManifestError> {
    let at = &p.at;
    let name = p.connector.metadata.name.clone().ok_or_else(|| err(at, "metadata.name", "missing"))?;
    for (field, v) in [("metadata.name", &name), ("metadata.namespace", &p.namespace)] {
        let ok =
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            return Err(err(
                at,
                field,
                format!("{v:?} is not a Kubernetes name (lower-case letters, digits, '-', '.')"),
            ));
        }
    }
    let address = parse_address(&p.connector.spec.address).map_err(|m| err(at, "spec.address", m))?;
    let cleartext = match p.connector.metadata.annotations.get(CLEARTEXT_ANNOTATION).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(err(
                at,
                format!("metadata.annotations.{CLEARTEXT_ANNOTATION}"),
                format!("{other:?} must be \"true\" or \"false\""),
            ))
        }
    };
    if address.scheme() == "http" && !cleartext {
        return Err(err(
            at,
            "spec.address",
            format!(
                "{:?} is http: the registry credential would travel in clear; use the registry's https URL, \
                 or annotate the Connector {CLEARTEXT_ANNOTATION}: \"true\" to accept that",
                address.as_str()
            ),
        ));
    }
    let auth = p
        .connector
        .spec
        .auth
        .as_ref()
        .ok_or_else(|| err(at, "spec.auth", "missing: a registry credential is required"))?;
    let ns = auth.secret_ref.namespace.clone().unwrap_or_else(|| p.namespace.clone());
    let secret = secrets
        .get(&(ns.clone(), auth.secret_ref.name.clone()))
        .or_else(|| secrets.get(&(VOLUME_NS.to_owned(), auth.secret_ref.name.clone())))
        .ok_or_else(|| {
            err(
                at,
                "spec.auth.secretRef.name",
                format!("no Secret {ns}/{} in the given files or Secret volumes (--secrets-dir)", auth.secret_ref.name),
            )
        })?;
    let get = |key: &str| -> Result<SecretString, ManifestError> {
        match secret.values.get(key) {
            Some(v) if !v.is_empty() => Ok(SecretString::from(v.clone())),
            _ => Err(err(
                &secret.at,
                key_field(secret, key),
                format!("missing: Secret {ns}/{} needs it", auth.secret_ref.name),
            )),
        }
    };
    let header = p.connector.metadata.annotations.get(AUTH_HEADER_ANNOTATION);
    let credential = match auth.name.as_str() {
        "basicAuth" => {
            if let Some(t) = &secret.type_ {
                if t != "kubernetes.io/basic-auth" && t != "Opaque" {
                    return Err(err(
                        &secret.at,
                        "type",
                        format!("{t:?}: basicAuth needs a kubernetes.io/basic-auth Secret"),
                    ));
                }
            }
            let username = secret.values.get("username").cloned().unwrap_or_default();
            if username.is_empty() {
                return Err(err(
                    &secret.at,
                    key_field(secret, "username"),
                    "missing: basicAuth needs username and password",
                ));
            }
            Credential::Basic { username, password: get("password")? }
        }
        "bearerToken" => match header {
            Some(h) => Credential::Header { name: h.clone(), value: get("token")? },
            None => Credential::Bearer { token: get("token")? },
        },
        other => {
            return Err(err(at, "spec.auth.name", format!("{other:?} is not supported; use basicAuth or bearerToken")))
        }
    };
    let annotations = &p.connector.metadata.annotations;
    let scope = match annotations.get(SCOPE_ANNOTATION) {
        None => None,
        Some(sc) => {
            let ok = sc.len() > 1
                && sc.starts_with('@')
                && sc[1..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
            if !ok {
                return Err(err(
                    at,
                    format!("metadata.annotations.{SCOPE_ANNOTATION}"),
                    format!("{sc:?} is not an npm scope such as @acme"),
                ));
            }
            Some(sc.clone())
        }
    };
    let publish = match annotations.get(PUBLISH_ANNOTATION) {
        None => None,
        Some(u) => {
            let field = format!("metadata.annotations.{PUBLISH_ANNOTATION}");
            let pu = parse_address(u).map_err(|m| err(at, &field, m))?;
            if pu.origin() != address.origin() {
                return Err(err(
                    at,
                    &field,
                    format!(
                        "{u:?} must be on the registry's own scheme, host and port ({})",
                        address.origin().ascii_serialization()
                    ),
                ));
            }
            (pu != address).then_some(pu)
        }
    };
    let tunnel_hosts = match annotations.get(TUNNEL_HOSTS_ANNOTATION) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                parse_host_port(h).ok_or_else(|| {
                    err(
                        at,
                        format!("metadata.annotations.{TUNNEL_HOSTS_ANNOTATION}"),
                        format!("{h:?} is not host or host:port"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let allowed_subjects = annotations
        .get(ALLOWED_SUBJECTS_ANNOTATION)
        .map(|list| list.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(Connector {
        namespace: p.namespace,
        name,
        address,
        credential,
        credential_expires_at: secret.expires_at,
        scope,
        publish,
        tunnel_hosts,
        allowed_subjects,
    })
}

/// Where a Secret key lives: `stringData.<key>` in YAML, the file `<key>` in a volume.
fn key_field(secret: &Secret, key: &str) -> String {
    if secret.volume {
        format!("file {key}")
    } else {
        format!("stringData.{key}")
    }
}

/// `host` or `host:port` (443 by default), lower-cased, as a CONNECT names it.
fn parse_host_port(s: &str) -> Option<String> {
    let u = url::Url::parse(&format!("https://{s}/")).ok()?;
    let host = u.host_str()?;
    (u.path() == "/" && u.username().is_empty()).then(|| format!("{host}:{}", u.port().unwrap_or(443)))
}

/// Warnings every render repeats: registries whose credential travels in clear.
pub fn warnings(connectors: &[Connector]) -> Vec<String> {
    connectors
        .iter()
        .filter(|c| c.address.scheme() == "http")
        .map(|c| {
            format!(
                "connector {}: {} is http; its credential travels in clear ({CLEARTEXT_ANNOTATION} is set)",
                c.id(),
                c.address
            )
        })
        .collect()
}

fn parse_address(s: &str) -> Result<url::Url, String> {
    let mut u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return Err(format!("{s:?} must be an http or https URL"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials; put them in the Secret".to_owned());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{s:?} must not have a query or fragment"));
    }
    match u.host() {
        None => return Err(format!("{s:?} has no host")),
        // URLs allow hosts such as `a=b` that no DNS name is and that .npmrc keys cannot hold.
        Some(url::Host::Domain(d))
            if !d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
            }) =>
        {
            return Err(format!("{s:?}: the host must be a DNS name (letters, digits, '-', '_' and '.')"));
        }
        _ => {}
    }
    // npm reads `//host/path/:_authToken=` up to the first '=': a path must not break the key.
    if let Some(c) = u.path().chars().find(|c| "=;#\"'`[]\\ ".contains(*c)) {
        return Err(format!("{s:?}: the path must not contain {c:?}, which .npmrc keys cannot hold"));
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}
