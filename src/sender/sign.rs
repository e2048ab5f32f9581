//! HTTP message signatures (RFC 9421) over a request as the upstream receives it, and the
//! `Content-Digest` (RFC 9530) of its body.
//!
//! A [`Signer`] holds a route's `sign` settings with the key the config loaded. Per
//! request it builds the signature base from the covered components (§2.5) and adds
//! `Signature-Input` and `Signature` under the route's label, with `created`, a random
//! `nonce`, `keyid`, `alg` and, when configured, `expires` (§2.3).

use super::{random_b64, sfv, unix_now};
use crate::keys::{HmacKey, SigningAlg, SigningKey};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use ring::rand::SystemRandom;
use std::fmt;
use std::time::Duration;

/// The algorithms of `sign.alg` (RFC 9421 §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignAlg {
    Ed25519,
    EcdsaP256Sha256,
    RsaPssSha512,
    HmacSha256,
}

impl SignAlg {
    pub const ALL: [SignAlg; 4] = [
        SignAlg::Ed25519,
        SignAlg::EcdsaP256Sha256,
        SignAlg::RsaPssSha512,
        SignAlg::HmacSha256,
    ];

    /// The name in the HTTP Signature Algorithms registry.
    pub fn name(self) -> &'static str {
        match self {
            SignAlg::Ed25519 => "ed25519",
            SignAlg::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            SignAlg::RsaPssSha512 => "rsa-pss-sha512",
            SignAlg::HmacSha256 => "hmac-sha256",
        }
    }

    /// The algorithm a private key is loaded for (`None`: HMAC, a shared secret).
    pub fn key_alg(self) -> Option<SigningAlg> {
        match self {
            SignAlg::Ed25519 => Some(SigningAlg::EdDsa),
            SignAlg::EcdsaP256Sha256 => Some(SigningAlg::Es256),
            SignAlg::RsaPssSha512 => Some(SigningAlg::Ps512),
            SignAlg::HmacSha256 => None,
        }
    }
}

/// The key a signer signs with.
pub enum SignKey {
    Private(SigningKey),
    Hmac(HmacKey),
}

/// A covered component (RFC 9421 §2): a derived component or a header field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Component {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
    /// A header field, by its lowercase name.
    Field(HeaderName),
}

impl Component {
    /// The derived components this signer knows.
    pub const DERIVED: [&'static str; 7] = [
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
    ];

    /// `@method`, …, or a header field name (lowercased, RFC 9421 §2.1).
    pub fn parse(name: &str) -> Result<Component, String> {
        Ok(match name {
            "@method" => Component::Method,
            "@target-uri" => Component::TargetUri,
            "@authority" => Component::Authority,
            "@scheme" => Component::Scheme,
            "@request-target" => Component::RequestTarget,
            "@path" => Component::Path,
            "@query" => Component::Query,
            d if d.starts_with('@') => {
                return Err(format!(
                    "unknown derived component {d:?} (known: {})",
                    Self::DERIVED.join(", ")
                ))
            }
            field => Component::Field(
                HeaderName::from_bytes(field.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    format!("{field:?} is neither a derived component nor a header name")
                })?,
            ),
        })
    }

    /// The component name as it appears in the signature base.
    pub fn name(&self) -> &str {
        match self {
            Component::Method => "@method",
            Component::TargetUri => "@target-uri",
            Component::Authority => "@authority",
            Component::Scheme => "@scheme",
            Component::RequestTarget => "@request-target",
            Component::Path => "@path",
            Component::Query => "@query",
            Component::Field(h) => h.as_str(),
        }
    }
}

/// A request as the upstream receives it.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub method: &'a Method,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The authority the upstream sees (its `Host`), as sent.
    pub authority: &'a str,
    /// The request target in origin form: the path, and `?query` if any.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

/// The signature parameters (RFC 9421 §2.3) besides `keyid`, which is the signer's.
#[derive(Clone, Debug)]
pub struct Params {
    pub created: u64,
    pub expires: Option<u64>,
    pub nonce: Option<String>,
    /// Whether `alg` is written.
    pub alg: bool,
}

/// A signature: its base (for tests and debugging) and the two header values.
pub struct Signed {
    pub base: String,
    pub input: HeaderValue,
    pub signature: HeaderValue,
}

/// A route's `sign` settings with its key.
pub struct Signer {
    key: SignKey,
    alg: SignAlg,
    key_id: String,
    label: String,
    components: Vec<Component>,
    expires_in: Option<Duration>,
    rng: SystemRandom,
}

impl Signer {
    /// `label` must be a structured-field key and `components` known ones (the config
    /// checks both; this checks again and says what is wrong).
    pub fn new(
        key: SignKey,
        alg: SignAlg,
        key_id: String,
        label: String,
        components: Vec<Component>,
        expires_in: Option<Duration>,
    ) -> Result<Self, String> {
        if !sfv::is_key(&label) {
            return Err(format!("invalid label {label:?}: lowercase letters, digits, '_', '-', '.' and '*', starting with a letter"));
        }
        sfv::string(&mut String::new(), &key_id).map_err(|e| format!("key_id holds {e}"))?;
        Ok(Self {
            key,
            alg,
            key_id,
            label,
            components,
            expires_in,
            rng: SystemRandom::new(),
        })
    }

    pub fn alg(&self) -> SignAlg {
        self.alg
    }

    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// True when the signature covers `content-digest`.
    pub fn covers_digest(&self) -> bool {
        self.components
            .iter()
            .any(|c| matches!(c, Component::Field(h) if h == "content-digest"))
    }

