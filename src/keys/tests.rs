//! Loading, fingerprints and signatures of PEM keys.

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
    let missing = SigningKey::load(&dir.path().join("nope.pem"), SigningAlg::Rs256).unwrap_err();
    assert_eq!(
        missing,
        format!(
            "cannot read the private key {}: no such file",
            dir.path().join("nope.pem").display()
        )
    );
    std::fs::write(dir.path().join("ec.pem"), ec_pem()).unwrap();
    let err = SigningKey::load(&dir.path().join("ec.pem"), SigningAlg::Rs256).unwrap_err();
    assert!(err.contains("does not fit RS256"), "{err}");
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

/// The example keys of RFC 9421 Appendix B.1, copied from the RFC.
pub(crate) mod rfc9421 {
    pub const ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";
    pub const ECC_P256: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFKbhfNZfpDsW43+0+JjUr9K+bTeuxopu653+hBaXGA7oAoGCCqGSM49
AwEHoUQDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lfw0EkjqF7xB4FivAxzic30tMM
4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END EC PRIVATE KEY-----
";
    /// PKCS#8 with the id-RSASSA-PSS algorithm.
    pub const RSA_PSS: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADALBgkqhkiG9w0BAQoEggSqMIIEpgIBAAKCAQEAr4tmm3r20Wd/Pbqv
P1s2+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry5
3mm+oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7Oyr
FAHqgDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUA
AN5WUtzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw
9lq4aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oy
c6XI2wIDAQABAoIBAQCUB8ip+kJiiZVKF8AqfB/aUP0jTAqOQewK1kKJ/iQCXBCq
pbo360gvdt05H5VZ/RDVkEgO2k73VSsbulqezKs8RFs2tEmU+JgTI9MeQJPWcP6X
aKy6LIYs0E2cWgp8GADgoBs8llBq0UhX0KffglIeek3n7Z6Gt4YFge2TAcW2WbN4
XfK7lupFyo6HHyWRiYHMMARQXLJeOSdTn5aMBP0PO4bQyk5ORxTUSeOciPJUFktQ
HkvGbym7KryEfwH8Tks0L7WhzyP60PL3xS9FNOJi9m+zztwYIXGDQuKM2GDsITeD
2mI2oHoPMyAD0wdI7BwSVW18p1h+jgfc4dlexKYRAoGBAOVfuiEiOchGghV5vn5N
RDNscAFnpHj1QgMr6/UG05RTgmcLfVsI1I4bSkbrIuVKviGGf7atlkROALOG/xRx
DLadgBEeNyHL5lz6ihQaFJLVQ0u3U4SB67J0YtVO3R6lXcIjBDHuY8SjYJ7Ci6Z6
vuDcoaEujnlrtUhaMxvSfcUJAoGBAMPsCHXte1uWNAqYad2WdLjPDlKtQJK1diCm
rqmB2g8QE99hDOHItjDBEdpyFBKOIP+NpVtM2KLhRajjcL9Ph8jrID6XUqikQuVi
4J9FV2m42jXMuioTT13idAILanYg8D3idvy/3isDVkON0X3UAVKrgMEne0hJpkPL
FYqgetvDAoGBAKLQ6JZMbSe0pPIJkSamQhsehgL5Rs51iX4m1z7+sYFAJfhvN3Q/
OGIHDRp6HjMUcxHpHw7U+S1TETxePwKLnLKj6hw8jnX2/nZRgWHzgVcY+sPsReRx
NJVf+Cfh6yOtznfX00p+JWOXdSY8glSSHJwRAMog+hFGW1AYdt7w80XBAoGBAImR
NUugqapgaEA8TrFxkJmngXYaAqpA0iYRA7kv3S4QavPBUGtFJHBNULzitydkNtVZ
3w6hgce0h9YThTo/nKc+OZDZbgfN9s7cQ75x0PQCAO4fx2P91Q+mDzDUVTeG30mE
t2m3S0dGe47JiJxifV9P3wNBNrZGSIF3mrORBVNDAoGBAI0QKn2Iv7Sgo4T/XjND
dl2kZTXqGAk8dOhpUiw/HdM3OGWbhHj2NdCzBliOmPyQtAr770GITWvbAI+IRYyF
S7Fnk6ZVVVHsxjtaHy1uJGFlaZzKR4AGNaUTOJMs6NadzCmGPAxNQQOCqoUjn4XR
rOjr9w349JooGXhOxbu8nOxX
-----END PRIVATE KEY-----
";
}

fn load_pem(pem: &str, alg: SigningAlg) -> Result<SigningKey, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    std::fs::write(&path, pem).unwrap();
    SigningKey::load(&path, alg)
}

/// The public halves of the RFC 9421 example keys, as JWKs, are the ones the RFC prints:
/// PKCS#8 v1 Ed25519, SEC1 P-256 and PKCS#8 RSASSA-PSS keys all load.
#[test]
fn rfc9421_example_keys_load_with_their_published_public_keys() {
    let ed = load_pem(rfc9421::ED25519, SigningAlg::EdDsa).unwrap();
    assert_eq!(
        ed.public_jwk(),
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"})
    );
    let ec = load_pem(rfc9421::ECC_P256, SigningAlg::Es256).unwrap();
    assert_eq!(
        ec.public_jwk(),
        serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": "qIVYZVLCrPZHGHjP17CTW0_-D9Lfw0EkjqF7xB4FivA",
            "y": "Mc4nN9LTDOBhfoUeg8Ye9WedFRhnZXZJA12Qp0zZ6F0"})
    );
    let pss = load_pem(rfc9421::RSA_PSS, SigningAlg::Ps512).unwrap();
    let jwk = pss.public_jwk();
    assert_eq!(jwk["e"], "AQAB");
    assert!(jwk["n"]
        .as_str()
        .unwrap()
        .starts_with("r4tmm3r20Wd_PbqvP1s2-QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvM"));
    assert!(jwk["n"]
        .as_str()
        .unwrap()
        .ends_with("2pnDOkFV6-U9nV5oyc6XI2w"));
    // A key of another type is refused with the algorithm it does not fit.
    let err = load_pem(rfc9421::ED25519, SigningAlg::Es256).unwrap_err();
    assert!(
        err.ends_with("the key does not fit ES256 (it needs a P-256 EC key)"),
        "{err}"
    );
    let err = load_pem(rfc9421::ECC_P256, SigningAlg::EdDsa).unwrap_err();
    assert!(err.contains("does not fit EdDSA"), "{err}");
}

/// Ed25519 is deterministic: RFC 8032 §7.1 TEST 1 (empty message), with the key wrapped
/// in PKCS#8 v1 as OpenSSL writes it.
#[test]
fn ed25519_signs_as_rfc8032_says() {
    let seed = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let key = load_pem(&pem, SigningAlg::EdDsa).unwrap();
    let hex: String = key
        .sign(b"")
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
}

#[test]
fn hmac_keys_are_raw_bytes_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, b"key with a newline\n").unwrap();
    let key = HmacKey::load(&path).unwrap();
    assert_eq!(key.byte_len(), 19, "nothing trimmed, nothing decoded");
    assert_eq!(format!("{key:?}"), "HmacKey([redacted])");
    std::fs::write(&path, b"").unwrap();
    assert!(HmacKey::load(&path)
        .unwrap_err()
        .ends_with("is empty: an HMAC key needs bytes"));
    // RFC 4231 test case 2.
    let key = HmacKey::new(b"Jefe");
    let hex: String = key
        .sign(b"what do ya want for nothing?")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
