//! Token fetching: single flight, the token request itself, IdP failures (SPEC §6), and
//! expiry.

use crate::support::fake_idp::Reply;
use crate::support::*;
use base64::Engine;
use std::time::Duration;

fn one_route(idp: &FakeIdp, api: &FakeUpstream, provider_extra: &str, route_extra: &str) -> String {
    format!(
        "providers:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n{route_extra}",
        provider_yaml("crm", idp, provider_extra),
        api.url()
    )
}

async fn get(sc: &TestSidecar) -> (u16, Option<String>, Option<String>, serde_json::Value) {
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        direct_client().get(sc.url("/api/x")).send(),
    )
    .await
    .expect("the proxy must answer, never hang")
    .unwrap();
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-token-sidecar-error")
        .map(|v| v.to_str().unwrap().to_string());
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.bytes().await.unwrap();
    (
        status,
        code,
        retry_after,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn five_hundred_concurrent_requests_on_a_cold_cache_share_one_fetch() {
    let idp = FakeIdp::builder()
        .then(1, Reply::Slow(Duration::from_millis(300)))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&one_route(&idp, &api, "", "")).await;
    let client = direct_client();
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (c, url) = (client.clone(), sc.url("/api/x"));
            tokio::spawn(async move { c.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(idp.requests(), 1);
    assert_eq!(api.count(), 500);
    assert!(api
        .seen()
        .iter()
        .all(|s| s.bearer() == Some(idp.issued()[0].as_str())));
    sc.stop().await;
}

#[tokio::test]
async fn token_request_uses_basic_auth_and_sends_the_configured_parameters() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let extra = "    scopes: [read, write]\n    audience: https://api.example.com\n    resource: https://api.example.com/v2\n    extra_params: { tenant: blue }\n";
    let sc = TestSidecar::start(&one_route(&idp, &api, extra, "")).await;
    assert_eq!(get(&sc).await.0, 200);
    let (auth, form) = &idp.seen()[0];
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("svc:{CLIENT_SECRET}"));
    assert_eq!(auth.as_deref(), Some(format!("Basic {expected}").as_str()));
    let pairs: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    let has = |k: &str, v: &str| pairs.iter().any(|(a, b)| a == k && b == v);
    assert!(has("grant_type", "client_credentials"), "{form}");
    assert!(has("scope", "read write"), "{form}");
    assert!(has("audience", "https://api.example.com"), "{form}");
    assert!(has("resource", "https://api.example.com/v2"), "{form}");
    assert!(has("tenant", "blue"), "{form}");
    assert!(
        !form.contains(CLIENT_SECRET),
        "basic auth keeps the secret out of the body"
    );
    sc.stop().await;

    let idp = FakeIdp::builder().run().await;
    let sc = TestSidecar::start(&one_route(&idp, &api, "    client_auth: post\n", "")).await;
    assert_eq!(get(&sc).await.0, 200);
    let (auth, form) = &idp.seen()[0];
    assert!(auth.is_none());
    let pairs: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    assert!(pairs.contains(&("client_id".into(), "svc".into())));
    assert!(pairs.contains(&("client_secret".into(), CLIENT_SECRET.into())));
    sc.stop().await;
}

