//! SPEC §4 Browsers: a web page must not borrow the sidecar's tokens. Issue 10: host-less
//! routes accepted any `Host` and any `Origin`, so a page could make a developer's sidecar
//! POST with the token (CSRF, DNS rebinding).
//!
//! Refused requests are sent first: a refusal comes before the token, so the IdP is
//! still untouched when they are done.

use super::{assert_refused, exchange, start};
use crate::support::{provider_yaml, FakeIdp, FakeUpstream};
use std::net::SocketAddr;

/// A reverse-proxy route `/api` (no `match.host`) to `up`, and `extra` routes.
fn config(idp: &FakeIdp, up: &FakeUpstream, top: &str, extra: &str) -> String {
    format!(
        "{top}providers:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: x\n    upstream: {u}\n{extra}",
        provider_yaml("x", idp, ""),
        u = up.url()
    )
}

async fn post(proxy: SocketAddr, path: &str, host: &str, headers: &str) -> super::Resp {
    exchange(
        proxy,
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 2\r\n\r\n{{}}"),
    )
    .await
}

#[tokio::test]
async fn cross_site_and_same_site_fetches_are_refused() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "", "")).await;
    let host = format!("127.0.0.1:{}", bin.proxy.port());
    for site in ["cross-site", "same-site", "Cross-Site"] {
        let resp = post(
            bin.proxy,
            "/api/pay",
            &host,
            &format!("Sec-Fetch-Site: {site}\r\n"),
        )
        .await;
        assert_refused(&resp, 403, "browser_request_forbidden");
    }
    assert_eq!((up.count(), idp.requests()), (0, 0));
    for site in ["same-origin", "none"] {
        let resp = post(
            bin.proxy,
            "/api/pay",
            &host,
            &format!("Sec-Fetch-Site: {site}\r\n"),
        )
        .await;
        assert_eq!(resp.status, 200, "{site}: {resp:?}");
    }
    assert_eq!(up.count(), 2);
}

/// An `Origin` header is a browser's cross-origin request; a route lists the origins it
/// serves in `allowed_origins` (default none).
#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "", "")).await;
    let host = format!("127.0.0.1:{}", bin.proxy.port());
    for origin in ["https://evil.test", "null", &format!("http://{host}")] {
        let resp = post(
            bin.proxy,
            "/api/pay",
            &host,
            &format!("Origin: {origin}\r\n"),
        )
        .await;
        assert_refused(&resp, 403, "browser_request_forbidden");
    }
    assert_eq!((up.count(), idp.requests()), (0, 0));
    // No Origin at all (not a browser's cross-origin request) passes.
    assert_eq!(post(bin.proxy, "/api/pay", &host, "").await.status, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn allowed_origins_lists_the_origins_that_may_use_a_route() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let app = format!(
        "  - match: {{ path_prefix: /app }}\n    provider: x\n    upstream: {}\n    allowed_origins: ['https://app.test', 'http://localhost:3000']\n",
        up.url()
    );
    let bin = start(&config(&idp, &up, "", &app)).await;
    let host = format!("127.0.0.1:{}", bin.proxy.port());
    for (path, origin) in [
        ("/api/pay", "https://app.test"),
        ("/app/pay", "https://evil.test"),
        ("/app/pay", "http://app.test"),
        ("/app/pay", "https://app.test.evil.test"),
        ("/app/pay", "http://localhost:3001"),
        ("/app/pay", "null"),
    ] {
        let resp = post(bin.proxy, path, &host, &format!("Origin: {origin}\r\n")).await;
        assert_refused(&resp, 403, "browser_request_forbidden");
    }
    assert_eq!((up.count(), idp.requests()), (0, 0));
    for origin in [
        "https://app.test",
        "https://APP.test:443",
        "http://localhost:3000",
    ] {
        let resp = post(
            bin.proxy,
            "/app/pay",
            &host,
            &format!("Origin: {origin}\r\n"),
        )
        .await;
        assert_eq!(resp.status, 200, "{origin}: {resp:?}");
    }
    assert_eq!(up.count(), 3);
}

/// DNS rebinding: a page on `evil.test`, whose name now resolves to 127.0.0.1, sends its
/// requests with `Host: evil.test`. A route without `match.host` answers only the
/// proxy's own names: loopback names and addresses, and the `listen` address.
#[tokio::test]
async fn a_host_less_route_answers_only_the_proxys_own_names() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "", "")).await;
    let port = bin.proxy.port();
    for host in [
        "evil.test".to_string(),
        format!("evil.test:{port}"),
        "127.0.0.1.evil.test".to_string(),
        "localhost.evil.test".to_string(),
    ] {
        let resp = post(bin.proxy, "/api/pay", &host, "").await;
        assert_refused(&resp, 403, "browser_request_forbidden");
    }
    assert_eq!((up.count(), idp.requests()), (0, 0));
    let allowed = [
        format!("localhost:{port}"),
        "localhost".to_string(),
        "LocalHost".to_string(),
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    for host in &allowed {
        let resp = post(bin.proxy, "/api/pay", host, "").await;
        assert_eq!(resp.status, 200, "Host: {host}: {resp:?}");
    }
    assert_eq!(up.count(), allowed.len());
}

/// `server_names` adds the names a host-less route answers to (the chart lists its
/// Service names there), and only those.
#[tokio::test]
async fn server_names_are_the_proxys_own_names_too() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "server_names: [sidecar.internal]\n", "")).await;
    let port = bin.proxy.port();
    for host in [
        "sidecar.internal.evil.test",
        "evil.sidecar.internal",
        "evil.test",
    ] {
        let resp = post(bin.proxy, "/api/pay", host, "").await;
        assert_refused(&resp, 403, "browser_request_forbidden");
    }
    assert_eq!(up.count(), 0);
    for host in [
        "sidecar.internal".to_string(),
        format!("Sidecar.Internal:{port}"),
    ] {
        let resp = post(bin.proxy, "/api/pay", &host, "").await;
        assert_eq!(resp.status, 200, "Host: {host}: {resp:?}");
    }
    assert_eq!(up.count(), 2);
}