    /// Signs `msg` now: `created` is the current time, the `nonce` random, `alg` written,
    /// `expires` set when configured. A header field `msg` does not carry is left out of
    /// the covered components (RFC 9421 §2.5 forbids covering an absent field), so the
    /// `Signature-Input` lists exactly what was signed.
    pub fn sign(&self, msg: &Message<'_>) -> Result<Signed, String> {
        let created = unix_now();
        let params = Params {
            created,
            expires: self.expires_in.map(|d| created + d.as_secs()),
            nonce: Some(random_b64(&self.rng, 16)?),
            alg: true,
        };
        let present: Vec<Component> = self
            .components
            .iter()
            .filter(|c| match c {
                Component::Field(h) => msg.headers.contains_key(h),
                _ => true,
            })
            .cloned()
            .collect();
        self.sign_with(&present, msg, &params)
    }

    /// Signs `msg` over `components` with `params` exactly.
    pub fn sign_with(
        &self,
        components: &[Component],
        msg: &Message<'_>,
        params: &Params,
    ) -> Result<Signed, String> {
        let inner = self.inner_list(components, params)?;
        let base = signature_base(components, msg, &inner)?;
        let signature = match &self.key {
            SignKey::Private(k) => k.sign(base.as_bytes())?,
            SignKey::Hmac(k) => k.sign(base.as_bytes()),
        };
        let mut sig = format!("{}=", self.label);
        sfv::byte_sequence(&mut sig, &signature);
        let header = |v: String| {
            HeaderValue::try_from(v).map_err(|_| "the signature is not a header value".to_string())
        };
        Ok(Signed {
            input: header(format!("{}={inner}", self.label))?,
            signature: header(sig)?,
            base,
        })
    }

    /// The `@signature-params` value (§2.3): the covered components as an inner list of
    /// strings, then `created`, `expires`, `keyid`, `alg`, `nonce`, those in use.
    fn inner_list(&self, components: &[Component], p: &Params) -> Result<String, String> {
        let mut out = String::from("(");
        for (i, c) in components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            sfv::string(&mut out, c.name())?;
        }
        out.push_str(&format!(");created={}", p.created));
        if let Some(e) = p.expires {
            out.push_str(&format!(";expires={e}"));
        }
        out.push_str(";keyid=");
        sfv::string(&mut out, &self.key_id)?;
        if p.alg {
            out.push_str(";alg=");
            sfv::string(&mut out, self.alg.name())?;
        }
        if let Some(n) = &p.nonce {
            out.push_str(";nonce=");
            sfv::string(&mut out, n)?;
        }
        Ok(out)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .field("key_id", &self.key_id)
            .field("label", &self.label)
            .field("components", &self.components)
            .field("expires_in", &self.expires_in)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The signature base (RFC 9421 §2.5): one line per covered component, then the
/// `@signature-params` line with `inner_list`.
pub fn signature_base(
    components: &[Component],
    msg: &Message<'_>,
    inner_list: &str,
) -> Result<String, String> {
    let mut base = String::new();
    for (i, c) in components.iter().enumerate() {
        if components[..i].contains(c) {
            return Err(format!("component {} is covered twice", c.name()));
        }
        sfv::string(&mut base, c.name())?;
        base.push_str(": ");
        base.push_str(&component_value(c, msg)?);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(inner_list);
    Ok(base)
}

/// The value of one component of `msg` (§2.1, §2.2).
fn component_value(c: &Component, msg: &Message<'_>) -> Result<String, String> {
    let (path, query) = match msg.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (msg.path_and_query, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(match c {
        Component::Method => msg.method.as_str().to_string(),
        Component::Scheme => msg.scheme.to_ascii_lowercase(),
        Component::Authority => authority(msg.scheme, msg.authority),
        Component::TargetUri => format!(
            "{}://{}{}",
            msg.scheme.to_ascii_lowercase(),
            authority(msg.scheme, msg.authority),
            match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            }
        ),
        Component::RequestTarget => match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        },
        Component::Path => path.to_string(),
        Component::Query => format!("?{}", query.unwrap_or("")),
        Component::Field(name) => field_value(name, msg.headers)?,
    })
}

/// §2.2.3: the authority with the host lowercased and the scheme's default port dropped.
fn authority(scheme: &str, authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return lower,
    };
    match lower.strip_suffix(default) {
        Some(host) => host.to_string(),
        None => lower,
    }
}

/// §2.1: every line of the field, trimmed, joined with ", ". A value that is not ASCII
/// cannot be signed (§2.5 step 4).
fn field_value(name: &HeaderName, headers: &HeaderMap) -> Result<String, String> {
    let mut values = Vec::new();
    for v in headers.get_all(name) {
        let text = v
            .to_str()
            .map_err(|_| format!("the {name} header is not ASCII and cannot be signed"))?;
        values.push(text.trim());
    }
    if values.is_empty() {
        return Err(format!("the request has no {name} header to sign"));
    }
    Ok(values.join(", "))
}

/// RFC 9530 `Content-Digest` with the SHA-256 of `body`: `sha-256=:…:`.
pub fn content_digest(body: &[u8]) -> HeaderValue {
    let mut out = String::from("sha-256=");
    sfv::byte_sequence(&mut out, &crate::secret::fingerprint(body));
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

mod attach;
#[cfg(test)]
mod tests;
