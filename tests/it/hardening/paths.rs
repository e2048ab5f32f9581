//! SPEC §4 Paths, Ports and Plaintext: what a request may name. Raw bytes, so that no
//! client normalises `..` or `%2e` before the proxy sees them.

use super::{assert_refused, connect, exchange, start};
use crate::support::{provider_yaml, FakeIdp, FakeUpstream};

/// Issue 10, "Paths": `/v2/../admin` and its encoded forms were forwarded with the `/v2`
/// route's token (and, with `strip_prefix`, escaped the upstream's base path). Now 400
/// `bad_request` before routing: no token is fetched and the upstream sees nothing.
#[tokio::test]
async fn dot_segments_and_encoded_slashes_are_refused_before_routing() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let yaml = format!(
        "unmatched: deny\nproviders:\n{}routes:\n  - match: {{ path_prefix: /v2 }}\n    provider: x\n    upstream: {u}/base\n    strip_prefix: true\n  - match: {{ host: api.test, path_prefix: /v2 }}\n    provider: x\n    upstream: {u}/base\n    strip_prefix: true\n",
        provider_yaml("x", &idp, ""),
        u = up.url()
    );
    let bin = start(&yaml).await;
    let origin_host = format!("127.0.0.1:{}", bin.proxy.port());
    for path in [
        "/v2/../admin",
        "/v2/%2e%2e/admin",
        "/v2/%2E%2e/admin",
        "/v2/.%2e/admin",
        "/v2/..%2fadmin",
        "/v2%2f..%2fadmin",
        "/v2/a%5c..%5cadmin",
        "/v2/a%5Cb",
        "/v2/./admin",
        "/v2/..",
    ] {
        for (target, host) in [
            (path.to_string(), origin_host.as_str()),
            (format!("http://api.test{path}"), "api.test"),
        ] {
            let resp = exchange(
                bin.proxy,
                format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            )
            .await;
            assert_refused(&resp, 400, "bad_request");
        }
    }
    assert_eq!(
        up.count(),
        0,
        "a refused path reached the upstream: {:?}",
        up.seen()
    );
    assert_eq!(idp.requests(), 0, "a token was fetched for a refused path");
    // Dots inside a segment, and in the query, are not dot segments.
    for target in ["/v2/.well-known/x", "/v2/a..b", "/v2/x?next=/../admin"] {
        let resp = exchange(
            bin.proxy,
            format!("GET {target} HTTP/1.1\r\nHost: {origin_host}\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 200, "{target}: {resp:?}");
    }
    let seen: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(
        seen,
        [
            "/base/.well-known/x",
            "/base/a..b",
            "/base/x?next=/../admin"
        ]
    );
}

/// Issue 10: "a host without a port matched every port". Now `match.host` without a port
/// matches only the scheme's default: 80 for plain http, 443 for CONNECT.
#[tokio::test]
async fn a_host_without_a_port_matches_only_the_default_port() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let yaml = format!(
        "unmatched: deny\nproviders:\n{}routes:\n  - match: {{ host: api.test }}\n    provider: x\n    upstream: {}\n",
        provider_yaml("x", &idp, ""),
        up.url()
    );
    let bin = start(&yaml).await;
    for authority in ["api.test", "api.test:80", "API.test"] {
        let resp = exchange(
            bin.proxy,
            format!("GET http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 200, "{authority}: {resp:?}");
    }
    assert_eq!(up.count(), 3);
    assert!(up.seen().iter().all(|s| s.bearer().is_some()));
    for authority in ["api.test:8080", "api.test:443", "api.test:1"] {
        let resp = exchange(
            bin.proxy,
            format!("GET http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
        )
        .await;
        assert_refused(&resp, 403, "no_route");
    }
    assert_eq!(up.count(), 3, "another port reached the route's upstream");
    // CONNECT's default port is 443: api.test:443 is the route's host (and cannot be
    // injected without tls_intercept), api.test:8443 is not.
    assert_refused(
        &connect(bin.proxy, "api.test:443").await,
        403,
        "tls_not_intercepted",
    );
    assert_refused(&connect(bin.proxy, "api.test:8443").await, 403, "no_route");
}

/// SPEC §4 Ports: `host:8443` matches that port only, `host:*` any port.
#[tokio::test]
async fn explicit_ports_and_any_port() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let yaml = format!(
        "unmatched: deny\nproviders:\n{}routes:\n  - match: {{ host: 'any.test:*' }}\n    provider: x\n    upstream: {u}\n  - match: {{ host: alt.test:8443 }}\n    provider: x\n    upstream: {u}\n",
        provider_yaml("x", &idp, ""),
        u = up.url()
    );
    let bin = start(&yaml).await;
    let ask = |authority: &str| {
        let raw = format!("GET http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        exchange(bin.proxy, raw)
    };
    for authority in ["any.test", "any.test:8080", "any.test:1", "alt.test:8443"] {
        let resp = ask(authority).await;
        assert_eq!(resp.status, 200, "{authority}: {resp:?}");
    }
    for authority in ["alt.test", "alt.test:8444", "other.test:8443"] {
        assert_refused(&ask(authority).await, 403, "no_route");
    }
    assert_eq!(up.count(), 4);
}

/// Issue 10: "a route without `upstream` sent the token over plain http to any host".
/// Now 403 `insecure_destination`, refused before any lookup or connection; loopback
/// destinations need no opt-in.
#[tokio::test]
async fn a_token_never_travels_over_plain_http_to_another_host() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let port = up.addr.port();
    let yaml = format!(
        "unmatched: deny\nproviders:\n{}routes:\n  - match: {{ host: api.example.invalid }}\n    provider: x\n  - match: {{ host: api.example.invalid:8080 }}\n    provider: x\n  - match: {{ host: 127.0.0.1:{port} }}\n    provider: x\n  - match: {{ host: localhost:{port} }}\n    provider: x\n",
        provider_yaml("x", &idp, ""),
    );
    let bin = start(&yaml).await;
    for authority in ["api.example.invalid", "api.example.invalid:8080"] {
        let resp = exchange(
            bin.proxy,
            format!("POST http://{authority}/pay HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 2\r\n\r\n{{}}"),
        )
        .await;
        assert_refused(&resp, 403, "insecure_destination");
    }
    // Loopback destinations get their token over plain http.
    for authority in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let resp = exchange(
            bin.proxy,
            format!("GET http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 200, "{authority}: {resp:?}");
    }
    assert_eq!(up.count(), 2);
    assert!(up.seen().iter().all(|s| s.bearer().is_some()));
}

/// `allow_http: true` is the route's opt-in: the request goes on. (The name does not
/// resolve, so it ends in 502 `upstream_unavailable`: past the plaintext check.)
#[tokio::test]
async fn allow_http_lets_a_route_send_its_token_over_plain_http() {
    let idp = FakeIdp::builder().run().await;
    let yaml = format!(
        "unmatched: deny\nproviders:\n{}routes:\n  - match: {{ host: open.example.invalid }}\n    provider: x\n    allow_http: true\n",
        provider_yaml("x", &idp, ""),
    );
    let bin = start(&yaml).await;
    let resp = exchange(
        bin.proxy,
        "GET http://open.example.invalid/x HTTP/1.1\r\nHost: open.example.invalid\r\n\r\n",
    )
    .await;
    assert_refused(&resp, 502, "upstream_unavailable");
    assert_eq!(idp.requests(), 1, "the route fetched its token");
}

/// RFC 9112 §3.2: an HTTP/1.1 request with two `Host` headers (which one would the routes,
/// the browser checks and the upstream read?) or without one is 400 `bad_request`, with
/// no token fetched and nothing forwarded. HTTP/1.0 needs no Host.
#[tokio::test]
async fn http11_requests_with_two_host_headers_or_none_are_refused() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let yaml = format!(
        "providers:\n{}routes:\n  - match: {{ path_prefix: /v2 }}\n    provider: x\n    upstream: {u}\n  - match: {{ host: api.test }}\n    provider: x\n    upstream: {u}\n",
        provider_yaml("x", &idp, ""),
        u = up.url()
    );
    let bin = start(&yaml).await;
    let own = format!("127.0.0.1:{}", bin.proxy.port());
    for raw in [
        format!("GET /v2/x HTTP/1.1\r\nHost: {own}\r\nHost: evil.test\r\n\r\n"),
        "GET http://api.test/x HTTP/1.1\r\nHost: api.test\r\nHost: other.test\r\n\r\n".into(),
        "GET /v2/x HTTP/1.1\r\n\r\n".to_string(),
        "GET http://api.test/x HTTP/1.1\r\n\r\n".to_string(),
    ] {
        let resp = exchange(bin.proxy, raw.clone()).await;
        assert_refused(&resp, 400, "bad_request");
    }
    assert_eq!(up.count(), 0, "{:?}", up.seen());
    assert_eq!(idp.requests(), 0);
    // One Host, or HTTP/1.0 without one: served.
    for raw in [
        format!("GET /v2/x HTTP/1.1\r\nHost: {own}\r\n\r\n"),
        "GET /v2/x HTTP/1.0\r\n\r\n".to_string(),
    ] {
        let resp = exchange(bin.proxy, raw.clone()).await;
        assert_eq!(resp.status, 200, "{raw:?}: {resp:?}");
    }
}
