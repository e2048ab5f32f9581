//! The public half of a [`SigningKey`] as a JSON Web Key (RFC 7517, RFC 7518 §6, RFC 8037
//! §2) and its SHA-256 thumbprint (RFC 7638), for the `jwk` header of DPoP proofs and the
//! `cnf.jkt` an IdP binds tokens to.

use super::{KeyPair, SigningKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::KeyPair as _;
use serde_json::{json, Value};

impl SigningKey {
    /// The public key as a JWK with only its required members (no private part, no
    /// `kid`, `alg` or `use`): exactly the members its thumbprint is computed over.
    pub fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match &self.key {
            KeyPair::Rsa(k) => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)})
            }
            // The uncompressed point: 0x04 || x || y, 32 bytes each.
            KeyPair::Ec(k) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            KeyPair::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    /// The RFC 7638 JWK SHA-256 thumbprint of the public key, base64url: what an IdP
    /// puts in a bound token's `cnf.jkt` (RFC 9449 §6.1).
    pub fn jwk_thumbprint(&self) -> String {
        thumbprint(&self.public_jwk())
    }
}

/// RFC 7638 §3: the SHA-256 of the JWK's members (`jwk` holds the required ones only),
/// in lexicographic order, without whitespace.
pub fn thumbprint(jwk: &Value) -> String {
    let mut members: Vec<(&String, &Value)> = jwk
        .as_object()
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
        .collect();
    let canonical = format!("{{{}}}", body.join(","));
    URL_SAFE_NO_PAD.encode(crate::secret::fingerprint(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::thumbprint;
    use serde_json::json;

    /// RFC 7638 §3.1: the thumbprint of the RSA key of the example.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
        });
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// RFC 9449 §6.1: the `jkt` of the proof key of the examples in §4 and §5.
    #[test]
    fn rfc9449_example_jkt() {
        let jwk = json!({
            "kty": "EC",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
            "crv": "P-256",
        });
        assert_eq!(
            thumbprint(&jwk),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }
}
