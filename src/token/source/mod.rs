//! [`TokenSource`]: one provider's token. The cache the request path reads without a
//! lock; single-flight fetching in a task of its own; compare-and-invalidate after an
//! upstream rejected a token; and the cold state behind one mutex (the fetch in flight,
//! the last error and its backoff, the rejection guard, counters).
//!
//! After the IdP refused the client (SPEC §5) the source is `rejected`: for
//! `lifetime::REJECTED_PAUSE` (or the fetcher's longer hold) requests get that error at
//! once, the scheduler stops retrying, and a token an upstream rejects meanwhile is
//! dropped without a new fetch. The first request after the pause tries once more; so
//! does `POST /providers/{name}/refresh` ([`TokenSource::refresh_now`]) at any time, and a
//! reload that changes the provider builds a new source.
//!
//! A source knows nothing about grants: it asks its [`Fetcher`] for token responses and
//! honours the minimum backoff a fetcher reports. With a shared store (`shared`), a fetch
//! goes through the fleet rules first: adopt a stored token, or fetch under the lease.
//! Either way it happens in the fetch task, so `get` on a fresh token never waits on
//! the store.

use super::grant::Fetcher;
use super::schedule::{self, Usage};
use super::status::{self, ProviderStatus, SourceView, Stats};
use super::{Rejection, Token, TokenError};
use crate::config::ProviderConfig;
use crate::metrics::ProviderMetrics;
use crate::secret::Secret;
use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::future::{BoxFuture, Shared};
pub(super) use shared::Fleet;
pub use shared::StoreLink;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Re-fetches because an upstream rejected the token happen at most once per this long,
/// plus once for a token an upstream had accepted before (revoked since).
const REJECT_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<Token>, TokenError>>>;

/// The token of one provider: cached, fetched once however many requests wait, and
/// refreshed in the background before it expires.
pub struct TokenSource {
    config: ArcSwap<ProviderConfig>,
    /// The header prefixes of the provider's routes, prebuilt into every token.
    prefixes: ArcSwap<Vec<Box<str>>>,
    fetcher: Fetcher,
    /// The shared store (SPEC §9) and this source's keys in it, if configured.
    fleet: Option<Fleet>,
    /// The token the request path reads: one lock-free load.
    current: ArcSwapOption<Token>,
    /// Everything else that changes. Taken to start, join or settle a fetch, after a
    /// rejection, by the scheduler and for `/status`; never by `get` for a fresh token.
    state: Mutex<State>,
    // What `get` must know without taking the lock, and nothing more:
    /// A fetch is running, so a stale token starts no second one, and the last fetch's
    /// error is not answered while a new fetch may yet succeed.
    refreshing: AtomicBool,
    /// No new fetch before this many ms after `epoch` (0: none): the backoff after a
    /// failure, during which `get` answers the last error instead of asking the IdP.
    retry_not_before: AtomicU64,
    /// The last use and whether the scheduler parked for lack of use (two atomics):
    /// `get` records a use, and wakes a parked scheduler.
    usage: Usage,
    /// Wakes the scheduler: new token, invalidation, use after idleness, stop.
    wake: Notify,
    epoch: Instant,
    pub metrics: Arc<ProviderMetrics>,
}

/// The cold state of a source.
#[derive(Default)]
struct State {
    /// The fetch under way, shared by everyone who waits for it.
    inflight: Option<SharedFetch>,
    /// The error of the last fetch if it failed, answered at once during its backoff.
    last_error: Option<TokenError>,
    consecutive_failures: u32,
    /// The last fetch ended in the IdP refusing the client (SPEC §5): no background
    /// retries, no re-fetch after an upstream's rejection during the pause.
    rejected: bool,
    /// When a rejected token last caused a re-fetch.
    last_reject_refetch: Option<Instant>,
    /// When a token an upstream had accepted was last re-fetched inside that interval
    /// (at most once per interval: the guard's one exception cannot become a storm).
    last_exempt_refetch: Option<Instant>,
    /// The token an upstream rejected, for the next fetch: it is deleted from the shared
    /// store (if still there) and never adopted.
    upstream_rejected: Option<Secret>,
    stats: Stats,
    scheduler_started: bool,
    stopped: bool,
}

/// What a rejected token leads to.
enum Renewal {
    /// A newer token is already cached.
    Current(Arc<Token>),
    /// A fetch (new or already running) will produce the replacement.
    Fetch(SharedFetch),
    /// Rejections re-fetched less than a second ago, or the IdP refused the client and
    /// its pause runs: no replay.
    Guarded,
}

impl TokenSource {
    /// A source of its own, without a shared store.
    pub fn new(config: Arc<ProviderConfig>) -> Result<Arc<Self>, String> {
        Self::with_store(config, None)
    }

    /// A source that shares its token through `link` (SPEC §9) when given and when the
    /// provider can (a token file is never shared).
    pub fn with_store(
        config: Arc<ProviderConfig>,
        link: Option<&StoreLink>,
    ) -> Result<Arc<Self>, String> {
        let fleet = link.and_then(|l| l.fleet(&config, None));
        let fetcher = Fetcher::for_provider(&config, fleet.as_ref())?;
        Ok(Self::with_fetcher(config, fetcher, Arc::default(), fleet))
    }

