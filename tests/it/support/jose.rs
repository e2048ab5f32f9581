//! An independent JOSE verifier for the tests, written from RFC 7515, RFC 7518, RFC 7638,
//! RFC 8037 and RFC 9449: it shares no code with the sidecar's signing (ring's
//! verification primitives only).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::Value;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("not base64url: {s}"))
}

/// RFC 9449 §4.2 `ath`: base64url(SHA-256(token)).
pub fn ath(token: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// RFC 7638 §3.2: the thumbprint over the required members, in lexicographic order.
pub fn thumbprint(jwk: &Value) -> Result<String, String> {
    let s = |k: &str| {
        jwk[k]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("jwk without {k}"))
    };
    let canonical = match jwk["kty"].as_str() {
        Some("EC") => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        Some("RSA") => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        Some("OKP") => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s("crv")?, s("x")?),
        other => return Err(format!("unknown kty {other:?}")),
    };
    Ok(b64(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    )
    .as_ref()))
}

/// Verifies a compact JWS signed with the key in its own `jwk` header (a DPoP proof)
/// and returns (header, payload).
pub fn verify_with_embedded_jwk(jwt: &str) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, sig] = parts[..] else {
        return Err("not a compact JWS".into());
    };
    let header: Value =
        serde_json::from_slice(&unb64(h)?).map_err(|_| "header is not JSON".to_string())?;
    let payload: Value =
        serde_json::from_slice(&unb64(p)?).map_err(|_| "payload is not JSON".to_string())?;
    let jwk = &header["jwk"];
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        if jwk.get(private).is_some() {
            return Err(format!("the jwk holds the private member {private}"));
        }
    }
    let message = format!("{h}.{p}");
    let sig = unb64(sig)?;
    let field = |k: &str| unb64(jwk[k].as_str().unwrap_or_default());
    let ok = match (header["alg"].as_str(), jwk["kty"].as_str()) {
        (Some("ES256"), Some("EC")) if jwk["crv"] == "P-256" => {
            let mut point = vec![4u8];
            point.extend(field("x")?);
            point.extend(field("y")?);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message.as_bytes(), &sig)
        }
        (Some(alg @ ("RS256" | "PS256")), Some("RSA")) => {
            let key = signature::RsaPublicKeyComponents {
                n: field("n")?,
                e: field("e")?,
            };
            let params = if alg == "RS256" {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            key.verify(params, message.as_bytes(), &sig)
        }
        (Some("EdDSA"), Some("OKP")) if jwk["crv"] == "Ed25519" => {
            UnparsedPublicKey::new(&signature::ED25519, field("x")?)
                .verify(message.as_bytes(), &sig)
        }
        (alg, kty) => return Err(format!("unsupported alg {alg:?} with kty {kty:?}")),
    };
    ok.map_err(|_| "the signature does not verify with the jwk".to_string())?;
    Ok((header, payload))
}

/// The claims of an unsigned JWT-shaped token (`header.payload.`): what the fake IdP
/// issues and the fake API reads.
pub fn token_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&unb64(payload).ok()?).ok()
}
