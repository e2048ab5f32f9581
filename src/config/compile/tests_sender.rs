//! `dpop` and `sign`: keys loaded once, what they change, and every mistake located.

use super::tests::{load, GOOD};
use super::*;
use base64::Engine;

fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

fn write_ec_key(file: &Path) {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    std::fs::write(file, pem(der.as_ref())).unwrap();
}

fn write_ed_key(file: &Path) {
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    std::fs::write(file, pem(der.as_ref())).unwrap();
}

fn with_dpop(dpop: &str) -> String {
    GOOD.replace(
        "scopes: [read, write]",
        &format!("scopes: [read, write]\n    dpop: {dpop}"),
    )
}

fn with_sign(sign: &str) -> String {
    format!("{GOOD}    sign: {sign}\n")
}

/// The key is loaded once; its routes send `Authorization: DPoP`; a rotated key or
/// another algorithm builds a new token source.
#[test]
fn dpop_keys_are_loaded_once_and_bind_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (ec, ed) = (dir.path().join("ec.pem"), dir.path().join("ed.pem"));
    write_ec_key(&ec);
    write_ed_key(&ed);
    let yaml = with_dpop(&format!("{{ key_file: {} }}", ec.display()));
    let c = load(&yaml).unwrap();
    let dpop = c.providers[0].origin.oauth().unwrap().dpop.clone().unwrap();
    assert_eq!(
        dpop.key.alg(),
        crate::keys::SigningAlg::Es256,
        "ES256 by default"
    );
    let route = &c.routes[0];
    assert_eq!(
        (route.header.as_str(), route.value_prefix.as_str()),
        ("authorization", "DPoP ")
    );
    assert!(Arc::ptr_eq(&route.dpop.as_ref().unwrap().key, &dpop.key));
    assert!(!format!("{c:?}").contains("PRIVATE KEY"));
    let base = c.providers[0].key.clone();
    assert_eq!(load(&yaml).unwrap().providers[0].key, base);
    assert_ne!(
        load(GOOD).unwrap().providers[0].key,
        base,
        "dpop is part of the token's identity"
    );
    let eddsa = with_dpop(&format!("{{ key_file: {}, alg: EdDSA }}", ed.display()));
    assert_ne!(load(&eddsa).unwrap().providers[0].key, base);
    write_ec_key(&ec);
    assert_ne!(
        load(&yaml).unwrap().providers[0].key,
        base,
        "a rotated key, a new token"
    );
    // Routes of other providers are untouched.
    assert!(load(GOOD).unwrap().routes[0].dpop.is_none());
}

#[test]
fn dpop_mistakes_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let ec = dir.path().join("ec.pem");
    write_ec_key(&ec);
    let problems = |yaml: &str| load(yaml).unwrap_err();
    assert_eq!(
        problems(&with_dpop(&format!("{{ key_file: {}, alg: EdDSA }}", ec.display()))),
        [format!("proxy.yaml:9:23: providers.crm.dpop.key_file: {}: the key does not fit EdDSA (it needs an Ed25519 key)", ec.display())]
    );
    assert_eq!(
        problems(&with_dpop("{ alg: ES512 }")),
        [
            "proxy.yaml:9:11: providers.crm.dpop.key_file: missing required field (the DPoP private key (PEM))",
            "proxy.yaml:9:18: providers.crm.dpop.alg: unknown value: expected `ES256`, `RS256`, `PS256` or `EdDSA`",
        ]
    );
    let key = format!("{{ key_file: {} }}", ec.display());
    let header = format!("{}    header: X-Token\n", with_dpop(&key));
    assert!(problems(&header)[0].ends_with("routes[0].header: the provider has dpop: its tokens go in Authorization (RFC 9449 §7.1); remove header"));
    let prefix = format!("{}    value_prefix: \"Bearer \"\n", with_dpop(&key));
    assert!(problems(&prefix)[0].contains("routes[0].value_prefix: the provider has dpop"));
    let ok = format!(
        "{}    value_prefix: \"DPoP \"\n    header: authorization\n",
        with_dpop(&key)
    );
    assert!(load(&ok).is_ok());
    let static_file =
        format!("providers:\n  f:\n    kind: static_file\n    token_file: /t\n    dpop: {key}\n");
    assert!(
        problems(&static_file)[0].ends_with("providers.f.dpop: not used with kind: static_file")
    );
}

