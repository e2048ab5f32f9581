//! The deployments SPEC §9 names, end to end: TLS with an ACL user, and Redis Cluster.

use super::{config, count, token, wait_up};
use crate::support::redis::{redis_cli, RedisCluster, RedisServer, ACL_USER, PASSWORD};
use crate::support::tls::TestCa;
use redis::AsyncCommands;
use std::time::Duration;
use token_sidecar::secret::Secret;
use token_sidecar::store::{Endpoint, Op, Outcome, Store, StoreConfig, Waited};

const IDENTITY_PREFIX: &str = "oauth|https://idp.example/token|client-";

/// Everything a token's life uses, between two replicas of one store config.
async fn exercise(cfg: &StoreConfig, providers: usize) {
    let (a, b) = (Store::new(cfg).unwrap(), Store::new(cfg).unwrap());
    wait_up(&a).await;
    for i in 0..providers {
        // Several identities, so a cluster spreads them over its nodes.
        let identity = format!("{IDENTITY_PREFIX}{i}");
        let keys = a.keys(identity.as_bytes(), None);
        let lease = a
            .try_lease(&keys, Duration::from_secs(10))
            .await
            .unwrap()
            .expect("free lease");
        assert!(b
            .try_lease(&keys, Duration::from_secs(10))
            .await
            .unwrap()
            .is_none());
        let t = token(&format!("at-{i}"), 60);
        let (waited, put) = tokio::join!(b.wait(&keys, Duration::from_secs(10), |_| true), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            a.put(&keys, &t, Duration::from_secs(60)).await
        });
        put.unwrap();
        assert_eq!(waited, Ok(Waited::Token(t.clone())));
        assert!(a.release(&lease).await.unwrap());
        assert!(b.delete_if(&keys, &t.access_token).await.unwrap());
        assert_eq!(a.get(&keys).await.unwrap(), None);
        assert!(a.cas_refresh(&keys, 0, &Secret::new("rt")).await.unwrap());
        assert!(!b.cas_refresh(&keys, 0, &Secret::new("rt-b")).await.unwrap());
        assert_eq!(b.get_refresh(&keys).await.unwrap().generation, 1);
    }
    assert!(a.up() && b.up());
    for s in [&a, &b] {
        for outcome in [Outcome::Error, Outcome::Timeout, Outcome::Down] {
            let failures: u64 = Op::ALL.iter().map(|op| count(s, *op, outcome)).sum();
            assert_eq!(failures, 0, "{outcome:?}: {:?}", s.last_error());
        }
    }
}

#[tokio::test]
async fn tls_with_an_acl_user() {
    let ca = TestCa::new("redis test CA");
    let redis = RedisServer::with_tls_and_acl(&ca).await;
    assert!(redis.url().starts_with("rediss://"));
    let mut cfg = config(redis.url());
    cfg.username = Some(ACL_USER.into());
    cfg.ca_file = Some(ca.cert_path());
    exercise(&cfg, 3).await;

    // Without the CA the server is not trusted: down, never a plaintext fallback.
    let mut untrusted = cfg.clone();
    untrusted.ca_file = None;
    let store = Store::new(&untrusted).unwrap();
    assert!(store.get(&store.keys(b"p", None)).await.is_err());
    assert!(!store.up());
    // The `default` user is off: the password alone does not get in.
    let mut no_user = cfg.clone();
    no_user.username = None;
    let store = Store::new(&no_user).unwrap();
    assert!(store.get(&store.keys(b"p", None)).await.is_err());
    assert!(!store.last_error().unwrap_or_default().contains(PASSWORD));
}

#[tokio::test]
async fn a_three_node_cluster() {
    let cluster = RedisCluster::start().await;
    let mut cfg = config(String::new());
    cfg.endpoint = Endpoint::Cluster(cluster.urls());
    cfg.password = None;
    exercise(&cfg, 12).await;
    // The keys of the twelve tokens landed on more than one node.
    let mut used = 0;
    for node in &cluster.nodes {
        let out = redis_cli(["-p", &node.port().to_string(), "dbsize"].map(String::from)).await;
        let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        used += u64::from(n > 0);
    }
    assert!(used >= 2, "all keys on one node");
    publication_alone_wakes_a_waiter(&cfg, cluster.urls()).await;
}

/// A value that only a publication carries (written, read raw, deleted, then published
/// on some node) reaches a waiter: pub/sub works across the cluster, not just polling.
async fn publication_alone_wakes_a_waiter(cfg: &StoreConfig, urls: Vec<String>) {
    let (waiter, writer) = (Store::new(cfg).unwrap(), Store::new(cfg).unwrap());
    wait_up(&waiter).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while count(&waiter, Op::Subscribe, Outcome::Ok) == 0 {
        assert!(std::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let keys = waiter.keys(b"published only", None);
    let _lease = writer
        .try_lease(&keys, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free lease");
    let t = token("at-published", 60);
    writer
        .put(&keys, &t, Duration::from_secs(60))
        .await
        .unwrap();
    let client = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut raw = client.get_async_connection().await.unwrap();
    let sealed: Vec<u8> = raw.get(keys.token()).await.unwrap();
    let _: () = raw.del(keys.token()).await.unwrap();
    let publish = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _: i64 = raw.publish(keys.channel(), &sealed).await.unwrap();
    };
    let (got, ()) = tokio::join!(
        waiter.wait(&keys, Duration::from_secs(10), |_| true),
        publish
    );
    assert_eq!(got, Ok(Waited::Token(t)));
}

#[tokio::test]
async fn a_cluster_node_killed_and_back() {
    let mut cluster = RedisCluster::start().await;
    let mut cfg = config(String::new());
    cfg.endpoint = Endpoint::Cluster(cluster.urls());
    cfg.password = None;
    let store = Store::new(&cfg).unwrap();
    wait_up(&store).await;
    let keys: Vec<_> = (0..12)
        .map(|i| store.keys(format!("{IDENTITY_PREFIX}{i}").as_bytes(), None))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let t = token(&format!("at-{i}"), 600);
        store.put(k, &t, Duration::from_secs(600)).await.unwrap();
    }

    cluster.nodes[0].kill();
    // Some of the tokens live on the dead node: reading them all fails fast, once.
    let started = std::time::Instant::now();
    let mut failed = 0;
    for k in &keys {
        failed += usize::from(store.get(k).await.is_err());
    }
    assert!(failed > 0);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!store.up());
    assert_eq!(store.outages(), 1);

    // The node comes back (empty: no persistence) and rejoins with its slots.
    cluster.nodes[0].restart().await;
    cluster.wait_ok().await;
    wait_up(&store).await;
    let mut found = 0;
    for k in &keys {
        found += usize::from(store.get(k).await.unwrap().is_some());
    }
    assert!(
        (1..12).contains(&found),
        "tokens on the surviving nodes stay: {found}"
    );
    let t = token("at-new", 600);
    for k in &keys {
        store.put(k, &t, Duration::from_secs(600)).await.unwrap();
        assert!(store.get(k).await.unwrap().is_some());
    }
}