    pub(super) fn with_fetcher(
        config: Arc<ProviderConfig>,
        fetcher: Fetcher,
        metrics: Arc<ProviderMetrics>,
        fleet: Option<Fleet>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config: ArcSwap::new(config),
            prefixes: ArcSwap::from_pointee(vec!["Bearer ".into()]),
            fetcher,
            fleet,
            current: ArcSwapOption::empty(),
            state: Mutex::default(),
            refreshing: AtomicBool::new(false),
            retry_not_before: AtomicU64::new(0),
            usage: Usage::new(),
            wake: Notify::new(),
            epoch: Instant::now(),
            metrics,
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

    /// For `grant_type: refresh_token`: the refresh token the next fetch will use.
    pub fn refresh_token(&self) -> Option<Secret> {
        self.fetcher.refresh_token()
    }

    /// Continues from `token`, the current refresh token of the source this one replaces.
    pub fn adopt_refresh_token(&self, token: Secret) {
        self.fetcher.adopt_refresh_token(token);
    }

    /// A valid token: the cached one while it is fresh; the cached one plus a background
    /// refresh once it is past its refresh point; otherwise the result of a fetch that all
    /// concurrent callers share. Never an expired token. While the last fetch failed and
    /// its backoff runs, the error comes back at once instead of another IdP request.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<Token>, TokenError> {
        let now = Instant::now();
        if self.usage.touch(now) {
            self.wake.notify_one();
        }
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
    /// so a late 401 for an old token never discards a newer one. Rejections re-fetch at
    /// most once per [`REJECT_REFETCH_INTERVAL`], whatever the upstream keeps answering,
    /// so a broken API cannot turn into an IdP flood; within that interval a token an
    /// upstream had accepted (2xx) before, revoked since, is replaced once more. At most
    /// two re-fetches a second, whatever routes and upstreams answer.
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

    /// Starts this source's scheduler (once).
    pub fn start_scheduler(self: &Arc<Self>) {
        let first = !std::mem::replace(&mut self.state().scheduler_started, true);
        if first {
            tokio::spawn(schedule::run(Arc::clone(self)));
        }
    }

    /// Stops the background scheduler (the provider left the config).
    pub fn stop(&self) {
        self.state().stopped = true;
        self.wake.notify_one();
    }

    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }

    /// The provider's state for `/status`.
    pub fn status(&self) -> ProviderStatus {
        let state = self.state();
        let retry = self.retry_not_before.load(Ordering::Acquire);
        status::of_source(SourceView {
            current: self.current.load_full(),
            refreshing: self.refreshing.load(Ordering::Acquire),
            consecutive_failures: state.consecutive_failures,
            rejected: state.rejected,
            retry_at: (retry > 0).then(|| self.epoch + Duration::from_millis(retry)),
            parked: state.stopped || self.usage.parked(),
            stats: state.stats.clone(),
        })
    }

    fn reject(self: &Arc<Self>, used: &Arc<Token>, cause: Rejection<'_>) -> Renewal {
        // The check and the invalidation happen under the lock, so of many requests
        // rejected at once exactly one invalidates and all share one fetch.
        let mut state = self.state();
        match self.current.load_full() {
            Some(cur) if !Arc::ptr_eq(&cur, used) => return Renewal::Current(cur),
            Some(_) => {
                let now = Instant::now();
                let recent = |t: Option<Instant>| {
                    t.is_some_and(|t| now.duration_since(t) < REJECT_REFETCH_INTERVAL)
                };
                if recent(state.last_reject_refetch) {
                    // Within the interval only a token an upstream took before (revoked
                    // since) is replaced, and only once per interval.
                    if !used.was_accepted() || recent(state.last_exempt_refetch) {
                        tracing::debug!(provider = %self.config.load().name, "token rejected again within 1s of the last re-fetch; not re-fetching");
                        return Renewal::Guarded;
                    }
                    state.last_exempt_refetch = Some(now);
                }
                state.last_reject_refetch = Some(now);
                state.upstream_rejected = Some(used.secret().clone());
                self.current.store(None);
                self.metrics.set_expiry(0);
                let provider = &self.config.load().name;
                tracing::info!(provider = %provider, route = cause.route, upstream_status = cause.status, "upstream rejected the token; fetching a new one");
                tracing::info!(target: "audit", event = "token_invalidated", provider = %provider, route = cause.route, upstream_status = cause.status);
            }
            None => {}
        }
        if state.rejected && self.pausing(Instant::now()) {
            tracing::debug!(provider = %self.config.load().name, "the IdP refused the client; not re-fetching during the pause");
            return Renewal::Guarded;
        }
        Renewal::Fetch(self.start_fetch_locked(&mut state))
    }

    /// Starts one background refresh unless one is running or the last one failed less
    /// than a backoff ago. Atomic loads only on the common path.
    fn refresh_in_background(self: &Arc<Self>, now: Instant) {
        if self.refreshing.load(Ordering::Acquire) || self.pausing(now) {
            return;
        }
        drop(self.start_fetch());
    }

    /// The backoff (or rejection pause) after the last failed fetch is still running.
    fn pausing(&self, now: Instant) -> bool {
        self.millis(now) < self.retry_not_before.load(Ordering::Acquire)
    }

    /// During the backoff after a failed fetch (and with no fetch running), the error of
    /// that fetch, with `Retry-After` set to the time left.
    fn failing_fast(&self, now: Instant) -> Option<TokenError> {
        let not_before = self.retry_not_before.load(Ordering::Acquire);
        if self.refreshing.load(Ordering::Acquire) || self.millis(now) >= not_before {
            return None;
        }
        let left = Duration::from_millis(not_before - self.millis(now));
        Some(match self.state().last_error.clone()? {
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

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

mod shared;
mod task;
