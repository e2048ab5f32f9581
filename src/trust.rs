//! TLS trust for outgoing connections (to IdPs and upstreams): the system's roots plus
//! an optional extra CA file. Certificate verification is never switched off; there is no
//! code path here that could do so.
//!
//! Outside tests, this is the only place that loads trust roots or builds a rustls
//! `ClientConfig`: the upstream client (hyper-rustls, also for intercepted requests) and
//! the IdP client (reqwest, handed the config with `tls_backend_preconfigured`) both get
//! theirs here, so they trust exactly the same roots.

use crate::keys::ClientIdentity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Reads every certificate in a PEM file; an error if there is none.
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {}: {}", path.display(), pem_reason(&e)))?;
    let certs: Vec<_> = iter.collect::<Result<_, _>>().map_err(|e| {
        format!(
            "CA file {} is not valid PEM: {}",
            path.display(),
            pem_reason(&e)
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => crate::file::io_reason(io),
        other => format!("{other:?}"),
    }
}

/// The system's trust roots, loaded and parsed once per process; each client config
/// starts from a copy.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        if !loaded.errors.is_empty() {
            tracing::debug!(
                errors = loaded.errors.len(),
                "some system trust roots could not be loaded"
            );
        }
        let mut roots = RootCertStore::empty();
        let (_added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        roots
    })
}

/// A client certificate chain and its key (RFC 8705 `tls_client_auth`), checked to work
/// together. Errors name the files, never their content.
pub fn client_identity(cert_file: &Path, key_file: &Path) -> Result<ClientIdentity, String> {
    let certs =
        load_pem_certs(cert_file).map_err(|e| e.replace("CA file", "client certificate"))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|_| format!("{} holds no PEM private key", key_file.display()))?;
    // Prove the pair works before anything depends on it.
    client_config_with(None, &[], Some((certs.clone(), key.clone_key())))?;
    Ok(ClientIdentity::new(certs, key))
}

/// A rustls client config trusting the system roots plus `ca_file`, offering `alpn`.
pub fn client_config(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<ClientConfig, String> {
    client_config_with(ca_file, alpn, None)
}

/// Like [`client_config`], presenting `identity` when the server asks for a certificate.
pub fn client_config_with(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, String> {
    let mut roots = system_roots().clone();
    let mut listed = Vec::new();
    if let Some(path) = ca_file {
        for cert in load_pem_certs(path)? {
            roots
                .add(cert.clone())
                .map_err(|e| format!("CA file {}: unusable certificate: {e}", path.display()))?;
            listed.push(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let config = if listed.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ListedSelfSigned { webpki, listed }))
    };
    let mut config = match identity {
        None => config.with_no_client_auth(),
        Some((certs, key)) => config
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("the client certificate and key do not fit together: {e}"))?,
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The full WebPKI verification, plus one case curl and OpenSSL-based clients accept: a
/// server presenting exactly a self-signed certificate listed in `ca_file` that is marked
/// as a CA (what `openssl req -x509` makes by default), which WebPKI refuses as an end
/// entity (`CaUsedAsEndEntity`). That error comes after WebPKI has checked the
/// certificate's validity period; the name is checked here, and the handshake signatures
/// are verified as always. Anything else stays refused.
#[derive(Debug)]
struct ListedSelfSigned {
    webpki: Arc<WebPkiServerVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ListedSelfSigned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            Err(e) if is_ca_used_as_end_entity(&e) && self.lists(end_entity) => {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl ListedSelfSigned {
    fn lists(&self, cert: &CertificateDer<'_>) -> bool {
        self.listed.iter().any(|c| c.as_ref() == cert.as_ref())
    }
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}
