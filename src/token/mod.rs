//! Tokens: the per-provider cache, single-flight fetching, compare-and-invalidate after a
//! rejected token, the background refresh scheduler, and the IdP client. The only module
//! that talks to an IdP.
//!
//! Hot path: [`TokenSource::get`] is one lock-free `ArcSwap` load, two `Instant`
//! comparisons and a relaxed atomic load; the header value was built when the token
//! arrived. Locks are taken only when a fetch has to start or a status is read. No log
//! line, error, metric or status here contains a token.

mod assertion;
mod exchange;
mod fetch;
mod idp;
pub mod jwt;
mod lifetime;
mod schedule;
mod status;
mod wire;

use crate::config::ProviderConfig;
use crate::metrics::ProviderMetrics;
use crate::secret::Secret;
use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::HeaderValue;
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use assertion::{AssertionSigner, SigningAlg};
pub use exchange::ExchangeSource;
pub use idp::{Failure, FailureKind, IdpClient, TokenResponse};
pub use lifetime::{backoff, refresh_margin};
pub use schedule::refresh_jitter;
pub use status::{rfc3339, ProviderStatus};

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
    /// End of freshness: `expires_at - refresh_before_expiry`.
    pub refresh_at: Instant,
    /// When the scheduler refreshes it: shortly before `refresh_at` (jitter).
    pub scheduled_at: Instant,
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

/// A file's (modification time, size), to notice changes.
type FileSignature = (Option<SystemTime>, u64);

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<Token>, TokenError>>>;

/// Sends one token request. In production this is [`IdpClient::request`]; unit tests
/// substitute a scripted function so the cache can be tested in paused time.
type FetchFn = Arc<
    dyn Fn(Arc<ProviderConfig>) -> BoxFuture<'static, Result<TokenResponse, Failure>> + Send + Sync,
>;

/// The token of one provider: cached, fetched once however many requests wait, and
/// refreshed in the background before it expires.
pub struct TokenSource {
    config: ArcSwap<ProviderConfig>,
    fetch_fn: FetchFn,
    current: ArcSwapOption<Token>,
    /// Taken only to start or join a fetch, or to read the last error.
    fetch: Mutex<FetchState>,
    prefixes: ArcSwap<Vec<Box<str>>>,
    stats: Mutex<Stats>,
    pub metrics: Arc<ProviderMetrics>,
    /// A fetch task is running (read without the lock on the hot path).
    refreshing: AtomicBool,
    /// After a failure, no new fetch starts before this many ms after `epoch` (0: none).
    retry_not_before: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Ms after `epoch` of the last use, written at most once a second.
    last_used: AtomicU64,
    /// The scheduler parked because the token was not used for `idle_timeout`.
    idle: AtomicBool,
    scheduler_started: AtomicBool,
    stopped: AtomicBool,
    /// Wakes the scheduler: new token, invalidation, use after idleness, stop.
    wake: Notify,
    /// For `grant_type: refresh_token`: the IdP client's current refresh token.
    refresh_token: Mutex<Option<Arc<Mutex<Secret>>>>,
    /// For `static_file`: the token file's (mtime, size) when last looked at.
    file_sig: Mutex<Option<Option<FileSignature>>>,
    epoch: Instant,
}

/// Who rejected a token, for the log and the audit event.
#[derive(Clone, Copy, Debug)]
pub struct Rejection<'a> {
    pub route: &'a str,
    pub status: u16,
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

