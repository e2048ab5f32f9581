//! The background refresh scheduler: one task per live token source that sleeps until
//! the token's refresh point (minus a little jitter), refreshes it, and after a failure
//! tries again with backoff until it succeeds — so requests never wait for the IdP once
//! the first token is there. After the IdP refused the client it does not retry: it
//! parks until a fetch started otherwise succeeds. A source unused for `idle_timeout` parks until it is used
//! again; `prefetch` sources never park. Scheduling uses the monotonic clock only.
//!
//! The scheduler decides when; the source fetches. It holds no state of its own beyond
//! its loop, and never fetches while a fetch is running.

use super::source::TokenSource;
use crate::config::ProviderConfig;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How far before the refresh point the scheduler may fire: a tenth of the refresh margin,
/// at most 30 s. Many sidecars with the same token lifetime so spread their IdP requests,
/// and every refresh still happens before the token stops being fresh.
pub fn refresh_jitter(margin: Duration) -> Duration {
    (margin / 10).min(Duration::from_secs(30))
}

/// When the scheduler refreshes a token that was requested at `sent_at`, arrived at
/// `arrived`, is fresh until `refresh_at` and valid until `expires_at`: a random moment in
/// the jitter window before `refresh_at`, but never earlier than halfway between request
/// and refresh point. A token that arrives already past its refresh point (a slow IdP,
/// or a margin close to the lifetime) is refreshed after a pause, not back to back.
pub(super) fn scheduled_at(
    sent_at: Instant,
    arrived: Instant,
    refresh_at: Instant,
    expires_at: Instant,
    margin: Duration,
) -> Instant {
    if refresh_at > arrived {
        let window = refresh_jitter(margin).min((refresh_at - sent_at) / 2);
        return (refresh_at - window.mul_f64(fastrand::f64())).max(arrived);
    }
    let left = expires_at.saturating_duration_since(arrived);
    arrived + (left / 10).max(Duration::from_secs(1)).min(left / 2)
}

/// When a source was last used, and whether its scheduler parked for lack of use: the
/// part of the scheduler's state that the request path touches, lock-free.
pub(super) struct Usage {
    epoch: Instant,
    /// The last use, in ms after `epoch` (plus one, so 0 means never), written at most
    /// once a second.
    last_used: AtomicU64,
    /// The scheduler parked because the token went unused: the use that ends the
    /// idleness must wake it.
    idle: AtomicBool,
}

impl Usage {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_used: AtomicU64::new(0),
            idle: AtomicBool::new(false),
        }
    }

    /// Records a use, at most once a second. True when the scheduler is parked for
    /// idleness and must be woken.
    pub(super) fn touch(&self, now: Instant) -> bool {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        if ms < self.last_used.load(Ordering::Relaxed) + 1000 {
            return false;
        }
        self.last_used.store(ms, Ordering::SeqCst);
        self.idle.load(Ordering::SeqCst)
    }

    /// True when the token went unused for `idle_timeout` (never for `prefetch`
    /// providers); the scheduler then parks. Idleness is announced before the last use is
    /// checked once more: a request that uses the source in between either sees the flag
    /// and wakes the scheduler, or is seen here.
    pub(super) fn is_idle(&self, now: Instant, cfg: &ProviderConfig) -> bool {
        let unused = || {
            let last_used =
                self.epoch + Duration::from_millis(self.last_used.load(Ordering::SeqCst));
            !cfg.prefetch && now.saturating_duration_since(last_used) >= cfg.idle_timeout
        };
        let idle = unused() && {
            self.idle.store(true, Ordering::SeqCst);
            unused()
        };
        self.idle.store(idle, Ordering::SeqCst);
        if idle {
            tracing::debug!(provider = %cfg.name, "token not used for idle_timeout; background refresh paused");
        }
        idle
    }

    /// The scheduler is parked for idleness.
    pub(super) fn parked(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }
}

/// What the scheduler does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    FetchAt(Instant),
    Park,
    Stop,
}

/// The scheduler of `source`, until the source is stopped.
pub(super) async fn run(source: Arc<TokenSource>) {
    loop {
        // Registered before deciding, so a wake-up in between is not lost.
        let notified = source.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        match next(&source, now).await {
            Next::Stop => return,
            Next::Park => notified.await,
            // Due: fetch, then decide again from the new state (the next refresh point,
            // or the backoff after a failure), which always lies ahead.
            Next::FetchAt(at) if at <= now => {
                let _ = source.start_fetch().await;
            }
            // Not due: wait, then decide again (the source may have gone idle, been
            // refreshed by a request, or been stopped meanwhile). A source that can
            // change without notice (a token file) is looked at every poll interval.
            Next::FetchAt(at) => {
                let at = match source.poll_interval() {
                    Some(poll) => at.min(now + poll),
                    None => at,
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = &mut notified => {}
                }
            }
        }
    }
}

async fn next(source: &TokenSource, now: Instant) -> Next {
    if source.is_stopped() {
        return Next::Stop;
    }
    // Rejected: asking again would be refused again (SPEC §5); a request after the pause,
    // an admin refresh or a reload does.
    if source.is_idle(now) || source.is_refreshing() || source.is_rejected() {
        return Next::Park;
    }
    if let Some(backoff_ends) = source.failing_until() {
        return Next::FetchAt(backoff_ends);
    }
    if source.source_changed().await {
        return Next::FetchAt(now);
    }
    match source.scheduled_at() {
        Some(at) => Next::FetchAt(at),
        None if source.config().prefetch => Next::FetchAt(now),
        // The first token of a non-prefetch provider is fetched by the first request.
        None => Next::Park,
    }
}
