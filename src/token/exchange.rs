//! RFC 8693 token exchange: one token per subject token taken from the request. Each
//! subject gets its own [`TokenSource`] (cache, single flight, compare-and-invalidate)
//! with its own fetcher, found by the SHA-256 of the subject token — never the token
//! itself — in a bounded map that forgets the least recently used subject.
//!
//! It owns the subject map and what `/status` shows of it; fetching is the per-subject
//! sources' business, and no subject token is kept anywhere but in its fetcher.

use super::grant::{ExchangeFetcher, Fetcher};
use super::idp::IdpClient;
use super::source::{StoreLink, TokenSource};
use super::status::{self, ProviderStatus};
use crate::config::{Exchange, OAuthClient, ProviderConfig};
use crate::lru::Lru;
use crate::metrics::ProviderMetrics;
use crate::secret::{Fingerprint, Secret};
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Makes the fetcher of a new subject.
type FetcherFor = Box<dyn Fn(Secret) -> Fetcher + Send + Sync>;

pub struct ExchangeSource {
    config: ArcSwap<ProviderConfig>,
    /// The settings this source was built from. They are part of the provider's
    /// `TokenKey`, so a reload that changes them builds a new source.
    settings: Arc<Exchange>,
    /// The IdP client's exchange in production, a script in tests.
    fetcher_for: FetcherFor,
    subjects: Mutex<Lru<Fingerprint, Arc<TokenSource>>>,
    /// The shared store: one stored token per subject (its fingerprint in the key).
    link: Option<StoreLink>,
    prefixes: ArcSwap<Vec<Box<str>>>,
    pub metrics: Arc<ProviderMetrics>,
}

impl ExchangeSource {
    /// The source of `config`, whose OAuth2 `client` exchanges tokens with `settings`
    /// (its `grant_type: token_exchange`).
    pub fn new(
        config: Arc<ProviderConfig>,
        client: Arc<OAuthClient>,
        settings: Exchange,
        link: Option<StoreLink>,
    ) -> Result<Arc<Self>, String> {
        let idp = Arc::new(IdpClient::new(&config.name, client)?);
        let settings = Arc::new(settings);
        let shared = settings.clone();
        Ok(Self::with_fetchers(
            config,
            settings,
            Box::new(move |subject| {
                let fetcher = ExchangeFetcher::new(idp.clone(), shared.clone(), Some(subject));
                Fetcher::Exchange(fetcher)
            }),
            link,
        ))
    }

    fn with_fetchers(
        config: Arc<ProviderConfig>,
        settings: Arc<Exchange>,
        fetcher_for: FetcherFor,
        link: Option<StoreLink>,
    ) -> Arc<Self> {
        let max_subjects = settings.max_subjects;
        Arc::new(Self {
            config: ArcSwap::new(config),
            settings,
            fetcher_for,
            subjects: Mutex::new(Lru::new(max_subjects)),
            link,
            prefixes: ArcSwap::from_pointee(vec!["Bearer ".into()]),
            metrics: Arc::new(ProviderMetrics::default()),
        })
    }

    pub fn settings(&self) -> &Exchange {
        &self.settings
    }

    /// The subject token in `headers` (after the configured prefix), if present.
    pub fn subject(&self, headers: &http::HeaderMap) -> Option<Secret> {
        let x = &self.settings;
        let value = headers.get(&x.header)?.to_str().ok()?;
        let token = value.strip_prefix(x.prefix.as_str()).or_else(|| {
            // Scheme names are case-insensitive ("bearer x" for "Bearer ").
            (value.len() >= x.prefix.len()
                && value[..x.prefix.len()].eq_ignore_ascii_case(&x.prefix))
            .then(|| &value[x.prefix.len()..])
        })?;
        let token = token.trim();
        (!token.is_empty()).then(|| Secret::new(token))
    }

    /// The token source for `subject`, created on first use; the least recently used
    /// subject is dropped beyond `max_subjects`.
    pub fn source_for(&self, subject: &Secret) -> Arc<TokenSource> {
        let key = subject.fingerprint();
        let mut subjects = self.subject_map();
        if let Some(source) = subjects.get(&key) {
            return source.clone();
        }
        let config = self.config.load_full();
        let fleet = self
            .link
            .as_ref()
            .and_then(|l| l.fleet(&config, Some(subject)));
        let source = TokenSource::with_fetcher(
            config,
            (self.fetcher_for)(subject.clone()),
            self.metrics.clone(),
            fleet,
        );
        source.set_prefixes(self.prefixes.load().to_vec());
        subjects.insert(key, source.clone());
        source
    }

