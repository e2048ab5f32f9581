//! DPoP (SPEC §10, RFC 9449) end to end: a fake IdP that binds tokens to the proof key
//! and asks for a nonce, a fake API that checks every proof claim with an independent
//! verifier, rejects reused proofs and asks for its own nonce.

use crate::support::dpop::{DpopApi, DpopIdp, IdpOptions};
use crate::support::jose::{self, verify_with_embedded_jwk};
use crate::support::{direct_client, keys, TestSidecar};

fn config(idp: &DpopIdp, api: &DpopApi, key: &std::path::Path, alg: &str) -> String {
    format!(
        "providers:\n  bound:\n    token_url: {}\n    client_id: svc\n    client_secret: s3cr3t-client-secret\n    dpop: {{ key_file: {}, alg: {alg} }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: bound\n    upstream: {}\n",
        idp.token_url(),
        key.display(),
        api.url()
    )
}

/// The IdP wants a nonce first and the API too: one request through the sidecar costs
/// two IdP calls (the nonce dance) but one token, and two API calls (the challenge, then
/// the replay with the same token and a new proof). Every proof passes every check.
#[tokio::test]
async fn the_nonce_dances_with_idp_and_api_end_in_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = keys::p256(dir.path());
    let idp = DpopIdp::start(IdpOptions {
        nonce: Some("idp-n1"),
        next_nonce: Some("idp-n2"),
        ..IdpOptions::default()
    })
    .await;
    let api = DpopApi::start(Some("api-n1")).await;
    let sc = TestSidecar::start(&config(&idp, &api, &key.path, "ES256")).await;
    let resp = direct_client()
        .post(sc.url("/api/items?page=2#frag"))
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "dpop ok");
    assert_eq!(idp.problems(), Vec::<String>::new());
    assert_eq!(api.problems(), Vec::<String>::new());
    // The IdP: asked for its nonce once, then issued one token to a proof carrying it.
    assert_eq!((idp.requests(), idp.issued().len()), (2, 1));
    let idp_proofs = idp.proofs();
    assert!(idp_proofs[0].claims.get("nonce").is_none());
    assert_eq!(idp_proofs[1].claims["nonce"], "idp-n1");
    assert_eq!(idp_proofs[1].claims["htm"], "POST");
    let token = idp.issued()[0].clone();
    let jkt = jose::thumbprint(&idp_proofs[1].header["jwk"]).unwrap();
    assert_eq!(
        jose::token_claims(&token).unwrap()["cnf"]["jkt"],
        jkt.as_str()
    );
    // The API: challenged once, then took the same token with a new proof and the nonce.
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], (format!("DPoP {token}"), 401));
    assert_eq!(seen[1], (format!("DPoP {token}"), 200));
    let proofs = api.proofs();
    assert_eq!(proofs.len(), 2);
    assert!(proofs[0].claims.get("nonce").is_none());
    assert_eq!(proofs[1].claims["nonce"], "api-n1");
    assert_ne!(
        proofs[0].claims["jti"], proofs[1].claims["jti"],
        "a fresh proof for the replay"
    );
    let htu = format!("{}/api/items", api.url());
    assert_eq!(
        proofs[1].claims["htu"],
        htu.as_str(),
        "no query, no fragment"
    );
    assert_eq!(proofs[1].claims["htm"], "POST");
    assert_eq!(proofs[1].claims["ath"], jose::ath(&token).as_str());
    assert_eq!(proofs[1].header["alg"], "ES256");
    // The next request carries the API's nonce at once: no challenge, no new token.
    assert_eq!(sc.get_status("/api/again").await, 200);
    assert_eq!(api.seen().len(), 3);
    assert_eq!(api.proofs()[2].claims["nonce"], "api-n1");
    assert_eq!(idp.requests(), 2);
    // A refresh carries the nonce the IdP handed out with the token: no second dance.
    let refreshed = direct_client()
        .post(sc.admin_url("/providers/bound/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    assert_eq!((idp.requests(), idp.issued().len()), (3, 2));
    assert_eq!(idp.proofs()[2].claims["nonce"], "idp-n2");
    assert_eq!(idp.problems(), Vec::<String>::new());
    assert_eq!(api.problems(), Vec::<String>::new());
    sc.stop().await;
}

/// With `preserve_host` the upstream receives the app's Host, and rebuilds `htu` from it
/// (RFC 9449 §4.3 check 9): the proof names that Host, not the upstream URL's authority.
#[tokio::test]
async fn with_preserve_host_the_proof_names_the_host_the_upstream_receives() {
    let dir = tempfile::tempdir().unwrap();
    let key = keys::p256(dir.path());
    let idp = DpopIdp::start(IdpOptions::default()).await;
    let api = DpopApi::start(Some("api-n1")).await;
    let yaml = format!(
        "server_names: [app.internal]\n{}    preserve_host: true\n",
        config(&idp, &api, &key.path, "ES256")
    );
    let sc = TestSidecar::start(&yaml).await;
    let resp = direct_client()
        .get(sc.url("/api/items?q=1"))
        .header("host", "app.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(api.problems(), Vec::<String>::new());
    let proofs = api.proofs();
    assert_eq!(proofs.len(), 2, "the nonce challenge, then the replay");
    for p in &proofs {
        assert_eq!(p.claims["htu"], "http://app.internal/api/items");
    }
    sc.stop().await;
}

/// A nonce challenge is replayed only with a valid nonce other than the one the proof
/// carried, and never costs the token: the token is fine, only the proof was not.
#[tokio::test]
async fn a_nonce_challenge_is_replayed_only_with_a_new_nonce_and_never_drops_the_token() {
    use crate::support::FakeUpstream;
    let challenge = || {
        let v = r#"DPoP error="use_dpop_nonce", error_description="nonce please""#;
        ("www-authenticate", v.to_string())
    };
    let api = FakeUpstream::with(move |_, i| {
        let (status, headers) = match i {
            // No DPoP-Nonce at all: nothing to replay with.
            0 => (401, vec![challenge()]),
            // A nonce with a success: the next proof carries it.
            1 => (200, vec![("dpop-nonce", "n1".to_string())]),
            // The nonce the proof carried: asking again would get the same answer.
            2 => (401, vec![challenge(), ("dpop-nonce", "n1".to_string())]),
            // A new nonce: replayed (4) with it, and challenged again with another one.
            3 => (401, vec![challenge(), ("dpop-nonce", "n2".to_string())]),
            4 => (401, vec![challenge(), ("dpop-nonce", "n3".to_string())]),
            // An invalid nonce (a space is not an NQCHAR).
            5 => (401, vec![challenge(), ("dpop-nonce", "n 4".to_string())]),
            _ => (200, vec![]),
        };
        (status, headers, bytes::Bytes::from_static(b"api"))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = keys::p256(dir.path());
    let idp = DpopIdp::start(IdpOptions::default()).await;
    let yaml = format!(
        "providers:\n  bound:\n    token_url: {}\n    client_id: svc\n    client_secret: s3cr3t-client-secret\n    dpop: {{ key_file: {} }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: bound\n    upstream: {}\n",
        idp.token_url(),
        key.path.display(),
        api.url()
    );
    let sc = TestSidecar::start(&yaml).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(sc.get_status("/api/x").await);
    }
    assert_eq!(statuses, [401, 200, 401, 401, 401, 200]);
    let seen = api.seen();
    assert_eq!(seen.len(), 7, "one replay only: the new nonce n2");
    let nonces: Vec<Option<String>> = seen
        .iter()
        .map(|s| {
            let (_, claims) = verify_with_embedded_jwk(s.header("dpop").unwrap()).unwrap();
            claims["nonce"].as_str().map(str::to_string)
        })
        .collect();
    let n = |s: &str| Some(s.to_string());
    assert_eq!(
        nonces,
        [None, None, n("n1"), n("n1"), n("n2"), n("n3"), n("n3")]
    );
    // The same token throughout: no challenge dropped it.
    assert_eq!(idp.issued().len(), 1);
    let token = format!("DPoP {}", idp.issued()[0]);
    assert!(seen
        .iter()
        .all(|s| s.header("authorization") == Some(token.as_str())));
    sc.stop().await;
}

/// Every DPoP algorithm: the proofs verify with the key in their header.
#[tokio::test]
async fn every_dpop_algorithm_makes_valid_proofs() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, key) in [
        ("EdDSA", keys::ed25519(dir.path())),
        ("RS256", keys::rsa(dir.path())),
        ("PS256", keys::rsa(dir.path())),
    ] {
        let idp = DpopIdp::start(IdpOptions::default()).await;
        let api = DpopApi::start(None).await;
        let sc = TestSidecar::start(&config(&idp, &api, &key.path, alg)).await;
        assert_eq!(sc.get_status("/api/x").await, 200, "{alg}");
        assert_eq!(idp.problems(), Vec::<String>::new(), "{alg}");
        assert_eq!(api.problems(), Vec::<String>::new(), "{alg}");
        assert_eq!(api.proofs()[0].header["alg"], alg);
        assert_eq!(idp.proofs()[0].header["alg"], alg);
        sc.stop().await;
    }
}

/// SPEC §10: the token must come back as DPoP; a Bearer token from a DPoP request is not
/// a token this provider can use.
#[tokio::test]
async fn a_bearer_token_for_a_dpop_provider_is_an_invalid_response() {
    let dir = tempfile::tempdir().unwrap();
    let key = keys::p256(dir.path());
    let idp = DpopIdp::start(IdpOptions {
        token_type: "Bearer",
        ..IdpOptions::default()
    })
    .await;
    let api = DpopApi::start(None).await;
    let sc = TestSidecar::start(&config(&idp, &api, &key.path, "ES256")).await;
    let resp = direct_client().get(sc.url("/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.headers()["x-token-sidecar-error"],
        "token_invalid_response"
    );
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("token_type Bearer, not DPoP"),
        "{body}"
    );
    assert_eq!(
        idp.requests(),
        1,
        "not retried: asking again gives the same answer"
    );
    assert!(api.seen().is_empty());
    sc.stop().await;
}

/// The fake API is strict: a proof made by hand with the right key passes once, and the
/// same proof again is refused as a reused `jti` (so the checks above mean something).
#[tokio::test]
async fn the_fake_api_refuses_a_reused_proof() {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let key = keys::p256(dir.path());
    let idp = DpopIdp::start(IdpOptions::default()).await;
    let api = DpopApi::start(None).await;
    let sc = TestSidecar::start(&config(&idp, &api, &key.path, "ES256")).await;
    assert_eq!(sc.get_status("/api/x").await, 200);
    let token = idp.issued()[0].clone();
    let header = api.proofs()[0].header.clone();
    let der = rustls::pki_types::PrivateKeyDer::from_pem_file(&key.path).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der(), &rng).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": "hand-made-proof-1", "htm": "GET", "htu": format!("{}/api/x", api.url()),
        "iat": now, "ath": jose::ath(&token),
    });
    let input = format!(
        "{}.{}",
        jose::b64(header.to_string().as_bytes()),
        jose::b64(claims.to_string().as_bytes())
    );
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    let proof = format!("{input}.{}", jose::b64(sig.as_ref()));
    let send = || {
        direct_client()
            .get(format!("{}/api/x", api.url()))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof.clone())
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200, "{:?}", api.problems());
    assert_eq!(send().await.unwrap().status(), 401);
    assert_eq!(api.problems(), ["api: a reused jti"]);
    sc.stop().await;
}

/// RFC 9449 §7.1 Figure 13: the RFC's own resource request proof verifies with the test
/// verifier, names the RFC's `ath`, and its key has the RFC's `jkt` (§6.1).
#[test]
fn the_test_verifier_accepts_the_rfc9449_example_proof() {
    let proof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
    let (header, claims) = verify_with_embedded_jwk(proof).unwrap();
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(
        claims["htu"],
        "https://resource.example.org/protectedresource"
    );
    assert_eq!(
        claims["ath"],
        jose::ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU").as_str()
    );
    assert_eq!(
        jose::thumbprint(&header["jwk"]).unwrap(),
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    );
    let tampered = proof.replace("eyJqdGkiOiJlMWoz", "eyJqdGkiOiJlMWo0");
    assert!(verify_with_embedded_jwk(&tampered).is_err());
}
