//! The deployments SPEC §9 names, end to end: TLS with an ACL user, and Redis Cluster.

use super::{config, count, token, wait_up};
use crate::support::redis::{redis_cli, RedisCluster, RedisServer, ACL_USER, PASSWORD};
use crate::support::tls::TestCa;
use std::time::Duration;
use token_sidecar::secret::Secret;
use token_sidecar::store::{Endpoint, Op, Outcome, Store, StoreConfig};

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
        assert_eq!(waited.unwrap(), Some(t.clone()));
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
}
