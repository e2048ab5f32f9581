//! SPEC §4 Limits: nothing a client sends can hold a connection or memory forever.
//! Silent connections (no bytes, only the h2 preface, a head dribbled byte by byte) are
//! closed after `header_read_timeout`, idle keep-alive connections after `idle_timeout`,
//! stalled bodies get 408 after `body_read_timeout`, malformed bodies 400 (never 502),
//! and `max_connections` holds the rest in the backlog. (The replay budget is in
//! `budget.rs`.)
//!
//! Timeouts are 1 s here; "not yet closed" is checked at 0.3 s and "closed" by 3 s.

use super::{assert_refused, start, Conn};
use crate::support::{provider_yaml, FakeIdp, FakeUpstream};
use http::Request;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

const EARLY: Duration = Duration::from_millis(300);
const BY: Duration = Duration::from_secs(3);

/// `limits` (a flow mapping's body), provider `x`, and two host-less routes to `up`:
/// `/api` (replays, so small bodies are buffered) and `/stream` (`retry_on: []`).
fn config(idp: &FakeIdp, up: &FakeUpstream, limits: &str) -> String {
    let limits = match limits {
        "" => String::new(),
        l => format!("limits: {{ {l} }}\n"),
    };
    format!(
        "{limits}providers:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: x\n    upstream: {u}\n  - match: {{ path_prefix: /stream }}\n    provider: x\n    upstream: {u}\n    retry_on: []\n",
        provider_yaml("x", idp, ""),
        u = up.url()
    )
}

const SHORT: &str = "header_read_timeout: 1s, idle_timeout: 1s, body_read_timeout: 1s";

/// Closed by `BY`, but not after `EARLY`.
async fn assert_closed_in_time(c: &mut Conn, what: &str) {
    assert!(!c.closed_within(EARLY).await, "{what}: closed too early");
    assert!(
        c.closed_within(BY - EARLY).await,
        "{what}: still open after {BY:?}"
    );
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// Issue 10, "Silent connections (no bytes, or only the h2 preface) stay open
/// indefinitely".
#[tokio::test]
async fn silent_connections_are_closed_after_header_read_timeout() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, SHORT)).await;
    let mut silent = Conn::open(bin.proxy).await;
    let mut preface = Conn::open(bin.proxy).await;
    preface.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let (a, b) = tokio::join!(
        assert_closed_in_time(&mut silent, "no bytes"),
        assert_closed_in_time(&mut preface, "only the h2 preface"),
    );
    let ((), ()) = (a, b);
    // A head dribbled a byte every 200 ms never completes in time either.
    let mut slow = Conn::open(bin.proxy).await;
    let started = Instant::now();
    let head = get("/api/x");
    let mut closed = false;
    for byte in head.as_bytes() {
        if slow.stream.try_write(std::slice::from_ref(byte)).is_err()
            || slow.closed_within(Duration::from_millis(200)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a head dribbled over {:?} was accepted",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(800) && started.elapsed() < BY,
        "closed after {:?}",
        started.elapsed()
    );
    // The same limits let an ordinary request through.
    let mut ok = Conn::open(bin.proxy).await;
    ok.send(get("/api/x")).await;
    assert_eq!(ok.response().await.status, 200);
}

/// `idle_timeout` closes a keep-alive connection that sends no further request, and
/// leaves one that keeps sending requests alone.
#[tokio::test]
async fn keep_alive_connections_are_closed_when_idle_only() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, SHORT)).await;
    let mut idle = Conn::open(bin.proxy).await;
    idle.send(get("/api/first")).await;
    assert_eq!(idle.response().await.status, 200);
    let mut busy = Conn::open(bin.proxy).await;
    let started = Instant::now();
    let busy_loop = async {
        let mut n = 0;
        while started.elapsed() < Duration::from_millis(3500) {
            busy.send(get("/api/busy")).await;
            assert_eq!(busy.response().await.status, 200, "request {n}");
            n += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(!busy.closed_within(Duration::from_millis(100)).await);
        n
    };
    let (n, ()) = tokio::join!(
        busy_loop,
        assert_closed_in_time(&mut idle, "idle keep-alive")
    );
    assert!(n >= 5, "{n} requests");
}

/// Issue 10, "Memory" and "No deadline applies to a stalled body": a body that stops
/// sending gets 408 `request_timeout` after `body_read_timeout`, whether it was being
/// buffered for a replay (the upstream sees nothing), streamed, or unmatched.
#[tokio::test]
async fn a_stalled_body_gets_408_after_body_read_timeout() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, SHORT)).await;
    let unmatched = format!("http://{}/unmatched", up.addr);
    for path in ["/api/upload", "/stream/upload", &unmatched] {
        let mut c = Conn::open(bin.proxy).await;
        let started = Instant::now();
        c.send(format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n0123456789"
        ))
        .await;
        let resp = c.response().await;
        assert_refused(&resp, 408, "request_timeout");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < BY,
            "{path}: 408 after {took:?}"
        );
        if path == "/api/upload" {
            assert_eq!(up.count(), 0, "a partial replayable body was sent on");
        }
    }
}