#[tokio::test]
async fn idp_unreachable_gives_503_with_retry_after() {
    let api = FakeUpstream::ok().await;
    let port = crate::support::sidecar::free_port();
    let yaml = format!(
        "providers:\n  crm:\n    token_url: http://127.0.0.1:{port}/token\n    client_id: svc\n    client_secret: x\n    timeout: 2s\n    retries: {{ max_attempts: 2, initial_backoff: 50ms, max_backoff: 100ms }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n",
        api.url()
    );
    let sc = TestSidecar::start(&yaml).await;
    let (status, code, retry_after, body) = get(&sc).await;
    assert_eq!(status, 503);
    assert_eq!(code.as_deref(), Some("token_unavailable"));
    assert!(retry_after.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    assert_eq!(body["provider"], "crm");
    assert_eq!(body["route"], "/api");
    assert!(
        body["detail"].as_str().unwrap().contains("connect"),
        "{body}"
    );
    assert_eq!(api.count(), 0);
    sc.stop().await;
}

#[tokio::test]
async fn idp_slower_than_timeout_gives_503_not_a_hang() {
    let idp = FakeIdp::builder()
        .always(Reply::Slow(Duration::from_secs(30)))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&one_route(&idp, &api, "    timeout: 500ms\n", "")).await;
    let (status, code, _, body) = get(&sc).await;
    assert_eq!(status, 503);
    assert_eq!(code.as_deref(), Some("token_unavailable"));
    assert!(
        body["detail"].as_str().unwrap().contains("within 500ms"),
        "{body}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn invalid_client_is_not_retried_and_gives_502_token_rejected() {
    let idp = FakeIdp::builder()
        .always(Reply::Status(
            401,
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
        ))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&one_route(&idp, &api, "", "")).await;
    let (status, code, _, body) = get(&sc).await;
    assert_eq!(status, 502);
    assert_eq!(code.as_deref(), Some("token_rejected"));
    assert_eq!(body["error"], "token_rejected");
    assert_eq!(
        body["detail"],
        "token endpoint answered 401 invalid_client: Client authentication failed"
    );
    assert_eq!(idp.requests(), 1, "4xx is not retried");
    sc.stop().await;
}

#[tokio::test]
async fn garbage_is_retried_then_reported_as_invalid_response() {
    let idp = FakeIdp::builder().always(Reply::Garbage).run().await;
    let api = FakeUpstream::ok().await;
    let retries = "    retries: { max_attempts: 3, initial_backoff: 10ms, max_backoff: 50ms }\n";
    let sc = TestSidecar::start(&one_route(&idp, &api, retries, "")).await;
    let (status, code, _, body) = get(&sc).await;
    assert_eq!(status, 502);
    assert_eq!(code.as_deref(), Some("token_invalid_response"));
    assert!(
        body["detail"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );
    assert_eq!(idp.requests(), 3);
    // The IdP recovers: once the short backoff is over, requests get a token again
    // (failures never stop fetching).
    idp.set_default(Reply::Token(Some(3600)));
    let mut status = 0;
    for _ in 0..100 {
        status = get(&sc).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    sc.stop().await;
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let idp = FakeIdp::builder()
        .then(2, Reply::Status(500, r#"{"error":"server_error"}"#))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let retries = "    retries: { max_attempts: 3, initial_backoff: 10ms, max_backoff: 50ms }\n";
    let sc = TestSidecar::start(&one_route(&idp, &api, retries, "")).await;
    assert_eq!(get(&sc).await.0, 200);
    assert_eq!(idp.requests(), 3);
    sc.stop().await;
}

#[tokio::test]
async fn on_token_error_forward_sends_the_request_without_a_token() {
    let idp = FakeIdp::builder()
        .always(Reply::Status(400, r#"{"error":"invalid_scope"}"#))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&one_route(&idp, &api, "", "    on_token_error: forward\n")).await;
    assert_eq!(get(&sc).await.0, 200);
    assert!(api.seen()[0].header("authorization").is_none());
    sc.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_never_injected() {
    let idp = FakeIdp::builder().ttl(1).run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&one_route(&idp, &api, "", "")).await;
    assert_eq!(get(&sc).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(&sc).await.0, 200);
    let seen = api.seen();
    let issued = idp.issued();
    assert!(issued.len() >= 2);
    assert_eq!(seen[0].bearer(), Some(issued[0].as_str()));
    assert_ne!(
        seen[1].bearer(),
        Some(issued[0].as_str()),
        "the 1 s token had expired"
    );
    sc.stop().await;
}

#[tokio::test]
async fn without_expires_in_or_jwt_a_token_lives_five_minutes() {
    // SPEC §5 fallback (the JWT `exp` step is unit-tested in token::lifetime).
    let idp = FakeIdp::builder().no_expires_in().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&one_route(&idp, &api, "", "")).await;
    for _ in 0..3 {
        assert_eq!(get(&sc).await.0, 200);
    }
    assert_eq!(idp.requests(), 1);
    let status = sc.admin_json("/status").await;
    let left = status["providers"]["crm"]["expires_in_seconds"]
        .as_u64()
        .unwrap();
    assert!((290..=300).contains(&left), "{left}");
    sc.stop().await;
}
