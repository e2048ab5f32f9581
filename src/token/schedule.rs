//! The background refresh scheduler: one task per live token source that sleeps until
//! the token's refresh point (minus a little jitter), refreshes it, and after a failure
//! tries again with backoff until it succeeds — so requests never wait for the IdP once
//! the first token is there. A source unused for `idle_timeout` parks until it is used
//! again; `prefetch` sources never park. Scheduling uses the monotonic clock only.

use super::*;

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

/// How often a `static_file` token's file is checked for changes.
const STATIC_FILE_POLL: Duration = Duration::from_secs(2);

/// What the scheduler does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    FetchAt(Instant),
    Park,
    Stop,
}

impl TokenSource {
    /// Starts this source's scheduler (once).
    pub fn start_scheduler(self: &Arc<Self>) {
        if !self.scheduler_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).run_scheduler());
        }
    }

    async fn run_scheduler(self: Arc<Self>) {
        loop {
            // Registered before deciding, so a wake-up in between is not lost.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            match self.next(now) {
                Next::Stop => return,
                Next::Park => notified.await,
                // Due: fetch, then decide again from the new state (the next refresh
                // point, or the backoff after a failure), which always lies ahead.
                Next::FetchAt(at) if at <= now => {
                    let _ = self.start_fetch().await;
                }
                // Not due: wait, then decide again (the source may have gone idle, been
                // refreshed by a request, or been stopped meanwhile).
                Next::FetchAt(at) => {
                    // A token file is looked at every couple of seconds for changes.
                    let at = if self.static_file().is_some() {
                        at.min(now + STATIC_FILE_POLL)
                    } else {
                        at
                    };
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut notified => {}
                    }
                }
            }
        }
    }

    fn next(&self, now: Instant) -> Next {
        if self.stopped.load(Ordering::Acquire) {
            return Next::Stop;
        }
        let cfg = self.config.load();
        let is_idle = || {
            let last_used =
                self.epoch + Duration::from_millis(self.last_used.load(Ordering::SeqCst));
            !cfg.prefetch && now.saturating_duration_since(last_used) >= cfg.idle_timeout
        };
        // Announce idleness before checking the last use once more: a request that
        // touched the source in between either sees the flag and wakes us, or is seen here.
        let idle = is_idle() && {
            self.idle.store(true, Ordering::SeqCst);
            is_idle()
        };
        self.idle.store(idle, Ordering::SeqCst);
        if idle {
            tracing::debug!(provider = %cfg.name, "token not used for idle_timeout; background refresh paused");
            return Next::Park;
        }
        if self.refreshing.load(Ordering::Acquire) {
            return Next::Park;
        }
        if self.consecutive_failures.load(Ordering::Acquire) > 0 {
            return Next::FetchAt(
                self.epoch + Duration::from_millis(self.retry_not_before.load(Ordering::Acquire)),
            );
        }
        if self.static_file_changed() {
            return Next::FetchAt(now);
        }
        match self.current.load_full() {
            Some(t) => Next::FetchAt(t.scheduled_at),
            None if cfg.prefetch => Next::FetchAt(now),
            // The first token of a non-prefetch provider is fetched by the first request.
            None => Next::Park,
        }
    }
}

impl TokenSource {
    fn static_file(&self) -> Option<std::path::PathBuf> {
        match &self.config.load().kind {
            crate::config::ProviderKind::StaticFile(p) => Some(p.clone()),
            crate::config::ProviderKind::OAuth => None,
        }
    }

    /// True (once) when a `static_file` token's file changed since it was last looked at.
    fn static_file_changed(&self) -> bool {
        let Some(path) = self.static_file() else {
            return false;
        };
        let sig = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()));
        let mut last = self.file_sig.lock().unwrap_or_else(|p| p.into_inner());
        let changed = last.is_some() && *last != Some(sig) && self.current.load().is_some();
        *last = Some(sig);
        changed
    }
}
