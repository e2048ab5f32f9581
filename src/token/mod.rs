//! Tokens: the per-provider cache, single-flight fetching, compare-and-invalidate after a
//! rejected token, and the IdP client. The only module that talks to an IdP.
//!
//! Hot path: [`TokenSource::get`] is one lock-free `ArcSwap` load and two `Instant`
//! comparisons; the header value was built when the token arrived. Locks are taken only
//! when a fetch has to start. No log line, error or status here contains a token.

mod idp;
pub mod jwt;
mod lifetime;

use crate::config::ProviderConfig;
use crate::secret::Secret;
use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::HeaderValue;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

pub use idp::{Failure, FailureKind, IdpClient, TokenResponse};
pub use lifetime::{backoff, refresh_margin};

/// A token is re-fetched because an upstream rejected it at most this often.
const REJECT_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// An access token with everything derived from it at fetch time.
pub struct Token {
    access_token: Secret,
    /// One prebuilt, sensitive header value per `value_prefix` in use.
    header_values: Vec<(Box<str>, HeaderValue)>,
    pub token_type: String,
    pub scope: Option<String>,
    /// The IdP's `expires_in` (or the JWT/default fallback).
    pub lifetime: Duration,
    pub expires_at: Instant,
    pub refresh_at: Instant,
    pub expires_at_wall: SystemTime,
    pub refresh_at_wall: SystemTime,
}

