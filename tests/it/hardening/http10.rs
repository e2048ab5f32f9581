//! SPEC §4 Upstream HTTP/1.0: the app always gets the HTTP version it spoke, with its
//! keep-alive connection kept, whatever version the upstream answered with.

use super::{start, Conn};
use crate::support::{provider_yaml, FakeIdp};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP/1.0 server on raw sockets: one request per connection, then it closes.
/// `/len` answers with a Content-Length, anything else with a body delimited by the close.
async fn http10_upstream(requests: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                requests.fetch_add(1, Ordering::SeqCst);
                let answer: &[u8] = if head.starts_with(b"GET /old/len ") {
                    b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nlen-ok"
                } else {
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close"
                };
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http10_upstream_keeps_the_apps_http11_keep_alive() {
    let idp = FakeIdp::builder().run().await;
    let requests = Arc::new(AtomicUsize::new(0));
    let up = http10_upstream(requests.clone()).await;
    let yaml = format!(
        "providers:\n{}routes:\n  - match: {{ path_prefix: /old }}\n    provider: x\n    upstream: http://{up}\n",
        provider_yaml("x", &idp, "")
    );
    let bin = start(&yaml).await;
    let mut c = Conn::open(bin.proxy).await;
    for (path, body) in [
        ("/old/len", "len-ok"),
        ("/old/eof", "until-close"),
        ("/old/len", "len-ok"),
    ] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
            .await;
        let resp = c.response().await;
        assert_eq!(
            (resp.version.as_str(), resp.status, resp.text().as_str()),
            ("HTTP/1.1", 200, body),
            "{path}: {resp:?}"
        );
        assert!(
            !resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "{path}: {resp:?}"
        );
    }
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    assert!(
        !c.closed_within(std::time::Duration::from_millis(300)).await,
        "the app's keep-alive connection was closed"
    );
}

/// The other direction: an HTTP/1.0 app that asks for keep-alive gets HTTP/1.0 answers
/// from an HTTP/1.1 upstream, on a connection that stays open; without keep-alive the
/// connection closes after the answer, as HTTP/1.0 says. (The release before issue 10
/// passed this; it is a regression.)
#[tokio::test]
async fn an_http10_app_gets_http10_answers_and_its_keep_alive() {
    let idp = FakeIdp::builder().run().await;
    let up = crate::support::FakeUpstream::ok().await;
    let yaml = format!(
        "providers:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: x\n    upstream: {}\n",
        provider_yaml("x", &idp, ""),
        up.url()
    );
    let bin = start(&yaml).await;
    let mut c = Conn::open(bin.proxy).await;
    for _ in 0..2 {
        c.send("GET /api/x HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let resp = c.response().await;
        assert_eq!(
            (resp.version.as_str(), resp.status, resp.text().as_str()),
            ("HTTP/1.0", 200, "ok"),
            "{resp:?}"
        );
    }
    assert!(!c.closed_within(std::time::Duration::from_millis(300)).await);
    let mut once = Conn::open(bin.proxy).await;
    once.send("GET /api/y HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let resp = once.response().await;
    assert_eq!((resp.version.as_str(), resp.status), ("HTTP/1.0", 200));
    assert!(once.closed_within(std::time::Duration::from_secs(2)).await);
    assert_eq!(up.count(), 3);
}
