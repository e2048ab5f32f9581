//! Key material read from PEM files: the private key that signs `private_key_jwt` client
//! assertions and the certificate and key of a `tls_client_auth` identity.
//!
//! Keys are loaded once, when the config is compiled, and carried in the compiled config;
//! the token client uses what was loaded and never reads a key file itself. Each loaded
//! key carries a fingerprint of its material, so a rotated key file yields a new token
//! identity on reload. `Debug` prints `[redacted]` for every key, and no error message
//! holds key material: errors name the file only.
//!
//! This module sits below `config` and `token` and imports neither.

use crate::secret::{fingerprint, Fingerprint};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;

/// JWS algorithms for client assertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    Rs256,
    Es256,
    Ps256,
}

impl SigningAlg {
    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::Ps256 => "PS256",
        }
    }
}

/// A private key for signing client assertions (`private_key_jwt`), with the thumbprints
/// of the certificate that may follow it in the same file.
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
}

impl SigningKey {
    /// Loads a PEM private key (PKCS#8, or PKCS#1 for RSA) for `alg`, and the first
    /// certificate in the same file if there is one. Errors name the file, never its
    /// content.
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

    /// The JWS signature of `message` with this key and its algorithm (for ES256, JOSE's
    /// fixed-size `r || s` form).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |_| "signing the assertion failed".to_string();
        match &self.key {
            KeyPair::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                let padding: &'static dyn ring::signature::RsaEncoding =
                    if self.alg == SigningAlg::Ps256 {
                        &RSA_PSS_SHA256
                    } else {
                        &RSA_PKCS1_SHA256
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
        (SigningAlg::Rs256 | SigningAlg::Ps256, PrivateKeyDer::Pkcs8(k)) => {
            RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).map(KeyPair::Rsa)
        }
        (SigningAlg::Rs256 | SigningAlg::Ps256, PrivateKeyDer::Pkcs1(k)) => {
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
        _ => {
            return Err(format!(
                "{}: the key does not fit signing_alg {}",
                path.display(),
                alg.name()
            ))
        }
    };
    key.map_err(|_| format!("{}: the key does not fit signing_alg {} (RSA needs 2048 bits or more; ES256 a P-256 key)", path.display(), alg.name()))
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

/// A P-256 SEC1 `ECPrivateKey` (RFC 5915) inside a PKCS#8 `PrivateKeyInfo` (RFC 5208):
/// `SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, prime256v1 }, OCTET STRING sec1 }`.
fn p256_sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    const ALGORITHM: &[u8] = &[
        0x30, 0x13, // SEQUENCE
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // 1.2.840.10045.2.1
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // 1.2.840.10045.3.1.7
    ];
    let mut body = vec![0x02, 0x01, 0x00]; // INTEGER 0
    body.extend_from_slice(ALGORITHM);
    body.push(0x04); // OCTET STRING
    der_length(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut out = vec![0x30]; // SEQUENCE
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_pem() -> String {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        )
    }

    #[test]
    fn keys_that_do_not_fit_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing =
            SigningKey::load(&dir.path().join("nope.pem"), SigningAlg::Rs256).unwrap_err();
        assert_eq!(
            missing,
            format!(
                "cannot read the private key {}: no such file",
                dir.path().join("nope.pem").display()
            )
        );
        std::fs::write(dir.path().join("ec.pem"), ec_pem()).unwrap();
        let err = SigningKey::load(&dir.path().join("ec.pem"), SigningAlg::Rs256).unwrap_err();
        assert!(err.contains("does not fit signing_alg RS256"), "{err}");
        assert!(!err.contains("PRIVATE KEY-----"));
        std::fs::write(dir.path().join("junk.pem"), "not pem").unwrap();
        let err = SigningKey::load(&dir.path().join("junk.pem"), SigningAlg::Es256).unwrap_err();
        assert!(err.ends_with("holds no PEM private key"), "{err}");
    }

    #[test]
    fn fingerprints_follow_the_material_and_debug_hides_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        let pem = ec_pem();
        std::fs::write(&a, &pem).unwrap();
        std::fs::write(&b, format!("# the same key\n{pem}")).unwrap();
        let ka = SigningKey::load(&a, SigningAlg::Es256).unwrap();
        let kb = SigningKey::load(&b, SigningAlg::Es256).unwrap();
        assert_eq!(
            ka.fingerprint(),
            kb.fingerprint(),
            "same key, same material"
        );
        assert_eq!(ka, kb);
        std::fs::write(&b, ec_pem()).unwrap();
        let kc = SigningKey::load(&b, SigningAlg::Es256).unwrap();
        assert_ne!(ka.fingerprint(), kc.fingerprint(), "a rotated key");
        assert!(!ka.has_certificate());
        let shown = format!("{ka:?}");
        assert!(
            shown.contains("[redacted]") && !shown.contains("BEGIN"),
            "{shown}"
        );
    }

    /// `openssl ecparam -genkey` writes SEC1 (`BEGIN EC PRIVATE KEY`): it loads and signs.
    #[test]
    fn sec1_ec_keys_load_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ec.pem");
        let ok = std::process::Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&path)
            .status()
            .expect("openssl is needed for this test (./test.sh installs it)")
            .success();
        assert!(ok);
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{pem}");
        let key = SigningKey::load(&path, SigningAlg::Es256).unwrap();
        let signature = key.sign(b"message").unwrap();
        let der = rustls::pki_types::PrivateKeyDer::from_pem_file(&path).unwrap();
        let rustls::pki_types::PrivateKeyDer::Sec1(sec1) = der else {
            panic!("not SEC1")
        };
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &p256_sec1_to_pkcs8(sec1.secret_sec1_der()),
            &SystemRandom::new(),
        )
        .unwrap();
        use ring::signature::KeyPair as _;
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            pair.public_key().as_ref(),
        )
        .verify(b"message", &signature)
        .expect("the signature verifies with the key's public half");
    }
}
