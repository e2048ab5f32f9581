//! HTTP message signatures (SPEC §10, RFC 9421 with RFC 9530 `Content-Digest`): the fake
//! upstream checks every request with an independent verifier (`support::httpsig`),
//! which first proves itself on the RFC's own examples.

use crate::support::fake_upstream::Seen;
use crate::support::httpsig::{verify, Received, Verified, VerifyKey};
use crate::support::keys;
use crate::support::{direct_client, provider_yaml, FakeIdp, FakeUpstream, TestSidecar};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

fn config(idp: &FakeIdp, api: &FakeUpstream, sign: &str, extra: &str) -> String {
    format!(
        "providers:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n    sign: {sign}\n{extra}",
        provider_yaml("crm", idp, ""),
        api.url()
    )
}

fn received(seen: &Seen) -> Received<'_> {
    Received {
        method: &seen.method,
        scheme: "http",
        target: &seen.uri,
        headers: &seen.headers,
        body: &seen.body,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Each algorithm: what the upstream receives verifies, covers the injected token and
/// the final URI, digests the body, and carries created, expires, nonce, keyid and alg.
#[tokio::test]
async fn every_algorithm_signs_the_request_the_upstream_receives() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hmac");
    let secret: Vec<u8> = (0..48).map(|_| fastrand::u8(..)).collect();
    std::fs::write(&secret_file, &secret).unwrap();
    let (ed, ec, rsa) = (
        keys::ed25519(dir.path()),
        keys::p256(dir.path()),
        keys::rsa(dir.path()),
    );
    let cases: [(&str, String, VerifyKey<'_>); 4] = [
        (
            "ed25519",
            format!("key_file: {}", ed.path.display()),
            VerifyKey::of(&ed.public),
        ),
        (
            "ecdsa-p256-sha256",
            format!("key_file: {}", ec.path.display()),
            VerifyKey::of(&ec.public),
        ),
        (
            "rsa-pss-sha512",
            format!("key_file: {}", rsa.path.display()),
            VerifyKey::of(&rsa.public),
        ),
        (
            "hmac-sha256",
            format!("hmac_key_file: {}", secret_file.display()),
            VerifyKey::Hmac(&secret),
        ),
    ];
    for (alg, key, verify_key) in cases {
        let idp = FakeIdp::builder().run().await;
        let api = FakeUpstream::ok().await;
        let sign = format!("{{ {key}, alg: {alg}, key_id: partner-1, components: [\"@method\", \"@target-uri\", \"@authority\", \"@path\", \"@query\", \"content-digest\", \"content-type\", \"authorization\"], expires_in: 60s }}");
        let sc = TestSidecar::start(&config(&idp, &api, &sign, "")).await;
        let resp = direct_client()
            .post(sc.url("/api/orders?page=2&q=a%20b"))
            .header("content-type", "application/json")
            .body(r#"{"amount": 42}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{alg}");
        let seen = &api.seen()[0];
        let v: Verified =
            verify(&received(seen), "sig1", verify_key).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(
            v.components,
            [
                "@method",
                "@target-uri",
                "@authority",
                "@path",
                "@query",
                "content-digest",
                "content-type",
                "authorization"
            ]
        );
        assert!(
            v.base
                .contains(&format!("\"authorization\": Bearer {}\n", idp.issued()[0])),
            "the injected token is covered"
        );
        assert!(v.base.contains(&format!(
            "\"@target-uri\": http://{}/api/orders?page=2&q=a%20b\n",
            api.addr
        )));
        assert_eq!(
            seen.header("content-digest").unwrap(),
            format!(
                "sha-256=:{}:",
                base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    br#"{"amount": 42}"#
                ))
            )
        );
        let created = v.created.unwrap();
        assert!((now() - created).abs() < 30, "{alg}: created {created}");
        assert_eq!(v.expires, Some(created + 60));
        assert!(v.nonce.as_ref().is_some_and(|n| n.len() >= 16));
        assert_eq!(v.keyid.as_deref(), Some("partner-1"));
        assert_eq!(v.alg.as_deref(), Some(alg));
        sc.stop().await;
    }
}

