//! Paused-time tests of the background scheduler, status states and scheduling points.

use super::idp::FailureKind;
use super::schedule::{self, refresh_jitter};
use super::tests::harness;
use super::{refresh_margin, TokenError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Lets spawned tasks (the scheduler, fetch tasks) run in paused time.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_refreshes_within_the_jitter_window_before_the_refresh_point() {
    for ttl in [30u64, 300, 3600] {
        let h = harness("    prefetch: true\n", Duration::ZERO);
        h.script
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(Ok(ttl), 4));
        h.source.start_scheduler();
        settle().await;
        assert_eq!(
            h.calls.load(Ordering::SeqCst),
            1,
            "prefetch fetches at start ({ttl} s)"
        );
        let t1 = h.source.peek().unwrap();
        let margin = refresh_margin(Duration::from_secs(ttl), None);
        let jitter = refresh_jitter(margin);
        assert!(t1.scheduled_at <= t1.refresh_at && t1.scheduled_at >= t1.refresh_at - jitter);
        // Nothing before the earliest possible point…
        tokio::time::sleep_until(t1.refresh_at - jitter - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(h.calls.load(Ordering::SeqCst), 1, "too early ({ttl} s)");
        // …and the refresh is done by the refresh point, long before expiry.
        tokio::time::sleep_until(t1.refresh_at).await;
        settle().await;
        assert_eq!(
            h.calls.load(Ordering::SeqCst),
            2,
            "refreshed by the refresh point ({ttl} s)"
        );
        let t2 = h.source.peek().unwrap();
        assert!(!Arc::ptr_eq(&t1, &t2));
        h.source.stop();
    }
}

#[test]
fn jitter_bounds() {
    let s = Duration::from_secs;
    for (margin, jitter) in [
        (s(15), Duration::from_millis(1500)),
        (s(150), s(15)),
        (s(300), s(30)),
        (s(3000), s(30)),
    ] {
        assert_eq!(refresh_jitter(margin), jitter);
    }
}

#[tokio::test(start_paused = true)]
async fn idle_sources_stop_refreshing_until_used_again() {
    let h = harness("    idle_timeout: 2m\n", Duration::ZERO);
    h.source.start_scheduler();
    h.source.get().await.unwrap();
    // 60 s tokens refresh every ~30 s while in use; after 2 min unused, the scheduler parks.
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(15)).await;
        settle().await;
    }
    let parked_at = h.calls.load(Ordering::SeqCst);
    assert!(
        (4..=7).contains(&parked_at),
        "refreshed for about idle_timeout, then stopped: {parked_at}"
    );
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(15)).await;
        settle().await;
    }
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        parked_at,
        "no refresh while idle"
    );
    assert!(h.source.peek().is_none(), "the token expired while idle");
    // Used again: the request fetches, and the scheduler wakes up.
    h.source.get().await.unwrap();
    settle().await;
    let after_use = h.calls.load(Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(31)).await;
    settle().await;
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        after_use + 1,
        "refreshing again"
    );
}

#[tokio::test(start_paused = true)]
async fn prefetch_sources_never_stop_refreshing() {
    let h = harness("    prefetch: true\n    idle_timeout: 1m\n", Duration::ZERO);
    h.source.start_scheduler();
    for _ in 0..80 {
        tokio::time::advance(Duration::from_secs(15)).await;
        settle().await;
    }
    // 20 minutes of 60 s tokens refreshed every 27–30 s.
    let n = h.calls.load(Ordering::SeqCst);
    assert!((40..=46).contains(&n), "{n}");
    assert!(h.source.peek().is_some());
}

