//! `ca_file` with the self-signed certificate `openssl req -x509` makes by default: it is
//! marked as a CA (`CA:TRUE`), which WebPKI refuses as a server's own certificate; curl
//! and Python accept it when it is the one trusted. So does the sidecar, for exactly the
//! certificates listed, for upstreams and IdPs alike, with the name still checked.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// `openssl req -x509` the way READMEs write it: a self-signed certificate for `san`,
/// in `dir` as `NAME.crt` / `NAME.key`.
fn openssl_self_signed(dir: &Path, name: &str, san: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=test"])
        .arg("-addext")
        .arg(format!("subjectAltName={san}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl is installed (test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl's default self-signed certificate is a CA: the case under test"
    );
    (crt, key)
}

fn server_config(crt: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(crt)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test]
async fn a_listed_openssl_self_signed_certificate_is_trusted_for_upstreams_and_idps() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = openssl_self_signed(dir.path(), "server", "IP:127.0.0.1,DNS:localhost");
    let (other, _) = openssl_self_signed(dir.path(), "other", "IP:127.0.0.1");
    let (wrong_name, wrong_key) = openssl_self_signed(dir.path(), "named", "DNS:other.test");
    let idp = FakeIdp::builder()
        .tls(server_config(&crt, &key))
        .run()
        .await;
    let api = FakeUpstream::tls_with(server_config(&crt, &key)).await;
    let misnamed = FakeUpstream::tls_with(server_config(&wrong_name, &wrong_key)).await;
    let provider = format!("    ca_file: {}\n", crt.display());
    let yaml = format!(
        "providers:\n{}routes:\n  - name: listed\n    match: {{ path_prefix: /listed }}\n    provider: x\n    upstream: {api}\n    ca_file: {crt}\n  - name: unlisted\n    match: {{ path_prefix: /unlisted }}\n    provider: x\n    upstream: {api}\n    ca_file: {other}\n  - name: misnamed\n    match: {{ path_prefix: /misnamed }}\n    provider: x\n    upstream: {misnamed}\n    ca_file: {wrong}\n",
        provider_yaml("x", &idp, &provider),
        api = api.url(),
        misnamed = misnamed.url(),
        crt = crt.display(),
        other = other.display(),
        wrong = wrong_name.display(),
    );
    let sc = TestSidecar::start(&yaml).await;
    // The IdP (provider ca_file) and the upstream (route ca_file): both trusted.
    assert_eq!(sc.get_status("/listed/x").await, 200);
    assert_eq!(idp.requests(), 1);
    assert_eq!(api.count(), 1);
    // Another self-signed certificate, or the listed one for a name it does not carry:
    // refused as before.
    for path in ["/unlisted/x", "/misnamed/x"] {
        let resp = direct_client().get(sc.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 502, "{path}");
        let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "upstream_unavailable", "{path}: {body}");
    }
    assert_eq!(api.count(), 1);
    assert_eq!(misnamed.count(), 0);
    sc.stop().await;
}