/// The default components (`@method`, `@target-uri`, `content-digest`, `authorization`),
/// a GET without a body (the empty body's digest, since it is covered), and a 401 replay
/// signed again: a new nonce, the renewed token.
#[tokio::test]
async fn a_replay_after_401_is_signed_again() {
    let dir = tempfile::tempdir().unwrap();
    let ed = keys::ed25519(dir.path());
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, i| match i {
        0 => (401, vec![], Bytes::from_static(b"expired")),
        _ => (200, vec![], Bytes::from_static(b"ok")),
    })
    .await;
    let sign = format!(
        "{{ key_file: {}, alg: ed25519, key_id: k1, label: partner }}",
        ed.path.display()
    );
    let sc = TestSidecar::start(&config(&idp, &api, &sign, "")).await;
    assert_eq!(sc.get_status("/api/x").await, 200);
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    let first = verify(&received(&seen[0]), "partner", VerifyKey::of(&ed.public)).unwrap();
    let second = verify(&received(&seen[1]), "partner", VerifyKey::of(&ed.public)).unwrap();
    assert_eq!(
        first.components,
        ["@method", "@target-uri", "content-digest", "authorization"]
    );
    assert_eq!(
        seen[0].header("content-digest"),
        Some("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")
    );
    assert_ne!(
        first.nonce, second.nonce,
        "a fresh signature for the replay"
    );
    assert!(
        second.base.contains(&idp.issued()[1]),
        "over the renewed token"
    );
    assert_ne!(seen[0].header("signature"), seen[1].header("signature"));
    sc.stop().await;
}

/// A body that cannot be held cannot be digested: 400 `bad_request`, never an unsigned
/// request. Known length over `max_replay_body`, and unknown length (chunked) over it.
#[tokio::test]
async fn a_body_too_large_to_digest_is_refused() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), [9u8; 32]).unwrap();
    let sign = format!(
        "{{ hmac_key_file: {}, key_id: k }}",
        secret.path().display()
    );
    let sc = TestSidecar::start(&config(&idp, &api, &sign, "    max_replay_body: 64\n")).await;
    let big = direct_client()
        .post(sc.url("/api/x"))
        .body(vec![b'a'; 65])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 400);
    assert_eq!(big.headers()["x-token-sidecar-error"], "bad_request");
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(vec![b'a'; 40])),
        Ok(Bytes::from(vec![b'b'; 40])),
    ];
    let chunked = direct_client()
        .post(sc.url("/api/x"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 400);
    assert_eq!(api.count(), 0, "nothing went out unsigned");
    // Within the limit, chunked or not, it is signed.
    let small: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
    let ok = direct_client()
        .post(sc.url("/api/x"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            small,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let seen = &api.seen()[0];
    assert_eq!(&seen.body[..], b"abcd");
    verify(&received(seen), "sig1", VerifyKey::Hmac(&[9u8; 32])).unwrap();
    sc.stop().await;
}

/// A covered `content-length` is signed even when the app sent its body chunked: the
/// buffered body goes out with a Content-Length, set before signing, so the upstream
/// receives what was signed. A GET without a body has none, and it is left out.
#[tokio::test]
async fn content_length_is_covered_when_the_app_sent_the_body_chunked() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), [7u8; 32]).unwrap();
    let sign = format!(
        "{{ hmac_key_file: {}, key_id: k, components: [\"@method\", \"content-length\", \"content-digest\"] }}",
        secret.path().display()
    );
    let sc = TestSidecar::start(&config(&idp, &api, &sign, "")).await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"ab")),
        Ok(Bytes::from_static(b"cde")),
    ];
    let resp = direct_client()
        .post(sc.url("/api/x"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sc.get_status("/api/y").await, 200);
    let seen = api.seen();
    assert_eq!(seen[0].header("content-length"), Some("5"));
    assert_eq!(seen[0].header("transfer-encoding"), None);
    let v = verify(&received(&seen[0]), "sig1", VerifyKey::Hmac(&[7u8; 32])).unwrap();
    assert_eq!(
        v.components,
        ["@method", "content-length", "content-digest"]
    );
    assert!(v.base.contains("\"content-length\": 5\n"), "{}", v.base);
    // The GET: no body, no Content-Length, not covered; the signature still verifies.
    assert_eq!(seen[1].header("content-length"), None);
    let v = verify(&received(&seen[1]), "sig1", VerifyKey::Hmac(&[7u8; 32])).unwrap();
    assert_eq!(v.components, ["@method", "content-digest"]);
    sc.stop().await;
}

