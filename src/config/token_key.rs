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
/// parameters, `ca_file`, the egress (`egress_proxy` with its credentials, and
/// `no_proxy`), which the source's HTTP client is built with, and the `dpop` key (a token
/// is bound to it: a new key needs a new token). Secrets, key material and the values of extra parameters
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
    egress: crate::outbound::Egress,
    /// The DPoP key file, algorithm and material.
    dpop: Option<(PathBuf, SigningAlg, Digest)>,
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
            // So is the way out: a changed `egress_proxy` (or its credentials, kept only
            // as a fingerprint) or `no_proxy` builds a new client, and so a new source.
            egress: c.egress.clone(),
            dpop: c
                .dpop
                .as_ref()
                .map(|d| (d.key_file.clone(), d.key.alg(), Digest(d.key.fingerprint()))),
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
