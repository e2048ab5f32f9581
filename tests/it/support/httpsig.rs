//! An independent HTTP message signature verifier for the tests, written from RFC 9421
//! (and RFC 9530 for `Content-Digest`): it parses `Signature-Input`, rebuilds the
//! signature base from the request as received, and checks the signature with ring's
//! verification primitives. It shares no code with the sidecar.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;
use ring::signature::{self, UnparsedPublicKey};

/// The key a signature is checked with.
#[derive(Clone, Copy)]
pub enum VerifyKey<'a> {
    Ed25519(&'a [u8]),
    P256(&'a [u8]),
    RsaPss { n: &'a [u8], e: &'a [u8] },
    Hmac(&'a [u8]),
}

impl<'a> VerifyKey<'a> {
    pub fn of(public: &'a super::keys::Public) -> VerifyKey<'a> {
        match public {
            super::keys::Public::Ed25519(k) => VerifyKey::Ed25519(k),
            super::keys::Public::P256(k) => VerifyKey::P256(k),
            super::keys::Public::Rsa { n, e } => VerifyKey::RsaPss { n, e },
        }
    }
}

/// A request as the upstream received it.
pub struct Received<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    /// The request target (origin form: path and query).
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What a verified signature said.
#[derive(Debug, Clone)]
pub struct Verified {
    pub components: Vec<String>,
    pub created: Option<i64>,
    pub expires: Option<i64>,
    pub nonce: Option<String>,
    pub keyid: Option<String>,
    pub alg: Option<String>,
    pub base: String,
}

/// Verifies the signature `label` of `req` with `key`; also checks a sha-256
/// `Content-Digest` against the body (digests of other algorithms are ignored, as RFC
/// 9530 §2 lets a recipient do).
pub fn verify(req: &Received<'_>, label: &str, key: VerifyKey<'_>) -> Result<Verified, String> {
    let input = header(req.headers, "signature-input")?;
    let params = input
        .strip_prefix(&format!("{label}="))
        .ok_or(format!("no {label} in Signature-Input: {input}"))?;
    let (components, rest) = inner_list(params)?;
    let mut v = Verified {
        components: components.clone(),
        created: None,
        expires: None,
        nonce: None,
        keyid: None,
        alg: None,
        base: String::new(),
    };
    for param in rest.split(';').filter(|p| !p.is_empty()) {
        let (k, val) = param
            .split_once('=')
            .ok_or(format!("bad parameter {param}"))?;
        let text = val.trim_matches('"').to_string();
        match k {
            "created" => v.created = Some(val.parse().map_err(|_| "created")?),
            "expires" => v.expires = Some(val.parse().map_err(|_| "expires")?),
            "nonce" => v.nonce = Some(text),
            "keyid" => v.keyid = Some(text),
            "alg" => v.alg = Some(text),
            other => return Err(format!("unknown parameter {other}")),
        }
    }
    let mut base = String::new();
    for c in &components {
        base.push_str(&format!("\"{c}\": {}\n", value(req, c)?));
    }
    base.push_str(&format!("\"@signature-params\": {params}"));
    let sig = header(req.headers, "signature")?;
    let b64 = sig
        .strip_prefix(&format!("{label}=:"))
        .and_then(|s| s.strip_suffix(':'))
        .ok_or(format!("no {label} in Signature: {sig}"))?;
    let sig = STANDARD
        .decode(b64)
        .map_err(|_| "signature is not base64")?;
    let ok = match key {
        VerifyKey::Ed25519(k) => {
            UnparsedPublicKey::new(&signature::ED25519, k).verify(base.as_bytes(), &sig)
        }
        VerifyKey::P256(k) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k)
            .verify(base.as_bytes(), &sig),
        VerifyKey::RsaPss { n, e } => signature::RsaPublicKeyComponents { n, e }.verify(
            &signature::RSA_PSS_2048_8192_SHA512,
            base.as_bytes(),
            &sig,
        ),
        VerifyKey::Hmac(k) => ring::hmac::verify(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k),
            base.as_bytes(),
            &sig,
        ),
    };
    ok.map_err(|_| format!("the signature does not verify over:\n{base}"))?;
    let sha256 = req
        .headers
        .get("content-digest")
        .filter(|d| d.as_bytes().starts_with(b"sha-256="));
    if let Some(digest) = sha256 {
        let want = format!(
            "sha-256=:{}:",
            STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, req.body))
        );
        if digest.to_str().ok() != Some(want.as_str()) {
            return Err(format!(
                "Content-Digest {digest:?} is not the body's {want}"
            ));
        }
    }
    v.base = base;
    Ok(v)
}

fn header(headers: &HeaderMap, name: &str) -> Result<String, String> {
    let all: Vec<_> = headers.get_all(name).iter().collect();
    match all[..] {
        [one] => Ok(one
            .to_str()
            .map_err(|_| format!("{name} is not text"))?
            .to_string()),
        _ => Err(format!("{} {name} headers", all.len())),
    }
}

/// `("a" "b");params` → the strings, and `;params`.
fn inner_list(s: &str) -> Result<(Vec<String>, &str), String> {
    let s = s.strip_prefix('(').ok_or("no inner list")?;
    let end = s.find(')').ok_or("no end of the inner list")?;
    let items = s[..end]
        .split(' ')
        .filter(|i| !i.is_empty())
        .map(|i| {
            i.strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .map(str::to_string)
                .ok_or(format!("not a string: {i}"))
        })
        .collect::<Result<_, _>>()?;
    Ok((items, &s[end + 1..]))
}

/// RFC 9421 §2.1 and §2.2, for a request received as origin form.
fn value(req: &Received<'_>, component: &str) -> Result<String, String> {
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.target, None),
    };
    let host = header(req.headers, "host")?.to_ascii_lowercase();
    Ok(match component {
        "@method" => req.method.to_string(),
        "@scheme" => req.scheme.to_string(),
        "@authority" => host,
        "@path" => path.to_string(),
        "@query" => format!("?{}", query.unwrap_or("")),
        "@request-target" => req.target.to_string(),
        "@target-uri" => format!("{}://{host}{}", req.scheme, req.target),
        d if d.starts_with('@') => return Err(format!("this verifier does not know {d}")),
        field => {
            let values: Vec<String> = req
                .headers
                .get_all(field)
                .iter()
                .map(|v| v.to_str().map(|s| s.trim().to_string()))
                .collect::<Result<_, _>>()
                .map_err(|_| format!("{field} is not ASCII"))?;
            if values.is_empty() {
                return Err(format!(
                    "the signature covers {field}, which the request lacks"
                ));
            }
            values.join(", ")
        }
    })
}