/// The test verifier itself, on RFC 9421 Appendix B: B.2.1 and B.2.3 (RSA-PSS), B.2.5
/// (HMAC) and B.2.6 (Ed25519) verify with the RFC's keys from the RFC's `test-request`.
#[test]
fn the_test_verifier_accepts_the_rfc9421_examples() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.com"));
    headers.insert(
        "date",
        HeaderValue::from_static("Tue, 20 Apr 2021 02:07:55 GMT"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("content-length", HeaderValue::from_static("18"));
    let b64url = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    let rsa_pss_n = b64url("r4tmm3r20Wd_PbqvP1s2-QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct-Lh1GH45x28Rw3Ry53mm-oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHqgDsznjPFmTOtCEcN2Z1FpWgchwuYLPL-Wokqltd11nqqzi-bJ9cvSKADYdUAAN5WUtzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4aOT9v6d-nb4bnNkQVklLQ3fVAvJm-xdDOp9LCNCN48V2pnDOkFV6-U9nV5oyc6XI2w");
    let ed25519 = b64url("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs");
    let secret = base64::engine::general_purpose::STANDARD
        .decode("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
        .unwrap();
    let cases: [(&str, &str, VerifyKey<'_>); 4] = [
        (
            r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
            "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
            VerifyKey::RsaPss { n: &rsa_pss_n, e: &[1, 0, 1] },
        ),
        (
            r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#,
            "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:",
            VerifyKey::RsaPss { n: &rsa_pss_n, e: &[1, 0, 1] },
        ),
        (
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
            "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
            VerifyKey::Hmac(&secret),
        ),
        (
            r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
            "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
            VerifyKey::Ed25519(&ed25519),
        ),
    ];
    for (input, signature, key) in cases {
        let mut h = headers.clone();
        // The RFC's sha-512 digest: the verifier checks only sha-256 digests it is sent,
        // so it is covered as a plain field here.
        h.insert("content-digest", HeaderValue::from_static("sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"));
        h.insert("signature-input", HeaderValue::from_str(input).unwrap());
        h.insert("signature", HeaderValue::from_str(signature).unwrap());
        let req = Received {
            method: "POST",
            scheme: "https",
            target: "/foo?param=Value&Pet=dog",
            headers: &h,
            body: br#"{"hello": "world"}"#,
        };
        let label = input.split('=').next().unwrap();
        verify(&req, label, key).unwrap_or_else(|e| panic!("{label}: {e}"));
        // A changed date, method or authority no longer verifies (B.2.1 covers nothing).
        let mut other = h.clone();
        other.insert("host", HeaderValue::from_static("example.org"));
        other.insert(
            "date",
            HeaderValue::from_static("Wed, 21 Apr 2021 02:07:55 GMT"),
        );
        let changed = Received {
            headers: &other,
            method: "PUT",
            ..req
        };
        assert_eq!(
            verify(&changed, label, key).is_ok(),
            label == "sig-b21",
            "{label}"
        );
    }
}
