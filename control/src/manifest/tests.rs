//! Manifest parsing: the seed example, both Secret encodings, and errors that name the file,
//! document and field without echoing secret values.

use secrecy::ExposeSecret;

use super::*;

const SEED: &str = include_str!("../../../examples/connectors.yaml");

fn load1(text: &str) -> Result<Vec<Connector>, ManifestError> {
    load(&[("c.yaml".to_owned(), text.to_owned())], "ci")
}

fn err_of(text: &str) -> ManifestError {
    match load1(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn seed_manifest_is_accepted_unchanged() {
    let cs = load1(SEED).unwrap();
    assert_eq!(cs.len(), 1);
    let c = &cs[0];
    assert_eq!(c.id(), "ci/npm-connector");
    assert_eq!(c.address.as_str(), "https://nexus.example.com/repository/npm/");
    match &c.credential {
        Credential::Basic { username, password } => {
            assert_eq!(username, "your-registry-username");
            assert_eq!(password.expose_secret(), "your-registry-password");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{cs:?}").contains("your-registry-password"), "Debug redacts");
}

fn token_manifest(secret_body: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: tok, namespace: gl}}\n{secret_body}\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: gitlab\n  namespace: gl\n{annotations}\
         spec:\n  connectorClassName: npm\n  address: https://gitlab.example.com/api/v4/packages/npm\n\
         \x20 auth:\n    name: bearerToken\n    secretRef: {{name: tok}}\n"
    )
}

#[test]
fn bearer_tokens_from_data_or_string_data_and_header_annotation() {
    let cs = load1(&token_manifest("data:\n  token: Z2xwYXQteHl6", "")).unwrap();
    assert!(matches!(&cs[0].credential, Credential::Bearer { token } if token.expose_secret() == "glpat-xyz"));
    let ann = format!("  annotations:\n    {AUTH_HEADER_ANNOTATION}: Private-Token\n");
    let cs = load1(&token_manifest("stringData:\n  token: glpat-abc", &ann)).unwrap();
    match &cs[0].credential {
        Credential::Header { name, value } => {
            assert_eq!((name.as_str(), value.expose_secret()), ("Private-Token", "glpat-abc"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cs[0].namespace, "gl");
}

#[test]
fn other_connector_classes_are_skipped() {
    let git = "kind: Connector\nmetadata: {name: g}\nspec: {connectorClassName: git, address: https://github.com}\n";
    assert!(load1(git).unwrap().is_empty());
}

#[test]
fn errors_name_file_document_and_field() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("kind: Deployment\nmetadata: {name: x}\n", 1, "kind", "not supported"),
        ("metadata: {name: x}\n", 1, "kind", "missing"),
        (
            &SEED.replace("connectorClassName: npm", "connectorClassName: npm\n  adress: x"),
            2,
            "spec.adress",
            "unknown field `adress`",
        ),
        (&SEED.replace("https://nexus.example.com/repository/npm", "ftp://x/"), 2, "spec.address", "http or https"),
        // Found by fuzzing: a URL may have a host or path no .npmrc key can hold.
        (
            &SEED.replace("https://nexus.example.com/repository/npm", "https://b=/npm"),
            2,
            "spec.address",
            "must be a DNS name",
        ),
        (
            &SEED.replace("https://nexus.example.com/repository/npm", "https://x/a=b"),
            2,
            "spec.address",
            "must not contain '='",
        ),
        (
            &SEED.replace("https://nexus.example.com/repository/npm", "https://u:p@x/"),
            2,
            "spec.address",
            "must not carry credentials",
        ),
        (
            &SEED.replace("secretRef:\n      name: npm-registry-secret", "secretRef:\n      name: other"),
            2,
            "spec.auth.secretRef.name",
            "no Secret ci/other",
        ),
        (&SEED.replace("name: basicAuth", "name: oauth"), 2, "spec.auth.name", "basicAuth or bearerToken"),
        (&SEED.replace("  username: your-registry-username\n", ""), 1, "stringData.username", "missing"),
        (&SEED.replace("type: kubernetes.io/basic-auth", "type: kubernetes.io/tls"), 1, "type", "basic-auth"),
        (&SEED.replace("name: npm-connector\n", "name: NPM_Connector\n"), 2, "metadata.name", "Kubernetes name"),
        ("kind: Secret\nmetadata: {name: s}\ndata: {password: '!!!'}\n", 1, "data.password", "not valid base64"),
        ("kind: [unclosed\n", 1, "document", "not valid YAML"),
    ];
    for (text, doc, field, msg) in cases {
        let e = err_of(text);
        assert_eq!((e.file.as_str(), e.doc, e.field.as_str()), ("c.yaml", *doc, *field), "{e}");
        assert!(e.message.contains(msg), "{e} should say {msg:?}");
    }
}

#[test]
fn wrongly_typed_secret_values_are_not_echoed() {
    let e = err_of(&SEED.replace("password: your-registry-password", "password: 8675309"));
    assert_eq!(e.field, "stringData.password");
    assert!(!e.to_string().contains("8675309"), "{e}");
    let e = err_of(&SEED.replace("password: your-registry-password", "password: [8675309]"));
    assert!(!e.to_string().contains("8675309"), "{e}");
}

#[test]
fn duplicates_are_refused() {
    let two = format!("{SEED}\n---\n{}", SEED.split("---").nth(1).unwrap_or_default());
    let e = err_of(&two);
    assert!(e.message.contains("defined twice"), "{e}");
    // Connectors defined twice: both places are named.
    let conn = SEED.split("---").nth(1).unwrap_or_default();
    let files = [("a.yaml".to_owned(), SEED.to_owned()), ("b.yaml".to_owned(), format!("---{conn}"))];
    let e = load(&files, "default").unwrap_err();
    assert_eq!((e.file.as_str(), e.doc, e.field.as_str()), ("b.yaml", 1, "metadata.name"), "{e}");
    assert!(e.message.contains("(first in a.yaml, document 2)"), "{e}");
}

#[test]
fn nothing_to_render_names_the_files_and_what_was_skipped() {
    let maven = SEED.replace("connectorClassName: npm", "connectorClassName: maven");
    let files = [("m.yaml".to_owned(), maven), ("empty.yaml".to_owned(), String::new())];
    let l = load_report(&files, "default").unwrap();
    assert!(l.connectors.is_empty());
    let why = l.why_empty(&files);
    assert!(
        why.contains("m.yaml, empty.yaml") && why.contains("m.yaml, document 2: connectorClassName \"maven\""),
        "{why}"
    );
    let files = [("empty.yaml".to_owned(), String::new())];
    let why = load_report(&files, "default").unwrap().why_empty(&files);
    assert!(why.contains("in empty.yaml: no Connector document"), "{why}");
}

#[test]
fn secret_expiry_annotation() {
    let with = SEED.replace(
        "  name: npm-registry-secret\ntype:",
        &format!(
            "  name: npm-registry-secret\n  annotations:\n    {EXPIRES_AT_ANNOTATION}: \"2030-01-02T03:04:05Z\"\ntype:"
        ),
    );
    let cs = load1(&with).unwrap();
    assert_eq!(cs[0].credential_expires_at, Some(1_893_553_445));
    let bad = with.replace("2030-01-02T03:04:05Z", "next tuesday");
    let e = err_of(&bad);
    assert_eq!(e.field, format!("metadata.annotations.{EXPIRES_AT_ANNOTATION}"));
    assert!(load1(SEED).unwrap()[0].credential_expires_at.is_none());
}

/// `n` Secret + Connector pairs, each in its own documents.
fn many(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "kind: Secret\nmetadata:\n  name: s{i}\n  namespace: team-{i}\ntype: kubernetes.io/basic-auth\n\
                 stringData:\n  username: user-{i}\n  password: password-{i}\n---\n\
                 kind: Connector\nmetadata:\n  name: npm\n  namespace: team-{i}\nspec:\n  connectorClassName: npm\n\
                 \x20 address: https://registry-{i}.example.com/npm\n  auth:\n    name: basicAuth\n    secretRef:\n      name: s{i}\n---\n"
            )
        })
        .collect()
}

