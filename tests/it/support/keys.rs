//! Private keys for tests, written as PEM files, with their public halves for the
//! independent verifiers.

use base64::Engine;
use ring::signature::KeyPair as _;
use std::path::{Path, PathBuf};

/// A PEM private key on disk and its public key (`Ed25519`: 32 bytes; P-256: the
/// uncompressed point; RSA: `(n, e)`).
pub struct TestKey {
    pub path: PathBuf,
    pub public: Public,
}

pub enum Public {
    Ed25519(Vec<u8>),
    P256(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

pub fn ed25519(dir: &Path) -> TestKey {
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
    let path = dir.join("ed25519.pem");
    std::fs::write(&path, pem(der.as_ref())).unwrap();
    TestKey {
        path,
        public: Public::Ed25519(pair.public_key().as_ref().to_vec()),
    }
}

pub fn p256(dir: &Path) -> TestKey {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref(), &rng).unwrap();
    let path = dir.join("p256.pem");
    std::fs::write(&path, pem(der.as_ref())).unwrap();
    TestKey {
        path,
        public: Public::P256(pair.public_key().as_ref().to_vec()),
    }
}

/// A 2048-bit RSA key from `openssl genpkey` (ring cannot generate RSA keys).
pub fn rsa(dir: &Path) -> TestKey {
    let path = dir.join("rsa.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed for RSA test keys (./test.sh installs it)")
        .success();
    assert!(ok);
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::PrivateKeyDer::from_pem_file(&path).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    TestKey {
        path,
        public: Public::Rsa {
            n: public.n,
            e: public.e,
        },
    }
}
