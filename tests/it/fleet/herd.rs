//! What a fleet asks of the IdP: a cold herd, steady state with short tokens, a herd of
//! 401s.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn a_cold_herd_of_twelve_sidecars_makes_one_idp_request() {
    let redis = redis().await;
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let api = FakeUpstream::ok().await;
    let fleet = start_fleet(12, &fleet_yaml(&idp, &api, &store_yaml(&redis.url(), KEY))).await;
    wait_store_up(&fleet).await;
    let statuses = burst(&fleet, 4).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.requests(), 1, "one IdP request for the whole fleet");
    assert_eq!(distinct_tokens(&api).len(), 1, "the upstream saw one token");
    let mut sources = Vec::new();
    let mut adoptions = 0.0;
    for sc in &fleet {
        let status = sc.admin_json("/status").await;
        sources.push(
            status["providers"]["crm"]["source"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        assert_eq!(status["store"]["kind"], "redis");
        adoptions += metric(sc, "token_sidecar_token_adoptions_total{provider=\"crm\"}").await;
        assert_eq!(metric(sc, "token_sidecar_store_up").await, 1.0);
    }
    assert_eq!(
        sources.iter().filter(|s| *s == "idp").count(),
        1,
        "{sources:?}"
    );
    assert_eq!(
        sources.iter().filter(|s| *s == "store").count(),
        11,
        "{sources:?}"
    );
    assert_eq!(adoptions, 11.0);
    for sc in fleet {
        sc.stop().await;
    }
}

#[tokio::test]
async fn three_second_tokens_for_fifteen_seconds_cost_one_replicas_idp_requests() {
    let redis = redis().await;
    let idp = FakeIdp::builder().ttl(3).run().await;
    let api = FakeUpstream::ok().await;
    let fleet = start_fleet(5, &fleet_yaml(&idp, &api, &store_yaml(&redis.url(), KEY))).await;
    wait_store_up(&fleet).await;
    let start = tokio::time::Instant::now();
    let (mut failures, mut requests) = (0, 0);
    while start.elapsed() < Duration::from_secs(15) {
        for s in burst(&fleet, 1).await {
            requests += 1;
            failures += usize::from(s != 200);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(failures, 0, "no failed request in {requests}");
    // One process alone refreshes every 1.35–1.5 s: 10–12 IdP requests in 15 s. Five
    // processes without the store would make about 55.
    let fetches = idp.requests();
    assert!(
        (9..=16).contains(&fetches),
        "IdP requests in 15 s: {fetches}"
    );
    // No token reached the upstream after it expired (3 s after the IdP issued it).
    let (issued, issued_at) = (idp.issued(), idp.issued_at());
    for s in api.seen() {
        let token = s.bearer().expect("every request carried a token");
        let i = issued
            .iter()
            .position(|t| t == token)
            .expect("an issued token");
        let age = s.at.duration_since(issued_at[i]);
        assert!(
            age < Duration::from_secs(3),
            "a token {age:?} old reached the upstream"
        );
    }
    for sc in fleet {
        sc.stop().await;
    }
}

#[tokio::test]
async fn a_herd_of_401s_across_the_fleet_costs_one_idp_request() {
    let redis = redis().await;
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let api = FakeUpstream::rejecting(rejected.clone()).await;
    let fleet = start_fleet(10, &fleet_yaml(&idp, &api, &store_yaml(&redis.url(), KEY))).await;
    wait_store_up(&fleet).await;
    assert!(burst(&fleet, 1).await.iter().all(|s| *s == 200));
    assert_eq!(idp.requests(), 1);
    let first = idp.issued()[0].clone();
    // The API revokes the fleet's token: every sidecar gets 401s at once.
    rejected.lock().unwrap().push(first.clone());
    let statuses = burst(&fleet, 3).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request replayed: {statuses:?}"
    );
    assert_eq!(
        idp.requests(),
        2,
        "one extra IdP request for the whole fleet"
    );
    let accepted: std::collections::BTreeSet<String> = api
        .seen()
        .iter()
        .filter_map(|s| s.bearer().map(str::to_string))
        .filter(|t| *t != first)
        .collect();
    assert_eq!(accepted.len(), 1, "one replacement token fleet-wide");
    for sc in fleet {
        sc.stop().await;
    }
}

/// The lease holder's fetch fails (after the others started waiting for it): the
/// replicas waiting notice the lease is free and one of them takes it over, instead of
/// waiting out the provider's `timeout` and then each asking the IdP.
#[tokio::test]
async fn a_holder_whose_fetch_fails_hands_the_lease_on() {
    let redis = redis().await;
    // The first token request is refused after 300 ms (a refusal: the holder does not
    // retry it in the background, which would hide the waiters' waiting); the others get
    // tokens at once.
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let idp = serve(move |_req| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut resp = http::Response::new(body(r#"{"error":"invalid_client"}"#));
                *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
                return resp;
            }
            let json =
                format!(r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":3600}}"#);
            http::Response::new(body(json))
        }
    })
    .await;
    let api = FakeUpstream::ok().await;
    let yaml = format!(
        "providers:\n  crm:\n    token_url: http://{idp}/token\n    client_id: c\n    client_secret: s\n    timeout: 10s\n    retries: {{ max_attempts: 1 }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n{}",
        api.url(),
        store_yaml(&redis.url(), KEY)
    );
    let fleet = start_fleet(5, &yaml).await;
    wait_store_up(&fleet).await;
    let statuses = burst(&fleet, 2).await;
    // The holder's own requests share its failed fetch; everyone else gets the token
    // the next holder fetched.
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(ok >= statuses.len() - 2, "{statuses:?}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "the failed fetch and the one that took over (waiting out the timeout, each \
         replica would have asked)"
    );
    assert_eq!(distinct_tokens(&api).len(), 1);
    for sc in fleet {
        sc.stop().await;
    }
}

/// A replica that dies holding the fetch lease (here: a lease planted for an owner that
/// never publishes) costs the others a wait of the provider's `timeout`, then they fetch
/// on their own: the request is answered, not failed (SPEC §9: a request never fails
/// because of the store).
#[tokio::test]
async fn a_lease_whose_holder_died_delays_the_others_but_fails_no_request() {
    use ::redis::AsyncCommands;
    let redis = redis().await;
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let api = FakeUpstream::ok().await;
    let provider = "    timeout: 1s\n    retries: { max_attempts: 1 }\n";
    let yaml = format!(
        "providers:\n{}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n{}",
        provider_yaml("crm", &idp, provider),
        api.url(),
        store_yaml(&redis.url(), KEY)
    );
    let a = TestSidecar::start(&yaml).await;
    wait_store_up(std::slice::from_ref(&a)).await;
    assert_eq!(a.get_status("/api/x").await, 200);
    // The token is gone from the store and a dead replica's lease stands for 20 s.
    let mut raw = redis.raw().await;
    let tokens: Vec<String> = raw.keys("token-sidecar:*:token").await.unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let lease = tokens[0].replace(":token", ":lease");
    let _: () = raw.del(&tokens[0]).await.unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(&lease)
        .arg("a-replica-that-died")
        .arg("PX")
        .arg(20_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    let b = TestSidecar::start(&yaml).await;
    wait_store_up(std::slice::from_ref(&b)).await;
    assert_eq!(b.get_status("/api/x").await, 200, "answered, not failed");
    assert_eq!(idp.requests(), 2, "A's fetch, then B's own after the wait");
    a.stop().await;
    b.stop().await;
}
