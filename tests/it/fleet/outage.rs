//! When the store fails: Redis killed under load and back, and values that do not
//! authenticate (tampered, sealed with another key). No request fails, nothing that did
//! not authenticate is injected.

use super::*;
use ::redis::AsyncCommands;
use token_sidecar::config::Config;
use token_sidecar::secret::Secret;
use token_sidecar::store::{Endpoint, Store, StoreConfig, TokenKeys};

/// The hot path never touches the store, so an idle fleet would not notice Redis going
/// away until a refresh point: the store is probed every few seconds, and `store_up`
/// and `/status` follow within that (no request sent meanwhile).
#[tokio::test]
async fn an_idle_replica_notices_an_outage_and_the_recovery() {
    let mut redis = redis().await;
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let api = FakeUpstream::ok().await;
    let fleet = start_fleet(1, &fleet_yaml(&idp, &api, &store_yaml(&redis.url(), KEY))).await;
    wait_store_up(&fleet).await;
    let sc = &fleet[0];
    assert_eq!(sc.get_status("/api/x").await, 200);
    redis.kill();
    let mut down = false;
    for _ in 0..100 {
        if metric(sc, "token_sidecar_store_up").await == 0.0 {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(down, "store_up still 1 ten seconds after Redis went away");
    assert_eq!(sc.admin_json("/status").await["store"]["up"], false);
    redis.restart().await;
    wait_store_up(&fleet).await;
    assert_eq!(metric(sc, "token_sidecar_store_up").await, 1.0);
    for sc in fleet {
        sc.stop().await;
    }
}

#[tokio::test]
async fn redis_killed_under_load_fails_no_request_and_sharing_resumes_when_it_is_back() {
    let mut redis = redis().await;
    let idp = FakeIdp::builder().ttl(2).run().await;
    let api = FakeUpstream::ok().await;
    let fleet = start_fleet(3, &fleet_yaml(&idp, &api, &store_yaml(&redis.url(), KEY))).await;
    wait_store_up(&fleet).await;
    let (mut failures, mut requests) = (0, 0);
    let mut load = |statuses: Vec<u16>| {
        requests += statuses.len();
        failures += statuses.iter().filter(|s| **s != 200).count();
    };
    load(burst(&fleet, 2).await);
    assert_eq!(idp.requests(), 1);

    redis.kill();
    let down_at = idp.requests();
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        load(burst(&fleet, 2).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for sc in &fleet {
        assert_eq!(metric(sc, "token_sidecar_store_up").await, 0.0);
        let status = sc.admin_json("/status").await;
        assert_eq!(status["store"]["up"], false);
        assert!(
            status["store"]["last_error"].is_string(),
            "{}",
            status["store"]
        );
        assert_eq!(
            status["providers"]["crm"]["source"], "idp",
            "each falls back to its own fetches"
        );
    }
    // Each of the three fetched on its own (2 s tokens: about 3 refreshes each).
    assert!(
        idp.requests() - down_at >= 6,
        "{} fetches during the outage",
        idp.requests() - down_at
    );

    redis.restart().await;
    wait_store_up(&fleet).await;
    let mut adoptions_before = 0.0;
    for sc in &fleet {
        adoptions_before +=
            metric(sc, "token_sidecar_token_adoptions_total{provider=\"crm\"}").await;
    }
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        load(burst(&fleet, 2).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (mut adoptions_after, mut puts) = (0.0, 0.0);
    for sc in &fleet {
        assert_eq!(metric(sc, "token_sidecar_store_up").await, 1.0);
        let ok = "token_sidecar_store_operations_total{op=\"put\",outcome=\"ok\"}";
        puts += metric(sc, ok).await;
        adoptions_after +=
            metric(sc, "token_sidecar_token_adoptions_total{provider=\"crm\"}").await;
    }
    assert!(
        adoptions_after > adoptions_before,
        "tokens are shared again: {adoptions_before} → {adoptions_after}"
    );
    assert!(puts >= 2.0, "tokens are stored again: {puts} puts in all");
    assert_eq!(failures, 0, "no failed request in {requests}");
    for sc in fleet {
        sc.stop().await;
    }
}

/// The keys a sidecar with `yaml` and `key` uses for provider `crm` (computed as the
/// sidecar does, by a store of the same settings).
async fn keys_of(yaml: &str, url: &str, key: &str) -> TokenKeys {
    let config = Config::from_text(std::path::Path::new("t.yaml"), yaml, &|_| None).unwrap();
    let identity = config.provider("crm").unwrap().key.identity_bytes();
    let store = Store::new(&StoreConfig {
        endpoint: Endpoint::Standalone(url.into()),
        username: None,
        password: Some(Secret::new(PASSWORD)),
        ca_file: None,
        key_prefix: "token-sidecar:".into(),
        timeout: Duration::from_millis(500),
        encryption_key: Secret::new(key),
    })
    .unwrap();
    store.keys(&identity, None)
}

#[tokio::test]
async fn tampered_and_wrong_key_values_are_ignored_refetched_and_never_injected() {
    let redis = redis().await;
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let api = FakeUpstream::ok().await;
    let yaml = fleet_yaml(&idp, &api, &store_yaml(&redis.url(), KEY));
    let first = TestSidecar::start(&yaml).await;
    assert_eq!(first.get_status("/api/x").await, 200);
    assert_eq!(idp.requests(), 1);
    let keys = keys_of(&yaml, &redis.url(), KEY).await;
    let mut raw = redis.raw().await;
    let sealed: Vec<u8> = raw.get(keys.token()).await.unwrap();
    assert!(!sealed.is_empty());

    // Tampered: one bit flipped in the ciphertext.
    let mut tampered = sealed.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 1;
    let _: () = raw.set(keys.token(), &tampered).await.unwrap();
    let second = TestSidecar::start(&yaml).await;
    wait_store_up(std::slice::from_ref(&second)).await;
    assert_eq!(second.get_status("/api/x").await, 200);
    assert_eq!(
        idp.requests(),
        2,
        "the tampered value was refused and the token fetched"
    );
    let invalid = "token_sidecar_store_operations_total{op=\"get\",outcome=\"invalid\"}";
    assert!(metric(&second, invalid).await >= 1.0);

    // Another key: what the first replica sealed is not readable under the second key,
    // even copied to the name the second key gives the token.
    let other_yaml = fleet_yaml(&idp, &api, &store_yaml(&redis.url(), OTHER_KEY));
    let other_keys = keys_of(&other_yaml, &redis.url(), OTHER_KEY).await;
    assert_ne!(
        other_keys.token(),
        keys.token(),
        "key names depend on the key"
    );
    let _: () = raw.set(other_keys.token(), &sealed).await.unwrap();
    let third = TestSidecar::start(&other_yaml).await;
    wait_store_up(std::slice::from_ref(&third)).await;
    assert_eq!(third.get_status("/api/x").await, 200);
    assert_eq!(
        idp.requests(),
        3,
        "a value sealed with another key is refused: one fetch"
    );
    assert!(metric(&third, invalid).await >= 1.0);

    // The upstream saw only tokens the IdP issued.
    let issued = idp.issued();
    for s in api.seen() {
        let t = s.bearer().unwrap();
        assert!(
            issued.iter().any(|i| i == t),
            "an injected token the IdP never issued"
        );
    }
    for sc in [first, second, third] {
        sc.stop().await;
    }
}
