//! Paused-time tests of the token cache: freshness, single flight, compare-and-invalidate,
//! the rejection guard and the retry loop, with a scripted fetch instead of an IdP.

use super::grant::Fetcher;
use super::idp::{self, FailureKind, TokenResponse};
use super::{rfc3339, Rejection, Token, TokenError, TokenSource};
use crate::config::Config;
use crate::secret::Secret;
use futures_util::FutureExt;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub(super) const CAUSE: Rejection<'static> = Rejection {
    route: "r",
    status: 401,
};

pub(super) type Script = Arc<Mutex<VecDeque<Result<u64, FailureKind>>>>;

pub(super) struct Harness {
    pub(super) source: Arc<TokenSource>,
    pub(super) calls: Arc<AtomicUsize>,
    pub(super) script: Script,
}

/// A source whose fetches take `latency` and answer from `script` (Ok(ttl) or a failure);
/// an empty script answers a 60 s token.
pub(super) fn harness(provider_yaml: &str, latency: Duration) -> Harness {
    let yaml = format!("providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\n{provider_yaml}");
    let config = Config::from_text(Path::new("t.yaml"), &yaml, &|_| None)
        .unwrap()
        .providers[0]
        .clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let script: Script = Arc::new(Mutex::new(VecDeque::new()));
    let (c, s) = (calls.clone(), script.clone());
    let fetch = Arc::new(move || {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        let next = s.lock().unwrap().pop_front().unwrap_or(Ok(60));
        async move {
            tokio::time::sleep(latency).await;
            if next == Ok(u64::MAX) {
                panic!("scripted panic inside the fetch");
            }
            match next {
                Ok(ttl) => Ok(TokenResponse {
                    access_token: Secret::new(format!("token-{n}")),
                    token_type: "Bearer".into(),
                    expires_in: Some(Duration::from_secs(ttl)),
                    scope: None,
                    refresh_token: None,
                }),
                Err(kind) => Err(idp::failure(kind, format!("scripted {kind:?}"))),
            }
        }
        .boxed()
    });
    Harness {
        source: TokenSource::with_fetcher(config, Fetcher::Scripted(fetch), Arc::default(), None),
        calls,
        script,
    }
}

