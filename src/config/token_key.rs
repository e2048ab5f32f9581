//! [`TokenKey`]: what identifies the token a provider hands out.

use super::{ClientAuth, Exchange, Grant, OAuthClient, TokenOrigin};
use crate::keys::SigningAlg;
use crate::secret::{fingerprint, Fingerprint, Secret};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// What identifies the token a provider hands out: two providers with equal keys would
/// fetch the same token, so a reload may keep the cached one, and any change to a field
/// below builds a new token source.
///
/// For a `static_file` provider it is the file. For an OAuth2 provider it holds the grant
/// (for `refresh_token` the configured token and the store, never the rotated one; for
/// `token_exchange` all its settings), the token URL, the client id and secret, the
/// client authentication (with its key material), scopes, audience, resource, extra
/// parameters, `ca_file`, the egress proxy the token URL is reached through (with its
/// credentials; `None` when there is none or `no_proxy` lists the token URL's host),
/// which the source's HTTP client is built with, and the `dpop` key (a token is bound to
/// it: a new key needs a new token). Secrets, key material and the values of extra parameters
/// are held as SHA-256 fingerprints, taken when the config was compiled, so a rotated key
/// file gives a new key on the next reload. Settings that do not change the token
/// (timeouts, retries, refresh margin, prefetch, idle timeout, `expose_token`) are not
/// part of it. So a token source may keep the [`OAuthClient`] it was built with for as
/// long as its provider's key stays the same: all a fetch sends, but the rotating refresh
/// token, is in the key.
///
/// `Debug` prints neither a secret nor a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey(Arc<OriginKey>);

impl TokenKey {
    pub(super) fn new(origin: &TokenOrigin) -> TokenKey {
        TokenKey(Arc::new(match origin {
            TokenOrigin::OAuth(client) => OriginKey::OAuth(Box::new(ClientKey::of(client))),
            TokenOrigin::StaticFile { token_file } => OriginKey::StaticFile(token_file.clone()),
        }))
    }

    /// The identity as bytes, for the shared token store's key names: a fixed layout
    /// (a version, then every field tagged and length-prefixed, in declaration order), so
    /// every process with the same provider settings computes the same bytes — unlike
    /// `Debug` output or Rust's `Hash`, which may change between builds. Secrets appear
    /// only as their fingerprints; the store hashes these bytes again (HMAC) before they
    /// reach Redis.
    pub fn identity_bytes(&self) -> Vec<u8> {
        let mut e = Encoder(b"token-sidecar token identity v1".to_vec());
        match &*self.0 {
            OriginKey::StaticFile(path) => {
                e.tag(b'F');
                e.path(path);
            }
            OriginKey::OAuth(c) => {
                e.tag(b'O');
                c.grant.encode(&mut e);
                e.str(c.token_url.as_str());
                e.str(&c.client_id);
                e.opt(c.client_secret.as_ref().map(|d| &d.0[..]));
                c.client_auth.encode(&mut e);
                e.list(c.scopes.iter().map(String::as_bytes));
                e.opt(c.audience.as_deref().map(str::as_bytes));
                e.opt(c.resource.as_deref().map(str::as_bytes));
                e.u64(c.extra_params.len() as u64);
                for (k, v) in &c.extra_params {
                    e.str(k);
                    e.bytes(&v.0);
                }
                e.opt_path(c.ca_file.as_deref());
                // Only with dpop, so the bytes of every other provider stay as they were:
                // a token is bound to the key, so the key's public thumbprint (RFC 7638)
                // tells tokens apart, and a fleet sharing one key still shares tokens.
                if let Some(d) = &c.dpop {
                    e.tag(b'D');
                    e.str(d.alg.name());
                    e.str(&d.jkt);
                }
            }
        }
        e.0
    }
}

/// The fixed byte layout of [`TokenKey::identity_bytes`]: a one-byte tag before each
/// variant, lengths as 8-byte big-endian integers before each variable-length value, so
/// no two different identities encode to the same bytes.
struct Encoder(Vec<u8>);

