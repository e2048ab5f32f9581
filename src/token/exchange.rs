//! RFC 8693 token exchange: one token per subject token taken from the request. Each
//! subject gets its own [`TokenSource`] (cache, single flight, compare-and-invalidate),
//! found by the SHA-256 of the subject token — never the token itself — in a bounded map
//! that evicts the least recently used subject.

use super::*;
use crate::config::Exchange;
use std::collections::HashMap;

pub struct ExchangeSource {
    config: ArcSwap<ProviderConfig>,
    idp: Arc<IdpClient>,
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
        Ok(Arc::new(Self {
            config: ArcSwap::new(config),
            idp,
            subjects: Mutex::default(),
            prefixes: ArcSwap::from_pointee(vec!["Bearer ".into()]),
            metrics: Arc::new(ProviderMetrics::default()),
        }))
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
        let (idp, subject) = (self.idp.clone(), subject.clone());
        let fetch_fn: FetchFn = Arc::new(move |cfg| {
            let (idp, subject) = (idp.clone(), subject.clone());
            async move { idp.exchange(&cfg, &subject).await }.boxed()
        });
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
        for (source, _) in subjects.by_hash.values() {
            let stats = source.stats();
            status.has_token |= source.peek().is_some();
            status.fetches_total += stats.fetches_total;
            status.failures_total += stats.failures_total;
            if stats.last_fetch_at > None && status.last_fetch_at.is_none() {
                status.last_error = stats.last_error.clone();
            }
        }
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
