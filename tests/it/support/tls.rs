//! Test certificate authorities: one for the sidecar's interception, one for HTTPS
//! upstreams; and clients that trust them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use token_sidecar::intercept::{generate_ca, InterceptConfig, Interceptor};

/// A CA in a temp dir, with `ca.crt` and `ca.key`.
pub struct TestCa {
    pub cert_pem: String,
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let (cert_pem, key_pem) = generate_ca(name, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("ca.key"), key_pem).unwrap();
        TestCa { cert_pem, dir }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("ca.key")
    }

    /// A TLS server config for `name`, signed by this CA.
    pub fn server_config(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let cfg = InterceptConfig {
            ca_cert_file: self.cert_path(),
            ca_key_file: self.key_path(),
            leaf_validity: Duration::from_secs(86400),
            cache_size: 10,
        };
        Interceptor::load(&cfg)
            .unwrap()
            .server_config(name)
            .unwrap()
    }

    /// The `tls_intercept:` block using this CA.
    pub fn intercept_yaml(&self) -> String {
        format!(
            "tls_intercept:\n  ca_cert_file: {}\n  ca_key_file: {}\n",
            self.cert_path().display(),
            self.key_path().display()
        )
    }

    /// A rustls client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }

    /// A reqwest client that sends HTTPS through `proxy` (CONNECT) and trusts this CA.
    pub fn https_client_via(&self, proxy: std::net::SocketAddr, alpn: &[&[u8]]) -> reqwest::Client {
        super::direct_client();
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::https(format!("http://{proxy}")).unwrap())
            .tls_backend_preconfigured(self.client_config(alpn))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }
}
