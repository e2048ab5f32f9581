//! The fetch lease: one holder at a time, released only by its owner, freed by expiry.

use super::{config, count};
use crate::support::redis::RedisServer;
use std::time::Duration;
use token_sidecar::store::{Op, Outcome, Store};

#[tokio::test]
async fn one_of_twenty_concurrent_takers_wins() {
    let redis = RedisServer::with_password().await;
    // Four replicas, five concurrent takers each.
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(Store::new(&config(redis.url())).unwrap());
    }
    let keys = replicas[0].keys(b"provider", None);
    let takers = (0..20).map(|i| replicas[i % 4].try_lease(&keys, Duration::from_secs(10)));
    let results = futures_util::future::join_all(takers).await;
    let won: Vec<_> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(won.len(), 1, "exactly one lease holder");
    let lost: u64 = replicas
        .iter()
        .map(|r| count(r, Op::Lease, Outcome::Lost))
        .sum();
    assert_eq!(lost, 19);
    // Another token's lease is independent.
    let other = replicas[1].keys(b"another provider", None);
    assert!(replicas[1]
        .try_lease(&other, Duration::from_secs(10))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn only_the_owner_releases_and_expiry_frees_it() {
    let redis = RedisServer::with_password().await;
    let (a, b) = (
        Store::new(&config(redis.url())).unwrap(),
        Store::new(&config(redis.url())).unwrap(),
    );
    let keys = a.keys(b"provider", None);
    let short = a
        .try_lease(&keys, Duration::from_millis(300))
        .await
        .unwrap()
        .expect("free at first");
    assert!(b
        .try_lease(&keys, Duration::from_secs(10))
        .await
        .unwrap()
        .is_none());
    // The holder dies without releasing: the lease expires and another replica takes it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let long = b
        .try_lease(&keys, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("expired leases are free");
    // The old holder comes back and releases: not its lease any more, nothing happens.
    assert!(!a.release(&short).await.unwrap());
    assert!(a
        .try_lease(&keys, Duration::from_secs(10))
        .await
        .unwrap()
        .is_none());
    assert_eq!(count(&a, Op::Release, Outcome::Lost), 1);
    // The owner releases: free again at once.
    assert!(b.release(&long).await.unwrap());
    assert!(a
        .try_lease(&keys, Duration::from_secs(10))
        .await
        .unwrap()
        .is_some());
}
