//! Ways to authenticate to the IdP beyond client secrets, checked by fake IdPs that verify
//! what arrives: signed assertions, assertion files, mTLS; and the Azure AD and static
//! file presets.

use crate::support::tls::TestCa;
use crate::support::*;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn form(body: &str) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn route(api: &FakeUpstream) -> String {
    format!(
        "routes:\n  - match: {{ path_prefix: /api }}\n    provider: p\n    upstream: {}\n",
        api.url()
    )
}

/// Verifies a client assertion JWT with `public_key` and returns its claims.
fn verify(
    jwt: &str,
    alg: &'static dyn signature::VerificationAlgorithm,
    public_key: &[u8],
) -> serde_json::Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let dec = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    UnparsedPublicKey::new(alg, public_key)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &dec(parts[2]),
        )
        .expect("the assertion's signature verifies with the client's public key");
    serde_json::from_slice(&dec(parts[1])).unwrap()
}

/// An RSA key pair made with the openssl CLI: (PKCS#8 PEM path, DER public key).
fn rsa_key(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let key = dir.join("rsa.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl is needed to make RSA test keys")
        .status
        .success();
    assert!(ok);
    let out = Command::new("openssl")
        .args(["rsa", "-in"])
        .arg(&key)
        .args(["-RSAPublicKey_out", "-outform", "DER"])
        .output()
        .unwrap();
    assert!(out.status.success());
    (key, out.stdout)
}

#[tokio::test]
async fn private_key_jwt_assertions_verify_for_every_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let ec = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let ec_pub = ring::signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ec.as_ref(),
        &rng,
    )
    .unwrap();
    let ec_pub = ring::signature::KeyPair::public_key(&ec_pub)
        .as_ref()
        .to_vec();
    let ec_path = dir.path().join("ec.pem");
    std::fs::write(
        &ec_path,
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(ec.as_ref())
        ),
    )
    .unwrap();
    let (rsa_path, rsa_pub) = rsa_key(dir.path());
    let cases: [(
        &str,
        &std::path::Path,
        &'static dyn signature::VerificationAlgorithm,
        &[u8],
    ); 3] = [
        (
            "ES256",
            &ec_path,
            &signature::ECDSA_P256_SHA256_FIXED,
            &ec_pub,
        ),
        (
            "RS256",
            &rsa_path,
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &rsa_pub,
        ),
        (
            "PS256",
            &rsa_path,
            &signature::RSA_PSS_2048_8192_SHA256,
            &rsa_pub,
        ),
    ];
    for (alg, key, verifier, public) in cases {
        let idp = FakeIdp::builder().ttl(1).run().await;
        let api = FakeUpstream::ok().await;
        let sc = TestSidecar::start(&format!(
            "providers:\n  p:\n    token_url: {}\n    client_id: svc-{alg}\n    client_auth: private_key_jwt\n    private_key_file: {}\n    signing_alg: {alg}\n    key_id: k-{alg}\n{}",
            idp.token_url(),
            key.display(),
            route(&api)
        ))
        .await;
        assert_eq!(sc.get_status("/api/a").await, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(sc.get_status("/api/b").await, 200);
        let mut jtis = HashSet::new();
        for (auth, body) in idp.seen() {
            assert!(auth.is_none(), "no Basic auth with assertions");
            let f = form(&body);
            assert_eq!(
                f["client_assertion_type"],
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            );
            assert_eq!(f["client_id"], format!("svc-{alg}"));
            assert!(!f.contains_key("client_secret"));
            let header: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(f["client_assertion"].split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["alg"], alg);
            assert_eq!(header["kid"], format!("k-{alg}"));
            let claims = verify(&f["client_assertion"], verifier, public);
            assert_eq!(claims["iss"], format!("svc-{alg}"));
            assert_eq!(claims["sub"], format!("svc-{alg}"));
            assert_eq!(claims["aud"], idp.token_url());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let (iat, exp) = (
                claims["iat"].as_u64().unwrap(),
                claims["exp"].as_u64().unwrap(),
            );
            assert!(
                iat <= now + 1 && exp > now && exp - iat <= 60,
                "exp window: {claims}"
            );
            assert!(
                jtis.insert(claims["jti"].as_str().unwrap().to_string()),
                "jti is unique"
            );
        }
        assert!(jtis.len() >= 2, "a new assertion per token request");
        sc.stop().await;
    }
}

