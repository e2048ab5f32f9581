//! RFC 9421 Appendix B and RFC 9530 Appendix D, copied from the RFCs. Ed25519 and HMAC are
//! deterministic: base, `Signature-Input` and `Signature` must match byte for byte. For
//! RSA-PSS and ECDSA the base must match, and the RFC's own signatures must verify over
//! it with the RFC's published public keys (ring's verifier, not this module's code).

use super::*;
use crate::keys::tests::rfc9421;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{self as sig, UnparsedPublicKey};

/// B.1.2 `test-key-rsa-pss`, the JWK's `n`.
const RSA_PSS_N: &str = "r4tmm3r20Wd_PbqvP1s2-QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct-Lh1GH45x28Rw3Ry53mm-oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHqgDsznjPFmTOtCEcN2Z1FpWgchwuYLPL-Wokqltd11nqqzi-bJ9cvSKADYdUAAN5WUtzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4aOT9v6d-nb4bnNkQVklLQ3fVAvJm-xdDOp9LCNCN48V2pnDOkFV6-U9nV5oyc6XI2w";
/// B.1.3 `test-key-ecc-p256`, the JWK's `x` and `y`.
const P256_X: &str = "qIVYZVLCrPZHGHjP17CTW0_-D9Lfw0EkjqF7xB4FivA";
const P256_Y: &str = "Mc4nN9LTDOBhfoUeg8Ye9WedFRhnZXZJA12Qp0zZ6F0";
/// B.1.5 `test-shared-secret`, base64.
const SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
const SHA512_DIGEST: &str =
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

/// B.2's `test-request` (`POST /foo?param=Value&Pet=dog` to example.com).
fn test_request() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("example.com"));
    h.insert(
        "date",
        HeaderValue::from_static("Tue, 20 Apr 2021 02:07:55 GMT"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-digest", HeaderValue::from_static(SHA512_DIGEST));
    h.insert("content-length", HeaderValue::from_static("18"));
    h
}

fn message<'a>(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> Message<'a> {
    Message {
        method,
        scheme: "https",
        authority: headers["host"].to_str().unwrap(),
        path_and_query: path,
        headers,
    }
}

fn components(names: &[&str]) -> Vec<Component> {
    names.iter().map(|n| Component::parse(n).unwrap()).collect()
}

/// The RFC's parameters: `created` and `keyid` only (B.2.1 adds a nonce).
fn rfc_params(nonce: Option<&str>) -> Params {
    Params {
        created: 1618884473,
        expires: None,
        nonce: nonce.map(str::to_string),
        alg: false,
    }
}

fn signer(key: SignKey, alg: SignAlg, key_id: &str, label: &str) -> Signer {
    Signer::new(key, alg, key_id.into(), label.into(), vec![], None).unwrap()
}

fn private(pem: &str, alg: SigningAlg) -> SignKey {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    std::fs::write(&path, pem).unwrap();
    SignKey::Private(SigningKey::load(&path, alg).unwrap())
}

fn sig_bytes(signature: &HeaderValue, label: &str) -> Vec<u8> {
    let v = signature.to_str().unwrap();
    let b64 = v
        .strip_prefix(&format!("{label}=:"))
        .and_then(|r| r.strip_suffix(':'))
        .unwrap();
    STANDARD.decode(b64).unwrap()
}

fn rsa_pss_public() -> sig::RsaPublicKeyComponents<Vec<u8>> {
    sig::RsaPublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(RSA_PSS_N).unwrap(),
        e: vec![1, 0, 1],
    }
}

fn p256_public() -> Vec<u8> {
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(P256_X).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(P256_Y).unwrap());
    point
}

/// B.2.6: Ed25519 over `test-request`, byte for byte.
#[test]
fn rfc9421_b26_ed25519_matches_byte_for_byte() {
    let headers = test_request();
    let post = Method::POST;
    let msg = message(&post, "/foo?param=Value&Pet=dog", &headers);
    let s = signer(
        private(rfc9421::ED25519, SigningAlg::EdDsa),
        SignAlg::Ed25519,
        "test-key-ed25519",
        "sig-b26",
    );
    let covered = components(&[
        "date",
        "@method",
        "@path",
        "@authority",
        "content-type",
        "content-length",
    ]);
    let signed = s.sign_with(&covered, &msg, &rfc_params(None)).unwrap();
    assert_eq!(
        signed.base,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    assert_eq!(
        signed.input,
        "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    assert_eq!(
        signed.signature,
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
    );
}

/// B.4: two `Accept` lines are combined with ", "; Ed25519, byte for byte.
#[test]
fn rfc9421_b4_transformations_ed25519_matches_byte_for_byte() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.org"));
    headers.insert(
        "date",
        HeaderValue::from_static("Fri, 15 Jul 2022 14:24:55 GMT"),
    );
    headers.append("accept", HeaderValue::from_static("application/json"));
    headers.append("accept", HeaderValue::from_static("*/*"));
    let get = Method::GET;
    let msg = message(&get, "/demo?name1=Value1&Name2=value2", &headers);
    let s = signer(
        private(rfc9421::ED25519, SigningAlg::EdDsa),
        SignAlg::Ed25519,
        "test-key-ed25519",
        "transform",
    );
    let covered = components(&["@method", "@path", "@authority", "accept"]);
    let signed = s.sign_with(&covered, &msg, &rfc_params(None)).unwrap();
    assert_eq!(
        signed.base,
        "\"@method\": GET\n\"@path\": /demo\n\"@authority\": example.org\n\"accept\": application/json, */*\n\"@signature-params\": (\"@method\" \"@path\" \"@authority\" \"accept\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    assert_eq!(
        signed.signature,
        "transform=:ZT1kooQsEHpZ0I1IjCqtQppOmIqlJPeo7DHR3SoMn0s5JZ1eRGS0A+vyYP9t/LXlh5QMFFQ6cpLt2m0pmj3NDA==:"
    );
}

