//! Renew-and-replay once when the upstream rejects a token (`retry_on`).

use crate::support::*;
use bytes::Bytes;
use std::sync::{Arc, Mutex};

fn config(idp: &FakeIdp, api: &FakeUpstream, route_extra: &str) -> String {
    format!(
        "providers:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n{route_extra}",
        provider_yaml("crm", idp, ""),
        api.url()
    )
}

/// An upstream that answers 401 to any token put in the returned list.
async fn rejecting() -> (FakeUpstream, Arc<Mutex<Vec<String>>>) {
    let rejected = Arc::new(Mutex::new(Vec::new()));
    (FakeUpstream::rejecting(rejected.clone()).await, rejected)
}

#[tokio::test]
async fn one_401_renews_and_replays_once() {
    let idp = FakeIdp::builder().run().await;
    let (api, rejected) = rejecting().await;
    let sc = TestSidecar::start(&config(&idp, &api, "")).await;
    // Warm the cache, then have the API revoke that token.
    assert_eq!(sc.get_status("/api/warm").await, 200);
    rejected.lock().unwrap().push(idp.issued()[0].clone());
    let resp = direct_client().get(sc.url("/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "accepted");
    let seen = api.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].bearer(), Some(idp.issued()[0].as_str()));
    assert_eq!(seen[2].bearer(), Some(idp.issued()[1].as_str()));
    assert_ne!(seen[1].bearer(), seen[2].bearer());
    assert_eq!(idp.requests(), 2);
    sc.stop().await;
}

#[tokio::test]
async fn a_second_401_goes_to_the_app_unchanged() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, _| {
        (
            401,
            vec![("x-upstream", "yes".into())],
            Bytes::from_static(b"denied by api"),
        )
    })
    .await;
    let sc = TestSidecar::start(&config(&idp, &api, "")).await;
    let resp = direct_client().get(sc.url("/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    assert!(resp.headers().get("x-token-sidecar-error").is_none());
    assert_eq!(resp.text().await.unwrap(), "denied by api");
    assert_eq!(api.count(), 2, "replayed exactly once");
    assert_eq!(idp.requests(), 2);
    // The IdP is guarded: more 401s within a second cause no more token requests.
    for _ in 0..5 {
        assert_eq!(sc.get_status("/api/x").await, 401);
    }
    assert_eq!(
        idp.requests(),
        2,
        "at most one re-fetch per second because of 401s"
    );
    sc.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_401s_cause_exactly_one_extra_fetch() {
    let idp = FakeIdp::builder().run().await;
    let (api, rejected) = rejecting().await;
    let sc = TestSidecar::start(&config(&idp, &api, "")).await;
    assert_eq!(sc.get_status("/api/warm").await, 200);
    rejected.lock().unwrap().push(idp.issued()[0].clone());
    let client = direct_client();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (c, url) = (client.clone(), sc.url(&format!("/api/{i}")));
            tokio::spawn(async move { c.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(idp.requests(), 2);
    sc.stop().await;
}

#[tokio::test]
async fn a_replayed_post_body_arrives_byte_identical() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, i| {
        if i == 0 {
            (401, vec![], Bytes::new())
        } else {
            (200, vec![], Bytes::new())
        }
    })
    .await;
    let sc = TestSidecar::start(&config(&idp, &api, "")).await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let resp = direct_client()
        .post(sc.url("/api/orders"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, payload);
    assert_eq!(seen[1].body, payload);
    assert_eq!(seen[1].method, "POST");
    sc.stop().await;
}

#[tokio::test]
async fn bodies_that_cannot_be_replayed_are_not() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, _| (401, vec![], Bytes::new())).await;
    let sc = TestSidecar::start(&config(&idp, &api, "    max_replay_body: 1KiB\n")).await;
    let resp = direct_client()
        .post(sc.url("/api/big"))
        .body(vec![1u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        api.count(),
        1,
        "a body over max_replay_body streams and is never replayed"
    );

    // Unknown length (chunked): streamed, never replayed.
    let stream =
        futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"chunk"))]);
    let resp = direct_client()
        .post(sc.url("/api/chunked"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(api.count(), 2);
    assert_eq!(api.seen()[1].body, Bytes::from_static(b"chunk"));
    sc.stop().await;

    let sc = TestSidecar::start(&config(&idp, &api, "    retry_on: []\n")).await;
    assert_eq!(sc.get_status("/api/x").await, 401);
    assert_eq!(api.count(), 3, "retry_on: [] disables the replay");
    sc.stop().await;
}

#[tokio::test]
async fn retry_on_other_statuses() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, i| {
        if i == 0 {
            (403, vec![], Bytes::new())
        } else {
            (200, vec![], Bytes::new())
        }
    })
    .await;
    let sc = TestSidecar::start(&config(&idp, &api, "    retry_on: [401, 403]\n")).await;
    assert_eq!(sc.get_status("/api/x").await, 200);
    assert_eq!(idp.requests(), 2);
    sc.stop().await;
}

#[tokio::test]
async fn a_rejected_token_is_dropped_even_when_the_request_cannot_be_replayed() {
    let idp = FakeIdp::builder().run().await;
    let (api, rejected) = rejecting().await;
    let sc = TestSidecar::start(&config(&idp, &api, "    max_replay_body: 16\n")).await;
    assert_eq!(sc.get_status("/api/warm").await, 200);
    rejected.lock().unwrap().push(idp.issued()[0].clone());
    let resp = direct_client()
        .post(sc.url("/api/upload"))
        .body(vec![7u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "not replayable: the app sees the 401");
    assert_eq!(api.count(), 2);
    // The next request does not reuse the rejected token.
    let resp = direct_client()
        .post(sc.url("/api/upload"))
        .body(vec![7u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(idp.requests(), 2);
    assert_eq!(api.seen()[2].bearer(), Some(idp.issued()[1].as_str()));
    sc.stop().await;
}