impl Encoder {
    fn tag(&mut self, t: u8) {
        self.0.push(t);
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn path(&mut self, p: &std::path::Path) {
        self.bytes(p.as_os_str().as_encoded_bytes());
    }

    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.tag(0),
            Some(b) => {
                self.tag(1);
                self.bytes(b);
            }
        }
    }

    fn opt_path(&mut self, p: Option<&std::path::Path>) {
        self.opt(p.map(|p| p.as_os_str().as_encoded_bytes()));
    }

    fn list<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.u64(items.len() as u64);
        for i in items {
            self.bytes(i);
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum OriginKey {
    OAuth(Box<ClientKey>),
    StaticFile(PathBuf),
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    grant: GrantKey,
    token_url: reqwest::Url,
    client_id: String,
    client_secret: Option<Digest>,
    client_auth: AuthKey,
    scopes: Vec<String>,
    audience: Option<String>,
    resource: Option<String>,
    extra_params: Vec<(String, Digest)>,
    ca_file: Option<PathBuf>,
    /// The egress proxy for the token URL, by address and credentials' fingerprint.
    proxy: Option<Arc<crate::outbound::ProxyEndpoint>>,
    dpop: Option<DpopKeyId>,
}

/// What identifies a DPoP key: the file, algorithm and material (for a reload), and the
/// public key's RFC 7638 thumbprint (for the store: the same in every replica holding the
/// same key, and nothing secret).
#[derive(Debug, PartialEq, Eq, Hash)]
struct DpopKeyId {
    key_file: PathBuf,
    alg: SigningAlg,
    material: Digest,
    jkt: String,
}

impl ClientKey {
    fn of(c: &OAuthClient) -> ClientKey {
        ClientKey {
            grant: GrantKey::of(&c.grant),
            token_url: c.token_url.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.as_ref().map(Digest::of),
            client_auth: AuthKey::of(&c.client_auth),
            scopes: c.scopes.clone(),
            audience: c.audience.clone(),
            resource: c.resource.clone(),
            // A parameter's value may be a credential: only its fingerprint is kept.
            extra_params: c
                .extra_params
                .iter()
                .map(|(k, v)| (k.clone(), Digest(fingerprint(v.as_bytes()))))
                .collect(),
            // Trust for the IdP is part of the HTTP client a source is built with.
            ca_file: c.ca_file.clone(),
            // So is the way out, as decided for the token URL: a changed `egress_proxy`
            // (or its credentials, kept only as a fingerprint), or a `no_proxy` edit that
            // changes the decision, builds a new client, and so a new source; other
            // `no_proxy` edits fetch no new token.
            proxy: c.egress.proxy_for_url(&c.token_url).cloned(),
            dpop: c.dpop.as_ref().map(|d| DpopKeyId {
                key_file: d.key_file.clone(),
                alg: d.key.alg(),
                material: Digest(d.key.fingerprint()),
                jkt: d.key.thumbprint().to_string(),
            }),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum GrantKey {
    ClientCredentials,
    /// The configured token, not the current one: rotations never make a reload look
    /// like a new provider.
    RefreshToken {
        configured: Option<Digest>,
        store: Option<PathBuf>,
    },
    TokenExchange(Exchange),
}

impl GrantKey {
    fn encode(&self, e: &mut Encoder) {
        match self {
            GrantKey::ClientCredentials => e.tag(b'C'),
            GrantKey::RefreshToken { configured, store } => {
                e.tag(b'R');
                e.opt(configured.as_ref().map(|d| &d.0[..]));
                e.opt_path(store.as_deref());
            }
            GrantKey::TokenExchange(x) => {
                e.tag(b'X');
                e.str(x.header.as_str());
                e.str(&x.prefix);
                e.str(&x.subject_token_type);
                e.opt_path(x.actor_token_file.as_deref());
                e.opt(x.actor_token_type.as_deref().map(str::as_bytes));
                e.opt(x.requested_token_type.as_deref().map(str::as_bytes));
                e.u64(x.max_subjects as u64);
                e.tag(u8::from(x.forward_subject_header));
            }
        }
    }

    fn of(grant: &Grant) -> GrantKey {
        match grant {
            Grant::ClientCredentials => GrantKey::ClientCredentials,
            Grant::RefreshToken {
                configured, store, ..
            } => GrantKey::RefreshToken {
                configured: configured.as_ref().map(Digest::of),
                store: store.clone(),
            },
            Grant::TokenExchange(x) => GrantKey::TokenExchange(x.clone()),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum AuthKey {
    Basic,
    Post,
    PrivateKeyJwt {
        key_file: PathBuf,
        alg: SigningAlg,
        key_id: Option<String>,
        audience: String,
        key: Digest,
    },
    AssertionFile(PathBuf),
    TlsClientAuth {
        cert_file: PathBuf,
        key_file: PathBuf,
        identity: Digest,
    },
}

impl AuthKey {
    fn encode(&self, e: &mut Encoder) {
        match self {
            AuthKey::Basic => e.tag(b'B'),
            AuthKey::Post => e.tag(b'P'),
            AuthKey::PrivateKeyJwt {
                key_file,
                alg,
                key_id,
                audience,
                key,
            } => {
                e.tag(b'J');
                e.path(key_file);
                e.str(alg.name());
                e.opt(key_id.as_deref().map(str::as_bytes));
                e.str(audience);
                e.bytes(&key.0);
            }
            AuthKey::AssertionFile(f) => {
                e.tag(b'A');
                e.path(f);
            }
            AuthKey::TlsClientAuth {
                cert_file,
                key_file,
                identity,
            } => {
                e.tag(b'T');
                e.path(cert_file);
                e.path(key_file);
                e.bytes(&identity.0);
            }
        }
    }

    fn of(auth: &ClientAuth) -> AuthKey {
        match auth {
            ClientAuth::Basic => AuthKey::Basic,
            ClientAuth::Post => AuthKey::Post,
            ClientAuth::PrivateKeyJwt(p) => AuthKey::PrivateKeyJwt {
                key_file: p.key_file.clone(),
                alg: p.key.alg(),
                key_id: p.key_id.clone(),
                audience: p.audience.clone(),
                key: Digest(p.key.fingerprint()),
            },
            ClientAuth::AssertionFile(f) => AuthKey::AssertionFile(f.clone()),
            ClientAuth::TlsClientAuth {
                cert_file,
                key_file,
                identity,
            } => AuthKey::TlsClientAuth {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                identity: Digest(identity.fingerprint()),
            },
        }
    }
}

/// A fingerprint of a secret or of key material; `Debug` does not show it (a digest of a
/// weak secret can be guessed).
#[derive(PartialEq, Eq, Hash)]
struct Digest(Fingerprint);

impl Digest {
    fn of(secret: &Secret) -> Digest {
        Digest(secret.fingerprint())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn identity(provider: &str) -> Vec<u8> {
        let yaml = format!("providers:\n  p:\n{provider}");
        let c = Config::from_text(Path::new("t.yaml"), &yaml, &|_| None).unwrap();
        c.providers[0].key.identity_bytes()
    }

    const BASE: &str = "    token_url: https://idp.example.com/t\n    client_id: app-client\n    client_secret: s3cret-value\n    scopes: [read, write]\n    extra_params: { tenant: t-1 }\n";

    #[test]
    fn identity_bytes_are_stable_and_tell_providers_apart() {
        let base = identity(BASE);
        assert_eq!(base, identity(BASE), "the same settings, the same bytes");
        // Settings that do not change the token do not change the identity.
        assert_eq!(
            base,
            identity(&format!("{BASE}    timeout: 3s\n    prefetch: true\n"))
        );
        let others = [
            BASE.replace("read, write", "read"),
            BASE.replace("read, write", "write, read"),
            BASE.replace("app-client", "app-client2"),
            BASE.replace("s3cret-value", "s3cret-value2"),
            BASE.replace("t-1", "t-2"),
            BASE.replace("/t\n", "/u\n"),
            format!("{BASE}    audience: a\n"),
            format!("{BASE}    client_auth: post\n"),
        ];
        for other in &others {
            assert_ne!(base, identity(other), "{other}");
        }
        // The layout is fixed: replicas built from other builds must agree. A change here
        // moves every fleet to new keys (one fetch per token); make it on purpose only.
        let digest = crate::secret::fingerprint(&base);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "8e19824f27d27a63d5ced346d6ad7ea82aaa485c95189041377989f669b743d8"
        );
    }

    fn write_p256(file: &Path) {
        use base64::Engine;
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        std::fs::write(file, pem).unwrap();
    }

    /// The shared store's key tells a DPoP provider from a Bearer one and one DPoP key
    /// from another (a token is bound to its key), but replicas holding the same key, even
    /// in another file, share tokens. No key material goes in: only the public thumbprint.
    #[test]
    fn identity_bytes_tell_dpop_keys_apart_by_their_public_thumbprint() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, a_copy) = (
            dir.path().join("a.pem"),
            dir.path().join("b.pem"),
            dir.path().join("copy-of-a.pem"),
        );
        write_p256(&a);
        write_p256(&b);
        std::fs::copy(&a, &a_copy).unwrap();
        let dpop = |file: &Path| format!("{BASE}    dpop: {{ key_file: {} }}\n", file.display());
        let bearer = identity(BASE);
        let with_a = identity(&dpop(&a));
        assert_ne!(with_a, bearer, "a DPoP token is not a Bearer token");
        assert_ne!(with_a, identity(&dpop(&b)), "another key, another token");
        assert_eq!(with_a, identity(&dpop(&a)));
        assert_eq!(
            with_a,
            identity(&dpop(&a_copy)),
            "the same key in another pod's file"
        );
        // Only the public half: the private key's bytes are not in the identity.
        let der = std::fs::read_to_string(&a).unwrap();
        let b64: String = der.lines().filter(|l| !l.starts_with("-----")).collect();
        let private =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
        // ring's PKCS#8 for P-256: a 36-byte prefix, then the 32-byte private scalar.
        let scalar = &private[36..68];
        assert!(!with_a.windows(scalar.len()).any(|w| w == scalar));
    }

    #[test]
    fn identity_bytes_hold_no_secret() {
        let bytes = identity(BASE);
        for secret in ["s3cret-value", "t-1"] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret}");
        }
    }
}
