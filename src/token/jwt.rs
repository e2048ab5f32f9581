//! Reading (never verifying) a JWT's claims: the `exp` fallback of SPEC §5 and the
//! `claims` of `token-sidecar token`. The token's own signature is the API's business.

use base64::Engine;

/// The decoded payload of a compact JWS (`header.payload.signature`), if `token` is one.
pub fn claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The `exp` claim as seconds since the Unix epoch.
pub fn exp(token: &str) -> Option<u64> {
    claims(token)?
        .get("exp")?
        .as_f64()
        .filter(|e| *e > 0.0)
        .map(|e| e as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", e(r#"{"alg":"none"}"#), e(payload))
    }

    #[test]
    fn reads_claims_and_exp() {
        let t = jwt(r#"{"sub":"svc","exp":1900000000}"#);
        assert_eq!(exp(&t), Some(1_900_000_000));
        assert_eq!(claims(&t).unwrap()["sub"], "svc");
    }

    #[test]
    fn opaque_tokens_have_no_claims() {
        for t in [
            "opaque",
            "a.b",
            "a.b.c.d",
            "x.!!!.y",
            &jwt("[1,2]"),
            &jwt(r#"{"exp":"soon"}"#),
        ] {
            assert_eq!(exp(t), None, "{t}");
        }
    }
}
