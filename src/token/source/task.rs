//! The fetch task of a source and how its result settles; what the scheduler reads.

use super::{SharedFetch, State, TokenSource};

use crate::secret::Secret;
use crate::token::fetch::fetch_with_retries;
use crate::token::idp::{failure, Failure, FailureKind};
use crate::token::lifetime::backoff_after_failure;
use crate::token::{Token, TokenError};
use futures_util::future::FutureExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::futures::Notified;
use tokio::time::Instant;

/// The fetch task and how it settles.
impl TokenSource {
    /// Starts a fetch, or returns the one already under way. The fetch runs in its own
    /// task so that a client hanging up does not cancel it for everyone else.
    pub(in crate::token) fn start_fetch(self: &Arc<Self>) -> SharedFetch {
        let mut state = self.state();
        self.start_fetch_locked(&mut state)
    }

    pub(super) fn start_fetch_locked(self: &Arc<Self>, state: &mut State) -> SharedFetch {
        if let Some(f) = state.inflight.as_ref() {
            return f.clone();
        }
        let me = Arc::clone(self);
        self.refreshing.store(true, Ordering::Release);
        // What this fetch must improve on: the token held now, and one an upstream
        // rejected (the shared store must not hand either back).
        let held = self.current.load_full();
        let rejected = state.upstream_rejected.take();
        // On the main runtime when started on a proxy worker thread: every worker may wait
        // on this fetch, and it must not stop with the worker that started it.
        let task = crate::background::spawn(async move {
            // Cleared however the task ends, a panic included, so that a failed fetch
            // never leaves the provider stuck behind a finished future.
            let _done = FetchDone(&me);
            let result = me.fetch(held, rejected).await;
            me.settle(result)
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

    /// One fetch: through the shared store when there is one, else one IdP fetch with
    /// retries. A panic inside it becomes a transient failure, so that it backs off like
    /// any other.
    async fn fetch(
        &self,
        held: Option<Arc<Token>>,
        rejected: Option<Secret>,
    ) -> Result<Arc<Token>, Failure> {
        let cfg = self.config.load_full();
        let fetch = async {
            match &self.fleet {
                Some(fleet) => self.fetch_shared(fleet, held, rejected).await,
                None => self.fetch_from_idp().await,
            }
        };
        let caught = std::panic::AssertUnwindSafe(fetch).catch_unwind().await;
        caught.unwrap_or_else(|_| {
            tracing::error!(provider = %cfg.name, "token fetch failed unexpectedly; backing off");
            Err(Failure {
                retry_after: Some(Duration::from_secs(1)),
                ..failure(
                    FailureKind::Transient,
                    "token fetch failed unexpectedly".into(),
                )
            })
        })
    }

    /// One fetch from the IdP (or the token file), with retries, every attempt recorded.
    pub(super) async fn fetch_from_idp(&self) -> Result<Arc<Token>, Failure> {
        self.fetch_from_idp_within(Duration::MAX).await
    }

    /// [`fetch_from_idp`](Self::fetch_from_idp) cut off after `budget` when that is
    /// shorter than the provider's `timeout` (the rest of a fleet fetch's time, or of
    /// the fetch lease).
    pub(super) async fn fetch_from_idp_within(
        &self,
        budget: Duration,
    ) -> Result<Arc<Token>, Failure> {
        let (mut cfg, prefixes) = (self.config.load_full(), self.prefixes.load_full());
        if budget < cfg.timeout {
            let mut cut = (*cfg).clone();
            cut.timeout = budget;
            cfg = Arc::new(cut);
        }
        let record = |outcome: Result<(), &str>, at, took| self.record(outcome, at, took);
        fetch_with_retries(&self.fetcher, &cfg, &prefixes, record).await
    }

    /// Publishes the result of a fetch: the new token, or the failure and its backoff
    /// (at least the fetcher's `min_backoff`). A failure comes back with `Retry-After` set
    /// to that backoff, the time of the next attempt.
    fn settle(&self, result: Result<Arc<Token>, Failure>) -> Result<Arc<Token>, TokenError> {
        let mut state = self.state();
        let failure = match result {
            Ok(token) => {
                self.current.store(Some(token.clone()));
                state.consecutive_failures = 0;
                state.rejected = false;
                state.last_error = None;
                self.retry_not_before.store(0, Ordering::Release);
                let expiry = token.expires_at_wall.duration_since(UNIX_EPOCH);
                self.metrics.set_expiry(expiry.map_or(0, |d| d.as_secs()));
                return Ok(token);
            }
            Err(f) => f,
        };
        state.consecutive_failures += 1;
        let wait = backoff_after_failure(
            state.consecutive_failures,
            &self.config.load().retries,
            &failure,
        );
        self.retry_not_before
            .store(self.millis(Instant::now() + wait) + 1, Ordering::Release);
        state.rejected = failure.kind == FailureKind::Rejected;
        if state.rejected {
            tracing::warn!(
                provider = %self.config.load().name,
                pause_seconds = wait.as_secs(),
                "the token endpoint refused the client; no background retries, requests get token_rejected until the pause ends (or POST /providers/{{name}}/refresh, or a reload that changes the provider)"
            );
        }
        let error = failure.into_error(wait);
        state.last_error = Some(error.clone());
        Err(error)
    }

    fn record(&self, outcome: Result<(), &str>, at: SystemTime, took: Duration) {
        self.metrics.fetch(outcome.is_ok(), took);
        self.state().stats.record(outcome, at);
    }
}

/// What the scheduler reads and does.
impl TokenSource {
    /// Registered before the scheduler decides, so a wake-up in between is not lost.
    pub(in crate::token) fn notified(&self) -> Notified<'_> {
        self.wake.notified()
    }

    pub(in crate::token) fn is_stopped(&self) -> bool {
        self.state().stopped
    }

    /// True when the token went unused for `idle_timeout` (see [`Usage::is_idle`]).
    pub(in crate::token) fn is_idle(&self, now: Instant) -> bool {
        self.usage.is_idle(now, &self.config.load())
    }

    pub(in crate::token) fn is_refreshing(&self) -> bool {
        self.refreshing.load(Ordering::Acquire)
    }

    /// The IdP refused the client: the scheduler does not retry (SPEC §5).
    pub(in crate::token) fn is_rejected(&self) -> bool {
        self.state().rejected
    }

    /// After failed fetches: when the backoff ends.
    pub(in crate::token) fn failing_until(&self) -> Option<Instant> {
        (self.state().consecutive_failures > 0).then(|| {
            self.epoch + Duration::from_millis(self.retry_not_before.load(Ordering::Acquire))
        })
    }

    /// True (once) when what the cached token came from changed (a token file).
    pub(in crate::token) async fn source_changed(&self) -> bool {
        // Asked even without a token, so that the fetcher's last look stays current.
        let changed = self.fetcher.changed().await;
        changed && self.current.load().is_some()
    }

    /// How often [`source_changed`](Self::source_changed) is worth asking.
    pub(in crate::token) fn poll_interval(&self) -> Option<Duration> {
        self.fetcher.poll_interval()
    }

    /// When the cached token is due for its background refresh.
    pub(in crate::token) fn scheduled_at(&self) -> Option<Instant> {
        self.current.load().as_ref().map(|t| t.scheduled_at)
    }
}

/// Marks the end of a fetch task when dropped.
struct FetchDone<'a>(&'a Arc<TokenSource>);

impl Drop for FetchDone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.inflight = None;
        // Under the lock, so a fetch started right after this one is never left looking
        // like no fetch is running.
        self.0.refreshing.store(false, Ordering::Release);
        drop(state);
        self.0.wake.notify_one();
    }
}
