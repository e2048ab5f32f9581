//! SPEC §4 Plaintext HTTP inside CONNECT: a client that opens a CONNECT tunnel to a
//! routed host and then speaks plain HTTP/1.1 or h2c (prior knowledge) inside gets its
//! requests routed, injected and replayed as `http://authority/path`; TLS that cannot be
//! intercepted is closed and counted; unrouted and `intercept: false` tunnels stay blind.

use crate::support::tls::TestCa;
use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A sidecar with one route for `api` (no `upstream`: requests go where the tunnel says).
async fn sidecar(idp: &FakeIdp, api: SocketAddr, top: &str, route_extra: &str) -> TestSidecar {
    TestSidecar::start(&format!(
        "{top}providers:\n{}routes:\n  - name: api\n    match: {{ host: '{api}' }}\n    provider: crm\n{route_extra}",
        provider_yaml("crm", idp, "")
    ))
    .await
}

/// Opens a CONNECT tunnel to `authority` through `proxy` and returns the stream after
/// the `200`.
async fn tunnel(proxy: SocketAddr, authority: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    s
}

/// Reads an HTTP/1.1 response head (lowercased).
async fn read_head(s: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut byte))
            .await
            .expect("a response head")
            .unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

/// Reads a `content-length` response body after `head`.
async fn read_body(s: &mut (impl AsyncRead + Unpin), head: &str) -> String {
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}

/// Waits (bounded) until the peer closes `s`; true when it did.
async fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn metrics(sc: &TestSidecar) -> String {
    direct_client()
        .get(sc.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn http1_inside_connect_is_routed_and_injected() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = sidecar(&idp, api.addr, "", "").await;
    let mut s = tunnel(sc.proxy, &api.addr.to_string()).await;
    // Two requests on the one tunnel (keep-alive), the Host header naming another host:
    // the tunnel's authority is the target.
    for path in ["/v1/a?x=1", "/v1/b"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(read_body(&mut s, &head).await, "ok");
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    let token = idp.issued()[0].clone();
    for (s, path) in seen.iter().zip(["/v1/a?x=1", "/v1/b"]) {
        assert_eq!(s.bearer(), Some(token.as_str()));
        assert_eq!(s.uri, path);
        assert_eq!(s.header("host"), Some(api.addr.to_string().as_str()));
    }
    let m = metrics(&sc).await;
    assert!(
        m.contains("token_sidecar_tunnels_total{kind=\"plaintext\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("token_sidecar_requests_total{route=\"api\",status=\"200\"} 2"),
        "{m}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn curl_proxytunnel_to_an_http_url_is_injected() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, _| (200, vec![], Bytes::from_static(b"via curl"))).await;
    let sc = sidecar(&idp, api.addr, "", "").await;
    let (proxy, url) = (sc.proxy, format!("{}/curl/x", api.url()));
    let curl = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--noproxy", "", "-p", "-x"])
            .arg(format!("http://{proxy}"))
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        curl.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "via curl");
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].bearer(), Some(idp.issued()[0].as_str()));
    assert_eq!(seen[0].uri, "/curl/x");
    let m = metrics(&sc).await;
    assert!(
        m.contains("token_sidecar_tunnels_total{kind=\"plaintext\"} 1"),
        "curl used a tunnel, not absolute-form: {m}"
    );
    sc.stop().await;
}

/// h2c with prior knowledge inside the tunnel, several streams at once; with
/// `tls_intercept` configured too (the first bytes decide, not the config).
#[tokio::test]
async fn h2c_inside_connect_carries_concurrent_streams() {
    let sidecar_ca = TestCa::new("sidecar CA");
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|s, _| (200, vec![], Bytes::from(s.uri.clone()))).await;
    let sc = sidecar(&idp, api.addr, &sidecar_ca.intercept_yaml(), "").await;
    let s = tunnel(sc.proxy, &api.addr.to_string()).await;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .expect("an h2c handshake inside the tunnel");
    tokio::spawn(conn);
    let calls = (0..5).map(|i| {
        let mut sender = sender.clone();
        async move {
            let req = http::Request::get(format!("http://ignored.test/h2/{i}"))
                .body(body(""))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            assert_eq!(resp.status(), 200);
            let text = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(text, format!("/h2/{i}"));
        }
    });
    futures_util::future::join_all(calls).await;
    let seen = api.seen();
    assert_eq!(seen.len(), 5);
    let token = idp.issued()[0].clone();
    assert!(seen.iter().all(|s| s.bearer() == Some(token.as_str())));
    let m = metrics(&sc).await;
    assert!(
        m.contains("token_sidecar_tunnels_total{kind=\"plaintext\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("token_sidecar_tunnels_total{kind=\"intercepted\"} 0"),
        "{m}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn a_401_inside_a_plain_tunnel_is_renewed_and_replayed() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::with(|_, i| match i {
        0 => (401, vec![], Bytes::new()),
        _ => (200, vec![], Bytes::from_static(b"second time")),
    })
    .await;
    let sc = sidecar(&idp, api.addr, "", "").await;
    let mut s = tunnel(sc.proxy, &api.addr.to_string()).await;
    s.write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\norder-1")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(read_body(&mut s, &head).await, "second time");
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].bearer(), seen[1].bearer(), "a renewed token");
    assert_eq!(seen[1].bearer(), Some(idp.issued()[1].as_str()));
    assert_eq!(seen[1].body, Bytes::from_static(b"order-1"));
    sc.stop().await;
}

