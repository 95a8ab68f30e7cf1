//! Who may have which connector's token: a Kubernetes ServiceAccount the connectors of its own
//! namespace; anyone else only where the Connector's `npm-connector.io/allowed-subjects`
//! annotation lists a pattern matching the ID token's `sub`.

use wildmatch::WildMatch;

use super::oidc::{Identity, Kind};
use crate::manifest::Connector;

/// `Ok` when `who` may use `connector`, else why not (for the refusal).
pub fn allowed(who: &Identity, connector: &Connector) -> Result<(), String> {
    let own_namespace = who.kind == Kind::Kubernetes
        && who.namespace.as_deref() == Some(connector.namespace.as_str())
        && who.sub.starts_with(&format!("system:serviceaccount:{}:", connector.namespace));
    if own_namespace || connector.allowed_subjects.iter().any(|p| WildMatch::new(p).matches(&who.sub)) {
        return Ok(());
    }
    Err(format!(
        "subject {:?} (issuer {}) is not allowed for {}: only ServiceAccounts of namespace {} and the subjects in its {} annotation are",
        who.sub,
        who.issuer,
        connector.id(),
        connector.namespace,
        crate::manifest::ALLOWED_SUBJECTS_ANNOTATION
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(ns: &str, allowed: &[&str]) -> Connector {
        let yaml = format!(
            "kind: Secret\nmetadata:\n  name: s\ntype: kubernetes.io/basic-auth\nstringData:\n  username: u\n  password: p\n---\n\
             kind: Connector\nmetadata:\n  name: npm\n  namespace: {ns}\n  annotations:\n    npm-connector.io/allowed-subjects: \"{}\"\n\
             spec:\n  connectorClassName: npm\n  address: https://registry.example/npm\n  auth:\n    name: basicAuth\n    secretRef:\n      name: s\n",
            allowed.join(", ")
        );
        let mut cs = crate::manifest::load(&[("c.yaml".into(), yaml)], ns).unwrap_or_else(|e| panic!("{e}"));
        cs.remove(0)
    }

    fn who(kind: Kind, sub: &str, ns: Option<&str>) -> Identity {
        Identity { issuer: "test".into(), kind, sub: sub.into(), namespace: ns.map(str::to_owned) }
    }

    #[test]
    fn service_accounts_get_their_namespace_and_patterns_the_rest() {
        let c = connector("build", &["system:serviceaccount:ci:*", "repo:acme/app:ref:refs/heads/main"]);
        assert_eq!(allowed(&who(Kind::Kubernetes, "system:serviceaccount:build:default", Some("build")), &c), Ok(()));
        assert_eq!(allowed(&who(Kind::Kubernetes, "system:serviceaccount:ci:runner", Some("ci")), &c), Ok(()));
        assert_eq!(allowed(&who(Kind::Github, "repo:acme/app:ref:refs/heads/main", None), &c), Ok(()));
        for (kind, sub, ns) in [
            (Kind::Kubernetes, "system:serviceaccount:other:default", Some("other")),
            // A namespace claim that disagrees with the subject does not help.
            (Kind::Kubernetes, "system:serviceaccount:other:default", Some("build")),
            // Only a Kubernetes issuer's namespace counts.
            (Kind::Oidc, "system:serviceaccount:build:default", Some("build")),
            (Kind::Github, "repo:acme/app:ref:refs/heads/dev", None),
            (Kind::Github, "repo:acme/app:ref:refs/heads/main2", None),
        ] {
            let e = allowed(&who(kind, sub, ns), &c).err().unwrap_or_default();
            assert!(e.contains(&format!("subject {sub:?}")) && e.contains("not allowed for build/npm"), "{sub}: {e}");
        }
    }
}