pub(super) fn value(t: &Token) -> String {
    t.header_value("Bearer ").to_str().unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_on_a_cold_cache_share_one_fetch() {
    let h = harness("", Duration::from_millis(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn({
                let s = h.source.clone();
                async move { s.get().await }
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    assert!(tokens.iter().all(|t| Arc::ptr_eq(t, &tokens[0])));
    assert_eq!(value(&tokens[0]), "Bearer token-1");
}

#[tokio::test(start_paused = true)]
async fn fresh_then_refreshed_in_the_background_and_never_expired() {
    // 60 s token, default margin min(5 min, 30 s) = 30 s: fresh for 30 s.
    let h = harness("", Duration::from_millis(10));
    let t1 = h.source.get().await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(Arc::ptr_eq(&h.source.get().await.unwrap(), &t1));
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);

    // Past the refresh point: the old token is served at once, a fetch starts behind it.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(Arc::ptr_eq(&h.source.get().await.unwrap(), &t1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    let t2 = h.source.get().await.unwrap();
    assert_eq!(value(&t2), "Bearer token-2");

    // The IdP now fails; once t2 expires it is never handed out again.
    h.script.lock().unwrap().extend([
        Err(FailureKind::Rejected),
        Err(FailureKind::Rejected),
        Err(FailureKind::Rejected),
    ]);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(h.source.peek().is_none());
    assert!(matches!(
        h.source.get().await,
        Err(TokenError::Rejected { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_late_rejection_of_an_old_token_keeps_the_newer_one() {
    let h = harness("", Duration::ZERO);
    let t1 = h.source.get().await.unwrap();
    let t2 = h.source.renew_after_reject(&t1, CAUSE).await.unwrap();
    assert_eq!(value(&t2), "Bearer token-2");
    tokio::time::advance(Duration::from_secs(5)).await;
    // Another request that had used t1 gets its 401 only now.
    let again = h.source.renew_after_reject(&t1, CAUSE).await.unwrap();
    assert!(Arc::ptr_eq(&again, &t2));
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn rejections_refetch_at_most_once_per_second() {
    let h = harness("", Duration::ZERO);
    let t1 = h.source.get().await.unwrap();
    let t2 = h.source.renew_after_reject(&t1, CAUSE).await.unwrap();
    assert!(
        h.source.renew_after_reject(&t2, CAUSE).await.is_none(),
        "within 1 s: no re-fetch, no replay"
    );
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_millis(1001)).await;
    let t3 = h.source.renew_after_reject(&t2, CAUSE).await.unwrap();
    assert_eq!(value(&t3), "Bearer token-3");
}

/// The guard is for tokens no upstream ever took (an API that rejects everything): a
/// token an upstream accepted and then rejected (revoked) is replaced at once, and the
/// request replayed, however recent the last re-fetch.
#[tokio::test(start_paused = true)]
async fn a_rejected_token_an_upstream_took_before_is_refetched_at_once() {
    let h = harness("", Duration::ZERO);
    let t1 = h.source.get().await.unwrap();
    let t2 = h.source.renew_after_reject(&t1, CAUSE).await.unwrap();
    t2.mark_accepted();
    tokio::time::advance(Duration::from_millis(100)).await;
    let t3 = h.source.renew_after_reject(&t2, CAUSE).await.unwrap();
    assert_eq!(value(&t3), "Bearer token-3");
    assert!(
        h.source.renew_after_reject(&t3, CAUSE).await.is_none(),
        "t3 was never accepted: the guard holds"
    );
    assert_eq!(h.calls.load(Ordering::SeqCst), 3);
}

/// An upstream that takes every token and another that rejects every one (two routes of
/// one provider, alternating): the exception is used once per second, so the IdP sees at
/// most two re-fetches a second, not one per request.
#[tokio::test(start_paused = true)]
async fn alternating_acceptance_and_rejection_cannot_storm_the_idp() {
    let h = harness("", Duration::ZERO);
    let mut t = h.source.get().await.unwrap();
    for _ in 0..20 {
        t.mark_accepted();
        if let Some(fresh) = h.source.renew_after_reject(&t, CAUSE).await {
            t = fresh;
        }
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    // 20 rounds in 1 s: the first fetch, one re-fetch, one exception (and a second
    // window's pair at most).
    assert!(
        h.calls.load(Ordering::SeqCst) <= 5,
        "{} IdP calls",
        h.calls.load(Ordering::SeqCst)
    );
}

#[tokio::test(start_paused = true)]
async fn many_simultaneous_rejections_share_one_refetch() {
    let h = harness("", Duration::from_millis(50));
    let t1 = h.source.get().await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (s, t) = (h.source.clone(), t1.clone());
            tokio::spawn(async move { s.renew_after_reject(&t, CAUSE).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(value(&t.await.unwrap().unwrap()), "Bearer token-2");
    }
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff() {
    let h = harness(
        "    retries: { max_attempts: 3, initial_backoff: 200ms, max_backoff: 1s }\n",
        Duration::ZERO,
    );
    h.script
        .lock()
        .unwrap()
        .extend([Err(FailureKind::Transient), Err(FailureKind::Malformed)]);
    let start = Instant::now();
    let t = h.source.get().await.unwrap();
    assert_eq!(value(&t), "Bearer token-3");
    assert_eq!(h.calls.load(Ordering::SeqCst), 3);
    assert!(
        start.elapsed() <= Duration::from_millis(600),
        "two backoffs of at most 200 ms and 400 ms"
    );
    let stats = h.source.stats();
    assert_eq!((stats.fetches_total, stats.failures_total), (3, 2));
    assert!(stats.last_error.is_none());
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_provider_timeout() {
    let h = harness("    timeout: 2s\n    retries: { max_attempts: 100, initial_backoff: 300ms, max_backoff: 300ms }\n", Duration::from_millis(100));
    h.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(Err(FailureKind::Transient), 100));
    let start = Instant::now();
    let err = h.source.get().await.unwrap_err();
    assert!(matches!(err, TokenError::Unavailable { .. }), "{err:?}");
    assert!(start.elapsed() <= Duration::from_secs(2));
    assert!(h.calls.load(Ordering::SeqCst) < 100);
}

#[tokio::test(start_paused = true)]
async fn rejected_and_malformed_map_to_their_errors() {
    let h = harness(
        "    retries: { max_attempts: 2, initial_backoff: 10ms, max_backoff: 10ms }\n",
        Duration::ZERO,
    );
    h.script
        .lock()
        .unwrap()
        .push_back(Err(FailureKind::Rejected));
    assert!(matches!(
        h.source.get().await,
        Err(TokenError::Rejected { .. })
    ));
    assert_eq!(h.calls.load(Ordering::SeqCst), 1, "4xx is not retried");
    // Within the backoff, the same error comes back at once, without an IdP request.
    assert!(matches!(
        h.source.get().await,
        Err(TokenError::Rejected { .. })
    ));
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    // A rejection pauses for 30 s, whatever the backoff settings (SPEC §5).
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(matches!(
        h.source.get().await,
        Err(TokenError::Rejected { .. })
    ));
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(30)).await;
    h.script
        .lock()
        .unwrap()
        .extend([Err(FailureKind::Malformed), Err(FailureKind::Malformed)]);
    assert!(matches!(
        h.source.get().await,
        Err(TokenError::InvalidResponse { .. })
    ));
    assert_eq!(h.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        h.source.stats().last_error.as_deref(),
        Some("scripted Malformed")
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_expired_on_arrival_is_retried_not_cached() {
    let h = harness(
        "    retries: { max_attempts: 3, initial_backoff: 10ms, max_backoff: 10ms }\n",
        Duration::ZERO,
    );
    h.script.lock().unwrap().push_back(Ok(0));
    let t = h.source.get().await.unwrap();
    assert_eq!(value(&t), "Bearer token-2");
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetch_does_not_wedge_the_provider() {
    let h = harness("", Duration::ZERO);
    h.script.lock().unwrap().push_back(Ok(u64::MAX));
    assert!(matches!(
        h.source.get().await,
        Err(TokenError::Unavailable { .. })
    ));
    // The panic counts as a failure: a backoff, then the next fetch works.
    assert_eq!(h.source.status().consecutive_failures, 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    let t = h.source.get().await.unwrap();
    assert_eq!(value(&t), "Bearer token-2");
}

#[tokio::test(start_paused = true)]
async fn failed_background_refreshes_back_off() {
    let h = harness(
        "    retries: { max_attempts: 1, initial_backoff: 5s, max_backoff: 5s }\n",
        Duration::ZERO,
    );
    let t1 = h.source.get().await.unwrap();
    h.script
        .lock()
        .unwrap()
        .extend([Err(FailureKind::Transient), Err(FailureKind::Transient)]);
    tokio::time::advance(Duration::from_secs(31)).await;
    for _ in 0..20 {
        assert!(
            Arc::ptr_eq(&h.source.get().await.unwrap(), &t1),
            "stale-while-valid"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        2,
        "one failed refresh, then quiet during the backoff"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    h.source.get().await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(h.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn invalidate_refetches_in_the_background_without_waiting() {
    let h = harness("", Duration::from_millis(100));
    let t1 = h.source.get().await.unwrap();
    h.source.invalidate(&t1, CAUSE);
    assert!(
        h.source.peek().is_none(),
        "the rejected token is gone at once"
    );
    let t2 = h.source.get().await.unwrap();
    assert_eq!(value(&t2), "Bearer token-2");
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn formats_rfc3339() {
    use std::time::UNIX_EPOCH;
    let cases = [
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (1_795_301_671, "2026-11-21T22:54:31Z"),
    ];
    for (secs, want) in cases {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), want);
    }
}
