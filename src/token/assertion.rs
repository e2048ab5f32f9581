//! Client assertions (RFC 7523 §2.2, OpenID Connect Core §9 `private_key_jwt`): a JWT
//! signed with the client's private key, new for every token request. The key is loaded
//! once, when the config is compiled ([`crate::keys::SigningKey`]); this module only builds
//! and signs the JWT. No assertion is ever logged.

pub use crate::keys::SigningAlg;
use crate::keys::SigningKey;
use crate::secret::Secret;
use base64::Engine;
use ring::rand::SystemRandom;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long an assertion is valid (RFC 7523 asks for a short life).
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// Signs client assertions for one provider, with the key the config loaded.
pub struct AssertionSigner {
    key: Arc<SigningKey>,
    key_id: Option<String>,
    rng: SystemRandom,
}

impl fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("alg", &self.key.alg())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl AssertionSigner {
    pub fn new(key: Arc<SigningKey>, key_id: Option<String>) -> Self {
        Self {
            key,
            key_id,
            rng: SystemRandom::new(),
        }
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
        let mut header = serde_json::json!({"alg": self.key.alg().name(), "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        if let Some((s256, sha1)) = self.key.thumbprints() {
            header["x5t#S256"] = serde_json::Value::String(s256.to_string());
            header["x5t"] = serde_json::Value::String(sha1.to_string());
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
        let signature = self.key.sign(signing_input.as_bytes())?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{
        EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    };

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
        let key = SigningKey::load(&dir.path().join("k.pem"), SigningAlg::Es256).unwrap();
        let signer = AssertionSigner::new(Arc::new(key), Some("k1".into()));
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
}
