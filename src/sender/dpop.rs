//! DPoP proofs (RFC 9449): a JWT signed with the provider's DPoP key, new for every
//! request, naming the request's method and URI (and, towards a resource server, the hash
//! of the access token). Also the servers' nonces (§8, §9) and how to read their
//! challenges.
//!
//! The JOSE header (`typ`, `alg`, the public `jwk`) is the same for every proof of a key,
//! so it is encoded once, when the key is loaded; a proof costs one small JSON payload and
//! one signature.

use super::{random_b64, unix_now};
use crate::keys::{SigningAlg, SigningKey};
use crate::secret::Fingerprint;
use arc_swap::{ArcSwap, ArcSwapOption};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use ring::rand::SystemRandom;
use std::fmt;
use std::sync::Arc;

/// The `DPoP` request header (RFC 9449 §4.1).
pub const DPOP: &str = "dpop";
/// The nonce a server wants in the next proofs (RFC 9449 §8, §9).
pub const DPOP_NONCE: &str = "dpop-nonce";

/// A DPoP key: the private key that signs proofs, its prebuilt JOSE header and the
/// thumbprint of its public key (the `cnf.jkt` an IdP binds tokens to).
pub struct DpopKey {
    key: SigningKey,
    /// base64url of `{"alg":…,"jwk":…,"typ":"dpop+jwt"}`.
    header: String,
    jkt: String,
    rng: SystemRandom,
}

/// What a proof names besides its `jti` and `iat`.
#[derive(Clone, Copy, Debug)]
pub struct ProofClaims<'a> {
    /// The request's method.
    pub htm: &'a str,
    /// The request's URI without query and fragment ([`htu`]).
    pub htu: &'a str,
    /// The access token the request carries (towards a resource server): its hash goes
    /// into `ath`.
    pub access_token: Option<&'a str>,
    /// The server's latest `DPoP-Nonce`.
    pub nonce: Option<&'a str>,
}

impl DpopKey {
    /// `key` as a DPoP key (ES256, RS256, PS256 or EdDSA; the config checks which).
    pub fn new(key: SigningKey) -> Self {
        let header = serde_json::json!({
            "typ": "dpop+jwt",
            "alg": key.alg().name(),
            "jwk": key.public_jwk(),
        });
        Self {
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            jkt: key.jwk_thumbprint(),
            key,
            rng: SystemRandom::new(),
        }
    }

    pub fn alg(&self) -> SigningAlg {
        self.key.alg()
    }

    /// The RFC 7638 thumbprint of the public key (what `cnf.jkt` of a bound token holds).
    pub fn thumbprint(&self) -> &str {
        &self.jkt
    }

    /// The SHA-256 of the key material.
    pub fn fingerprint(&self) -> Fingerprint {
        self.key.fingerprint()
    }

    /// A fresh proof for `claims`: a random 128-bit `jti`, `iat` now.
    pub fn proof(&self, claims: &ProofClaims<'_>) -> Result<HeaderValue, String> {
        let jti = random_b64(&self.rng, 16)?;
        self.proof_at(claims, &jti, unix_now())
    }

    /// The proof for `claims` with this `jti` and `iat`.
    pub fn proof_at(
        &self,
        claims: &ProofClaims<'_>,
        jti: &str,
        iat: u64,
    ) -> Result<HeaderValue, String> {
        let mut payload = serde_json::json!({
            "jti": jti,
            "htm": claims.htm,
            "htu": claims.htu,
            "iat": iat,
        });
        if let Some(token) = claims.access_token {
            payload["ath"] = ath(token).into();
        }
        if let Some(nonce) = claims.nonce {
            payload["nonce"] = nonce.into();
        }
        let signing_input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes())?;
        let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
        // base64url and dots only: always a valid header value.
        HeaderValue::try_from(jwt).map_err(|_| "the proof is not a header value".to_string())
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.key.alg())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// RFC 9449 §4.2 `ath`: base64url of the SHA-256 of the access token.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::secret::fingerprint(access_token.as_bytes()))
}