    pub fn set_config(&self, config: Arc<ProviderConfig>) {
        self.config.store(config.clone());
        for source in self.subject_map().values() {
            source.set_config(config.clone());
        }
    }

    pub fn set_prefixes(&self, prefixes: Vec<Box<str>>) {
        self.prefixes.store(Arc::new(prefixes.clone()));
        for source in self.subject_map().values() {
            source.set_prefixes(prefixes.clone());
        }
    }

    pub fn subjects(&self) -> usize {
        self.subject_map().len()
    }

    /// `/status` for an exchange provider: counts over its subjects, never a token.
    pub fn status(&self) -> ProviderStatus {
        let subjects = self.subject_map();
        status::per_subject(subjects.values().map(|s| (s.stats(), s.peek())).collect())
    }

    fn subject_map(&self) -> MutexGuard<'_, Lru<Fingerprint, Arc<TokenSource>>> {
        self.subjects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Grant};
    use crate::token::idp::{failure, Failure, FailureKind, TokenResponse};
    use futures_util::FutureExt;
    use std::path::Path;
    use std::time::Duration;

    /// An exchange provider whose IdP answers a token for every subject except those
    /// starting with "bad", which it rejects.
    fn exchange() -> Arc<ExchangeSource> {
        let yaml = "providers:\n  x:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\n    grant_type: token_exchange\n    subject_token_from: { header: X-Subject-Token }\n";
        let config = Config::from_text(Path::new("t.yaml"), yaml, &|_| None)
            .unwrap()
            .providers[0]
            .clone();
        let Some(Grant::TokenExchange(settings)) = config.origin.grant() else {
            panic!("not a token exchange provider: {config:?}");
        };
        let settings = Arc::new(settings.clone());
        ExchangeSource::with_fetchers(
            config,
            settings,
            Box::new(|subject: Secret| {
                let bad = subject.expose().starts_with("bad");
                Fetcher::Scripted(Arc::new(move || {
                    async move {
                        if bad {
                            return Err(Failure {
                                status: Some(400),
                                ..failure(
                                    FailureKind::Rejected,
                                    "token endpoint answered 400 invalid_grant".into(),
                                )
                            });
                        }
                        Ok(TokenResponse {
                            access_token: Secret::new("exchanged"),
                            token_type: "Bearer".into(),
                            expires_in: Some(Duration::from_secs(60)),
                            scope: None,
                            refresh_token: None,
                        })
                    }
                    .boxed()
                }))
            }),
            None,
        )
    }

    /// Fetches for each subject in turn, far enough apart that their times differ.
    async fn fetch_in_order(x: &ExchangeSource, subjects: &[&str]) {
        for s in subjects {
            let _ = x.source_for(&Secret::new(*s)).get().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn status_shows_the_most_recent_fetch_a_success() {
        let x = exchange();
        fetch_in_order(&x, &["bad-1", "good-1"]).await;
        let status = x.status();
        assert!(status.last_fetch_at.is_some(), "the last fetch has a time");
        assert_eq!(status.last_error, None, "the most recent fetch succeeded");
        assert_eq!((status.fetches_total, status.failures_total), (2, 1));
        assert_eq!(status.subjects, Some(2));
        assert!(status.has_token);
    }

    #[tokio::test]
    async fn status_shows_the_most_recent_fetch_a_failure() {
        let x = exchange();
        fetch_in_order(&x, &["good-1", "good-2", "bad-1", "good-3", "bad-2"]).await;
        let status = x.status();
        assert!(status.last_fetch_at.is_some(), "the last fetch has a time");
        assert_eq!(
            status.last_error.as_deref(),
            Some("token endpoint answered 400 invalid_grant"),
            "the error of the most recent fetch"
        );
        assert_eq!((status.fetches_total, status.failures_total), (5, 2));
        assert_eq!(status.subjects, Some(5));
    }

    #[tokio::test]
    async fn status_without_subjects_shows_no_fetch() {
        let status = exchange().status();
        assert_eq!(status.last_fetch_at, None);
        assert_eq!(status.last_error, None);
        assert_eq!(status.subjects, Some(0));
    }
}
