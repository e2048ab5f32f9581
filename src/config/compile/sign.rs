//! Validation of a route's `sign` (SPEC §10, RFC 9421). The key is loaded here, once.

use super::{Arc, Cx, Duration, Keyword, PathBuf, RawRoute, YamlPath};
use crate::config::raw::RawSign;
use crate::keys::{HmacKey, SigningKey};
use crate::sender::{Component, SignAlg, SignKey, Signer};

/// The components covered when `components` is not given (SPEC §10's example).
const DEFAULT_COMPONENTS: [&str; 4] = ["@method", "@target-uri", "content-digest", "authorization"];

/// Header fields a signature cannot cover: they are not sent upstream as the app wrote
/// them (hop-by-hop), or they are the signature itself.
const UNSIGNABLE: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "signature",
    "signature-input",
];

impl Cx<'_> {
    /// The route's `sign`, if it has one and it is valid (problems are reported).
    pub(super) fn sign(&mut self, path: &YamlPath, raw: &RawRoute) -> Option<Arc<Signer>> {
        let raw = raw.sign.as_ref()?;
        let path = path.key("sign");
        let before = self.problems.len();
        let alg = self.sign_alg(&path, raw);
        let key = alg.and_then(|alg| self.sign_key(&path, raw, alg));
        let key_id = self.required(
            &path.key("key_id"),
            &raw.key_id,
            "the key's identifier, sent as keyid",
        );
        let label = self
            .text(&path.key("label"), &raw.label)
            .unwrap_or_else(|| "sig1".to_string());
        let components = self.components(&path.key("components"), raw);
        let expires_in = raw.expires_in.as_ref().map(|_| {
            let d =
                self.positive_duration(&path.key("expires_in"), &raw.expires_in, Duration::ZERO);
            if d < Duration::from_secs(1) && !d.is_zero() {
                self.problem(
                    &path.key("expires_in"),
                    "must be at least 1s (expires is in whole seconds)",
                );
            }
            d
        });
        if self.problems.len() > before {
            return None;
        }
        match Signer::new(key?, alg?, key_id?, label, components, expires_in) {
            Ok(signer) => Some(Arc::new(signer)),
            Err(e) => {
                let at = if e.starts_with("invalid label") {
                    "label"
                } else {
                    "key_id"
                };
                self.problem(&path.key(at), e);
                None
            }
        }
    }

    /// `alg`; without it, `hmac-sha256` when `hmac_key_file` is given.
    fn sign_alg(&mut self, path: &YamlPath, raw: &RawSign) -> Option<SignAlg> {
        let names = SignAlg::ALL.map(SignAlg::name);
        match self.keyword(&path.key("alg"), &raw.alg, &names) {
            Keyword::Known(name) => SignAlg::ALL.into_iter().find(|a| a.name() == name),
            Keyword::Absent if raw.hmac_key_file.is_some() => Some(SignAlg::HmacSha256),
            Keyword::Absent => {
                self.problem(
                    &path.key("alg"),
                    format!("missing required field (one of {})", names.join(", ")),
                );
                None
            }
            Keyword::Invalid(_) => None,
        }
    }

    /// The key `alg` takes: `key_file` (a PEM private key) or, for `hmac-sha256`,
    /// `hmac_key_file` (raw bytes).
    fn sign_key(&mut self, path: &YamlPath, raw: &RawSign, alg: SignAlg) -> Option<SignKey> {
        let (key_at, hmac_at) = (path.key("key_file"), path.key("hmac_key_file"));
        match (alg.key_alg(), &raw.key_file, &raw.hmac_key_file) {
            (_, Some(_), Some(_)) => {
                self.problem(
                    &hmac_at,
                    "key_file and hmac_key_file exclude each other: give one",
                );
                None
            }
            (None, Some(_), None) => {
                self.problem(
                    &key_at,
                    "hmac-sha256 takes hmac_key_file (a shared secret), not key_file",
                );
                None
            }
            (Some(_), None, Some(_)) => {
                self.problem(
                    &hmac_at,
                    format!(
                        "{} takes key_file (a PEM private key); hmac_key_file is for hmac-sha256",
                        alg.name()
                    ),
                );
                None
            }
            (None, None, hmac) => {
                let file =
                    PathBuf::from(self.required(&hmac_at, hmac, "the shared secret's file")?);
                match HmacKey::load(&file) {
                    Ok(key) => {
                        if key.byte_len() < 32 {
                            self.warn(
                                &hmac_at,
                                format!(
                                    "the HMAC key is {} bytes: use at least 32 random bytes",
                                    key.byte_len()
                                ),
                            );
                        }
                        Some(SignKey::Hmac(key))
                    }
                    Err(e) => {
                        self.problem(&hmac_at, e);
                        None
                    }
                }
            }
            (Some(key_alg), file, None) => {
                let file = PathBuf::from(self.required(&key_at, file, "the private key (PEM)")?);
                match SigningKey::load(&file, key_alg) {
                    Ok(key) => Some(SignKey::Private(key)),
                    Err(e) => {
                        self.problem(&key_at, e.replace(key_alg.name(), alg.name()));
                        None
                    }
                }
            }
        }
    }

    /// `components`: known derived components and header fields, each once.
    fn components(&mut self, path: &YamlPath, raw: &RawSign) -> Vec<Component> {
        let Some(list) = &raw.components else {
            return DEFAULT_COMPONENTS
                .iter()
                .filter_map(|c| Component::parse(c).ok())
                .collect();
        };
        let mut out: Vec<Component> = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let p = path.index(i);
            let Some(name) = self.text(&p, &Some(t.clone())) else {
                continue;
            };
            match Component::parse(name.trim()) {
                Err(e) => self.problem(&p, e),
                Ok(c) if UNSIGNABLE.contains(&c.name()) => {
                    self.problem(&p, format!("{} cannot be covered: it is not sent upstream as the app wrote it, or it is the signature itself", c.name()));
                }
                Ok(c) if out.contains(&c) => {
                    self.problem(&p, format!("{} is listed twice", c.name()));
                }
                Ok(c) => out.push(c),
            }
        }
        out
    }
}