/// RFC 9449 §4.2 `htu`: the target URI without query and fragment, with the scheme-based
/// normalisation servers apply before comparing (RFC 3986 §6.2.2, §6.2.3: lowercase
/// scheme and host, no default port, an empty path is `/`). `None` without a scheme or
/// authority.
pub fn htu(uri: &http::Uri) -> Option<String> {
    Some(htu_of(uri.scheme_str()?, uri.authority()?, uri.path()))
}

/// [`htu`] of a request whose authority is not its URI's: the scheme it goes out with,
/// the `Host` it carries (what the server rebuilds the URI from, RFC 9449 §4.3 check 9,
/// RFC 9110 §7.1) and its path.
pub fn htu_of(scheme: &str, authority: &http::uri::Authority, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let port = authority
        .port_u16()
        .filter(|p| Some(*p) != default)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let path = match path {
        "" => "/",
        p => p,
    };
    format!("{scheme}://{host}{port}{path}")
}

/// True when `headers` (a 401's) challenge for a nonce: a `WWW-Authenticate` with a
/// `DPoP` challenge whose `error` parameter is `use_dpop_nonce` (RFC 9449 §9), read as
/// auth-params (RFC 9110 §11.2: whitespace around `=`, quoted or not; text inside a
/// quoted string is never a challenge).
pub fn is_nonce_challenge(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(super::challenge::parse)
        .flatten()
        .any(|c| {
            c.scheme.eq_ignore_ascii_case("DPoP") && c.param("error") == Some("use_dpop_nonce")
        })
}

/// The `DPoP-Nonce` of a response, if it has exactly one and it is a valid nonce (RFC
/// 9449 §8.1: 1*NQCHAR), at most 1 KiB: what a server sends is kept, so it is checked.
pub fn nonce_of(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(DPOP_NONCE).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let nonce = value.to_str().ok()?;
    let nqchar = |b: u8| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e);
    (!nonce.is_empty() && nonce.len() <= 1024 && nonce.bytes().all(nqchar)).then_some(nonce)
}

/// One server's latest nonce (an IdP's): a lock-free cell.
#[derive(Default)]
pub struct NonceCell(ArcSwapOption<String>);

impl NonceCell {
    pub fn get(&self) -> Option<Arc<String>> {
        self.0.load_full()
    }

    /// Keeps the nonce of `headers`, if they carry one.
    pub fn update(&self, headers: &HeaderMap) {
        if let Some(n) = nonce_of(headers) {
            if self.get().is_none_or(|old| *old != n) {
                self.0.store(Some(Arc::new(n.to_string())));
            }
        }
    }
}

impl fmt::Debug for NonceCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceCell")
    }
}

/// The latest nonce of each upstream authority of a route: a small copy-on-write list
/// behind an `ArcSwap` (one load per request of a DPoP route; a store only when a server
/// sends a new nonce). At most [`Nonces::MAX`] authorities; the oldest goes first.
#[derive(Default)]
pub struct Nonces(ArcSwap<Vec<(Box<str>, Arc<str>)>>);

impl Nonces {
    pub const MAX: usize = 64;

    /// The latest nonce `authority` sent.
    pub fn get(&self, authority: &str) -> Option<Arc<str>> {
        self.0
            .load()
            .iter()
            .find(|(a, _)| &**a == authority)
            .map(|(_, n)| n.clone())
    }

    /// Keeps the nonce of `headers` (a response from `authority`), if they carry one.
    /// Concurrent updates may lose one another's nonce: the server then asks again.
    pub fn update(&self, authority: &str, headers: &HeaderMap) {
        let Some(nonce) = nonce_of(headers) else {
            return;
        };
        if self.get(authority).as_deref() == Some(nonce) {
            return;
        }
        let current = self.0.load();
        let mut next: Vec<(Box<str>, Arc<str>)> = current
            .iter()
            .filter(|(a, _)| &**a != authority)
            .cloned()
            .collect();
        if next.len() >= Self::MAX {
            next.remove(0);
        }
        next.push((authority.into(), nonce.into()));
        self.0.store(Arc::new(next));
    }
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonces({} authorities)", self.0.load().len())
    }
}

#[cfg(test)]
mod tests;