/// A file over 1 MiB is parsed in two halves on two threads: the same connectors, and errors
/// in the second half still name the right document and line.
#[test]
fn large_files_parse_in_two_halves_with_the_same_result() {
    let text = many(5000);
    assert!(text.len() > 1 << 20);
    let whole = load(&[("big.yaml".into(), text.clone())], "default").unwrap();
    assert_eq!(whole.len(), 5000);
    let small: Vec<Connector> = (0..5)
        .flat_map(|k| {
            let part: String = text.split_inclusive("---\n").skip(k * 2000).take(2000).collect();
            load(&[("part.yaml".into(), part)], "default").unwrap()
        })
        .collect();
    let ids = |v: &[Connector]| v.iter().map(|c| (c.id(), c.address.to_string())).collect::<Vec<_>>();
    assert_eq!(ids(&whole), ids(&small));

    // Document 9001 (of 10000) is broken: its number and its line survive the split.
    let lines_before: usize = text.split_inclusive("---\n").take(9000).map(|d| d.matches('\n').count()).sum();
    let broken = text.replacen("  name: s4500\n", "  name: s4500\n  : : bad\n", 1);
    let e = load(&[("big.yaml".into(), broken)], "default").unwrap_err();
    assert_eq!((e.file.as_str(), e.doc), ("big.yaml", 9001), "{e}");
    assert!(e.message.contains(&format!("at line {}", lines_before + 4)), "{e}");
}
