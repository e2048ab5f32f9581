//! The token lifecycle in real time: background refresh under load, IdP outages, fast
//! failure without a token, and the metrics that show it all.

use crate::support::fake_idp::Reply;
use crate::support::*;
use std::time::Duration;

fn config(idp: &FakeIdp, api: &FakeUpstream, provider_extra: &str) -> String {
    format!(
        "providers:\n{}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n",
        provider_yaml("crm", idp, provider_extra),
        api.url()
    )
}

#[tokio::test]
async fn three_second_tokens_under_fifteen_seconds_of_load_never_expire_on_the_wire() {
    let idp = FakeIdp::builder().ttl(3).run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&config(&idp, &api, "")).await;
    let client = direct_client();
    let start = tokio::time::Instant::now();
    let mut failures = 0;
    let mut requests = 0;
    while start.elapsed() < Duration::from_secs(15) {
        let statuses =
            futures_util::future::join_all((0..4).map(|_| client.get(sc.url("/api/load")).send()))
                .await;
        for r in statuses {
            requests += 1;
            if r.map(|r| r.status() != 200).unwrap_or(true) {
                failures += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        failures, 0,
        "no proxy error and no 401 in {requests} requests"
    );
    // Every token the upstream saw arrived within 3 s of the IdP issuing it.
    let issued = idp.issued();
    let issued_at = idp.issued_at();
    for s in api.seen() {
        let token = s.bearer().expect("every request carried a token");
        let i = issued
            .iter()
            .position(|t| t == token)
            .expect("a token the IdP issued");
        let age = s.at.duration_since(issued_at[i]);
        assert!(
            age < Duration::from_secs(3),
            "a token reached the upstream {age:?} after it was issued"
        );
    }
    // Refresh every 1.35–1.5 s (margin 1.5 s, jitter ≤ 0.15 s): 10–12 fetches in 15 s.
    let fetches = idp.requests();
    assert!(
        (10..=13).contains(&fetches),
        "IdP requests in 15 s of 3 s tokens: {fetches}"
    );
    eprintln!("lifecycle: {requests} requests, {fetches} IdP requests for 3 s tokens over 15 s");
    sc.stop().await;
}

#[tokio::test]
async fn an_idp_outage_shorter_than_the_token_life_is_invisible() {
    // 8 s tokens: refresh at 4 s. The IdP goes down at once and comes back after 5 s.
    let idp = FakeIdp::builder().ttl(8).run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&config(
        &idp,
        &api,
        "    retries: { max_attempts: 2, initial_backoff: 200ms, max_backoff: 1s }\n",
    ))
    .await;
    let client = direct_client();
    assert_eq!(
        client.get(sc.url("/api/x")).send().await.unwrap().status(),
        200
    );
    idp.set_default(Reply::Status(503, r#"{"error":"temporarily_unavailable"}"#));
    let start = tokio::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(7) {
        if start.elapsed() > Duration::from_secs(5) {
            idp.set_default(Reply::Token(Some(8)));
        }
        assert_eq!(
            client.get(sc.url("/api/x")).send().await.unwrap().status(),
            200
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(n > 50);
    let status = sc.admin_json("/status").await;
    assert!(
        status["providers"]["crm"]["failures_total"]
            .as_u64()
            .unwrap()
            >= 1,
        "the refresh failed during the outage"
    );
    assert_eq!(status["providers"]["crm"]["has_token"], true);
    assert_eq!(
        idp.issued().len(),
        2,
        "a new token arrived after the outage"
    );
    sc.stop().await;
}

#[tokio::test]
async fn without_a_token_a_down_idp_gives_fast_503s_with_retry_after() {
    let idp = FakeIdp::builder()
        .always(Reply::Status(503, r#"{"error":"temporarily_unavailable"}"#))
        .run()
        .await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&config(
        &idp,
        &api,
        "    retries: { max_attempts: 1, initial_backoff: 2s, max_backoff: 4s }\n",
    ))
    .await;
    let client = direct_client();
    let mut retry_afters = Vec::new();
    for _ in 0..50 {
        let resp = client.get(sc.url("/api/x")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["x-token-sidecar-error"], "token_unavailable");
        retry_afters.push(
            resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert!(
        retry_afters.iter().all(|r| (1..=4).contains(r)),
        "{retry_afters:?}"
    );
    assert!(
        idp.requests() <= 2,
        "50 requests within the backoff cause no IdP flood: {}",
        idp.requests()
    );
    let status = sc.admin_json("/status").await;
    let crm = &status["providers"]["crm"];
    assert_eq!(crm["state"], "failing");
    assert!(crm["consecutive_failures"].as_u64().unwrap() >= 1);
    assert!(crm["next_attempt_at"].as_str().unwrap().ends_with('Z'));
    let ready = client.get(sc.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "no prefetch provider: ready");
    sc.stop().await;
}

/// A minimal Prometheus text-format parser: (name, labels, value) per sample; panics on
/// any line that is not a comment, blank, or a well-formed sample.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), vec![]),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let labels = body
                    .split("\",")
                    .map(|kv| {
                        let (k, v) = kv
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        samples.push((name, labels, value));
    }
    samples
}

#[tokio::test]
async fn metrics_parse_and_count_the_flow() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, i| {
        if i == 1 {
            (401, vec![], bytes::Bytes::new())
        } else {
            (200, vec![], bytes::Bytes::new())
        }
    })
    .await;
    let closed = crate::support::sidecar::free_port();
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n  - name: down\n    match: {{ path_prefix: /down }}\n    provider: crm\n    upstream: http://127.0.0.1:{closed}\n",
        provider_yaml("crm", &idp, ""),
        api.url()
    ))
    .await;
    let client = direct_client();
    for _ in 0..3 {
        client.get(sc.url("/api/x")).send().await.unwrap();
    }
    assert_eq!(
        client.get(sc.url("/down")).send().await.unwrap().status(),
        502
    );
    assert_eq!(
        client
            .get(sc.url("/nowhere"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let resp = client.get(sc.admin_url("/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&idp.issued()[0]) && !text.contains(CLIENT_SECRET));
    let samples = parse_prometheus(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
    };
    assert_eq!(
        get(
            "token_sidecar_requests_total",
            &[("route", "api"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        get(
            "token_sidecar_requests_total",
            &[("route", "down"), ("status", "502")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "token_sidecar_requests_total",
            &[("route", "-"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "token_sidecar_request_duration_seconds_count",
            &[("route", "api")]
        ),
        3.0
    );
    assert_eq!(
        get(
            "token_sidecar_request_duration_seconds_bucket",
            &[("route", "api"), ("le", "+Inf")]
        ),
        3.0
    );
    assert_eq!(
        get(
            "token_sidecar_token_fetches_total",
            &[("provider", "crm"), ("outcome", "success")]
        ),
        2.0
    );
    assert_eq!(
        get(
            "token_sidecar_token_fetches_total",
            &[("provider", "crm"), ("outcome", "error")]
        ),
        0.0
    );
    assert_eq!(
        get(
            "token_sidecar_token_fetch_duration_seconds_count",
            &[("provider", "crm")]
        ),
        2.0
    );
    let expiry = get(
        "token_sidecar_token_expiry_timestamp_seconds",
        &[("provider", "crm")],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now + 3000.0 && expiry < now + 3700.0, "{expiry}");
    assert_eq!(
        get(
            "token_sidecar_token_replays_total",
            &[("route", "api"), ("outcome", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "token_sidecar_config_reloads_total",
            &[("outcome", "success")]
        ),
        0.0
    );
    assert_eq!(
        get(
            "token_sidecar_upstream_errors_total",
            &[("route", "down"), ("kind", "connect")]
        ),
        1.0
    );
    sc.stop().await;
}
