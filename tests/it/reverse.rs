//! Reverse-proxy traffic (the app's base URL is the sidecar): upstream, strip_prefix,
//! preserve_host, streamed bodies, h2c, upstream failures.

use crate::support::*;
use bytes::Bytes;
use std::time::Duration;

fn config(idp: &FakeIdp, route_extra: &str) -> String {
    format!("providers:\n{}routes:\n  - match: {{ path_prefix: /crm }}\n    provider: crm\n{route_extra}", provider_yaml("crm", idp, ""))
}

#[tokio::test]
async fn strip_prefix_and_upstream_authority() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&config(
        &idp,
        &format!("    upstream: {}/base\n    strip_prefix: true\n", api.url()),
    ))
    .await;
    let resp = direct_client()
        .get(sc.url("/crm/v1/users?id=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = &api.seen()[0];
    assert_eq!(seen.uri, "/base/v1/users?id=7");
    assert_eq!(
        seen.header("host"),
        Some(api.addr.to_string().as_str()),
        "nginx's default: the upstream's authority"
    );
    assert!(seen.bearer().is_some());
    // Not under the prefix: no route, nothing to forward to.
    let resp = direct_client().get(sc.url("/crmx")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-token-sidecar-error"], "bad_request");
    sc.stop().await;
}

#[tokio::test]
async fn preserve_host_keeps_the_apps_host_header() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    // `app.internal` must be one of the proxy's names: a host-less route answers no
    // other Host (SPEC §4 Browsers, DNS rebinding).
    let yaml = format!(
        "server_names: [app.internal]\n{}",
        config(
            &idp,
            &format!("    upstream: {}\n    preserve_host: true\n", api.url())
        )
    );
    let sc = TestSidecar::start(&yaml).await;
    direct_client()
        .get(sc.url("/crm/x"))
        .header("host", "app.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(api.seen()[0].header("host"), Some("app.internal"));
    assert_eq!(api.seen()[0].uri, "/crm/x");
    sc.stop().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let idp = FakeIdp::builder().run().await;
    let big = Bytes::from(vec![b'z'; 3 << 20]);
    let reply = big.clone();
    let api = FakeUpstream::with(move |_, _| (200, vec![], reply.clone())).await;
    let sc = TestSidecar::start(&config(
        &idp,
        &format!("    upstream: {}\n    max_replay_body: 64KiB\n", api.url()),
    ))
    .await;
    let upload = Bytes::from(
        (0..(2u32 << 20))
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let resp = direct_client()
        .post(sc.url("/crm/upload"))
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), big);
    assert_eq!(api.seen()[0].body, upload);
    sc.stop().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_served() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&config(&idp, &format!("    upstream: {}\n", api.url()))).await;
    let _ = direct_client();
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client.get(sc.url("/crm/plain")).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let resp = client
        .post(sc.url("/crm/pkg.Service/Method"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = api.seen();
    assert!(seen.iter().all(|s| s.bearer().is_some()));
    assert_eq!(
        seen[0].version,
        http::Version::HTTP_11,
        "plain HTTP/2 requests reach an http:// upstream as HTTP/1.1"
    );
    assert_eq!(
        seen[1].version,
        http::Version::HTTP_2,
        "gRPC reaches a plain-http upstream over h2c"
    );
    assert_eq!(seen[1].header("te"), Some("trailers"));
    sc.stop().await;
}

#[tokio::test]
async fn te_is_never_forwarded_for_http1_requests() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&config(&idp, &format!("    upstream: {}\n", api.url()))).await;
    direct_client()
        .get(sc.url("/crm/x"))
        .header("te", "trailers")
        .send()
        .await
        .unwrap();
    assert_eq!(api.seen()[0].header("te"), None);
    sc.stop().await;
}

#[tokio::test]
async fn upstream_refused_and_timed_out() {
    let idp = FakeIdp::builder().run().await;
    let closed = free_port();
    let slow = FakeUpstream::slow(Duration::from_secs(5)).await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n\
         \x20 - match: {{ path_prefix: /down }}\n    provider: crm\n    upstream: http://127.0.0.1:{closed}\n\
         \x20 - match: {{ path_prefix: /slow }}\n    provider: crm\n    upstream: {}\n    upstream_timeout: 300ms\n",
        provider_yaml("crm", &idp, ""),
        slow.url()
    ))
    .await;
    let resp = direct_client().get(sc.url("/down")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.headers()["x-token-sidecar-error"],
        "upstream_unavailable"
    );
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["route"], "/down");
    assert_eq!(v["provider"], "crm");
    let resp = direct_client().get(sc.url("/slow")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-token-sidecar-error"], "upstream_timeout");
    sc.stop().await;
}

fn free_port() -> u16 {
    crate::support::sidecar::free_port()
}
