//! Paused-time tests of a rejected client (SPEC §5): IdP calls counted over minutes, with
//! and without requests, with and without a still-valid token.

use super::grant::Fetcher;
use super::idp::{self, Failure, FailureKind};
use super::lifetime::REJECTED_PAUSE;
use super::tests::{harness, Harness, CAUSE};
use super::{TokenError, TokenSource};
use crate::config::Config;
use futures_util::FutureExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Lets spawned tasks (the scheduler, fetch tasks) run in paused time.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// A harness whose IdP refuses the client from the start, its scheduler running.
fn rejecting(provider_yaml: &str) -> Harness {
    let h = harness(provider_yaml, Duration::from_millis(5));
    reject_from_now_on(&h);
    h.source.start_scheduler();
    h
}

fn reject_from_now_on(h: &Harness) {
    h.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(Err(FailureKind::Rejected), 10_000));
}

fn calls(h: &Harness) -> usize {
    h.calls.load(Ordering::SeqCst)
}

/// Requests every 100 ms for `secs`; each must be answered at once with the rejection.
async fn requests_for(source: &Arc<TokenSource>, secs: u64) {
    for _ in 0..secs * 10 {
        let start = Instant::now();
        let got = source.get().await;
        assert!(matches!(got, Err(TokenError::Rejected { .. })), "{got:?}");
        assert!(
            start.elapsed() <= Duration::from_millis(5),
            "never waits long"
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
    }
}

#[tokio::test(start_paused = true)]
async fn one_rejected_request_is_one_idp_call_and_the_scheduler_stops() {
    // Before: 12 IdP requests within 35 s, without end.
    let h = rejecting("    retries: { max_attempts: 3, initial_backoff: 1s, max_backoff: 8s }\n");
    assert!(matches!(
        h.source.get().await,
        Err(TokenError::Rejected { .. })
    ));
    for _ in 0..300 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
    }
    assert_eq!(
        calls(&h),
        1,
        "no retry within the fetch, none in the background"
    );
    let status = h.source.status();
    assert_eq!(status.state, "rejected");
    assert_eq!(status.next_attempt_at, None, "nothing is planned");
}

#[tokio::test(start_paused = true)]
async fn requests_during_five_minutes_of_rejection_ask_the_idp_once_per_pause() {
    let h = rejecting("");
    requests_for(&h.source, 300).await;
    // t = 0, then the first request after each 30 s pause: 0, 30.1, 60.2, … 270.9.
    assert_eq!(calls(&h), 10);
    let stats = h.source.stats();
    assert_eq!((stats.fetches_total, stats.failures_total), (10, 10));
}

#[tokio::test(start_paused = true)]
async fn a_rejected_prefetch_provider_stops_refreshing() {
    let h = rejecting("    prefetch: true\n");
    for _ in 0..300 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
    }
    assert_eq!(
        calls(&h),
        1,
        "one attempt at start-up, none in the background"
    );
    assert_eq!(h.source.status().state, "rejected");
}

#[tokio::test(start_paused = true)]
async fn refresh_now_tries_at_once_and_a_success_resumes_the_scheduler() {
    let h = rejecting("");
    assert!(h.source.get().await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    // The admin endpoint: not held back by the pause.
    assert!(matches!(
        h.source.refresh_now().await,
        Err(TokenError::Rejected { .. })
    ));
    assert_eq!(calls(&h), 2);
    h.script.lock().unwrap().clear();
    let t = h.source.refresh_now().await.unwrap();
    assert_eq!(calls(&h), 3);
    assert!(Arc::ptr_eq(&h.source.get().await.unwrap(), &t));
    assert_eq!(h.source.status().state, "fresh");
    // The scheduler refreshes again before the refresh point (60 s token, 30 s margin).
    for _ in 0..31 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
    }
    assert_eq!(calls(&h), 4);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_refresh_keeps_serving_the_valid_token_and_asks_once_per_pause() {
    let h = harness("", Duration::from_millis(5));
    h.source.start_scheduler();
    let t1 = h.source.get().await.unwrap();
    reject_from_now_on(&h);
    // The 60 s token is refreshed in the background at ~30 s, and that is rejected.
    for _ in 0..599 {
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
        assert!(Arc::ptr_eq(&h.source.get().await.unwrap(), &t1));
    }
    // The refresh fired up to 3 s (the jitter) before the refresh point, so its pause may
    // have ended, and a request asked once more, just before the token expired. Let an
    // attempt started by the last request finish (the scripted IdP answers in 5 ms).
    // (Jitter is random: in rare runs that attempt starts in the last steps, so wait for
    // it in 10 ms steps rather than once.)
    for _ in 0..5 {
        tokio::time::advance(Duration::from_millis(10)).await;
        settle().await;
        if h.source.status().state != "refreshing" {
            break;
        }
    }
    let while_valid = calls(&h);
    assert!((2..=3).contains(&while_valid), "{while_valid}");
    assert_eq!(h.source.status().state, "rejected");
    // Expired: then one attempt per pause, driven by requests.
    tokio::time::advance(Duration::from_millis(200)).await;
    requests_for(&h.source, 240).await;
    // 240 s of requests, one attempt per 30 s pause: 8, give or take one for where the
    // (randomly jittered) first pause ended.
    let after = calls(&h) - while_valid;
    assert!((7..=9).contains(&after), "{after}");
}

#[tokio::test(start_paused = true)]
async fn an_upstream_rejection_during_the_pause_drops_the_token_without_a_fetch() {
    let h = harness("", Duration::ZERO);
    let t1 = h.source.get().await.unwrap();
    reject_from_now_on(&h);
    // An admin refresh is refused: the pause starts, t1 stays.
    assert!(h.source.refresh_now().await.is_err());
    assert_eq!(calls(&h), 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(h.source.renew_after_reject(&t1, CAUSE).await.is_none());
    assert!(h.source.peek().is_none(), "the rejected token is gone");
    h.source.invalidate(&t1, CAUSE);
    settle().await;
    assert_eq!(calls(&h), 2, "no IdP call during the pause");
    tokio::time::advance(REJECTED_PAUSE).await;
    assert!(h.source.get().await.is_err());
    assert_eq!(calls(&h), 3, "after the pause, the next request asks once");
}

#[tokio::test(start_paused = true)]
async fn a_fetchers_longer_hold_outlasts_the_pause() {
    // A fetcher may ask for a longer pause than the 30 s (`Failure::min_backoff`).
    let yaml = "providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\n";
    let config = Config::from_text(Path::new("t.yaml"), yaml, &|_| None)
        .unwrap()
        .providers[0]
        .clone();
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let fetch = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            Err(Failure {
                min_backoff: Some(Duration::from_secs(3600)),
                ..idp::failure(FailureKind::Rejected, "invalid_grant".into())
            })
        }
        .boxed()
    });
    let source = TokenSource::with_fetcher(config, Fetcher::Scripted(fetch), Arc::default(), None);
    source.start_scheduler();
    requests_for(&source, 300).await;
    assert_eq!(n.load(Ordering::SeqCst), 1, "five minutes, one IdP call");
    tokio::time::advance(Duration::from_secs(3300)).await;
    requests_for(&source, 1).await;
    assert_eq!(
        n.load(Ordering::SeqCst),
        2,
        "the next request after the hour"
    );
}