#[tokio::test]
async fn assertion_files_are_read_fresh_for_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idp-token");
    std::fs::write(&file, "first.jwt.assertion\n").unwrap();
    let idp = FakeIdp::builder().ttl(1).run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n  p:\n    token_url: {}\n    client_id: svc\n    client_auth: client_assertion_file\n    client_assertion_file: {}\n{}",
        idp.token_url(),
        file.display(),
        route(&api)
    ))
    .await;
    assert_eq!(sc.get_status("/api/a").await, 200);
    std::fs::write(&file, "second.jwt.assertion").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sc.get_status("/api/b").await, 200);
    let sent: Vec<String> = idp
        .seen()
        .iter()
        .map(|(_, b)| form(b)["client_assertion"].clone())
        .collect();
    assert_eq!(
        sent.first().map(String::as_str),
        Some("first.jwt.assertion")
    );
    assert_eq!(
        sent.last().map(String::as_str),
        Some("second.jwt.assertion")
    );
    assert!(idp
        .seen()
        .iter()
        .all(|(a, b)| a.is_none() && form(b)["client_assertion_type"].ends_with("jwt-bearer")));
    sc.stop().await;
}

/// A TLS server config for 127.0.0.1 (signed by `server_ca`) that requires a client
/// certificate signed by `client_ca`.
fn mtls_server(server_ca: &TestCa, client_ca: &TestCa) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(client_ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (cert, key) = leaf(
        server_ca,
        "127.0.0.1",
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A leaf certificate and key signed by `ca`.
fn leaf(
    ca: &TestCa,
    name: &str,
    eku: rcgen::ExtendedKeyUsagePurpose,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca.key_path()).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.extended_key_usages = vec![eku];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

#[tokio::test]
async fn tls_client_auth_presents_the_client_certificate() {
    let (server_ca, client_ca) = (TestCa::new("idp server CA"), TestCa::new("client CA"));
    let idp = FakeIdp::builder()
        .tls(mtls_server(&server_ca, &client_ca))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf(
        &client_ca,
        "svc",
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let pem = |label: &str, der: &[u8]| {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    std::fs::write(dir.path().join("client.crt"), pem("CERTIFICATE", &cert)).unwrap();
    std::fs::write(
        dir.path().join("client.key"),
        pem("PRIVATE KEY", key.secret_der()),
    )
    .unwrap();
    let yaml = |auth: &str| {
        format!(
            "providers:\n  p:\n    token_url: {}\n    client_id: svc\n    ca_file: {}\n{auth}{}",
            idp.token_url(),
            server_ca.cert_path().display(),
            route(&api)
        )
    };
    let with_cert = yaml(&format!(
        "    client_auth: tls_client_auth\n    client_cert_file: {}\n    client_key_file: {}\n",
        dir.path().join("client.crt").display(),
        dir.path().join("client.key").display()
    ));
    let sc = TestSidecar::start(&with_cert).await;
    assert_eq!(sc.get_status("/api/x").await, 200);
    let (auth, body) = &idp.seen()[0];
    assert!(auth.is_none());
    assert_eq!(form(body)["client_id"], "svc");
    assert!(!form(body).contains_key("client_secret"));
    sc.stop().await;

    // Without the certificate the IdP refuses the TLS handshake: no token.
    let sc = TestSidecar::start(&yaml(
        "    client_auth: post\n    client_secret: s\n    retries: { max_attempts: 1 }\n",
    ))
    .await;
    let resp = direct_client().get(sc.url("/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        idp.requests(),
        1,
        "the certificate-less client never got through the handshake"
    );
    sc.stop().await;
}

#[tokio::test]
async fn azure_ad_preset_builds_url_and_scope_against_a_fake_authority() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n  p:\n    kind: azure_ad\n    authority: {}\n    tenant_id: contoso.onmicrosoft.com\n    client_id: app-id\n    client_secret: s\n    scopes: [\"https://management.azure.com/.default\"]\n{}",
        idp.base_url(),
        route(&api)
    ))
    .await;
    assert_eq!(sc.get_status("/api/x").await, 200);
    assert_eq!(idp.paths(), ["/contoso.onmicrosoft.com/oauth2/v2.0/token"]);
    let f = form(&idp.seen()[0].1);
    assert_eq!(f["scope"], "https://management.azure.com/.default");
    assert_eq!(f["grant_type"], "client_credentials");
    // The secret in the body, as Microsoft documents the request; no Basic header.
    assert_eq!(
        (f["client_id"].as_str(), f["client_secret"].as_str()),
        ("app-id", "s")
    );
    assert_eq!(idp.seen()[0].0, None, "no Authorization header");
    sc.stop().await;
}

#[tokio::test]
async fn static_file_tokens_are_injected_and_reread_on_change_and_on_401() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-token");
    std::fs::write(&file, "static-token-1\n").unwrap();
    let rejected = Arc::new(std::sync::Mutex::new(Vec::new()));
    let api = FakeUpstream::rejecting(rejected.clone()).await;
    let sc = TestSidecar::start(&format!(
        "providers:\n  p:\n    kind: static_file\n    token_file: {}\n    expose_token: true\n{}",
        file.display(),
        route(&api)
    ))
    .await;
    assert_eq!(sc.get_status("/api/a").await, 200);
    assert_eq!(api.seen()[0].bearer(), Some("static-token-1"));
    // The file changes: picked up within a few seconds, without a 401.
    std::fs::write(&file, "static-token-2").unwrap();
    let mut picked = false;
    for _ in 0..80 {
        direct_client().get(sc.url("/api/b")).send().await.unwrap();
        if api.seen().last().unwrap().bearer() == Some("static-token-2") {
            picked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(picked, "the changed token file was re-read");
    // A 401: the file is re-read once and the request replayed.
    std::fs::write(&file, "static-token-3").unwrap();
    rejected.lock().unwrap().push("static-token-2".into());
    let resp = direct_client().get(sc.url("/api/c")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(api.seen().last().unwrap().bearer(), Some("static-token-3"));
    let status = sc.admin_json("/status").await;
    assert_eq!(status["providers"]["p"]["has_token"], true);
    // The local token endpoint serves the same token, and its use is counted.
    let v = sc.admin_json("/providers/p/token").await;
    assert_eq!(v["access_token"], "static-token-3");
    let metrics = direct_client()
        .get(sc.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("token_sidecar_token_exposed_total{provider=\"p\"} 1"),
        "{metrics}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn azure_ad_certificate_credentials_carry_the_thumbprint() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key_file = dir.path().join("app.pem");
    std::fs::write(&key_file, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n  p:\n    kind: azure_ad\n    authority: {}\n    tenant_id: contoso\n    client_id: app-id\n    client_auth: private_key_jwt\n    private_key_file: {}\n    signing_alg: ES256\n    scopes: [\"api://orders/.default\"]\n{}",
        idp.base_url(),
        key_file.display(),
        route(&api)
    ))
    .await;
    assert_eq!(sc.get_status("/api/x").await, 200);
    let f = form(&idp.seen()[0].1);
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(f["client_assertion"].split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let want = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, cert.der()).as_ref());
    assert_eq!(header["x5t#S256"], want);
    let claims = verify(
        &f["client_assertion"],
        &signature::ECDSA_P256_SHA256_FIXED,
        key.public_key_raw(),
    );
    assert_eq!(
        claims["aud"],
        format!("{}/contoso/oauth2/v2.0/token", idp.base_url())
    );
    assert_eq!(idp.paths(), ["/contoso/oauth2/v2.0/token"]);
    sc.stop().await;
}
