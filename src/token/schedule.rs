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
            match self.next(Instant::now()) {
                Next::Stop => return,
                Next::Park => notified.await,
                Next::FetchAt(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            if !self.stopped.load(Ordering::Acquire) {
                                let _ = self.start_fetch().await;
                            }
                        }
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
        let last_used = self.epoch + Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        let idle = !cfg.prefetch && now.saturating_duration_since(last_used) >= cfg.idle_timeout;
        self.idle.store(idle, Ordering::Release);
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
        match self.current.load_full() {
            Some(t) => Next::FetchAt(t.scheduled_at),
            None if cfg.prefetch => Next::FetchAt(now),
            // The first token of a non-prefetch provider is fetched by the first request.
            None => Next::Park,
        }
    }
}
