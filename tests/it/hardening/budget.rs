//! SPEC §4 Limits, `max_buffered_bodies`: all replay buffers together hold at most this
//! many bytes; past it, bodies stream and are not replayable. Issue 10, "Memory": replay
//! buffers were unbounded (150 stalled 1 MiB bodies took RSS from 25 to 183 MB).

use super::{start, Conn, Resp};
use crate::support::{body, provider_yaml, serve, FakeIdp, TestBody};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Requests by path, and the bearer token each carried.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn count(log: &Log, path: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .count()
}

/// `max_buffered_bodies: 1KiB`, providers `p1`..`p3` (each its own token, so that one
/// provider's rejection never holds back another's replay) and routes `/{p}` to `up`.
fn budget_config(idp: &FakeIdp, up: SocketAddr) -> String {
    let mut yaml = String::from("limits: { max_buffered_bodies: 1KiB }\nproviders:\n");
    for p in ["p1", "p2", "p3"] {
        yaml += &provider_yaml(p, idp, &format!("    scopes: [{p}]\n"));
    }
    yaml += "routes:\n";
    for p in ["p1", "p2", "p3"] {
        yaml += &format!(
            "  - match: {{ path_prefix: /{p} }}\n    provider: {p}\n    upstream: http://{up}\n    retry_on: [401]\n"
        );
    }
    yaml
}

async fn post(proxy: SocketAddr, path: &str, size: usize) -> Resp {
    let mut c = Conn::open(proxy).await;
    c.send(format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n{}",
        "b".repeat(size)
    ))
    .await;
    c.response().await
}

/// Issue 10, "Memory": replay buffers were unbounded. With `max_buffered_bodies: 1KiB`
/// a 2 KiB body is streamed and so not replayed after a 401 (one upstream request, the
/// 401 goes back), while a 500-byte body is buffered and replayed with a new token.
#[tokio::test]
async fn bodies_past_the_replay_budget_stream_and_are_not_replayed() {
    let idp = FakeIdp::builder().run().await;
    let log: Log = Arc::default();
    let addr = rejecting_upstream(log.clone(), None).await;
    let bin = start(&budget_config(&idp, addr)).await;
    let resp = post(bin.proxy, "/p1/big", 2048).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    assert_eq!(
        count(&log, "/p1/big"),
        1,
        "a body over the budget was replayed"
    );
    let resp = post(bin.proxy, "/p2/small", 500).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(count(&log, "/p2/small"), 2);
    let tokens: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/p2/small")
        .map(|(_, t)| t.clone())
        .collect();
    assert_ne!(
        tokens[0], tokens[1],
        "the replay carried the rejected token"
    );
}

/// The budget is shared and given back: while one 600-byte body is held (its first
/// attempt waits at the upstream), another 600-byte body does not fit in 1 KiB and is not
/// replayed; once the first request is done, a third 600-byte body is replayed again.
#[tokio::test]
async fn a_held_replay_buffer_counts_against_the_budget_until_released() {
    let idp = FakeIdp::builder().run().await;
    let log: Log = Arc::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let addr = rejecting_upstream(log.clone(), Some(gate.clone())).await;
    let bin = start(&budget_config(&idp, addr)).await;
    let held = tokio::spawn(post(bin.proxy, "/p1/held", 600));
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&log, "/p1/held") == 0 {
        assert!(Instant::now() < deadline, "the held request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = post(bin.proxy, "/p2/while-held", 600).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    assert_eq!(count(&log, "/p2/while-held"), 1, "replayed past the budget");
    gate.notify_one();
    let resp = held.await.unwrap();
    assert_eq!(
        resp.status, 200,
        "the held request was not replayed: {resp:?}"
    );
    assert_eq!(count(&log, "/p1/held"), 2);
    let resp = post(bin.proxy, "/p3/after", 600).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(count(&log, "/p3/after"), 2, "the budget was not given back");
}

/// An upstream that logs each request (path, bearer) after reading its whole body and
/// answers 401 to the first request of each path, 200 to later ones. With `gate`, the
/// first request of `/p1/held` waits for it before answering.
async fn rejecting_upstream(log: Log, gate: Option<Arc<tokio::sync::Notify>>) -> SocketAddr {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    serve(move |req: Request<Incoming>| {
        let (log, gate, seen) = (log.clone(), gate.clone(), seen.clone());
        async move {
            let path = req.uri().path().to_string();
            let bearer = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            let _ = req.into_body().collect().await;
            log.lock().unwrap().push((path.clone(), bearer));
            let n = {
                let mut seen = seen.lock().unwrap();
                let n = seen.entry(path.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if n == 1 && path == "/p1/held" {
                if let Some(g) = gate {
                    g.notified().await;
                }
            }
            let status = if n == 1 { 401 } else { 200 };
            let mut resp: Response<TestBody> =
                Response::new(body(if n == 1 { "no" } else { "yes" }));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            resp
        }
    })
    .await
}
