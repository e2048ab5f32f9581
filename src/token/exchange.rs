//! RFC 8693 token exchange: one token per subject token taken from the request. Each
//! subject gets its own [`TokenSource`] (cache, single flight, compare-and-invalidate),
//! found by the SHA-256 of the subject token — never the token itself — in a bounded map
//! that evicts the least recently used subject.

use super::*;
use crate::config::Exchange;
use std::collections::HashMap;

pub struct ExchangeSource {
    config: ArcSwap<ProviderConfig>,
    /// The fetch function of a new subject: the IdP client's exchange, or a script in tests.
    fetch_for: Box<dyn Fn(&Secret) -> FetchFn + Send + Sync>,
    subjects: Mutex<Subjects>,
    prefixes: ArcSwap<Vec<Box<str>>>,
    pub metrics: Arc<ProviderMetrics>,
}

/// Subjects by hash, with their last use; `by_use` orders them for O(log n) eviction.
#[derive(Default)]
struct Subjects {
    by_hash: HashMap<[u8; 32], (Arc<TokenSource>, u64)>,
    by_use: std::collections::BTreeMap<u64, [u8; 32]>,
    tick: u64,
}

impl ExchangeSource {
    pub fn new(config: Arc<ProviderConfig>) -> Result<Arc<Self>, String> {
        let idp = Arc::new(IdpClient::new(&config)?);
        Ok(Self::with_fetch_fns(
            config,
            Box::new(move |subject: &Secret| {
                let (idp, subject) = (idp.clone(), subject.clone());
                let fetch_fn: FetchFn = Arc::new(move |cfg| {
                    let (idp, subject) = (idp.clone(), subject.clone());
                    async move { idp.exchange(&cfg, &subject).await }.boxed()
                });
                fetch_fn
            }),
        ))
    }

    fn with_fetch_fns(
        config: Arc<ProviderConfig>,
        fetch_for: Box<dyn Fn(&Secret) -> FetchFn + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config: ArcSwap::new(config),
            fetch_for,
            subjects: Mutex::default(),
            prefixes: ArcSwap::from_pointee(vec!["Bearer ".into()]),
            metrics: Arc::new(ProviderMetrics::default()),
        })
    }

    pub fn settings(&self) -> Exchange {
        match &self.config.load().grant {
            crate::config::Grant::TokenExchange(x) => x.clone(),
            _ => unreachable_exchange(),
        }
    }

    /// The subject token in `headers` (after the configured prefix), if present.
    pub fn subject(&self, headers: &http::HeaderMap) -> Option<Secret> {
        let x = self.settings();
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
        let key: [u8; 32] =
            ring::digest::digest(&ring::digest::SHA256, subject.expose().as_bytes())
                .as_ref()
                .try_into()
                .unwrap_or([0; 32]);
        let mut subjects = self.subjects.lock().unwrap_or_else(|p| p.into_inner());
        subjects.tick += 1;
        let tick = subjects.tick;
        if let Some((source, used)) = subjects.by_hash.get_mut(&key) {
            let (source, previous) = (source.clone(), std::mem::replace(used, tick));
            subjects.by_use.remove(&previous);
            subjects.by_use.insert(tick, key);
            return source;
        }
        let fetch_fn = (self.fetch_for)(subject);
        let source = TokenSource::with_fetch_fn_and_metrics(
            self.config.load_full(),
            fetch_fn,
            self.metrics.clone(),
        );
        source.set_prefixes(self.prefixes.load().to_vec());
        subjects.by_hash.insert(key, (source.clone(), tick));
        subjects.by_use.insert(tick, key);
        let max = self.settings().max_subjects;
        while subjects.by_hash.len() > max {
            let Some((_, oldest)) = subjects.by_use.pop_first() else {
                break;
            };
            subjects.by_hash.remove(&oldest);
        }
        source
    }

    pub fn set_config(&self, config: Arc<ProviderConfig>) {
        self.config.store(config.clone());
        for (source, _) in self
            .subjects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .values()
        {
            source.set_config(config.clone());
        }
    }

    pub fn set_prefixes(&self, prefixes: Vec<Box<str>>) {
        self.prefixes.store(Arc::new(prefixes.clone()));
        for (source, _) in self
            .subjects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .values()
        {
            source.set_prefixes(prefixes.clone());
        }
    }

    pub fn subjects(&self) -> usize {
        self.subjects.lock().map(|s| s.by_hash.len()).unwrap_or(0)
    }

    /// `/status` for an exchange provider: counts over its subjects, never a token.
    pub fn status(&self) -> ProviderStatus {
        let subjects = self.subjects.lock().unwrap_or_else(|p| p.into_inner());
        let mut status = ProviderStatus {
            state: "per_subject",
            has_token: false,
            expires_at: None,
            expires_in_seconds: None,
            refresh_at: None,
            next_attempt_at: None,
            consecutive_failures: 0,
            scope: None,
            fetches_total: 0,
            failures_total: 0,
            last_error: None,
            last_fetch_at: None,
            subjects: Some(subjects.by_hash.len()),
        };
        // The most recent fetch over all subjects, and its error (none if it worked).
        let mut latest: Option<SystemTime> = None;
        for (source, _) in subjects.by_hash.values() {
            let stats = source.stats();
            status.has_token |= source.peek().is_some();
            status.fetches_total += stats.fetches_total;
            status.failures_total += stats.failures_total;
            if stats.last_fetch_at > latest {
                latest = stats.last_fetch_at;
                status.last_error = stats.last_error;
            }
        }
        status.last_fetch_at = latest.map(rfc3339);
        status
    }
}

fn unreachable_exchange() -> Exchange {
    // Exchange sources are only built for token-exchange providers; a reload that changes
    // the grant changes the identity and builds a new source.
    Exchange {
        header: http::header::AUTHORIZATION,
        prefix: String::new(),
        subject_token_type: String::new(),
        actor_token_file: None,
        actor_token_type: None,
        requested_token_type: None,
        max_subjects: 1,
        forward_subject_header: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    /// An exchange provider whose IdP answers a token for every subject except those
    /// starting with "bad", which it rejects.
    fn exchange() -> Arc<ExchangeSource> {
        let yaml = "providers:\n  x:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\n    grant_type: token_exchange\n    subject_token_from: { header: X-Subject-Token }\n";
        let config = Config::from_text(Path::new("t.yaml"), yaml, &|_| None)
            .unwrap()
            .providers[0]
            .clone();
        ExchangeSource::with_fetch_fns(
            config,
            Box::new(|subject: &Secret| {
                let bad = subject.expose().starts_with("bad");
                let fetch_fn: FetchFn = Arc::new(move |_cfg| {
                    async move {
                        if bad {
                            return Err(Failure {
                                kind: FailureKind::Rejected,
                                detail: "token endpoint answered 400 invalid_grant".into(),
                                retry_after: None,
                                retryable: false,
                                status: Some(400),
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
                });
                fetch_fn
            }),
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
