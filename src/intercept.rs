//! TLS interception for `HTTPS_PROXY` traffic: a CONNECT to a routed host is answered
//! with a TLS server whose certificate for exactly the requested name (DNS or IP SAN) is
//! minted on the fly and signed by the operator's CA. The requests inside then take the
//! same route → token → forward → replay path as plain ones, and the upstream's own
//! certificate is verified as usual.
//!
//! One key pair serves every leaf (minting is then one signature); leaves are cached per
//! name, bounded, and re-minted before they expire. The CA key never leaves this module.

use crate::file::{io_reason, write_atomic, Existing};
use crate::lru::Lru;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// `tls_intercept` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterceptConfig {
    pub ca_cert_file: std::path::PathBuf,
    pub ca_key_file: std::path::PathBuf,
    pub leaf_validity: Duration,
    pub cache_size: usize,
}

pub struct Interceptor {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_not_after: OffsetDateTime,
    leaf_key: KeyPair,
    validity: Duration,
    /// Leaf configs by name, with the time to re-mint them.
    cache: Mutex<Lru<String, (Arc<ServerConfig>, SystemTime)>>,
}

impl Interceptor {
    /// Loads the CA. Errors name the file and never contain key material.
    pub fn load(cfg: &InterceptConfig) -> Result<Self, String> {
        let cert_pem = read(&cfg.ca_cert_file, "CA certificate")?;
        let key_pem = read(&cfg.ca_key_file, "CA key")?;
        let ca_key = KeyPair::from_pem(&key_pem).map_err(|_| {
            format!(
                "{} is not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                cfg.ca_key_file.display()
            )
        })?;
        let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| format!("{} holds no PEM certificate", cfg.ca_cert_file.display()))?;
        let ca_pub = rcgen::PublicKeyData::der_bytes(&ca_key).to_vec();
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, ca_key).map_err(|e| {
            format!(
                "{} is not a usable CA certificate: {e}",
                cfg.ca_cert_file.display()
            )
        })?;
        let Some(ca_not_after) = cert_matches_key(&ca_der, &ca_pub) else {
            return Err(format!(
                "{} does not belong to the key in {}",
                cfg.ca_cert_file.display(),
                cfg.ca_key_file.display()
            ));
        };
        let left = ca_not_after - OffsetDateTime::now_utc();
        if left <= time::Duration::ZERO {
            return Err(format!(
                "the CA certificate {} has expired",
                cfg.ca_cert_file.display()
            ));
        }
        if left < time::Duration::days(30) {
            tracing::warn!(ca = %cfg.ca_cert_file.display(), days_left = left.whole_days(), "the tls_intercept CA expires soon");
        }
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate a key: {e}"))?;
        Ok(Self {
            issuer,
            ca_der,
            ca_not_after,
            leaf_key,
            validity: cfg.leaf_validity,
            cache: Mutex::new(Lru::new(cfg.cache_size.max(1))),
        })
    }

    /// A TLS server config presenting a certificate for `host` (a DNS name or an IP
    /// address), from the cache or freshly minted.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let now = SystemTime::now();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((cfg, renew_at)) = cache.get(&name) {
                if now < *renew_at {
                    return Ok(cfg.clone());
                }
            }
        }
        // Minted outside the lock: one signature must not hold up other CONNECTs.
        let cfg = Arc::new(self.mint(&name)?);
        // Re-mint when 90% of the validity has passed.
        let renew_at = now + self.validity.mul_f64(0.9);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, (cfg.clone(), renew_at));
        Ok(cfg)
    }

    /// Number of cached leaves (for tests and status).
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn mint(&self, name: &str) -> Result<ServerConfig, String> {
        let mut params = CertificateParams::new(vec![name.to_string()])
            .map_err(|e| format!("cannot mint a certificate for {name}: {e}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "token-sidecar");
        params.distinguished_name = dn;
        let now = OffsetDateTime::now_utc();
        // An hour of slack for clients whose clocks run behind.
        params.not_before = now - time::Duration::hours(1);
        // Never beyond the CA itself: clients would reject the chain.
        params.not_after =
            (now + time::Duration::seconds(self.validity.as_secs() as i64)).min(self.ca_not_after);
        params.serial_number = Some(SerialNumber::from_slice(&fastrand::u64(1..).to_be_bytes()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| format!("cannot sign a certificate for {name}: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut cfg =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup failed: {e}"))?
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone(), self.ca_der.clone()], key)
                .map_err(|e| format!("TLS setup failed: {e}"))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// A new CA for `token-sidecar ca init`: (certificate PEM, key PEM).
pub fn generate_ca(common_name: &str, validity_days: u32) -> Result<(String, String), String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate a key: {e}"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "token-sidecar");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(validity_days));
    params.serial_number = Some(SerialNumber::from_slice(&fastrand::u64(1..).to_be_bytes()));
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot create the CA certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `token-sidecar ca init`: writes a new CA to `dir/ca.crt` (0644) and `dir/ca.key`
/// (0600) and returns their paths. Without `force` it refuses to touch either file if one
/// exists; with it, both are replaced. Each file is written atomically, never through an
/// existing file or symlink, the key first.
pub fn write_ca(dir: &Path, force: bool) -> Result<(PathBuf, PathBuf), String> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create {}: {}", dir.display(), io_reason(&e)))?;
    if !force {
        if let Some(p) = [&crt, &key]
            .into_iter()
            .find(|p| p.symlink_metadata().is_ok())
        {
            return Err(format!(
                "{} exists; refusing to overwrite it (use --force to replace the CA)",
                p.display()
            ));
        }
    }
    let (cert_pem, key_pem) = generate_ca("token-sidecar local CA", 3650)?;
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Keep
    };
    for (path, text, mode) in [(&key, &key_pem, 0o600), (&crt, &cert_pem, 0o644)] {
        write_atomic(path, text.as_bytes(), mode, existing)
            .map_err(|e| format!("cannot write {}: {}", path.display(), io_reason(&e)))?;
    }
    Ok((crt, key))
}