impl Token {
    /// The header value `"{prefix}{token}"`, prebuilt for the prefixes routes use.
    pub fn header_value(&self, prefix: &str) -> HeaderValue {
        if let Some((_, v)) = self.header_values.iter().find(|(p, _)| &**p == prefix) {
            return v.clone();
        }
        // A prefix added by a config reload after this token was fetched.
        sensitive_value(prefix, &self.access_token)
    }

    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// The token itself, for `--print-token` and `expose_token` only.
    pub fn secret(&self) -> &Secret {
        &self.access_token
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn sensitive_value(prefix: &str, token: &Secret) -> HeaderValue {
    let mut v = HeaderValue::try_from(format!("{prefix}{}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Why no token could be had (SPEC §6).
#[derive(Clone, Debug, thiserror::Error)]
pub enum TokenError {
    /// Unreachable, timed out, 5xx or 429 after retries.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    /// The IdP refused the client (4xx).
    #[error("{detail}")]
    Rejected { detail: String },
    /// The IdP answered something that is not a token response.
    #[error("{detail}")]
    InvalidResponse { detail: String },
}

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<Token>, TokenError>>>;

/// Sends one token request. In production this is [`IdpClient::request`]; unit tests
/// substitute a scripted function so the cache can be tested in paused time.
type FetchFn = Arc<
    dyn Fn(Arc<ProviderConfig>) -> BoxFuture<'static, Result<TokenResponse, Failure>> + Send + Sync,
>;

/// The token of one provider: cached, fetched once however many requests wait.
pub struct TokenSource {
    config: ArcSwap<ProviderConfig>,
    fetch_fn: FetchFn,
    current: ArcSwapOption<Token>,
    /// Taken only to start or join a fetch, never on the hot path.
    fetch: Mutex<FetchState>,
    prefixes: ArcSwap<Vec<Box<str>>>,
    stats: Mutex<Stats>,
    /// A fetch task is running (read without the lock on the hot path).
    refreshing: AtomicBool,
    /// Background refreshes wait until this many ms after `epoch` after a failure.
    retry_not_before: AtomicU64,
    consecutive_failures: AtomicU32,
    epoch: Instant,
}

/// What a rejected token leads to.
enum Renewal {
    /// A newer token is already cached.
    Current(Arc<Token>),
    /// A fetch (new or already running) will produce the replacement.
    Fetch(SharedFetch),
    /// Rejections re-fetched less than a second ago: no replay.
    Guarded,
}

/// Marks the end of a fetch task when dropped.
struct FetchDone<'a>(&'a Arc<TokenSource>);

impl Drop for FetchDone<'_> {
    fn drop(&mut self) {
        self.0.fetch_state().inflight = None;
        self.0.refreshing.store(false, Ordering::Release);
    }
}

#[derive(Default)]
struct FetchState {
    inflight: Option<SharedFetch>,
    /// When a rejected token last caused a re-fetch.
    last_reject_refetch: Option<Instant>,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub fetches_total: u64,
    pub failures_total: u64,
    pub last_error: Option<String>,
    pub last_fetch_at: Option<SystemTime>,
}

impl TokenSource {
    pub fn new(config: Arc<ProviderConfig>) -> Result<Arc<Self>, String> {
        let idp = Arc::new(IdpClient::new(&config)?);
        let fetch_fn: FetchFn = Arc::new(move |cfg| {
            let idp = idp.clone();
            async move { idp.request(&cfg).await }.boxed()
        });
        Ok(Self::with_fetch_fn(config, fetch_fn))
    }

    fn with_fetch_fn(config: Arc<ProviderConfig>, fetch_fn: FetchFn) -> Arc<Self> {
        Arc::new(Self {
            config: ArcSwap::new(config),
            fetch_fn,
            current: ArcSwapOption::empty(),
            fetch: Mutex::new(FetchState::default()),
            prefixes: ArcSwap::from_pointee(vec!["Bearer ".into()]),
            stats: Mutex::new(Stats::default()),
            refreshing: AtomicBool::new(false),
            retry_not_before: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            epoch: Instant::now(),
        })
    }

    pub fn config(&self) -> Arc<ProviderConfig> {
        self.config.load_full()
    }

    /// Applies settings that do not change the token's identity (retries, refresh margin).
    pub fn set_config(&self, config: Arc<ProviderConfig>) {
        self.config.store(config);
    }

    /// The header prefixes the routes of this provider use, so tokens prebuild them.
    pub fn set_prefixes(&self, prefixes: Vec<Box<str>>) {
        self.prefixes.store(Arc::new(prefixes));
    }

    /// A valid token: the cached one while it is fresh; the cached one plus a background
    /// refresh once it is past its refresh point; otherwise the result of a fetch that all
    /// concurrent callers share. Never an expired token.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<Token>, TokenError> {
        let now = Instant::now();
        if let Some(token) = self.current.load_full() {
            if now < token.refresh_at {
                return Ok(token);
            }
            if token.is_valid(now) {
                self.refresh_in_background(now);
                return Ok(token);
            }
        }
        self.start_fetch().await
    }

    /// Starts one background refresh unless one is running or the last one failed less
    /// than a backoff ago. Two atomic loads on the common path: no lock per request.
    fn refresh_in_background(self: &Arc<Self>, now: Instant) {
        if self.refreshing.load(Ordering::Acquire)
            || self.millis(now) < self.retry_not_before.load(Ordering::Acquire)
        {
            return;
        }
        drop(self.start_fetch());
    }

    fn millis(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The cached token if it is still valid, without fetching.
    pub fn peek(&self) -> Option<Arc<Token>> {
        self.current
            .load_full()
            .filter(|t| t.is_valid(Instant::now()))
    }

    /// Fetches a new token now (admin `POST /providers/{name}/refresh`), or joins the fetch
    /// already under way.
    pub async fn refresh_now(self: &Arc<Self>) -> Result<Arc<Token>, TokenError> {
        self.start_fetch().await
    }

    /// Called when an upstream rejected `used`. Returns the token to replay with, or
    /// `None` when a replay would be pointless.
    ///
    /// Compare-and-invalidate: only if `used` is still the cached token is it thrown away,
    /// so a late 401 for an old token never discards a newer one. Re-fetches caused by
    /// rejections happen at most once per [`REJECT_REFETCH_INTERVAL`], whatever the
    /// upstream keeps answering, so a broken API cannot turn into an IdP flood.
    pub async fn renew_after_reject(self: &Arc<Self>, used: &Arc<Token>) -> Option<Arc<Token>> {
        match self.reject(used) {
            Renewal::Current(t) => Some(t).filter(|t| t.is_valid(Instant::now())),
            Renewal::Fetch(f) => f.await.ok(),
            Renewal::Guarded => None,
        }
    }

    /// Like [`renew_after_reject`](Self::renew_after_reject) for a request that cannot be
    /// replayed: the rejected token is still invalidated and a new one fetched in the
    /// background, but nobody waits for it.
    pub fn invalidate(self: &Arc<Self>, used: &Arc<Token>) {
        drop(self.reject(used));
    }

    fn reject(self: &Arc<Self>, used: &Arc<Token>) -> Renewal {
        // The check and the invalidation happen under the fetch lock, so of many
        // requests rejected at once exactly one invalidates and all share one fetch.
        let mut state = self.fetch_state();
        match self.current.load_full() {
            Some(cur) if !Arc::ptr_eq(&cur, used) => return Renewal::Current(cur),
            Some(_) => {
                let now = Instant::now();
                if state
                    .last_reject_refetch
                    .is_some_and(|t| now.duration_since(t) < REJECT_REFETCH_INTERVAL)
                {
                    tracing::debug!(provider = %self.config.load().name, "token rejected again within 1s; not re-fetching");
                    return Renewal::Guarded;
                }
                state.last_reject_refetch = Some(now);
                self.current.store(None);
                tracing::info!(provider = %self.config.load().name, "upstream rejected the token; fetching a new one");
            }
            None => {}
        }
        Renewal::Fetch(self.start_fetch_locked(&mut state))
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Starts a fetch, or returns the one already under way. The fetch runs in its own
    /// task so that a client hanging up does not cancel it for everyone else.
    fn start_fetch(self: &Arc<Self>) -> SharedFetch {
        let mut state = self.fetch_state();
        self.start_fetch_locked(&mut state)
    }

    fn fetch_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.fetch.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_fetch_locked(self: &Arc<Self>, state: &mut FetchState) -> SharedFetch {
        if let Some(f) = state.inflight.as_ref() {
            return f.clone();
        }
        let me = Arc::clone(self);
        self.refreshing.store(true, Ordering::Release);
        let task = tokio::spawn(async move {
            // Cleared however the task ends, a panic included, so that a failed fetch
            // never leaves the provider stuck behind a finished future.
            let _done = FetchDone(&me);
            let result = me.fetch_with_retries().await;
            match &result {
                Ok(token) => {
                    me.current.store(Some(token.clone()));
                    me.consecutive_failures.store(0, Ordering::Release);
                    me.retry_not_before.store(0, Ordering::Release);
                }
                Err(_) => {
                    let failures = me.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                    let wait = backoff(failures, &me.config.load().retries, None)
                        .max(me.config.load().retries.initial_backoff);
                    me.retry_not_before
                        .store(me.millis(Instant::now() + wait), Ordering::Release);
                }
            }
            result
        });
        let fut = async move {
            task.await.unwrap_or_else(|_| {
                Err(TokenError::Unavailable {
                    detail: "token fetch was aborted".into(),
                    retry_after: Duration::from_secs(1),
                })
            })
        }
        .boxed()
        .shared();
        state.inflight = Some(fut.clone());
        fut
    }

    /// One fetch: up to `retries.max_attempts` token requests with backoff, all within the
    /// provider's `timeout`, so a request waiting for it never waits longer than that.
    async fn fetch_with_retries(&self) -> Result<Arc<Token>, TokenError> {
        let cfg = self.config.load_full();
        let deadline = Instant::now() + cfg.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent_at = Instant::now();
            let sent_wall = SystemTime::now();
            let remaining = deadline.saturating_duration_since(sent_at);
            let result = match tokio::time::timeout(remaining, (self.fetch_fn)(cfg.clone())).await {
                Ok(r) => r,
                Err(_) => Err(Failure {
                    kind: FailureKind::Transient,
                    detail: format!(
                        "token endpoint did not answer within {}",
                        crate::config::format_duration(cfg.timeout)
                    ),
                    retry_after: None,
                    retryable: false,
                }),
            };
            let failure = match result {
                Ok(resp) => match self.build_token(resp, sent_at, sent_wall, &cfg) {
                    // Never cache, let alone inject, a token that is already expired.
                    token if !token.is_valid(Instant::now()) => Failure {
                        kind: FailureKind::Malformed,
                        detail: "token endpoint answered a token that had expired on arrival"
                            .into(),
                        retry_after: None,
                        retryable: true,
                    },
                    token => {
                        self.record(Ok(&token), sent_wall);
                        tracing::info!(
                            provider = %cfg.name,
                            expires_in = token.lifetime.as_secs(),
                            attempt,
                            "token fetched"
                        );
                        return Ok(token);
                    }
                },
                Err(f) => f,
            };
            self.record(Err(&failure.detail), sent_wall);
            let wait = backoff(attempt, &cfg.retries, failure.retry_after);
            let give_up = !failure.retryable
                || attempt >= cfg.retries.max_attempts
                || Instant::now() + wait >= deadline;
            tracing::warn!(provider = %cfg.name, attempt, error = %failure.detail, retrying = !give_up, "token fetch failed");
            if give_up {
                return Err(match failure.kind {
                    FailureKind::Transient => TokenError::Unavailable {
                        detail: failure.detail,
                        retry_after: failure
                            .retry_after
                            .unwrap_or(cfg.retries.initial_backoff)
                            .max(Duration::from_secs(1)),
                    },
                    FailureKind::Malformed => TokenError::InvalidResponse {
                        detail: failure.detail,
                    },
                    FailureKind::Rejected => TokenError::Rejected {
                        detail: failure.detail,
                    },
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn build_token(
        &self,
        resp: idp::TokenResponse,
        sent_at: Instant,
        sent_wall: SystemTime,
        cfg: &ProviderConfig,
    ) -> Arc<Token> {
        let lifetime = lifetime::lifetime(
            resp.expires_in,
            jwt::exp(resp.access_token.expose()),
            sent_wall,
        );
        let margin = refresh_margin(lifetime, cfg.refresh_before_expiry);
        let header_values = self
            .prefixes
            .load()
            .iter()
            .map(|p| (p.clone(), sensitive_value(p, &resp.access_token)))
            .collect();
        Arc::new(Token {
            header_values,
            token_type: resp.token_type,
            scope: resp
                .scope
                .or_else(|| (!cfg.scopes.is_empty()).then(|| cfg.scopes.join(" "))),
            lifetime,
            expires_at: sent_at + lifetime,
            refresh_at: sent_at + (lifetime - margin),
            expires_at_wall: sent_wall + lifetime,
            refresh_at_wall: sent_wall + (lifetime - margin),
            access_token: resp.access_token,
        })
    }

    fn record(&self, outcome: Result<&Arc<Token>, &str>, at: SystemTime) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.fetches_total += 1;
        s.last_fetch_at = Some(at);
        match outcome {
            Ok(_) => s.last_error = None,
            Err(e) => {
                s.failures_total += 1;
                s.last_error = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests;
