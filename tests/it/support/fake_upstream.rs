//! A fake API that records every request and answers by a rule.

use super::body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request's head arrived.
    pub at: tokio::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }
}

type Rule = Arc<dyn Fn(&Seen, usize) -> (u16, Vec<(&'static str, String)>, Bytes) + Send + Sync>;

#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    scheme: &'static str,
}

impl FakeUpstream {
    /// Answers 200 `ok` to everything.
    pub async fn ok() -> FakeUpstream {
        Self::with(|_, _| (200, vec![], Bytes::from_static(b"ok"))).await
    }

    /// Answers by `rule(request, index)` (index counts from 0).
    pub async fn with(
        rule: impl Fn(&Seen, usize) -> (u16, Vec<(&'static str, String)>, Bytes) + Send + Sync + 'static,
    ) -> FakeUpstream {
        Self::start(Arc::new(rule), Duration::ZERO).await
    }

    /// Answers 200 after `delay`.
    pub async fn slow(delay: Duration) -> FakeUpstream {
        Self::start(
            Arc::new(|_, _| (200, vec![], Bytes::from_static(b"slow ok"))),
            delay,
        )
        .await
    }

    /// 401 to any token in `rejected()` at the time of the request, 200 otherwise.
    pub async fn rejecting(rejected: Arc<Mutex<Vec<String>>>) -> FakeUpstream {
        Self::with(move |s, _| {
            let bad = s
                .bearer()
                .is_none_or(|t| rejected.lock().unwrap().iter().any(|r| r == t));
            if bad {
                (
                    401,
                    vec![("www-authenticate", "Bearer error=\"invalid_token\"".into())],
                    Bytes::from_static(b"rejected"),
                )
            } else {
                (200, vec![], Bytes::from_static(b"accepted"))
            }
        })
        .await
    }

    /// Answers by `rule` over TLS with a certificate for 127.0.0.1 from `ca`.
    pub async fn tls(
        ca: &super::tls::TestCa,
        rule: impl Fn(&Seen, usize) -> (u16, Vec<(&'static str, String)>, Bytes) + Send + Sync + 'static,
    ) -> FakeUpstream {
        let mut up = Self::start_on(
            Arc::new(rule),
            Duration::ZERO,
            Some(ca.server_config("127.0.0.1")),
        )
        .await;
        up.scheme = "https";
        up
    }

    /// An HTTPS upstream with the given server config, answering 200 `ok`.
    pub async fn tls_with(cfg: Arc<rustls::ServerConfig>) -> FakeUpstream {
        let rule: Rule = Arc::new(|_, _| (200, vec![], Bytes::from_static(b"ok")));
        let mut up = Self::start_on(rule, Duration::ZERO, Some(cfg)).await;
        up.scheme = "https";
        up
    }

    async fn start(rule: Rule, delay: Duration) -> FakeUpstream {
        Self::start_on(rule, delay, None).await
    }

    async fn start_on(
        rule: Rule,
        delay: Duration,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> FakeUpstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let addr = super::serve_tls(
            move |req: Request<Incoming>| {
                let (seen, rule) = (s.clone(), rule.clone());
                async move {
                    let at = tokio::time::Instant::now();
                    let (parts, b) = req.into_parts();
                    let body_bytes = b.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    let record = Seen {
                        method: parts.method.to_string(),
                        uri: parts.uri.to_string(),
                        version: parts.version,
                        headers: parts.headers,
                        body: body_bytes,
                        at,
                    };
                    let index = {
                        let mut all = seen.lock().unwrap();
                        all.push(record.clone());
                        all.len() - 1
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let (status, headers, bytes) = rule(&record, index);
                    let mut resp = Response::new(body(bytes));
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                    for (k, v) in headers {
                        resp.headers_mut().insert(k, v.parse().unwrap());
                    }
                    resp
                }
            },
            tls,
        )
        .await;
        FakeUpstream {
            addr,
            seen,
            scheme: "http",
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (up to 2 s) until `n` requests have arrived; the count then.
    pub async fn wait_count(&self, n: usize) -> usize {
        for _ in 0..200 {
            if self.count() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.count()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}
