//! The registry credential a connector injects: `basic`, `bearer`, `header`, or `sealed` (one
//! of those, encrypted; see [`crate::seal`]), turned once into the header to set.

use std::fmt;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::ConfigError;
use crate::seal::{Key, SealError};

/// A credential as the configuration carries it; the control plane builds these. Secret
/// fields print as `[REDACTED]` in `Debug` and are exposed only when serialised.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum RawCredential {
    Basic {
        username: String,
        #[serde(serialize_with = "expose")]
        password: SecretString,
    },
    Bearer {
        #[serde(serialize_with = "expose")]
        token: SecretString,
    },
    Header {
        name: String,
        #[serde(serialize_with = "expose")]
        value: SecretString,
    },
    /// base64(nonce ‖ XChaCha20-Poly1305(JSON of one of the above)), bound to the connector name.
    Sealed(String),
}

pub(crate) fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// The header that carries the registry credential upstream.
pub struct Credential {
    /// Lower-case header name (`authorization`, or e.g. `private-token`).
    pub header: String,
    pub value: SecretString,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential {{ header: {:?}, value: <redacted> }}", self.header)
    }
}

impl Credential {
    pub(crate) fn validate(connector: &str, raw: RawCredential, key: Option<&Key>) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::BadCredential { connector: connector.to_owned(), reason };
        let (header, value) = match raw {
            RawCredential::Sealed(sealed) => {
                let key = key.ok_or_else(|| ConfigError::NoKey { connector: connector.to_owned() })?;
                let plain = key.open(connector, &sealed).map_err(|e| match e {
                    SealError::Open | SealError::BadKey => ConfigError::Unseal { connector: connector.to_owned() },
                    SealError::Malformed => bad("sealed value is not base64 nonce and ciphertext"),
                })?;
                let inner: RawCredential =
                    serde_json::from_slice(&plain).map_err(|_| bad("sealed value does not hold a credential"))?;
                if matches!(inner, RawCredential::Sealed(_)) {
                    return Err(bad("a sealed credential may not hold another sealed one"));
                }
                return Credential::validate(connector, inner, None);
            }
            RawCredential::Basic { username, password } => {
                if username.contains(':') {
                    return Err(bad("basic username must not contain ':'"));
                }
                let pair = format!("{username}:{}", password.expose_secret());
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
                ("authorization".to_owned(), format!("Basic {b64}"))
            }
            RawCredential::Bearer { token } => {
                if token.expose_secret().is_empty() {
                    return Err(bad("bearer token is empty"));
                }
                ("authorization".to_owned(), format!("Bearer {}", token.expose_secret()))
            }
            RawCredential::Header { name, value } => {
                let lname = name.to_ascii_lowercase();
                let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if lname.is_empty() || !lname.bytes().all(token_char) {
                    return Err(bad("header name is not a valid HTTP header name"));
                }
                if lname == "host" || lname == "proxy-authorization" {
                    return Err(bad("header name may not be host or proxy-authorization"));
                }
                (lname, value.expose_secret().to_owned())
            }
        };
        // A header value with control characters would be refused by Envoy on every request.
        if value.is_empty() || value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(bad("credential value is empty or has control characters"));
        }
        Ok(Credential { header, value: SecretString::from(value) })
    }
}