/// Each algorithm with its kind of key; the defaults; the signer holds the key.
#[test]
fn sign_compiles_every_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let (ec, ed, secret) = (
        dir.path().join("ec.pem"),
        dir.path().join("ed.pem"),
        dir.path().join("s"),
    );
    write_ec_key(&ec);
    write_ed_key(&ed);
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let c = load(&with_sign(&format!(
        "{{ key_file: {}, key_id: k1, alg: ed25519 }}",
        ed.display()
    )))
    .unwrap();
    let signer = c.routes[0].sign.clone().unwrap();
    assert_eq!(signer.alg(), crate::sender::SignAlg::Ed25519);
    let names: Vec<&str> = signer.components().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        ["@method", "@target-uri", "content-digest", "authorization"]
    );
    assert!(!format!("{c:?}").contains("PRIVATE KEY"));
    let c = load(&with_sign(&format!("{{ key_file: {}, key_id: k1, alg: ecdsa-p256-sha256, components: [\"@method\", \"@path\", Content-Type], label: partner, expires_in: 1m }}", ec.display()))).unwrap();
    let names: Vec<String> = c.routes[0]
        .sign
        .as_ref()
        .unwrap()
        .components()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(
        names,
        ["@method", "@path", "content-type"].map(String::from),
        ""
    );
    let c = load(&with_sign(&format!(
        "{{ hmac_key_file: {}, key_id: shared }}",
        secret.display()
    )))
    .unwrap();
    assert_eq!(
        c.routes[0].sign.as_ref().unwrap().alg(),
        crate::sender::SignAlg::HmacSha256
    );
    assert!(c.warnings.iter().all(|w| !w.contains("HMAC key")));
    std::fs::write(&secret, b"short").unwrap();
    let c = load(&with_sign(&format!(
        "{{ hmac_key_file: {}, key_id: shared }}",
        secret.display()
    )))
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("routes[0].sign.hmac_key_file: the HMAC key is 5 bytes")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn sign_mistakes_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let (ec, secret) = (dir.path().join("ec.pem"), dir.path().join("s"));
    write_ec_key(&ec);
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let (ec, secret) = (ec.display().to_string(), secret.display().to_string());
    for (sign, want) in [
        (format!("{{ key_file: {ec}, key_id: k, alg: ed25519 }}"), format!("routes[0].sign.key_file: {ec}: the key does not fit ed25519 (it needs an Ed25519 key)")),
        (format!("{{ key_file: {ec}, key_id: k, alg: hmac-sha256 }}"), "routes[0].sign.key_file: hmac-sha256 takes hmac_key_file (a shared secret), not key_file".into()),
        (format!("{{ hmac_key_file: {secret}, key_id: k, alg: ed25519 }}"), "routes[0].sign.hmac_key_file: ed25519 takes key_file (a PEM private key); hmac_key_file is for hmac-sha256".into()),
        (format!("{{ hmac_key_file: {secret}, key_file: {ec}, key_id: k }}"), "routes[0].sign.hmac_key_file: key_file and hmac_key_file exclude each other: give one".into()),
        (format!("{{ key_file: {ec}, key_id: k }}"), "routes[0].sign.alg: missing required field (one of ed25519, ecdsa-p256-sha256, rsa-pss-sha512, hmac-sha256)".into()),
        (format!("{{ hmac_key_file: {secret} }}"), "routes[0].sign.key_id: missing required field (the key's identifier, sent as keyid)".into()),
        (format!("{{ hmac_key_file: {secret}, key_id: k, components: [\"@query-param\"] }}"), "routes[0].sign.components[0]: unknown derived component \"@query-param\" (known: @method, @target-uri, @authority, @scheme, @request-target, @path, @query)".into()),
        (format!("{{ hmac_key_file: {secret}, key_id: k, components: [\"@path\", \"@path\"] }}"), "routes[0].sign.components[1]: @path is listed twice".into()),
        (format!("{{ hmac_key_file: {secret}, key_id: k, components: [Signature] }}"), "routes[0].sign.components[0]: signature cannot be covered: it is not sent upstream as the app wrote it, or it is the signature itself".into()),
        (format!("{{ hmac_key_file: {secret}, key_id: k, label: Sig }}"), "routes[0].sign.label: invalid label \"Sig\": lowercase letters, digits, '_', '-', '.' and '*', starting with a letter".into()),
        (format!("{{ hmac_key_file: {secret}, key_id: k, expires_in: 0s }}"), "routes[0].sign.expires_in: must be greater than zero".into()),
        (format!("{{ hmac_key_file: {secret}, key_id: k, alg: hmac }}"), "routes[0].sign.alg: unknown value: expected `ed25519`, `ecdsa-p256-sha256`, `rsa-pss-sha512` or `hmac-sha256`; did you mean `hmac-sha256`?".into()),
    ] {
        let problems = load(&with_sign(&sign)).unwrap_err();
        assert_eq!(problems.len(), 1, "{sign}: {problems:?}");
        assert!(problems[0].starts_with("proxy.yaml:12:"), "{problems:?}");
        assert!(problems[0].contains(&want), "{sign}:\n{}\nwants {want}", problems[0]);
        assert!(!problems[0].contains("BEGIN"));
    }
}
