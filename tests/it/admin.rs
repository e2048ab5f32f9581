//! The admin API: health, readiness, status, refresh, expose_token.

use crate::support::fake_idp::Reply;
use crate::support::*;
use std::time::Duration;

async fn json(url: String) -> (u16, serde_json::Value, String) {
    let resp = direct_client().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        text,
    )
}

#[tokio::test]
async fn readiness_waits_for_prefetch_providers() {
    let idp = FakeIdp::builder()
        .then(1, Reply::Slow(Duration::from_millis(400)))
        .run()
        .await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}",
        provider_yaml("crm", &idp, "    prefetch: true\n")
    ))
    .await;
    assert_eq!(json(sc.admin_url("/healthz")).await.0, 200);
    let (status, body, _) = json(sc.admin_url("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["not_ready"][0].as_str().unwrap().contains("crm"));
    let mut ready = false;
    for _ in 0..100 {
        if json(sc.admin_url("/readyz")).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "ready once the prefetched token is there");
    assert_eq!(idp.requests(), 1);
    sc.stop().await;
}

#[tokio::test]
async fn a_prefetch_provider_whose_idp_is_down_is_not_ready() {
    let idp = FakeIdp::builder()
        .always(Reply::Status(503, r#"{"error":"temporarily_unavailable"}"#))
        .run()
        .await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}",
        provider_yaml(
            "crm",
            &idp,
            "    prefetch: true\n    retries: { max_attempts: 1 }\n"
        )
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(json(sc.admin_url("/readyz")).await.0, 503);
    sc.stop().await;
}

/// `readiness: listening` (shared egress): ready through an IdP outage, so apps get a clear
/// 503 `token_unavailable` from the proxy instead of an empty Service.
#[tokio::test]
async fn readiness_listening_stays_ready_through_an_idp_outage() {
    let idp = FakeIdp::builder()
        .always(Reply::Status(503, r#"{"error":"temporarily_unavailable"}"#))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "readiness: listening\nproviders:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n",
        provider_yaml(
            "crm",
            &idp,
            "    prefetch: true\n    retries: { max_attempts: 1 }\n"
        ),
        api.url()
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body, _) = json(sc.admin_url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let resp = direct_client().get(sc.url("/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-token-sidecar-error"], "token_unavailable");
    assert_eq!(api.count(), 0);
    sc.stop().await;
}

#[tokio::test]
async fn status_reports_tokens_without_revealing_them_and_refresh_fetches_anew() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - name: crm-api\n    match: {{ host: api.crm.test, path_prefix: /v2 }}\n    provider: crm\n    upstream: {}\n",
        provider_yaml("crm", &idp, "    scopes: [read]\n"),
        api.url()
    ))
    .await;
    let (_, before, _) = json(sc.admin_url("/status")).await;
    assert_eq!(before["providers"]["crm"]["has_token"], false);
    proxied_client(sc.proxy)
        .get("http://api.crm.test/v2/x")
        .send()
        .await
        .unwrap();

    let (status, body, text) = json(sc.admin_url("/status")).await;
    assert_eq!(status, 200);
    let crm = &body["providers"]["crm"];
    assert_eq!(crm["has_token"], true);
    assert_eq!(crm["fetches_total"], 1);
    assert_eq!(crm["failures_total"], 0);
    assert_eq!(crm["scope"], "read");
    assert!(crm["expires_in_seconds"].as_u64().unwrap() > 3500);
    for key in ["expires_at", "refresh_at", "last_fetch_at"] {
        assert!(crm[key].as_str().unwrap().ends_with('Z'), "{key}: {crm}");
    }
    assert!(crm["last_error"].is_null());
    assert_eq!(body["routes"][0]["name"], "crm-api");
    assert_eq!(body["routes"][0]["host"], "api.crm.test");
    assert_eq!(body["routes"][0]["path_prefix"], "/v2");
    assert_eq!(body["routes"][0]["provider"], "crm");
    assert!(
        !text.contains(&idp.issued()[0]),
        "status never shows the token"
    );
    assert!(
        !text.contains(CLIENT_SECRET),
        "status never shows the secret"
    );

    let resp = direct_client()
        .post(sc.admin_url("/providers/crm/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let refreshed: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(refreshed["fetches_total"], 2);
    assert_eq!(idp.requests(), 2);
    proxied_client(sc.proxy)
        .get("http://api.crm.test/v2/y")
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.seen()[1].bearer(),
        Some(idp.issued()[1].as_str()),
        "requests use the refreshed token"
    );

    let resp = direct_client()
        .post(sc.admin_url("/providers/nope/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    sc.stop().await;
}

#[tokio::test]
async fn token_endpoint_only_for_providers_that_expose_it() {
    let idp = FakeIdp::builder().run().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}{}",
        provider_yaml("open", &idp, "    expose_token: true\n"),
        provider_yaml("closed", &idp, "")
    ))
    .await;
    let (status, body, _) = json(sc.admin_url("/providers/open/token")).await;
    assert_eq!(status, 200);
    assert!(idp
        .issued()
        .contains(&body["access_token"].as_str().unwrap().to_string()));
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 3500);
    let (status, _, text) = json(sc.admin_url("/providers/closed/token")).await;
    assert_eq!(status, 404);
    assert!(!text.contains("at-"), "{text}");
    sc.stop().await;
}

#[tokio::test]
async fn providers_with_the_same_identity_keep_their_own_settings() {
    // Same IdP, client and secret; only one of them prefetches.
    let idp = FakeIdp::builder().run().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}{}",
        provider_yaml("a", &idp, "    prefetch: true\n"),
        provider_yaml("b", &idp, "")
    ))
    .await;
    let mut ready = false;
    for _ in 0..100 {
        if json(sc.admin_url("/readyz")).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "the prefetch provider fetched its token");
    let (_, status, _) = json(sc.admin_url("/status")).await;
    assert_eq!(status["providers"]["a"]["has_token"], true);
    assert_eq!(status["providers"]["b"]["state"], "empty");
    sc.stop().await;
}
