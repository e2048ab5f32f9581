//! Client assertions (RFC 7523 §2.2, OpenID Connect Core §9 `private_key_jwt`): a JWT
//! signed with the client's private key, new for every token request. The key is read once
//! at start-up and never leaves this module; no assertion is ever logged.

use crate::secret::Secret;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long an assertion is valid (RFC 7523 asks for a short life).
const ASSERTION_LIFETIME_SECS: u64 = 60;

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

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// Signs client assertions for one provider.
pub struct AssertionSigner {
    key: Key,
    alg: SigningAlg,
    key_id: Option<String>,
    /// `x5t#S256` and `x5t`: thumbprints of a certificate in the key file (Entra ID's
    /// certificate credentials identify the key this way).
    thumbprints: Option<(String, String)>,
    rng: SystemRandom,
}

impl fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl AssertionSigner {
    /// Loads a PEM private key (PKCS#8, or PKCS#1 for RSA) for `alg`. Errors name the
    /// file, never its content.
    pub fn load(path: &Path, alg: SigningAlg, key_id: Option<String>) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
            rustls::pki_types::pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                format!(
                    "cannot read the private key {}: no such file",
                    path.display()
                )
            }
            _ => format!("{} holds no PEM private key", path.display()),
        })?;
        let rng = SystemRandom::new();
        let key = match (alg, &der) {
            (SigningAlg::Rs256 | SigningAlg::Ps256, PrivateKeyDer::Pkcs8(k)) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).map(Key::Rsa),
            (SigningAlg::Rs256 | SigningAlg::Ps256, PrivateKeyDer::Pkcs1(k)) => RsaKeyPair::from_der(k.secret_pkcs1_der()).map(Key::Rsa),
            (SigningAlg::Es256, PrivateKeyDer::Pkcs8(k)) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der(), &rng).map(Key::Ec)
            }
            (SigningAlg::Es256, PrivateKeyDer::Sec1(_)) => {
                return Err(format!(
                    "{}: an EC key in SEC1 form; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.p8.pem)",
                    path.display()
                ))
            }
            _ => return Err(format!("{}: the key does not fit signing_alg {}", path.display(), alg.name())),
        }
        .map_err(|_| format!("{}: the key does not fit signing_alg {} (RSA needs 2048 bits or more; ES256 a P-256 key)", path.display(), alg.name()))?;
        let thumbprints = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .ok()
            .and_then(|mut certs| certs.next())
            .and_then(Result::ok)
            .map(|cert| {
                let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
                (
                    b64(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref()),
                    b64(ring::digest::digest(
                        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                        cert.as_ref(),
                    )
                    .as_ref()),
                )
            });
        Ok(Self {
            key,
            alg,
            key_id,
            thumbprints,
            rng,
        })
    }

    /// True when the key file also holds the certificate (needed by Entra ID).
    pub fn has_certificate(&self) -> bool {
        self.thumbprints.is_some()
    }

    /// A fresh assertion: iss = sub = `client_id`, `aud`, a random `jti`, `iat`, `exp` 60 s later.
    pub fn sign(&self, client_id: &str, audience: &str) -> Result<Secret, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&self.rng, &mut jti)
            .map_err(|_| "no randomness for the assertion".to_string())?;
        let mut header = serde_json::json!({"alg": self.alg.name(), "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        if let Some((s256, sha1)) = &self.thumbprints {
            header["x5t#S256"] = serde_json::Value::String(s256.clone());
            header["x5t"] = serde_json::Value::String(sha1.clone());
        }
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let signing_input = format!("{}.{}", b64(&header), b64(&claims));
        let signature = match (&self.key, self.alg) {
            (Key::Rsa(k), alg) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                let padding: &'static dyn ring::signature::RsaEncoding = if alg == SigningAlg::Ps256
                {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                k.sign(padding, &self.rng, signing_input.as_bytes(), &mut sig)
                    .map_err(|_| "signing the assertion failed".to_string())?;
                sig
            }
            // FIXED signing gives JOSE's r||s form directly.
            (Key::Ec(k), _) => k
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| "signing the assertion failed".to_string())?
                .as_ref()
                .to_vec(),
        };
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn es256_assertions_verify_and_carry_the_claims() {
        let dir = tempfile::tempdir().unwrap();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        std::fs::write(dir.path().join("k.pem"), pem).unwrap();
        let signer = AssertionSigner::load(
            &dir.path().join("k.pem"),
            SigningAlg::Es256,
            Some("k1".into()),
        )
        .unwrap();
        let a = signer.sign("svc", "https://idp/token").unwrap();
        let b = signer.sign("svc", "https://idp/token").unwrap();
        let parts: Vec<&str> = a.expose().split('.').collect();
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let header: serde_json::Value = serde_json::from_slice(&dec(parts[0])).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&dec(parts[1])).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "k1");
        assert_eq!(
            (
                claims["iss"].as_str(),
                claims["sub"].as_str(),
                claims["aud"].as_str()
            ),
            (Some("svc"), Some("svc"), Some("https://idp/token"))
        );
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, kp.public_key().as_ref())
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &dec(parts[2]),
            )
            .unwrap();
        let jti_b: serde_json::Value =
            serde_json::from_slice(&dec(b.expose().split('.').nth(1).unwrap())).unwrap();
        assert_ne!(claims["jti"], jti_b["jti"], "a new jti every time");
        assert!(!format!("{signer:?}").contains("BEGIN"));
    }

    #[test]
    fn keys_that_do_not_fit_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = AssertionSigner::load(&dir.path().join("nope.pem"), SigningAlg::Rs256, None)
            .unwrap_err();
        assert!(missing.contains("no such file"), "{missing}");
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        std::fs::write(dir.path().join("ec.pem"), &pem).unwrap();
        let err =
            AssertionSigner::load(&dir.path().join("ec.pem"), SigningAlg::Rs256, None).unwrap_err();
        assert!(err.contains("does not fit signing_alg RS256"), "{err}");
        assert!(!err.contains("PRIVATE KEY-----"));
    }
}