#[derive(Default)]
struct FetchState {
    inflight: Option<SharedFetch>,
    /// When a rejected token last caused a re-fetch.
    last_reject_refetch: Option<Instant>,
    /// The error of the last failed fetch, answered at once during its backoff.
    last_error: Option<TokenError>,
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
        if let crate::config::ProviderKind::StaticFile(path) = &config.kind {
            let path = path.clone();
            let fetch_fn: FetchFn = Arc::new(move |_cfg| {
                let path = path.clone();
                async move { idp::read_token_file(&path) }.boxed()
            });
            return Ok(Self::with_fetch_fn(config, fetch_fn));
        }
        let idp = Arc::new(IdpClient::new(&config)?);
        let refresh = idp.refresh.clone();
        let fetch_fn: FetchFn = Arc::new(move |cfg| {
            let idp = idp.clone();
            async move { idp.request(&cfg).await }.boxed()
        });
        let source = Self::with_fetch_fn(config, fetch_fn);
        *source
            .refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = refresh;
        Ok(source)
    }

    /// For `grant_type: refresh_token`: the refresh token the next fetch will use.
    pub fn refresh_token(&self) -> Option<Secret> {
        let state = self.refresh_token.lock().unwrap_or_else(|p| p.into_inner());
        state
            .as_ref()
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Continues from `token`, the current refresh token of the source this one replaces.
    pub fn adopt_refresh_token(&self, token: Secret) {
        if let Some(t) = self
            .refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            *t.lock().unwrap_or_else(|p| p.into_inner()) = token;
        }
    }

    fn with_fetch_fn(config: Arc<ProviderConfig>, fetch_fn: FetchFn) -> Arc<Self> {
        Self::with_fetch_fn_and_metrics(config, fetch_fn, Arc::default())
    }

    fn with_fetch_fn_and_metrics(
        config: Arc<ProviderConfig>,
        fetch_fn: FetchFn,
        metrics: Arc<ProviderMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config: ArcSwap::new(config),
            fetch_fn,
            current: ArcSwapOption::empty(),
            fetch: Mutex::new(FetchState::default()),
            prefixes: ArcSwap::from_pointee(vec!["Bearer ".into()]),
            stats: Mutex::new(Stats::default()),
            metrics,
            refreshing: AtomicBool::new(false),
            retry_not_before: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            last_used: AtomicU64::new(0),
            idle: AtomicBool::new(false),
            scheduler_started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
            file_sig: Mutex::new(None),
            refresh_token: Mutex::new(None),
            epoch: Instant::now(),
        })
    }

    pub fn config(&self) -> Arc<ProviderConfig> {
        self.config.load_full()
    }

    /// Applies settings that do not change the token's identity (retries, refresh margin,
    /// prefetch, idle timeout).
    pub fn set_config(&self, config: Arc<ProviderConfig>) {
        self.config.store(config);
        self.wake.notify_one();
    }

    /// The header prefixes the routes of this provider use, so tokens prebuild them.
    pub fn set_prefixes(&self, prefixes: Vec<Box<str>>) {
        self.prefixes.store(Arc::new(prefixes));
    }

    /// A valid token: the cached one while it is fresh; the cached one plus a background
    /// refresh once it is past its refresh point; otherwise the result of a fetch that all
    /// concurrent callers share. Never an expired token. While the last fetch failed and
    /// its backoff runs, the error comes back at once instead of another IdP request.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<Token>, TokenError> {
        let now = Instant::now();
        self.touch(now);
        if let Some(token) = self.current.load_full() {
            if now < token.refresh_at {
                return Ok(token);
            }
            if token.is_valid(now) {
                self.refresh_in_background(now);
                return Ok(token);
            }
        }
        if let Some(err) = self.failing_fast(now) {
            return Err(err);
        }
        self.start_fetch().await
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
    pub async fn renew_after_reject(
        self: &Arc<Self>,
        used: &Arc<Token>,
        cause: Rejection<'_>,
    ) -> Option<Arc<Token>> {
        match self.reject(used, cause) {
            Renewal::Current(t) => Some(t).filter(|t| t.is_valid(Instant::now())),
            Renewal::Fetch(f) => f.await.ok(),
            Renewal::Guarded => None,
        }
    }

    /// Like [`renew_after_reject`](Self::renew_after_reject) for a request that cannot be
    /// replayed: the rejected token is still invalidated and a new one fetched in the
    /// background, but nobody waits for it.
    pub fn invalidate(self: &Arc<Self>, used: &Arc<Token>, cause: Rejection<'_>) {
        drop(self.reject(used, cause));
    }

    fn reject(self: &Arc<Self>, used: &Arc<Token>, cause: Rejection<'_>) -> Renewal {
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
                self.metrics.set_expiry(0);
                let provider = &self.config.load().name;
                tracing::info!(provider = %provider, route = cause.route, upstream_status = cause.status, "upstream rejected the token; fetching a new one");
                tracing::info!(target: "audit", event = "token_invalidated", provider = %provider, route = cause.route, upstream_status = cause.status);
            }
            None => {}
        }
        Renewal::Fetch(self.start_fetch_locked(&mut state))
    }

    /// Stops the background scheduler (the provider left the config).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Records a use (for `idle_timeout`), at most once a second, and wakes an idle
    /// scheduler.
    fn touch(&self, now: Instant) {
        let ms = self.millis(now) + 1;
        if ms >= self.last_used.load(Ordering::Relaxed) + 1000 {
            self.last_used.store(ms, Ordering::SeqCst);
            if self.idle.load(Ordering::SeqCst) {
                self.wake.notify_one();
            }
        }
    }

    /// Starts one background refresh unless one is running or the last one failed less
    /// than a backoff ago. Atomic loads only on the common path.
    fn refresh_in_background(self: &Arc<Self>, now: Instant) {
        if self.refreshing.load(Ordering::Acquire)
            || self.millis(now) < self.retry_not_before.load(Ordering::Acquire)
        {
            return;
        }
        drop(self.start_fetch());
    }

    /// During the backoff after a failed fetch (and with no fetch running), the error of
    /// that fetch, with `Retry-After` set to the time left.
    fn failing_fast(&self, now: Instant) -> Option<TokenError> {
        let not_before = self.retry_not_before.load(Ordering::Acquire);
        if self.refreshing.load(Ordering::Acquire) || self.millis(now) >= not_before {
            return None;
        }
        let left = Duration::from_millis(not_before - self.millis(now));
        Some(match self.fetch_state().last_error.clone()? {
            TokenError::Unavailable { detail, .. } => TokenError::Unavailable {
                detail,
                retry_after: left,
            },
            other => other,
        })
    }

    fn millis(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn fetch_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.fetch.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_schedule;
