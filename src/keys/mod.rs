//! Key material read from files: the private keys that sign `private_key_jwt` client
//! assertions, DPoP proofs and HTTP message signatures ([`SigningKey`]: RSA, P-256 and
//! Ed25519 PEM), the shared secrets of HMAC signatures ([`HmacKey`]), and the
//! certificate and key of a `tls_client_auth` identity.
//!
//! Keys are loaded once, when the config is compiled, and carried in the compiled config;
//! the token client uses what was loaded and never reads a key file itself. Each loaded
//! key carries a fingerprint of its material, so a rotated key file yields a new token
//! identity on reload. `Debug` prints `[redacted]` for every key, and no error message
//! holds key material: errors name the file only.
//!
//! This module sits below `config` and `token` and imports neither.

mod der;
mod jwk;

pub use jwk::thumbprint;

use crate::secret::{fingerprint, Fingerprint};
use base64::Engine;
use der::{p256_sec1_to_pkcs8, rsa_pss_pkcs8_inner};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RSA_PSS_SHA512,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;

/// Signature algorithms, by their JWS names (RFC 7518 §3.1, RFC 8037 §3.1). HTTP message
/// signatures use three of them under other names: `ecdsa-p256-sha256` is ES256,
/// `rsa-pss-sha512` is PS512 and `ed25519` is EdDSA (RFC 9421 §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256, signatures in the fixed `r || s` form.
    Es256,
    /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, 32-byte salt).
    Ps256,
    /// RSASSA-PSS with SHA-512 (MGF1 SHA-512, 64-byte salt).
    Ps512,
    /// Ed25519 (RFC 8032), no pre-hash.
    EdDsa,
}

impl SigningAlg {
    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::Ps256 => "PS256",
            SigningAlg::Ps512 => "PS512",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    fn is_rsa(self) -> bool {
        matches!(
            self,
            SigningAlg::Rs256 | SigningAlg::Ps256 | SigningAlg::Ps512
        )
    }
}

/// A private key that signs with one algorithm (client assertions, DPoP proofs, HTTP
/// message signatures), with the thumbprints of a certificate that may follow it in the
/// same file.
pub struct SigningKey {
    key: KeyPair,
    alg: SigningAlg,
    /// `x5t#S256` and `x5t`: thumbprints of a certificate in the key file (Entra ID's
    /// certificate credentials identify the key this way).
    thumbprints: Option<(String, String)>,
    fingerprint: Fingerprint,
    rng: SystemRandom,
}

enum KeyPair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl SigningKey {
    /// Loads a PEM private key for `alg` (PKCS#8; PKCS#1 for RSA; SEC1 for P-256), and
    /// the first certificate in the same file if there is one. Errors name the file,
    /// never its content.
    pub fn load(path: &Path, alg: SigningAlg) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "cannot read the private key {}: no such file",
                    path.display()
                )
            } else {
                no_private_key(path)
            }
        })?;
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| no_private_key(path))?;
        let rng = SystemRandom::new();
        let key = key_pair(path, alg, &der, &rng)?;
        let cert = CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(Result::ok);
        let thumbprints = cert.as_ref().map(|cert| {
            let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
            (
                b64(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref()),
                b64(
                    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref())
                        .as_ref(),
                ),
            )
        });
        let cert_der: &[u8] = cert.as_ref().map_or(&[], |c| c.as_ref());
        Ok(Self {
            key,
            alg,
            thumbprints,
            fingerprint: material_fingerprint(&[der.secret_der(), cert_der]),
            rng,
        })
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// True when the key file also holds the certificate (needed by Entra ID).
    pub fn has_certificate(&self) -> bool {
        self.thumbprints.is_some()
    }

    /// `x5t#S256` and `x5t` of the certificate in the key file, if any.
    pub fn thumbprints(&self) -> Option<(&str, &str)> {
        self.thumbprints
            .as_ref()
            .map(|(s256, sha1)| (s256.as_str(), sha1.as_str()))
    }

    /// The SHA-256 of the loaded key and certificate: identifies the material without
    /// holding it.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The signature of `message` with this key and its algorithm (for ES256, JOSE's and
    /// RFC 9421's fixed-size `r || s` form). Fails only when the system has no randomness.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |_| "signing failed: no randomness".to_string();
        match &self.key {
            KeyPair::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                let padding: &'static dyn ring::signature::RsaEncoding = match self.alg {
                    SigningAlg::Ps256 => &RSA_PSS_SHA256,
                    SigningAlg::Ps512 => &RSA_PSS_SHA512,
                    _ => &RSA_PKCS1_SHA256,
                };
                k.sign(padding, &self.rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
            KeyPair::Ec(k) => Ok(k
                .sign(&self.rng, message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            KeyPair::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Two keys are equal when their material is.
impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.alg == other.alg && self.fingerprint == other.fingerprint
    }
}

impl Eq for SigningKey {}

fn no_private_key(path: &Path) -> String {
    format!("{} holds no PEM private key", path.display())
}

fn key_pair(
    path: &Path,
    alg: SigningAlg,
    der: &PrivateKeyDer<'_>,
    rng: &SystemRandom,
) -> Result<KeyPair, String> {
    let key = match (alg, der) {
        // `openssl genpkey -algorithm RSA-PSS` marks the key for PSS only (OID
        // id-RSASSA-PSS): its inner PKCS#1 key is what ring reads.
        (a, PrivateKeyDer::Pkcs8(k)) if a.is_rsa() => {
            match rsa_pss_pkcs8_inner(k.secret_pkcs8_der()) {
                Some(pkcs1) => RsaKeyPair::from_der(pkcs1),
                None => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            }
            .map(KeyPair::Rsa)
        }
        (a, PrivateKeyDer::Pkcs1(k)) if a.is_rsa() => {
            RsaKeyPair::from_der(k.secret_pkcs1_der()).map(KeyPair::Rsa)
        }
        (SigningAlg::Es256, PrivateKeyDer::Pkcs8(k)) => {
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der(), rng)
                .map(KeyPair::Ec)
        }
        // `BEGIN EC PRIVATE KEY` (what `openssl ecparam -genkey` writes): wrapped into the
        // PKCS#8 form ring reads.
        (SigningAlg::Es256, PrivateKeyDer::Sec1(k)) => EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &p256_sec1_to_pkcs8(k.secret_sec1_der()),
            rng,
        )
        .map(KeyPair::Ec),
        // OpenSSL writes PKCS#8 v1 (no public key inside): ring derives the public key.
        (SigningAlg::EdDsa, PrivateKeyDer::Pkcs8(k)) => {
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(k.secret_pkcs8_der()).map(KeyPair::Ed)
        }
        _ => return Err(does_not_fit(path, alg)),
    };
    key.map_err(|_| does_not_fit(path, alg))
}