/// Issue 10: "a malformed chunked body from the app was reported as a 502 upstream
/// error". It is the app's fault: 400 `bad_request`.
#[tokio::test]
async fn a_malformed_chunked_body_is_a_bad_request() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "")).await;
    for path in ["/api/upload", "/stream/upload"] {
        let mut c = Conn::open(bin.proxy).await;
        c.send(format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz-not-a-size\r\n\r\n"
        ))
        .await;
        assert_refused(&c.response().await, 400, "bad_request");
    }
}

/// `max_connections: 2`: a third connection waits in the backlog, unanswered, until one
/// of the two closes; then it is served.
#[tokio::test]
async fn max_connections_holds_further_connections_in_the_backlog() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "max_connections: 2")).await;
    let mut a = Conn::open(bin.proxy).await;
    let mut b = Conn::open(bin.proxy).await;
    for c in [&mut a, &mut b] {
        c.send(get("/api/x")).await;
        assert_eq!(c.response().await.status, 200);
    }
    let mut third = Conn::open(bin.proxy).await;
    third.send(get("/api/third")).await;
    let early = tokio::time::timeout(Duration::from_millis(700), third.try_response(false)).await;
    assert!(early.is_err(), "a third connection was served: {early:?}");
    // The admin listener has its own connections: probes still answer.
    let health = super::exchange(bin.admin, get("/healthz")).await;
    assert_eq!(health.status, 200);
    drop(a);
    let resp = tokio::time::timeout(BY, third.try_response(false))
        .await
        .expect("not served after one of two connections closed")
        .unwrap();
    assert_eq!(resp.status, 200);
    // The second connection was served throughout.
    b.send(get("/api/y")).await;
    assert_eq!(b.response().await.status, 200);
}

/// `header_read_timeout` holds for every request head, not only the first: a keep-alive
/// connection that dribbles its second head a byte at a time (so that bytes keep moving
/// and `idle_timeout` never sees it idle) is closed too.
#[tokio::test]
async fn a_later_request_head_dribbled_slowly_is_cut_off() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, SHORT)).await;
    let mut c = Conn::open(bin.proxy).await;
    c.send(get("/api/first")).await;
    assert_eq!(c.response().await.status, 200);
    let started = Instant::now();
    let head = format!(
        "GET /api/second HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(64)
    );
    let mut closed = false;
    for byte in head.as_bytes() {
        if c.stream.try_write(std::slice::from_ref(byte)).is_err()
            || c.closed_within(Duration::from_millis(200)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed && started.elapsed() < BY,
        "a dribbled second head kept the connection open for {:?}",
        started.elapsed()
    );
}

/// An h2 connection that made one request and then sends nothing (or, with `pings`,
/// only PING frames): how long it stays open, up to 4 s.
async fn h2_connection_lifetime(proxy: SocketAddr, pings: bool) -> Option<Duration> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let interval = pings.then_some(Duration::from_millis(250));
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(interval)
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://127.0.0.1:{}/api/x", proxy.port()))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(4), conn).await;
    ended.ok().map(|_| started.elapsed())
}

/// `idle_timeout` covers h2 connections without a request too.
#[tokio::test]
async fn an_idle_h2_connection_is_closed() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, SHORT)).await;
    let open_for = h2_connection_lifetime(bin.proxy, false).await;
    assert!(
        open_for.is_some_and(|d| d > EARLY && d < BY),
        "an idle h2 connection stayed open for {open_for:?}"
    );
}

/// An h2 connection with no request that only sends PINGs is idle all the same
/// (otherwise PINGs alone would hold a connection slot forever).
#[tokio::test]
async fn an_h2_connection_kept_busy_by_pings_alone_is_closed_when_idle() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, SHORT)).await;
    let open_for = h2_connection_lifetime(bin.proxy, true).await;
    assert!(
        open_for.is_some_and(|d| d < BY),
        "an h2 connection with no request, only PINGs, stayed open for {open_for:?} (4 s = still open)"
    );
}

/// The HTTP/1.1 counterpart of PINGs: empty lines between requests (which a server
/// skips) are not a request either.
#[tokio::test]
async fn empty_lines_between_requests_do_not_keep_a_connection_open() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, SHORT)).await;
    let mut c = Conn::open(bin.proxy).await;
    c.send(get("/api/first")).await;
    assert_eq!(c.response().await.status, 200);
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(4) {
        if c.stream.try_write(b"\r\n").is_err() || c.closed_within(Duration::from_millis(200)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed && started.elapsed() < BY,
        "empty lines kept the connection open for {:?}",
        started.elapsed()
    );
}

/// SPEC §6: a body that ends early (the app closes its sending side after 10 of 1000
/// bytes) is the app's fault too: 400 `bad_request`, never an upstream error.
#[tokio::test]
async fn a_body_cut_short_is_a_bad_request() {
    use tokio::io::AsyncWriteExt;
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "")).await;
    for path in ["/api/upload", "/stream/upload"] {
        let mut c = Conn::open(bin.proxy).await;
        c.send(format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n0123456789"
        ))
        .await;
        c.stream.shutdown().await.unwrap();
        let resp = c.try_response(false).await;
        match resp {
            Ok(resp) => assert_refused(&resp, 400, "bad_request"),
            Err(e) => panic!("{path}: no answer to a body cut short ({e})"),
        }
    }
}