fn read(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the {what} {}: {}",
            path.display(),
            io_reason(&e)
        )
    })
}

/// The certificate's end of validity, if its SubjectPublicKeyInfo carries `public_key`.
fn cert_matches_key(cert: &CertificateDer<'_>, public_key: &[u8]) -> Option<OffsetDateTime> {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).ok()?;
    (*c.public_key().subject_public_key.data == *public_key)
        .then(|| c.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn interceptor() -> (Interceptor, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generate_ca("test CA", 1).unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert).unwrap();
        std::fs::write(dir.path().join("ca.key"), key).unwrap();
        let cfg = InterceptConfig {
            ca_cert_file: dir.path().join("ca.crt"),
            ca_key_file: dir.path().join("ca.key"),
            leaf_validity: Duration::from_secs(86400),
            cache_size: 2,
        };
        (Interceptor::load(&cfg).unwrap(), dir)
    }

    /// Handshakes with the config served for `host` and returns the chain the client got.
    async fn served_chain(ic: &Interceptor, host: &str) -> Vec<CertificateDer<'static>> {
        let server = ic.server_config(host).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ic.ca_der.clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .unwrap();
        let accept = tokio::spawn(async move {
            tokio_rustls::TlsAcceptor::from(server)
                .accept(b)
                .await
                .map(|_| ())
        });
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, a)
            .await
            .expect("the client trusts the minted leaf");
        accept.await.unwrap().unwrap();
        tls.get_ref().1.peer_certificates().unwrap().to_vec()
    }

    #[tokio::test]
    async fn served_leaves_name_the_host_are_signed_by_the_ca_and_cached() {
        let (ic, _dir) = interceptor();
        let cases: [(&str, Option<Vec<u8>>); 3] = [
            ("API.Example.com", None),
            ("127.0.0.1", Some(vec![127, 0, 0, 1])),
            (
                "[::1]",
                Some(std::net::Ipv6Addr::LOCALHOST.octets().to_vec()),
            ),
        ];
        for (host, want_ip) in cases {
            let chain = served_chain(&ic, &host.to_ascii_lowercase()).await;
            assert_eq!(chain.len(), 2, "leaf and CA");
            let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
            let (_, ca) = X509Certificate::from_der(&ic.ca_der).unwrap();
            assert_eq!(cert.issuer(), ca.subject());
            cert.verify_signature(Some(ca.public_key())).unwrap();
            let san = cert.subject_alternative_name().unwrap().unwrap();
            match (&san.value.general_names[..], want_ip) {
                ([GeneralName::DNSName(d)], None) => assert_eq!(*d, "api.example.com"),
                ([GeneralName::IPAddress(ip)], Some(want)) => assert_eq!(ip.to_vec(), want),
                (other, _) => panic!("{other:?}"),
            }
            let eku = cert.extended_key_usage().unwrap().unwrap();
            assert!(eku.value.server_auth);
            assert!(!cert.is_ca());
            let a = ic.server_config(host).unwrap();
            let b = ic.server_config(host).unwrap();
            assert!(Arc::ptr_eq(&a, &b), "reused from the cache");
        }
        assert_eq!(ic.cached(), 2, "the cache is bounded");
    }

    #[test]
    fn write_ca_refuses_to_overwrite_unless_forced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ca");
        let (crt, key) = write_ca(&out, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&crt), mode(&key)), (0o644, 0o600));
        let first = std::fs::read_to_string(&key).unwrap();
        let err = write_ca(&out, false).unwrap_err();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), first);
        write_ca(&out, true).unwrap();
        assert_ne!(std::fs::read_to_string(&key).unwrap(), first);
        let cfg = InterceptConfig {
            ca_cert_file: crt,
            ca_key_file: key,
            leaf_validity: Duration::from_secs(3600),
            cache_size: 1,
        };
        assert!(Interceptor::load(&cfg).is_ok(), "a matching pair");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2, "no temp files");
    }

    #[test]
    fn mismatched_or_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = generate_ca("a", 1).unwrap();
        let (_, other_key) = generate_ca("b", 1).unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert).unwrap();
        std::fs::write(dir.path().join("ca.key"), &other_key).unwrap();
        let mut cfg = InterceptConfig {
            ca_cert_file: dir.path().join("ca.crt"),
            ca_key_file: dir.path().join("ca.key"),
            leaf_validity: Duration::from_secs(3600),
            cache_size: 10,
        };
        let err = Interceptor::load(&cfg).err().unwrap();
        assert!(err.contains("does not belong to the key"), "{err}");
        assert!(!err.contains("PRIVATE KEY"));
        cfg.ca_key_file = dir.path().join("missing.key");
        assert!(Interceptor::load(&cfg)
            .err()
            .unwrap()
            .contains("cannot read the CA key"));
    }
}