/// SPEC §4 Plaintext holds inside the tunnel: no token over plain http to a host that
/// is not loopback.
#[tokio::test]
async fn plain_http_to_a_remote_host_inside_a_tunnel_is_refused() {
    let idp = FakeIdp::builder().run().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - match: {{ host: api.example.com }}\n    provider: crm\n",
        provider_yaml("crm", &idp, "")
    ))
    .await;
    // Port 80 is where a route without a port names http://api.example.com.
    let mut s = tunnel(sc.proxy, "api.example.com:80").await;
    s.write_all(b"GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(
        head.contains("x-token-sidecar-error: insecure_destination"),
        "{head}"
    );
    sc.stop().await;
}

/// A one-connection echo server that records what it received.
async fn echo_server() -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
        let _ = tx.send(buf[..n].to_vec());
    });
    (addr, rx)
}

/// Plain HTTP in a tunnel that no intercepting route names passes untouched: unrouted
/// authorities, and routes with `intercept: false`.
#[tokio::test]
async fn unrouted_and_intercept_false_tunnels_stay_blind() {
    let idp = FakeIdp::builder().run().await;
    let request = b"GET /plain HTTP/1.1\r\nHost: somewhere\r\n\r\n";
    for intercept in [None, Some(false)] {
        let (echo, received) = echo_server().await;
        let sc = match intercept {
            None => {
                let other = FakeUpstream::ok().await;
                sidecar(&idp, other.addr, "", "").await
            }
            Some(_) => sidecar(&idp, echo, "", "    intercept: false\n").await,
        };
        let mut s = tunnel(sc.proxy, &echo.to_string()).await;
        s.write_all(request).await.unwrap();
        let mut back = vec![0u8; request.len()];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, request, "echoed through a blind tunnel");
        assert_eq!(
            received.await.unwrap(),
            request,
            "the bytes arrived untouched, without a token ({intercept:?})"
        );
        let m = metrics(&sc).await;
        assert!(
            m.contains("token_sidecar_tunnels_total{kind=\"blind\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("token_sidecar_tunnels_total{kind=\"plaintext\"} 0"),
            "{m}"
        );
        sc.stop().await;
    }
    assert_eq!(idp.requests(), 0);
}

/// A TLS ClientHello's first bytes (record header and the start of the handshake).
const CLIENT_HELLO_START: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
];

