//! Token keys and key material: what a reload keeps, and that keys are loaded once.

use super::tests::{load, GOOD};
use super::*;

fn write_ec_key(file: &Path) {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8.as_ref())
    );
    std::fs::write(file, pem).unwrap();
}

/// Which changes keep a provider's token across a reload (same key) and which build a
/// new token source (new key).
#[test]
fn token_keys_follow_what_identifies_the_token() {
    let key = |yaml: &str| load(yaml).unwrap().providers[0].key.clone();
    let base = key(GOOD);
    assert_eq!(key(GOOD), base, "the same config, the same key");
    for same in [
        "timeout: 3s",
        "retries: { max_attempts: 5 }",
        "prefetch: true",
        "idle_timeout: 5m",
        "expose_token: true",
        "refresh_before_expiry: 1m",
    ] {
        let yaml = GOOD.replace(
            "scopes: [read, write]",
            &format!("scopes: [read, write]\n    {same}"),
        );
        assert_eq!(key(&yaml), base, "{same} does not change the token");
    }
    for (from, to) in [
        ("${CRM_SECRET}", "other-secret"),
        ("${CRM_ID}", "other-id"),
        ("scopes: [read, write]", "scopes: [read]"),
        (
            "scopes: [read, write]",
            "scopes: [read, write]\n    audience: a",
        ),
        (
            "scopes: [read, write]",
            "scopes: [read, write]\n    resource: https://r.test/",
        ),
        (
            "scopes: [read, write]",
            "scopes: [read, write]\n    extra_params: { x: y }",
        ),
        (
            "scopes: [read, write]",
            "scopes: [read, write]\n    client_auth: post",
        ),
        ("oauth2/token", "oauth2/v2/token"),
    ] {
        assert_ne!(key(&GOOD.replace(from, to)), base, "{to} changes the token");
    }
    let shown = format!("{base:?}");
    assert!(!shown.contains("top-secret-value"), "{shown}");
    let with_param = key(&GOOD.replace(
        "scopes: [read, write]",
        "scopes: [read, write]\n    extra_params: { api_key: hunter2-param }",
    ));
    assert!(!format!("{with_param:?}").contains("hunter2-param"));
    let rt = |configured: &str| {
        GOOD.replace(
            "client_secret: ${CRM_SECRET}",
            &format!("grant_type: refresh_token\n    refresh_token: {configured}"),
        )
    };
    assert_eq!(key(&rt("rt-1")), key(&rt("rt-1")));
    assert_ne!(key(&rt("rt-1")), key(&rt("rt-2")));
    assert!(!format!("{:?}", key(&rt("rt-secret-1"))).contains("rt-secret-1"));
}

/// Key material is loaded when the config compiles; a rotated file gives a new key.
#[test]
fn private_keys_are_loaded_once_and_rotation_changes_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.pem");
    write_ec_key(&file);
    let yaml = GOOD.replace(
        "client_secret: ${CRM_SECRET}",
        &format!(
            "client_auth: private_key_jwt\n    private_key_file: {}\n    signing_alg: ES256",
            file.display()
        ),
    );
    let first = load(&yaml).unwrap();
    let client = first.providers[0].origin.oauth().unwrap();
    let ClientAuth::PrivateKeyJwt(p) = &client.client_auth else {
        panic!("{:?}", client.client_auth);
    };
    assert_eq!(p.key.alg(), crate::keys::SigningAlg::Es256);
    assert!(!format!("{first:?}").contains("PRIVATE KEY"));
    assert_eq!(
        load(&yaml).unwrap().providers[0].key,
        first.providers[0].key
    );
    write_ec_key(&file);
    assert_ne!(
        load(&yaml).unwrap().providers[0].key,
        first.providers[0].key,
        "a rotated key file builds a new token source"
    );
}

/// A TLS client identity is loaded (and checked) when the config compiles; a rotated
/// certificate gives a new key, an unchanged one keeps the token.
#[test]
fn tls_client_identities_are_loaded_once_and_rotation_changes_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let write_identity = || {
        let ck = rcgen::generate_simple_self_signed(vec!["svc".to_string()]).unwrap();
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    };
    write_identity();
    let yaml = GOOD.replace(
        "client_secret: ${CRM_SECRET}",
        &format!(
            "client_auth: tls_client_auth\n    client_cert_file: {}\n    client_key_file: {}",
            cert.display(),
            key.display()
        ),
    );
    let first = load(&yaml).unwrap();
    assert!(matches!(
        &first.providers[0].origin.oauth().unwrap().client_auth,
        ClientAuth::TlsClientAuth { identity, .. } if identity.pair().0.len() == 1
    ));
    assert!(!format!("{first:?}").contains("PRIVATE KEY"));
    assert_eq!(
        load(&yaml).unwrap().providers[0].key,
        first.providers[0].key
    );
    write_identity();
    assert_ne!(
        load(&yaml).unwrap().providers[0].key,
        first.providers[0].key,
        "a rotated certificate builds a new token source"
    );
    std::fs::write(&key, "not a key").unwrap();
    let problems = load(&yaml).unwrap_err().join("\n");
    assert!(
        problems.contains("providers.crm.client_cert_file:")
            && problems.contains("holds no PEM private key"),
        "{problems}"
    );
}

/// A `static_file` provider carries its file and no OAuth2 client; its key is the file.
#[test]
fn static_file_providers_carry_only_their_file() {
    let yaml = |file: &str| {
        format!("providers:\n  f:\n    kind: static_file\n    token_file: {file}\n    expose_token: true\n")
    };
    let c = load(&yaml("/run/token")).unwrap();
    let p = &c.providers[0];
    assert!(
        matches!(&p.origin, TokenOrigin::StaticFile { token_file } if token_file == Path::new("/run/token"))
    );
    assert!(p.origin.oauth().is_none() && p.origin.grant().is_none());
    assert_eq!(p.origin.grant_name(), "static_file");
    assert!(p.expose_token);
    assert_eq!(
        (p.timeout, p.retries.max_attempts),
        (Duration::from_secs(10), 1)
    );
    assert_eq!(load(&yaml("/run/token")).unwrap().providers[0].key, p.key);
    assert_ne!(load(&yaml("/run/other")).unwrap().providers[0].key, p.key);
}
