//! Grants: one fetcher per way a provider gets its token — client credentials (the
//! `azure_ad` preset included), refresh token, token exchange (one fetcher per subject)
//! and static file. Everything that depends on the grant lives here: the parameters of a
//! token request, the rotated refresh token and its store, the subject token, the token
//! file and its change detection, and how long a grant's rejection lasts.
//!
//! A fetcher makes ONE attempt and reports it as a [`TokenResponse`] or a classified
//! [`Failure`]. It must not cache tokens, retry, back off or schedule (the token source
//! does), and it never logs or returns a secret.

mod exchange;
mod refresh;
mod static_file;

use super::idp::{Failure, IdpClient, TokenResponse};
use crate::config::{Grant, ProviderConfig, TokenOrigin};
use crate::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

pub(super) use exchange::ExchangeFetcher;
use refresh::RefreshToken;
use static_file::StaticFile;

/// How a token source gets its token responses.
pub(super) enum Fetcher {
    /// RFC 6749 §4.4, and the `azure_ad` preset.
    ClientCredentials(Arc<IdpClient>),
    /// RFC 6749 §6, with rotation and the optional store.
    RefreshToken(RefreshToken),
    /// RFC 8693, for one subject token.
    Exchange(ExchangeFetcher),
    /// `kind: static_file`.
    StaticFile(StaticFile),
    /// Unit tests: a scripted answer instead of an IdP, so the cache can be tested in
    /// paused time.
    #[cfg(test)]
    Scripted(Script),
}

/// A scripted fetch for unit tests.
#[cfg(test)]
pub(super) type Script = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<TokenResponse, Failure>>
        + Send
        + Sync,
>;

impl Fetcher {
    /// The fetcher `cfg` asks for. A token-exchange provider gets one without a subject,
    /// which fails every fetch: its tokens come from [`ExchangeFetcher`]s per subject.
    /// With a shared store (`fleet`), a `refresh_token` grant keeps its refresh token
    /// there.
    pub(super) fn for_provider(
        cfg: &ProviderConfig,
        fleet: Option<&super::source::Fleet>,
    ) -> Result<Self, String> {
        let client = match &cfg.origin {
            TokenOrigin::OAuth(client) => client,
            TokenOrigin::StaticFile { token_file } => {
                return Ok(Self::StaticFile(StaticFile::new(token_file.clone())))
            }
        };
        let idp = Arc::new(IdpClient::new(&cfg.name, client.clone())?);
        Ok(match &client.grant {
            Grant::ClientCredentials => Self::ClientCredentials(idp),
            Grant::RefreshToken {
                initial,
                configured,
                store,
            } => {
                let mut r =
                    RefreshToken::new(idp, initial.clone(), configured.clone(), store.clone());
                if let Some(f) = fleet {
                    r.share(f.store.clone(), f.keys.clone());
                }
                Self::RefreshToken(r)
            }
            Grant::TokenExchange(x) => {
                Self::Exchange(ExchangeFetcher::new(idp, Arc::new(x.clone()), None))
            }
        })
    }

    /// One token request (or file read).
    pub(super) async fn fetch(&self, cfg: &ProviderConfig) -> Result<TokenResponse, Failure> {
        match self {
            Self::ClientCredentials(idp) => {
                let grant = vec![("grant_type", "client_credentials".into())];
                idp.send(cfg.timeout, grant).await
            }
            Self::RefreshToken(r) => r.fetch(cfg).await,
            Self::Exchange(x) => x.fetch(cfg.timeout).await,
            Self::StaticFile(f) => f.fetch().await,
            #[cfg(test)]
            Self::Scripted(script) => script().await,
        }
    }

    /// How often the scheduler asks [`changed`](Self::changed), for fetchers whose
    /// source can change without notice.
    pub(super) fn poll_interval(&self) -> Option<Duration> {
        match self {
            Self::StaticFile(_) => Some(static_file::POLL_INTERVAL),
            _ => None,
        }
    }

    /// True (once) when what the last token came from changed since the last look.
    pub(super) async fn changed(&self) -> bool {
        match self {
            Self::StaticFile(f) => f.changed().await,
            _ => false,
        }
    }

    /// For `grant_type: refresh_token` with a shared store: whether no rotated refresh
    /// token awaits the store, as it changes (the fetch lease is kept while one does).
    pub(super) fn rotation_saved(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match self {
            Self::RefreshToken(r) => r.rotation_saved(),
            _ => None,
        }
    }

    /// For `grant_type: refresh_token`: the refresh token the next fetch will use.
    pub(super) fn refresh_token(&self) -> Option<Secret> {
        match self {
            Self::RefreshToken(r) => Some(r.current()),
            _ => None,
        }
    }

    /// For `grant_type: refresh_token`: continue from `token` (the current refresh token of
    /// the source this one replaces). Other fetchers ignore it.
    pub(super) fn adopt_refresh_token(&self, token: Secret) {
        if let Self::RefreshToken(r) = self {
            r.adopt(token);
        }
    }
}