#[tokio::test]
async fn tls_without_tls_intercept_on_a_non_443_port_is_closed_and_counted() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = sidecar(&idp, api.addr, "", "").await;
    let mut s = tunnel(sc.proxy, &api.addr.to_string()).await;
    s.write_all(CLIENT_HELLO_START).await.unwrap();
    assert!(closed_by_peer(&mut s, Duration::from_secs(10)).await);
    assert_eq!(api.count(), 0, "nothing reached the upstream");
    let m = metrics(&sc).await;
    assert!(
        m.contains("token_sidecar_tunnels_refused_total{reason=\"tls_not_intercepted\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("token_sidecar_tunnels_total{kind=\"plaintext\"} 0"),
        "{m}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn a_tunnel_that_sends_nothing_is_closed_after_header_read_timeout() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let sc = sidecar(&idp, api.addr, "limits: { header_read_timeout: 1s }\n", "").await;
    let mut s = tunnel(sc.proxy, &api.addr.to_string()).await;
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(15)).await,
        "a silent tunnel is closed"
    );
    let m = metrics(&sc).await;
    assert!(
        m.contains("token_sidecar_tunnels_refused_total{reason=\"header_read_timeout\"} 1"),
        "{m}"
    );
    // Bytes that never complete a request head count too: HTTP/1.1 inside is held to
    // what is left of header_read_timeout.
    let mut s = tunnel(sc.proxy, &api.addr.to_string()).await;
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(15)).await,
        "a dribbled head is cut off"
    );
    assert_eq!(api.count(), 0);
    sc.stop().await;
}

/// The same for an IPv6 literal: `CONNECT [::1]:port`, plain HTTP/1.1 inside, routed by
/// the bracketed authority and injected; the request reaches `[::1]` with that Host.
#[tokio::test]
async fn http1_inside_a_connect_to_an_ipv6_literal() {
    let idp = FakeIdp::builder().run().await;
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .map(|v| v.to_str().unwrap().to_string())
                    };
                    record
                        .lock()
                        .unwrap()
                        .push((header("host"), header("authorization")));
                    async { Ok::<_, std::convert::Infallible>(http::Response::new(body("v6"))) }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
            );
        }
    });
    let sc = sidecar(&idp, api, "", "").await;
    let mut s = tunnel(sc.proxy, &api.to_string()).await;
    s.write_all(b"GET /v6 HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(read_body(&mut s, &head).await, "v6");
    assert_eq!(
        *seen.lock().unwrap(),
        [(
            Some(api.to_string()),
            Some(format!("Bearer {}", idp.issued()[0]))
        )]
    );
    sc.stop().await;
}

/// SIGTERM while a request inside a CONNECT tunnel is in flight (real binary, two
/// workers): the request finishes within `shutdown_grace` like one on the listener, then
/// the process exits 0. The tunnel left the listener's graceful watch with its `200`.
#[tokio::test]
async fn sigterm_lets_a_request_inside_a_tunnel_finish() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::slow(Duration::from_millis(1500)).await;
    let yaml = format!(
        "workers: 2\nshutdown_grace: 8s\nproviders:\n{}routes:\n  - name: api\n    match: {{ host: '{}' }}\n    provider: crm\n",
        provider_yaml("crm", &idp, ""),
        api.addr
    );
    let mut bin = crate::support::sidecar::Binary::start(&yaml, &[], &[]);
    bin.wait_healthy().await;
    let mut s = tunnel(bin.proxy, &api.addr.to_string()).await;
    s.write_all(format!("GET /slow HTTP/1.1\r\nHost: {}\r\n\r\n", api.addr).as_bytes())
        .await
        .unwrap();
    assert_eq!(api.wait_count(1).await, 1, "the request is upstream");
    bin.signal("TERM");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(read_body(&mut s, &head).await, "slow ok");
    assert!(
        api.seen()[0].bearer().is_some(),
        "injected inside the tunnel"
    );
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(5)).await,
        "the tunnel closes once its request is done"
    );
    bin.assert_exited_cleanly().await;
}
