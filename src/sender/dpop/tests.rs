//! DPoP proofs: structure, `ath`, `htu`, challenges and nonces.

use super::*;
use ring::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};

fn es256_key() -> DpopKey {
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let path = dir.path().join("dpop.pem");
    std::fs::write(&path, pem).unwrap();
    DpopKey::new(SigningKey::load(&path, SigningAlg::Es256).unwrap())
}

fn decode(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// RFC 9449 §7.1 (Figures 13 and 14): the `ath` of the example access token.
#[test]
fn rfc9449_ath_example() {
    assert_eq!(
        ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

/// RFC 9449 §4.2 and Figure 14: a proof is a JWT typed `dpop+jwt`, with the public key
/// (and nothing private) in its header and exactly the claims of the RFC's resource
/// request example in its payload; its signature verifies with that public key.
#[test]
fn proofs_have_the_rfc9449_structure() {
    let key = es256_key();
    let claims = ProofClaims {
        htm: "GET",
        htu: "https://resource.example.org/protectedresource",
        access_token: Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        nonce: None,
    };
    let proof = key
        .proof_at(&claims, "e1j3V_bKic8-LAEB", 1562262618)
        .unwrap();
    let parts: Vec<&str> = proof.to_str().unwrap().split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode(parts[0]);
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    let jwk = &header["jwk"];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert!(jwk.get("d").is_none(), "no private part");
    assert_eq!(
        decode(parts[1]),
        serde_json::json!({
            "jti": "e1j3V_bKic8-LAEB",
            "htm": "GET",
            "htu": "https://resource.example.org/protectedresource",
            "iat": 1562262618,
            "ath": "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo",
        })
    );
    let mut point = vec![4u8];
    for c in ["x", "y"] {
        point.extend(URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap());
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("the proof verifies with the key in its header");
    assert_eq!(key.thumbprint(), crate::keys::thumbprint(jwk));
    // Token requests: no `ath`; a nonce when the server sent one; a new jti every time.
    let token_request = ProofClaims {
        htm: "POST",
        htu: "https://server.example.com/token",
        access_token: None,
        nonce: Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
    };
    let a = key.proof(&token_request).unwrap();
    let b = key.proof(&token_request).unwrap();
    let (pa, pb) = (
        decode(a.to_str().unwrap().split('.').nth(1).unwrap()),
        decode(b.to_str().unwrap().split('.').nth(1).unwrap()),
    );
    assert!(pa.get("ath").is_none());
    assert_eq!(pa["nonce"], "eyJ7S_zG.eyJH0-Z.HX4w-7v");
    assert_ne!(pa["jti"], pb["jti"]);
    assert!(
        pa["jti"].as_str().unwrap().len() >= 16,
        "at least 96 random bits"
    );
    assert!(!format!("{key:?}").contains("BEGIN"));
}

#[test]
fn htu_drops_query_fragment_and_default_ports() {
    for (uri, want) in [
        (
            "https://API.Example.com/a/b?x=1",
            Some("https://api.example.com/a/b"),
        ),
        (
            "https://api.example.com:443/a",
            Some("https://api.example.com/a"),
        ),
        ("http://api.example.com:80", Some("http://api.example.com/")),
        ("http://127.0.0.1:8080/x?y", Some("http://127.0.0.1:8080/x")),
        ("HTTPS://h:8443/p", Some("https://h:8443/p")),
        ("/origin-form", None),
    ] {
        let uri: http::Uri = uri.parse().unwrap();
        assert_eq!(htu(&uri).as_deref(), want, "{uri}");
    }
    // With another Host than the URI's authority (preserve_host): the Host counts.
    let host: http::uri::Authority = "App.Internal:80".parse().unwrap();
    assert_eq!(htu_of("http", &host, "/a"), "http://app.internal/a");
}

#[test]
fn nonce_challenges_and_nonces_are_read_strictly() {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    };
    for (www, challenge) in [
        (
            r#"DPoP error="use_dpop_nonce", error_description="x""#,
            true,
        ),
        (r#"dpop algs="ES256", error=use_dpop_nonce"#, true),
        (r#"Bearer realm="a", DPoP error="use_dpop_nonce""#, true),
        (r#"DPoP error="invalid_token""#, false),
        (r#"Bearer error="use_dpop_nonce""#, false),
        // Whitespace around `=` is allowed (RFC 9110 §11.2).
        (r#"DPoP error = "use_dpop_nonce""#, true),
        ("DPoP algs=\"ES256\",error\t=\tuse_dpop_nonce", true),
        // Inside a quoted string it is text, not a challenge.
        (r#"Bearer realm="DPoP error=\"use_dpop_nonce\"""#, false),
        (r#"Bearer realm="x, dpop error=use_dpop_nonce""#, false),
        (r#"DPoP realm="error=\"use_dpop_nonce\"""#, false),
        (r#"DPoP error_description="error=use_dpop_nonce""#, false),
        // Another error whose name merely contains it, a broken value.
        (r#"DPoP error="use_dpop_nonce_please""#, false),
        (r#"DPoP error="use_dpop_nonce"#, false),
    ] {
        let h = headers(&[("www-authenticate", www)]);
        assert_eq!(is_nonce_challenge(&h), challenge, "{www}");
    }
    // One challenge per field, in several fields.
    let two = headers(&[
        ("www-authenticate", r#"Bearer realm="api""#),
        ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
    ]);
    assert!(is_nonce_challenge(&two));
    assert_eq!(
        nonce_of(&headers(&[("dpop-nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v")])),
        Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
    );
    for bad in [
        &[("dpop-nonce", "a b")][..],
        &[("dpop-nonce", "a\"b")],
        &[("dpop-nonce", "a"), ("dpop-nonce", "b")],
    ] {
        assert_eq!(nonce_of(&headers(bad)), None, "{bad:?}");
    }
    let cell = NonceCell::default();
    cell.update(&headers(&[("dpop-nonce", "n1")]));
    cell.update(&headers(&[]));
    assert_eq!(cell.get().as_deref().map(String::as_str), Some("n1"));
    let nonces = Nonces::default();
    nonces.update("a:1", &headers(&[("dpop-nonce", "n1")]));
    nonces.update("b:1", &headers(&[("dpop-nonce", "n2")]));
    nonces.update("a:1", &headers(&[("dpop-nonce", "n3")]));
    assert_eq!(nonces.get("a:1").as_deref(), Some("n3"));
    assert_eq!(nonces.get("b:1").as_deref(), Some("n2"));
    assert_eq!(nonces.get("c:1"), None);
    for i in 0..Nonces::MAX {
        let h = {
            let mut h = HeaderMap::new();
            h.insert(DPOP_NONCE, HeaderValue::from_str(&format!("n{i}")).unwrap());
            h
        };
        nonces.update(&format!("host{i}"), &h);
    }
    assert_eq!(nonces.get("a:1"), None, "the oldest authority went first");
    assert!(nonces.get(&format!("host{}", Nonces::MAX - 1)).is_some());
}