/// B.2.5: HMAC-SHA256 with `test-shared-secret`, byte for byte.
#[test]
fn rfc9421_b25_hmac_matches_byte_for_byte() {
    let headers = test_request();
    let post = Method::POST;
    let msg = message(&post, "/foo?param=Value&Pet=dog", &headers);
    let key = SignKey::Hmac(HmacKey::new(&STANDARD.decode(SHARED_SECRET).unwrap()));
    let s = signer(key, SignAlg::HmacSha256, "test-shared-secret", "sig-b25");
    let covered = components(&["date", "@authority", "content-type"]);
    let signed = s.sign_with(&covered, &msg, &rfc_params(None)).unwrap();
    assert_eq!(
        signed.base,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    assert_eq!(
        signed.input,
        "sig-b25=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    assert_eq!(
        signed.signature,
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"
    );
}

/// B.2.1 and B.2.3: RSA-PSS-SHA512. Our bases are the RFC's, the RFC's signatures verify
/// over them, and ours verify with the RFC's public key.
#[test]
fn rfc9421_b21_b23_rsa_pss_bases_match_and_signatures_verify() {
    let headers = test_request();
    let post = Method::POST;
    let msg = message(&post, "/foo?param=Value&Pet=dog", &headers);
    let s = signer(
        private(rfc9421::RSA_PSS, SigningAlg::Ps512),
        SignAlg::RsaPssSha512,
        "test-key-rsa-pss",
        "sig",
    );
    let cases = [
        (
            vec![],
            Some("b3k2pp5k7z-50gnwp.yemd"),
            "\"@signature-params\": ();created=1618884473;keyid=\"test-key-rsa-pss\";nonce=\"b3k2pp5k7z-50gnwp.yemd\"",
            "d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==",
        ),
        (
            components(&["date", "@method", "@path", "@query", "@authority", "content-type", "content-digest", "content-length"]),
            None,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@query\": ?param=Value&Pet=dog\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\"",
            "bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==",
        ),
    ];
    for (covered, nonce, rfc_base, rfc_sig) in cases {
        let signed = s.sign_with(&covered, &msg, &rfc_params(nonce)).unwrap();
        assert_eq!(signed.base, rfc_base);
        let public = rsa_pss_public();
        public
            .verify(
                &sig::RSA_PSS_2048_8192_SHA512,
                signed.base.as_bytes(),
                &STANDARD.decode(rfc_sig).unwrap(),
            )
            .expect("the RFC's signature verifies over our base");
        public
            .verify(
                &sig::RSA_PSS_2048_8192_SHA512,
                signed.base.as_bytes(),
                &sig_bytes(&signed.signature, "sig"),
            )
            .expect("our signature verifies with the RFC's public key");
    }
}

/// B.2.4 (a response: its base is the RFC's text) and B.3 (a request through a
/// TLS-terminating proxy, our base): ECDSA P-256, the RFC's signatures verify with its
/// public key, and ours over B.3 too.
#[test]
fn rfc9421_b24_b3_ecdsa_signatures_verify() {
    let public = UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, p256_public());
    let b24_base = "\"@status\": 200\n\"content-type\": application/json\n\"content-digest\": sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:\n\"content-length\": 23\n\"@signature-params\": (\"@status\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-ecc-p256\"";
    public
        .verify(b24_base.as_bytes(), &STANDARD.decode("wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==").unwrap())
        .expect("B.2.4 verifies");
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("service.internal.example"));
    headers.insert("client-cert", HeaderValue::from_static(":MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdGUxGzAZBgNVBAMMEkxBIEludGVybWVkaWF0ZSBDQTAeFw0yMDAxMTQyMjU1MzNaFw0yMTAxMjMyMjU1MzNaMA0xCzAJBgNVBAMMAkJDMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8YnXXfaUgmnMtOXU/IncWalRhebrXmckC8vdgJ1p5Be5F/3YC8OthxM4+k1M6aEAEFcGzkJiNy6J84y7uzo9M6NyMHAwCQYDVR0TBAIwADAfBgNVHSMEGDAWgBRm3WjLa38lbEYCuiCPct0ZaSED2DAOBgNVHQ8BAf8EBAMCBsAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0RAQH/BBMwEYEPYmRjQGV4YW1wbGUuY29tMAoGCCqGSM49BAMCA0gAMEUCIBHda/r1vaL6G3VliL4/Di6YK0Q6bMjeSkC3dFCOOB8TAiEAx/kHSB4urmiZ0NX5r5XarmPk0wmuydBVoU4hBVZ1yhk=:"));
    let post = Method::POST;
    let msg = message(&post, "/foo?param=Value&Pet=dog", &headers);
    let s = signer(
        private(rfc9421::ECC_P256, SigningAlg::Es256),
        SignAlg::EcdsaP256Sha256,
        "test-key-ecc-p256",
        "ttrp",
    );
    let covered = components(&["@path", "@query", "@method", "@authority", "client-cert"]);
    let signed = s.sign_with(&covered, &msg, &rfc_params(None)).unwrap();
    assert!(signed.base.starts_with("\"@path\": /foo\n\"@query\": ?param=Value&Pet=dog\n\"@method\": POST\n\"@authority\": service.internal.example\n\"client-cert\": :MIIBqDCCAU6g"));
    assert!(signed.base.ends_with("\n\"@signature-params\": (\"@path\" \"@query\" \"@method\" \"@authority\" \"client-cert\");created=1618884473;keyid=\"test-key-ecc-p256\""));
    public
        .verify(signed.base.as_bytes(), &STANDARD.decode("xVMHVpawaAC/0SbHrKRs9i8I3eOs5RtTMGCWXm/9nvZzoHsIg6Mce9315T6xoklyy0yzhD9ah4JHRwMLOgmizw==").unwrap())
        .expect("the RFC's B.3 signature verifies over our base");
    public
        .verify(
            signed.base.as_bytes(),
            &sig_bytes(&signed.signature, "ttrp"),
        )
        .expect("ours verifies with the RFC's public key");
}