#[tokio::test(start_paused = true)]
async fn background_retries_continue_until_success_and_the_old_token_is_served_meanwhile() {
    let h = harness("    prefetch: true\n    retries: { max_attempts: 1, initial_backoff: 1s, max_backoff: 4s }\n", Duration::ZERO);
    h.source.start_scheduler();
    settle().await;
    let t1 = h.source.peek().unwrap();
    h.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(Err(FailureKind::Transient), 5));
    tokio::time::sleep_until(t1.refresh_at).await;
    // Over the next 25 s: five failures with backoff, then success; t1 served throughout.
    for _ in 0..250 {
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
        let t = h.source.get().await.unwrap();
        assert!(t.is_valid(Instant::now()));
    }
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        7,
        "1 + 5 failures + 1 success"
    );
    let status = h.source.status();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.failures_total, 5);
    assert!(!Arc::ptr_eq(&h.source.peek().unwrap(), &t1));
}

#[tokio::test(start_paused = true)]
async fn without_a_token_a_failing_idp_is_asked_only_on_the_backoff_schedule() {
    let h = harness(
        "    retries: { max_attempts: 1, initial_backoff: 1s, max_backoff: 8s }\n",
        Duration::ZERO,
    );
    h.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(Err(FailureKind::Transient), 100));
    h.source.start_scheduler();
    let mut fast = 0;
    // 30 s of requests every 10 ms.
    for _ in 0..3000 {
        match h.source.get().await {
            Err(TokenError::Unavailable { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_secs(8));
                fast += 1;
            }
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let calls = h.calls.load(Ordering::SeqCst);
    assert_eq!(fast, 3000);
    // Backoff 1, 2, 4, 8, 8, 8 s… (full jitter, at least 1 s): at most 30 attempts, and
    // far fewer than one per request.
    assert!((4..=31).contains(&calls), "{calls}");
    assert_eq!(h.source.status().state, "failing");
}

#[tokio::test(start_paused = true)]
async fn status_states() {
    let h = harness("", Duration::from_millis(100));
    assert_eq!(h.source.status().state, "empty");
    let s = h.source.clone();
    let pending = tokio::spawn(async move { s.get().await });
    settle().await;
    assert_eq!(h.source.status().state, "refreshing");
    pending.await.unwrap().unwrap();
    assert_eq!(h.source.status().state, "fresh");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(h.source.status().state, "stale");
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(h.source.status().state, "expired");
    assert!(!h.source.status().has_token);
}

#[test]
fn scheduling_points() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    // Fresh on arrival: within the jitter window before the refresh point.
    for _ in 0..100 {
        let at = schedule::scheduled_at(t0, t0 + s(1), t0 + s(3300), t0 + s(3600), s(300));
        assert!(at <= t0 + s(3300) && at >= t0 + s(3270), "{:?}", at - t0);
    }
    // A window larger than half the fresh span is clamped to it.
    for _ in 0..100 {
        let at = schedule::scheduled_at(t0, t0, t0 + s(10), t0 + s(310), s(300));
        assert!(at >= t0 + s(5) && at <= t0 + s(10), "{:?}", at - t0);
    }
    // Stale on arrival (a slow IdP): a pause of a tenth of what is left, at least 1 s.
    assert_eq!(
        schedule::scheduled_at(t0, t0 + s(20), t0 + s(10), t0 + s(120), s(110)),
        t0 + s(30)
    );
    assert_eq!(
        schedule::scheduled_at(t0, t0 + s(20), t0 + s(10), t0 + s(25), s(15)),
        t0 + s(21)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_next_attempt_and_capped() {
    let h = harness(
        "    retries: { max_attempts: 1, initial_backoff: 1s, max_backoff: 2s }\n",
        Duration::ZERO,
    );
    h.script
        .lock()
        .unwrap()
        .push_back(Err(FailureKind::Transient));
    match h.source.get().await {
        Err(TokenError::Unavailable { retry_after, .. }) => {
            assert!(retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(2))
        }
        other => panic!("{other:?}"),
    }
    match h.source.get().await {
        Err(TokenError::Unavailable { retry_after, .. }) => {
            assert!(retry_after <= Duration::from_secs(2))
        }
        other => panic!("{other:?}"),
    }
}
