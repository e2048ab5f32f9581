//! Redis failing: operations fail fast (never hang, never panic), the store reports down,
//! logs once per outage, and comes back on its own.

use super::{config, count, token, wait_up, Logs, TIMEOUT};
use crate::support::redis::{RedisServer, PASSWORD};
use std::time::{Duration, Instant};
use token_sidecar::secret::Secret;
use token_sidecar::store::{Op, Outcome, Store};

/// An operation's bound plus slack for a loaded test machine.
const FAIL_WITHIN: Duration = Duration::from_millis(250 + 750);

#[tokio::test]
async fn a_killed_redis_fails_fast_logs_once_and_recovers() {
    let (logs, _guard) = Logs::capture();
    let mut redis = RedisServer::with_password().await;
    let store = Store::new(&config(redis.url())).unwrap();
    let keys = store.keys(b"provider", None);
    wait_up(&store).await;
    store
        .put(&keys, &token("at-1", 60), Duration::from_secs(60))
        .await
        .unwrap();

    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        assert!(store.get(&keys).await.is_err());
        assert!(store
            .put(&keys, &token("at-2", 60), Duration::from_secs(60))
            .await
            .is_err());
        assert!(store
            .try_lease(&keys, Duration::from_secs(5))
            .await
            .is_err());
        assert!(store
            .wait(&keys, Duration::from_secs(5), |_| true)
            .await
            .is_err());
        assert!(store
            .cas_refresh(&keys, 0, &Secret::new("rt"))
            .await
            .is_err());
        assert!(started.elapsed() < FAIL_WITHIN, "{:?}", started.elapsed());
    }
    assert!(!store.up());
    assert_eq!(store.outages(), 1);
    let why = store.last_error().unwrap();
    assert!(!why.contains(PASSWORD), "{why}");
    assert!(
        count(&store, Op::Get, Outcome::Down) >= 4,
        "not attempted while down"
    );
    let text = logs.text();
    assert_eq!(text.matches("token store unavailable").count(), 1, "{text}");
    assert!(!text.contains(PASSWORD));

    redis.restart().await;
    wait_up(&store).await;
    // A restarted Redis is empty: the token is gone, the store works.
    assert_eq!(store.get(&keys).await.unwrap(), None);
    store
        .put(&keys, &token("at-3", 60), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(store
        .try_lease(&keys, Duration::from_secs(5))
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.outages(), 1);
    let text = logs.text();
    assert_eq!(
        text.matches("token store reachable again").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("token store unavailable").count(), 1, "{text}");

    // A second outage is a second log line.
    redis.kill();
    assert!(store.get(&keys).await.is_err());
    assert_eq!(store.outages(), 2);
    assert_eq!(logs.text().matches("token store unavailable").count(), 2);
}

#[tokio::test]
async fn a_silent_server_is_a_timeout_not_a_hang() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = Store::new(&config(format!("redis://{addr}"))).unwrap();
    let keys = store.keys(b"provider", None);
    let started = Instant::now();
    assert!(store.get(&keys).await.is_err());
    assert!(started.elapsed() < FAIL_WITHIN, "{:?}", started.elapsed());
    assert!(started.elapsed() >= TIMEOUT - Duration::from_millis(10));
    assert!(!store.up());
    assert!(count(&store, Op::Get, Outcome::Timeout) == 1);
    assert!(store
        .last_error()
        .unwrap()
        .contains("no answer within 250 ms"));
}

#[tokio::test]
async fn a_wrong_password_is_an_outage_with_a_reason() {
    let redis = RedisServer::with_password().await;
    let mut cfg = config(redis.url());
    cfg.password = Some(Secret::new("wrong-password-123"));
    let store = Store::new(&cfg).unwrap();
    let keys = store.keys(b"provider", None);
    assert!(store.get(&keys).await.is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    let why = loop {
        if let Some(why) = store.last_error() {
            break why;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!store.up());
    assert!(why.contains("WRONGPASS") || why.contains("auth"), "{why}");
    assert!(!why.contains("wrong-password-123"), "{why}");
}

#[tokio::test]
async fn nothing_listening_at_start_is_an_outage_not_an_error() {
    let (logs, _guard) = Logs::capture();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = Store::new(&config(format!("redis://127.0.0.1:{port}"))).unwrap();
    let keys = store.keys(b"provider", None);
    for _ in 0..3 {
        let started = Instant::now();
        assert!(store.get(&keys).await.is_err());
        assert!(started.elapsed() < FAIL_WITHIN);
    }
    assert!(!store.up());
    // Give the reconnect loop a few rounds: still one outage, one line.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.outages(), 1);
    assert_eq!(logs.text().matches("token store unavailable").count(), 1);
    assert!(
        count(&store, Op::Ping, Outcome::Error) >= 2,
        "it keeps trying"
    );
}
