//! One fetch: up to `retries.max_attempts` token requests with backoff, all within the
//! provider's `timeout`, run in its own task and shared by every caller that needs it.

use super::*;
use std::time::UNIX_EPOCH;

/// Marks the end of a fetch task when dropped.
struct FetchDone<'a>(&'a Arc<TokenSource>);

impl Drop for FetchDone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.fetch_state();
        state.inflight = None;
        // Under the lock, so a fetch started right after this one is never left looking
        // like no fetch is running.
        self.0.refreshing.store(false, Ordering::Release);
        drop(state);
        self.0.wake.notify_one();
    }
}

impl TokenSource {
    /// Starts a fetch, or returns the one already under way. The fetch runs in its own
    /// task so that a client hanging up does not cancel it for everyone else.
    pub(super) fn start_fetch(self: &Arc<Self>) -> SharedFetch {
        let mut state = self.fetch_state();
        self.start_fetch_locked(&mut state)
    }

    pub(super) fn start_fetch_locked(self: &Arc<Self>, state: &mut FetchState) -> SharedFetch {
        if let Some(f) = state.inflight.as_ref() {
            return f.clone();
        }
        let me = Arc::clone(self);
        self.refreshing.store(true, Ordering::Release);
        let task = tokio::spawn(async move {
            // Cleared however the task ends, a panic included, so that a failed fetch
            // never leaves the provider stuck behind a finished future.
            let _done = FetchDone(&me);
            let result = std::panic::AssertUnwindSafe(me.fetch_with_retries()).catch_unwind().await.unwrap_or_else(|_| {
                tracing::error!(provider = %me.config.load().name, "token fetch failed unexpectedly; backing off");
                Err(TokenError::Unavailable { detail: "token fetch failed unexpectedly".into(), retry_after: Duration::from_secs(1) })
            });
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

    /// Publishes the result of a fetch: the new token, or the failure and its backoff. A
    /// failure comes back with `Retry-After` set to that backoff, the time of the next
    /// attempt.
    fn settle(&self, result: Result<Arc<Token>, TokenError>) -> Result<Arc<Token>, TokenError> {
        match &result {
            Ok(token) => {
                self.current.store(Some(token.clone()));
                self.consecutive_failures.store(0, Ordering::Release);
                self.retry_not_before.store(0, Ordering::Release);
                self.fetch_state().last_error = None;
                let expiry = token
                    .expires_at_wall
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                self.metrics.set_expiry(expiry);
            }
            Err(e) => {
                let cfg = self.config.load();
                let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                let hint = match e {
                    TokenError::Unavailable { retry_after, .. } => Some(*retry_after),
                    _ => None,
                };
                let mut wait =
                    backoff(failures, &cfg.retries, hint).max(cfg.retries.initial_backoff);
                // A rejected refresh token stays rejected: no retries until someone acts
                // (a reload with a new token, or POST /providers/{name}/refresh).
                if matches!(e, TokenError::Rejected { .. })
                    && matches!(cfg.grant, crate::config::Grant::RefreshToken { .. })
                {
                    wait = wait.max(Duration::from_secs(3600));
                }
                self.retry_not_before
                    .store(self.millis(Instant::now() + wait) + 1, Ordering::Release);
                let e = match e.clone() {
                    TokenError::Unavailable { detail, .. } => TokenError::Unavailable {
                        detail,
                        retry_after: wait,
                    },
                    other => other,
                };
                self.fetch_state().last_error = Some(e.clone());
                return Err(e);
            }
        }
        result
    }

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
                    status: None,
                }),
            };
            let took = sent_at.elapsed();
            let failure = match result {
                Ok(resp) => match self.build_token(resp, sent_at, sent_wall, &cfg) {
                    // Never cache, let alone inject, a token that is already expired.
                    token if !token.is_valid(Instant::now()) => Failure {
                        kind: FailureKind::Malformed,
                        detail: "token endpoint answered a token that had expired on arrival"
                            .into(),
                        retry_after: None,
                        retryable: true,
                        status: None,
                    },
                    token => {
                        self.record(Ok(&token), sent_wall, took);
                        tracing::info!(provider = %cfg.name, expires_in = token.lifetime.as_secs(), attempt, "token fetched");
                        tracing::info!(
                            target: "audit",
                            event = "token_fetched",
                            provider = %cfg.name,
                            grant = cfg.grant.name(),
                            scope = token.scope.as_deref().unwrap_or(""),
                            expires_in = token.lifetime.as_secs(),
                            attempt,
                            latency_ms = took.as_millis() as u64,
                        );
                        return Ok(token);
                    }
                },
                Err(f) => f,
            };
            self.record(Err(&failure.detail), sent_wall, took);
            let wait = backoff(attempt, &cfg.retries, failure.retry_after);
            let give_up = !failure.retryable
                || attempt >= cfg.retries.max_attempts
                || Instant::now() + wait >= deadline;
            tracing::warn!(provider = %cfg.name, attempt, error = %failure.detail, retrying = !give_up, "token fetch failed");
            tracing::warn!(
                target: "audit",
                event = "token_fetch_failed",
                provider = %cfg.name,
                status = failure.status.unwrap_or(0),
                error = %failure.detail,
                attempt,
                retry_in_ms = if give_up { 0 } else { wait.as_millis() as u64 },
            );
            if give_up {
                return Err(match failure.kind {
                    FailureKind::Transient => TokenError::Unavailable {
                        detail: failure.detail,
                        // Replaced by the real backoff when the fetch settles.
                        retry_after: failure
                            .retry_after
                            .unwrap_or(cfg.retries.initial_backoff)
                            .min(cfg.retries.max_backoff),
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
        resp: TokenResponse,
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
        let refresh_at = sent_at + (lifetime - margin);
        let arrived = Instant::now();
        Arc::new(Token {
            header_values,
            token_type: resp.token_type,
            scope: resp
                .scope
                .or_else(|| (!cfg.scopes.is_empty()).then(|| cfg.scopes.join(" "))),
            lifetime,
            expires_at: sent_at + lifetime,
            refresh_at,
            scheduled_at: schedule::scheduled_at(
                sent_at,
                arrived,
                refresh_at,
                sent_at + lifetime,
                margin,
            ),
            expires_at_wall: sent_wall + lifetime,
            refresh_at_wall: sent_wall + (lifetime - margin),
            access_token: resp.access_token,
        })
    }

    fn record(&self, outcome: Result<&Arc<Token>, &str>, at: SystemTime, took: Duration) {
        self.metrics.fetch(outcome.is_ok(), took);
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
