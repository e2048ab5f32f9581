//! [`TokenKey`]: what identifies the token a provider hands out.

use super::{ClientAuth, Exchange, Grant, ProviderKind};
use crate::keys::SigningAlg;
use crate::secret::{fingerprint, Fingerprint, Secret};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What identifies the token a provider hands out: two providers with equal keys would
/// fetch the same token, so a reload may keep the cached one, and any change to a field
/// below builds a new token source.
///
/// It holds the kind, the grant (for `refresh_token` the configured token and the store,
/// never the rotated one; for `token_exchange` all its settings), the token URL, the
/// client id and secret, the client authentication (with its key material), scopes,
/// audience, resource, extra parameters and `ca_file`. Secrets, key material and the
/// values of extra parameters are held as SHA-256 fingerprints, taken when the config was
/// compiled, so a rotated key file gives a new key on the next reload. Settings that do not change the token (timeouts,
/// retries, refresh margin, prefetch, idle timeout, `expose_token`) are not part of it.
///
/// `Debug` prints neither a secret nor a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey(Arc<Fields>);

/// The fields of a provider that identify its token, borrowed while it is compiled.
pub(super) struct KeyParts<'a> {
    pub kind: &'a ProviderKind,
    pub grant: &'a Grant,
    pub token_url: &'a reqwest::Url,
    pub client_id: &'a str,
    pub client_secret: Option<&'a Secret>,
    pub client_auth: &'a ClientAuth,
    pub scopes: &'a [String],
    pub audience: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub extra_params: &'a [(String, String)],
    pub ca_file: Option<&'a Path>,
}

impl TokenKey {
    pub(super) fn new(p: KeyParts<'_>) -> TokenKey {
        TokenKey(Arc::new(Fields {
            kind: p.kind.clone(),
            grant: GrantKey::of(p.grant),
            token_url: p.token_url.clone(),
            client_id: p.client_id.to_string(),
            client_secret: p.client_secret.map(Digest::of),
            client_auth: AuthKey::of(p.client_auth),
            scopes: p.scopes.to_vec(),
            audience: p.audience.map(str::to_string),
            resource: p.resource.map(str::to_string),
            // A parameter's value may be a credential: only its fingerprint is kept.
            extra_params: p
                .extra_params
                .iter()
                .map(|(k, v)| (k.clone(), Digest(fingerprint(v.as_bytes()))))
                .collect(),
            // Trust for the IdP is part of the HTTP client a source is built with.
            ca_file: p.ca_file.map(Path::to_path_buf),
        }))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Fields {
    kind: ProviderKind,
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
