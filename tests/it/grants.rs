//! Grants beyond client credentials: RFC 8693 token exchange with per-subject caching,
//! and refresh tokens with rotation persisted across a restart of the real binary.

use crate::support::sidecar::Binary;
use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn form(body: &str) -> HashMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn exchange_yaml(idp: &FakeIdp, api: &FakeUpstream, extra: &str) -> String {
    format!(
        "providers:\n{}    grant_type: token_exchange\n    subject_token_from: {{ header: X-Subject-Token, prefix: '' }}\n    audience: https://api.example.com\n    scopes: [orders.read]\n{extra}routes:\n  - match: {{ path_prefix: /api }}\n    provider: obo\n    upstream: {}\n",
        provider_yaml("obo", idp, ""),
        api.url()
    )
}

async fn call(sc: &TestSidecar, subject: Option<&str>) -> reqwest::Response {
    let mut req = direct_client().get(sc.url("/api/orders"));
    if let Some(s) = subject {
        req = req.header("x-subject-token", s);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn token_exchange_sends_rfc8693_parameters_and_caches_per_subject() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("actor"), "actor-jwt\n").unwrap();
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let extra = format!(
        "    actor_token_file: {}\n    actor_token_type: urn:ietf:params:oauth:token-type:jwt\n    requested_token_type: urn:ietf:params:oauth:token-type:access_token\n",
        dir.path().join("actor").display()
    );
    let sc = TestSidecar::start(&exchange_yaml(&idp, &api, &extra)).await;
    assert_eq!(call(&sc, Some("alice-token")).await.status(), 200);
    let f = form(&idp.seen()[0].1);
    assert_eq!(
        f["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(f["subject_token"], "alice-token");
    assert_eq!(
        f["subject_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(f["actor_token"], "actor-jwt");
    assert_eq!(
        f["actor_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(
        f["requested_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(f["audience"], "https://api.example.com");
    assert_eq!(f["scope"], "orders.read");
    assert!(
        idp.seen()[0]
            .0
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "the sidecar authenticates itself"
    );
    let seen = api.seen();
    assert_eq!(seen[0].bearer(), Some(idp.issued()[0].as_str()));
    assert!(
        seen[0].header("x-subject-token").is_none(),
        "the subject header is not forwarded"
    );

    // Same subject: cached. Another subject: another exchange.
    assert_eq!(call(&sc, Some("alice-token")).await.status(), 200);
    assert_eq!(idp.requests(), 1);
    assert_eq!(call(&sc, Some("bob-token")).await.status(), 200);
    assert_eq!(idp.requests(), 2);
    assert_ne!(api.seen()[2].bearer(), api.seen()[0].bearer());

    // 50 concurrent requests of a new subject share one exchange.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let url = sc.url("/api/orders");
            tokio::spawn(async move {
                direct_client()
                    .get(url)
                    .header("x-subject-token", "carol-token")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(idp.requests(), 3);

    // No subject: 401 subject_token_missing, and nothing reaches the API.
    let before = api.count();
    let resp = call(&sc, None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["x-token-sidecar-error"],
        "subject_token_missing"
    );
    assert_eq!(api.count(), before);
    let status = sc.admin_json("/status").await;
    assert_eq!(status["providers"]["obo"]["subjects"], 3);
    let text = serde_json::to_string(&status).unwrap();
    assert!(!text.contains("alice-token") && !text.contains(&idp.issued()[0]));
    sc.stop().await;
}

#[tokio::test]
async fn the_subject_cache_is_bounded_lru_and_forwarding_is_opt_in() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&exchange_yaml(
        &idp,
        &api,
        "    max_subjects: 2\n    forward_subject_header: true\n",
    ))
    .await;
    for s in ["s1", "s2", "s1", "s3"] {
        assert_eq!(call(&sc, Some(s)).await.status(), 200);
    }
    assert_eq!(idp.requests(), 3, "s1 was reused");
    // s2 was the least recently used when s3 arrived: evicted, exchanged again.
    assert_eq!(call(&sc, Some("s1")).await.status(), 200);
    assert_eq!(idp.requests(), 3);
    assert_eq!(call(&sc, Some("s2")).await.status(), 200);
    assert_eq!(idp.requests(), 4);
    assert_eq!(
        api.seen()[0].header("x-subject-token"),
        Some("s1"),
        "forward_subject_header: true"
    );
    sc.stop().await;
}

/// An IdP that implements refresh-token rotation: each refresh token works once.
async fn rotating_idp() -> (
    std::net::SocketAddr,
    Arc<Mutex<String>>,
    Arc<Mutex<Vec<String>>>,
) {
    let valid = Arc::new(Mutex::new("rt-0".to_string()));
    let presented = Arc::new(Mutex::new(Vec::new()));
    let (v, p) = (valid.clone(), presented.clone());
    let addr = serve(move |req: http::Request<hyper::body::Incoming>| {
        let (valid, presented) = (v.clone(), p.clone());
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let f = form(std::str::from_utf8(&body).unwrap());
            presented.lock().unwrap().push(f.get("refresh_token").cloned().unwrap_or_default());
            let mut current = valid.lock().unwrap();
            let (status, json) = if f.get("grant_type").map(String::as_str) == Some("refresh_token") && f.get("refresh_token") == Some(&*current) {
                let n: u32 = current.trim_start_matches("rt-").parse().unwrap();
                *current = format!("rt-{}", n + 1);
                (200, serde_json::json!({"access_token": format!("at-from-{n}"), "token_type": "Bearer", "expires_in": 1, "refresh_token": *current}))
            } else {
                (400, serde_json::json!({"error": "invalid_grant", "error_description": "refresh token is invalid"}))
            };
            let mut resp = http::Response::new(body_of(json.to_string()));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            resp
        }
    })
    .await;
    (addr, valid, presented)
}

fn body_of(s: String) -> TestBody {
    body(Bytes::from(s))
}

#[tokio::test]
async fn refresh_tokens_rotate_persist_and_survive_a_restart() {
    let (idp, valid, presented) = rotating_idp().await;
    let api = FakeUpstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("user.rt");
    let yaml = format!(
        "providers:\n  user:\n    token_url: http://{idp}/token\n    client_id: app\n    grant_type: refresh_token\n    refresh_token: rt-0\n    refresh_token_store: {}\n    retries: {{ max_attempts: 1 }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: user\n    upstream: {}\n",
        store.display(),
        api.url()
    );
    let client = direct_client();
    {
        let mut bin = Binary::start(&yaml, &[], &[]);
        bin.wait_healthy().await;
        for i in 0..3 {
            let resp = client
                .get(format!("http://{}/api/x", bin.proxy))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert_eq!(
                status,
                200,
                "request {i}: {body}\npresented: {:?}\nlog:\n{}",
                presented.lock().unwrap(),
                bin.stderr()
            );
            if i < 2 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
        }
        bin.signal("TERM");
        assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
        assert!(
            !bin.stderr().contains("rt-1") && !bin.stderr().contains("at-from"),
            "no refresh or access token in the logs"
        );
    }
    let latest = valid.lock().unwrap().clone();
    assert_ne!(latest, "rt-0");
    assert_eq!(
        std::fs::read_to_string(&store).unwrap(),
        latest,
        "the latest rotated token is stored"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let p = presented.lock().unwrap().clone();
    assert!(
        p.windows(2).all(|w| w[0] != w[1]),
        "each refresh token is used once: {p:?}"
    );

    // Restart with the same config (its rt-0 is long invalid): the stored token is used.
    let mut bin = Binary::start(&yaml, &[], &[]);
    bin.wait_healthy().await;
    assert_eq!(
        client
            .get(format!("http://{}/api/x", bin.proxy))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(presented.lock().unwrap().last(), Some(&latest));

    // The IdP revokes everything: invalid_grant is 502 token_rejected (paused 30 s).
    *valid.lock().unwrap() = "rt-revoked".into();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = client
        .get(format!("http://{}/api/x", bin.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-token-sidecar-error"], "token_rejected");
    bin.signal("TERM");
    let _ = bin.wait_exit(Duration::from_secs(15)).await;
    assert!(
        bin.stderr().contains("provide a new refresh_token"),
        "{}",
        bin.stderr()
    );
}

#[tokio::test]
async fn subjects_come_from_the_apps_bearer_header_and_never_leak_into_errors() {
    // An IdP that rejects every exchange and echoes the subject token back.
    let idp = serve(|req: http::Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let f = form(std::str::from_utf8(&body).unwrap());
        let json = serde_json::json!({"error": "invalid_grant", "error_description": format!("subject {} is expired", f["subject_token"])});
        let mut resp = http::Response::new(body_of(json.to_string()));
        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
        resp
    })
    .await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n  obo:\n    token_url: http://{idp}/token\n    client_id: svc\n    client_secret: s3cr3t-client-secret\n    grant_type: token_exchange\n    subject_token_from: {{ header: Authorization }}\n    resource: https://orders.example.com\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: obo\n    upstream: {}\n",
        api.url()
    ))
    .await;
    let resp = direct_client()
        .get(sc.url("/api/x"))
        .header("authorization", "Bearer user-subject-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("invalid_grant") && text.contains("[redacted]"),
        "{text}"
    );
    assert!(
        !text.contains("user-subject-token-123"),
        "the subject token leaked: {text}"
    );
    let status = serde_json::to_string(&sc.admin_json("/status").await).unwrap();
    assert!(!status.contains("user-subject-token-123"), "{status}");
    assert_eq!(api.count(), 0);
    sc.stop().await;
}

#[tokio::test]
async fn the_bearer_prefix_is_stripped_from_an_authorization_subject_and_resource_is_sent() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}    grant_type: token_exchange\n    subject_token_from: {{ header: Authorization }}\n    resource: https://orders.example.com/api\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: obo\n    upstream: {}\n",
        provider_yaml("obo", &idp, ""),
        api.url()
    ))
    .await;
    let resp = direct_client()
        .get(sc.url("/api/x"))
        .header("authorization", "Bearer user-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let f = form(&idp.seen()[0].1);
    assert_eq!(f["subject_token"], "user-jwt");
    assert_eq!(f["resource"], "https://orders.example.com/api");
    assert_eq!(
        api.seen()[0].bearer(),
        Some(idp.issued()[0].as_str()),
        "the exchanged token replaced the app's"
    );
    sc.stop().await;
}

#[tokio::test]
async fn a_rejected_refresh_token_stops_the_retries_and_a_reload_carries_the_rotation() {
    let (idp, valid, presented) = rotating_idp().await;
    let api = FakeUpstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    let yaml = |scope: &str| {
        format!(
            "providers:\n  user:\n    token_url: http://{idp}/token\n    client_id: app\n    grant_type: refresh_token\n    refresh_token: rt-0\n    scopes: [{scope}]\n    retries: {{ max_attempts: 1 }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: user\n    upstream: {}\n",
            api.url()
        )
    };
    std::fs::write(&path, yaml("a")).unwrap();
    let sc = TestSidecar::start_file(&path).await;
    assert_eq!(sc.get_status("/api/x").await, 200);
    // A reload that changes the provider (new scope) continues from rt-1, not rt-0.
    std::fs::write(&path, yaml("b")).unwrap();
    let resp = direct_client()
        .post(sc.admin_url("/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sc.get_status("/api/y").await, 200);
    let p = presented.lock().unwrap().clone();
    assert!(
        !p[1..].contains(&"rt-0".to_string()),
        "the rotated token was carried over: {p:?}"
    );

    // Revoked: one 502, then no more IdP requests (no retry storm on a dead token).
    *valid.lock().unwrap() = "revoked".into();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = direct_client().get(sc.url("/api/z")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let after_failure = presented.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..5 {
        assert_eq!(sc.get_status("/api/z").await, 502);
    }
    assert!(
        presented.lock().unwrap().len() <= after_failure + 1,
        "invalid_grant is not retried: {:?}",
        presented.lock().unwrap()
    );
    sc.stop().await;
}
