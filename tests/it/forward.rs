//! Forward-proxy traffic (`HTTP_PROXY`): absolute-form requests, unmatched policy, and
//! where tokens may go.

use crate::support::*;
use bytes::Bytes;

#[tokio::test]
async fn injects_the_token_and_strips_hop_by_hop_headers() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - match: {{ host: '{}' }}\n    provider: crm\n",
        provider_yaml("crm", &idp, ""),
        api.addr
    ))
    .await;
    let _ = direct_client();
    let client = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::http(format!("http://{}", sc.proxy))
                .unwrap()
                .basic_auth("app", "proxy-password"),
        )
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/v1/items?x=1", api.url()))
        .header("connection", "x-hop")
        .header("x-hop", "must-not-pass")
        .header("keep-alive", "timeout=5")
        .header("te", "gzip")
        .header("x-app", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    let seen = &api.seen()[0];
    assert_eq!(seen.bearer(), Some(idp.issued()[0].as_str()));
    assert_eq!(seen.uri, "/v1/items?x=1");
    assert_eq!(seen.header("host"), Some(api.addr.to_string().as_str()));
    assert_eq!(seen.header("x-app"), Some("kept"));
    for h in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(seen.header(h), None, "{h} reached the upstream");
    }
    sc.stop().await;
}

#[tokio::test]
async fn unmatched_forward_passes_untouched_and_deny_refuses() {
    let idp = FakeIdp::builder().run().await;
    let routed = FakeUpstream::ok().await;
    let other = FakeUpstream::ok().await;
    let base = format!(
        "providers:\n{}routes:\n  - match: {{ host: '{}' }}\n    provider: crm\n",
        provider_yaml("crm", &idp, ""),
        routed.addr
    );
    let sc = TestSidecar::start(&base).await;
    let client = proxied_client(sc.proxy);
    let resp = client
        .get(format!("{}/free", other.url()))
        .header("authorization", "Basic app-own")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        other.seen()[0].header("authorization"),
        Some("Basic app-own"),
        "unmatched traffic is passed untouched"
    );
    assert_eq!(
        idp.requests(),
        0,
        "no token is fetched for unmatched traffic"
    );
    sc.stop().await;

    let sc = TestSidecar::start(&format!("unmatched: deny\n{base}")).await;
    let resp = proxied_client(sc.proxy)
        .get(format!("{}/free", other.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-token-sidecar-error"], "no_route");
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error"], "no_route");
    assert_eq!(
        other.count(),
        1,
        "a denied request never reaches the target"
    );
    sc.stop().await;
}

#[tokio::test]
async fn tokens_go_only_to_the_selected_host_and_redirects_are_passed_back() {
    let idp = FakeIdp::builder().run().await;
    let elsewhere = FakeUpstream::ok().await;
    let target = format!("{}/stolen", elsewhere.url());
    let api =
        FakeUpstream::with(move |_, _| (302, vec![("location", target.clone())], Bytes::new()))
            .await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - match: {{ host: '{}', path_prefix: /api }}\n    provider: crm\n",
        provider_yaml("crm", &idp, ""),
        api.addr
    ))
    .await;
    let client = proxied_client(sc.proxy);
    let resp = client
        .get(format!("{}/api/x", api.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "the redirect reaches the app");
    assert_eq!(
        resp.headers()["location"],
        format!("{}/stolen", elsewhere.url())
    );
    assert_eq!(elsewhere.count(), 0, "the proxy never follows a redirect");
    // Same host, path outside the route: no token.
    client
        .get(format!("{}/public", api.url()))
        .send()
        .await
        .unwrap();
    assert!(api.seen()[1].header("authorization").is_none());
    // The app following the redirect itself gets no token either.
    client
        .get(format!("{}/stolen", elsewhere.url()))
        .send()
        .await
        .unwrap();
    assert!(elsewhere.seen()[0].header("authorization").is_none());
    sc.stop().await;
}

#[tokio::test]
async fn header_prefix_overwrite_and_methods_follow_the_route() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n\
         \x20 - match: {{ host: '{a}', path_prefix: /raw }}\n    provider: crm\n    header: X-Api-Token\n    value_prefix: ''\n\
         \x20 - match: {{ host: '{a}', path_prefix: /keep }}\n    provider: crm\n    overwrite: false\n\
         \x20 - match: {{ host: '{a}', methods: [POST] }}\n    provider: crm\n",
        provider_yaml("crm", &idp, ""),
        a = api.addr
    ))
    .await;
    let client = proxied_client(sc.proxy);
    client
        .get(format!("{}/raw", api.url()))
        .send()
        .await
        .unwrap();
    client
        .get(format!("{}/keep", api.url()))
        .header("authorization", "Bearer app-token")
        .send()
        .await
        .unwrap();
    client
        .get(format!("{}/keep", api.url()))
        .send()
        .await
        .unwrap();
    client
        .get(format!("{}/other", api.url()))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{}/other", api.url()))
        .body("x")
        .send()
        .await
        .unwrap();
    let token = idp.issued()[0].clone();
    let seen = api.seen();
    assert_eq!(seen[0].header("x-api-token"), Some(token.as_str()));
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(
        seen[1].header("authorization"),
        Some("Bearer app-token"),
        "overwrite: false keeps the app's header"
    );
    assert_eq!(
        seen[2].bearer(),
        Some(token.as_str()),
        "overwrite: false still injects when the app sent none"
    );
    assert_eq!(
        seen[3].header("authorization"),
        None,
        "GET is not in methods"
    );
    assert_eq!(seen[4].bearer(), Some(token.as_str()));
    sc.stop().await;
}

#[tokio::test]
async fn routed_connect_without_interception_is_refused_and_others_tunnel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = FakeIdp::builder().run().await;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
    });
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - match: {{ host: api.example.com }}\n    provider: crm\n",
        provider_yaml("crm", &idp, "")
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        head.contains("tls_not_intercepted") && head.contains("TLS"),
        "{head}"
    );

    let mut s = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(format!("CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello", "blind tunnel passes bytes unchanged");
    sc.stop().await;
}

#[tokio::test]
async fn credentials_in_the_target_url_reach_neither_errors_nor_upstreams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let base = format!(
        "providers:\n{}routes:\n  - match: {{ host: api.example.com }}\n    provider: crm\n",
        provider_yaml("crm", &idp, "")
    );
    for (policy, want) in [("deny", "403"), ("forward", "200")] {
        let sc = TestSidecar::start(&format!("unmatched: {policy}\n{base}")).await;
        let mut s = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
        let req = format!(
            "GET http://user:hunter2@{}/z HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            api.addr, api.addr
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with(&format!("HTTP/1.1 {want}")), "{resp}");
        assert!(!resp.contains("hunter2"), "{resp}");
        sc.stop().await;
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("host"), Some(api.addr.to_string().as_str()));
}