/// RFC 9530 Appendix D: the SHA-256 of `{"hello": "world"}`; §B.1: with a newline; and of
/// empty content (§B.2).
#[test]
fn rfc9530_content_digests() {
    assert_eq!(
        content_digest(br#"{"hello": "world"}"#),
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    );
    assert_eq!(
        content_digest(b"{\"hello\": \"world\"}\n"),
        "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
    );
    assert_eq!(
        content_digest(b""),
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
}

/// What `sign` adds besides the RFC's examples: `created`, `expires`, `keyid`, `alg` and
/// a fresh `nonce`; absent header fields left out; derived components normalised.
#[test]
fn production_signatures_carry_every_parameter() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("API.Example.com:443"));
    headers.insert("authorization", HeaderValue::from_static("Bearer t"));
    let key = SignKey::Hmac(HmacKey::new(b"0123456789abcdef0123456789abcdef"));
    let s = Signer::new(
        key,
        SignAlg::HmacSha256,
        "k1".into(),
        "sig1".into(),
        components(&[
            "@method",
            "@target-uri",
            "@scheme",
            "@request-target",
            "content-digest",
            "authorization",
            "@query",
        ]),
        Some(Duration::from_secs(60)),
    )
    .unwrap();
    let get = Method::GET;
    let msg = message(&get, "", &headers);
    let a = s.sign(&msg).unwrap();
    let b = s.sign(&msg).unwrap();
    let lines: Vec<&str> = a.base.lines().collect();
    assert_eq!(
        &lines[..6],
        &[
            "\"@method\": GET",
            "\"@target-uri\": https://api.example.com/",
            "\"@scheme\": https",
            "\"@request-target\": /",
            "\"authorization\": Bearer t",
            "\"@query\": ?",
        ]
    );
    let input = a.input.to_str().unwrap();
    assert!(input.starts_with("sig1=(\"@method\" \"@target-uri\" \"@scheme\" \"@request-target\" \"authorization\" \"@query\");created="), "{input}");
    let created: u64 = input
        .split(";created=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(input.contains(&format!(";expires={}", created + 60)));
    assert!(input.contains(";keyid=\"k1\";alg=\"hmac-sha256\";nonce=\""));
    assert_ne!(a.input, b.input, "a new nonce every time");
    assert!(Component::parse("@query-param")
        .unwrap_err()
        .contains("unknown derived component"));
    assert_eq!(
        Component::parse("Content-Type").unwrap().name(),
        "content-type"
    );
    assert!(Signer::new(
        SignKey::Hmac(HmacKey::new(b"k")),
        SignAlg::HmacSha256,
        "k".into(),
        "Sig".into(),
        vec![],
        None
    )
    .is_err());
    assert!(!format!("{s:?}").contains("0123456789"));
    let mut bad = HeaderMap::new();
    bad.insert("host", HeaderValue::from_static("h"));
    bad.insert("x-bin", HeaderValue::from_bytes(b"\xff").unwrap());
    let msg = message(&get, "/", &bad);
    let err = s
        .sign_with(&components(&["x-bin"]), &msg, &rfc_params(None))
        .err()
        .unwrap();
    assert_eq!(err, "the x-bin header is not ASCII and cannot be signed");
}