fn does_not_fit(path: &Path, alg: SigningAlg) -> String {
    let needs = match alg {
        SigningAlg::Es256 => "a P-256 EC key",
        SigningAlg::EdDsa => "an Ed25519 key",
        _ => "an RSA key of 2048 bits or more",
    };
    format!(
        "{}: the key does not fit {} (it needs {needs})",
        path.display(),
        alg.name()
    )
}

/// A shared secret for HMAC-SHA256 signatures: the raw bytes of a file, nothing decoded.
pub struct HmacKey {
    key: ring::hmac::Key,
    len: usize,
    fingerprint: Fingerprint,
}

impl HmacKey {
    /// Reads `path`; its bytes, exactly as they are, are the key. Errors name the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the key {}: {}",
                path.display(),
                crate::file::io_reason(&e)
            )
        })?;
        if bytes.is_empty() {
            return Err(format!(
                "{} is empty: an HMAC key needs bytes",
                path.display()
            ));
        }
        Ok(Self::new(&bytes))
    }

    /// The key of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
            len: bytes.len(),
            fingerprint: fingerprint(bytes),
        }
    }

    /// The key's length in bytes (RFC 2104 advises at least the hash's 32).
    pub fn byte_len(&self) -> usize {
        self.len
    }

    /// The HMAC-SHA256 of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        ring::hmac::sign(&self.key, message).as_ref().to_vec()
    }

    /// The SHA-256 of the key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey([redacted])")
    }
}

/// A TLS client certificate chain and its private key (RFC 8705 `tls_client_auth`).
pub struct ClientIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl ClientIdentity {
    /// Wraps a loaded chain and key (`trust::client_identity` loads and checks them).
    pub fn new(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        let mut parts: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
        parts.push(key.secret_der());
        let fingerprint = material_fingerprint(&parts);
        Self {
            certs,
            key,
            fingerprint,
        }
    }

    /// The chain and key in the form rustls takes (a copy).
    pub fn pair(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.certs.clone(), self.key.clone_key())
    }

    /// The SHA-256 of the loaded certificates and key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certs", &self.certs.len())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Two identities are equal when their material is.
impl PartialEq for ClientIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for ClientIdentity {}

/// One fingerprint over several DER blobs, each length-prefixed so that moving a
/// boundary between them changes the result.
fn material_fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut all = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for p in parts {
        all.extend_from_slice(&(p.len() as u64).to_be_bytes());
        all.extend_from_slice(p);
    }
    fingerprint(&all)
}

#[cfg(test)]
pub(crate) mod tests;
