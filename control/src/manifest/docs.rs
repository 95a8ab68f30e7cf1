//! One file's YAML documents → Secrets and npm Connectors, in document order. Large files are
//! split at a document marker and parsed on two threads (YAML parsing is most of the cost of
//! loading thousands of connectors).

use serde::Deserialize as _;
use serde_yaml_ng::Value;

use super::EXPIRES_AT_ANNOTATION;
use super::{err, parse_time, secret_values, typed, ManifestError, Pending, RawConnector, RawSecret, Secret};

/// One document's meaning.
pub(super) enum Parsed {
    Secret {
        namespace: String,
        name: String,
        secret: Secret,
    },
    Connector(Box<Pending>),
    /// A Connector of another class, skipped: where, and which class.
    Skipped {
        at: (String, usize),
        class: String,
    },
}

impl Parsed {
    fn shift(&mut self, docs: usize) {
        match self {
            Parsed::Secret { secret, .. } => secret.at.1 += docs,
            Parsed::Connector(p) => p.at.1 += docs,
            Parsed::Skipped { at, .. } => at.1 += docs,
        }
    }
}

/// Files above this size are parsed in two halves at once.
const PARALLEL_ABOVE: usize = 1 << 20;

pub(super) fn parse_file(file: &str, text: &str, default_namespace: &str) -> Result<Vec<Parsed>, ManifestError> {
    let split = if text.len() > PARALLEL_ABOVE { document_boundary(text, text.len() / 2) } else { None };
    let Some(at) = split else {
        return parse_docs(file, text, default_namespace, 0).map(|(v, _)| v);
    };
    let (first, second) = text.split_at(at);
    let lines = first.bytes().filter(|&b| b == b'\n').count();
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| parse_docs(file, second, default_namespace, lines));
        (parse_docs(file, first, default_namespace, 0), h.join())
    });
    // The first half's error comes first, as if parsed in one go.
    let (mut out, docs) = a?;
    let (rest, _) =
        b.map_err(|_| err(&(file.to_owned(), 0), "document", "the YAML parser failed"))?.map_err(|mut e| {
            e.doc += docs;
            e
        })?;
    out.extend(rest.into_iter().map(|mut p| {
        p.shift(docs);
        p
    }));
    Ok(out)
}

/// The start of the first line at or after byte `from` that is a document marker (`---`). YAML
/// forbids such a line inside any scalar, so the documents on either side are whole.
fn document_boundary(text: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        let start = pos + text.get(pos..)?.find("\n---")? + 1;
        let line = text[start..].split('\n').next().unwrap_or_default().trim_end_matches('\r');
        if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            return Some(start);
        }
        pos = start;
    }
}

/// Parses `text`'s documents, numbered from 1; `line_offset` is added to the lines of YAML
/// errors (for the second half of a split file). Returns the documents and how many there were.
fn parse_docs(
    file: &str,
    text: &str,
    default_namespace: &str,
    line_offset: usize,
) -> Result<(Vec<Parsed>, usize), ManifestError> {
    let mut out = Vec::new();
    let mut count = 0;
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        count = i + 1;
        let at = (file.to_owned(), i + 1);
        let value = Value::deserialize(doc).map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line() + line_offset, l.column()))
                .unwrap_or_default();
            err(&at, "document", format!("not valid YAML{loc}"))
        })?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind.as_str() {
            "Secret" => {
                let raw: RawSecret = typed(value, &at)?;
                let name = raw.metadata.name.clone().ok_or_else(|| err(&at, "metadata.name", "missing"))?;
                let namespace = raw.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
                let values = secret_values(&raw, &at)?;
                let expires_at = match raw.metadata.annotations.get(EXPIRES_AT_ANNOTATION) {
                    None => None,
                    Some(t) => Some(parse_time(t).ok_or_else(|| {
                        err(
                            &at,
                            format!("metadata.annotations.{EXPIRES_AT_ANNOTATION}"),
                            format!("{t:?} is not an RFC 3339 time such as 2026-11-21T20:00:00Z"),
                        )
                    })?),
                };
                let secret = Secret { type_: raw.type_, values, expires_at, at, volume: false };
                out.push(Parsed::Secret { namespace, name, secret });
            }
            "Connector" => {
                let raw: RawConnector = typed(value, &at)?;
                if raw.spec.connector_class_name != "npm" {
                    out.push(Parsed::Skipped { at, class: raw.spec.connector_class_name.clone() });
                    continue;
                }
                let namespace = raw.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
                out.push(Parsed::Connector(Box::new(Pending { connector: raw, namespace, at })));
            }
            "" => return Err(err(&at, "kind", "missing; expected Connector or Secret")),
            other => return Err(err(&at, "kind", format!("{other:?} is not supported; expected Connector or Secret"))),
        }
    }
    Ok((out, count))
}
