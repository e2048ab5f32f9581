//! A fake corporate HTTP proxy: `CONNECT` tunnels and absolute-form requests, Basic
//! `Proxy-Authorization` required (407 without it or with the wrong one). Every name it
//! is asked for resolves to 127.0.0.1 here, so a test can use names that do not resolve
//! anywhere else: a request that reached them went through this proxy. It records what
//! it saw: `CONNECT` targets, absolute-form URIs and the credentials each came with.

use super::{body, TestBody};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `CONNECT` or the forwarded method.
    pub method: String,
    /// `host:port` for a `CONNECT`, the absolute URI otherwise.
    pub target: String,
    /// The `Proxy-Authorization` it came with.
    pub auth: Option<String>,
    /// Whether its credentials were accepted.
    pub accepted: bool,
}

#[derive(Clone)]
pub struct CorpProxy {
    pub addr: SocketAddr,
    user: String,
    password: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl CorpProxy {
    /// A proxy that accepts `user` / `password` only.
    pub async fn start(user: &str, password: &str) -> CorpProxy {
        let expected = basic(user, password);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let upstream: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let addr = super::serve(move |req: Request<Incoming>| {
            let (expected, record, upstream) = (expected.clone(), record.clone(), upstream.clone());
            async move { handle(req, &expected, &record, &upstream).await }
        })
        .await;
        CorpProxy {
            addr,
            user: user.into(),
            password: password.into(),
            seen,
        }
    }

    /// A proxy that takes `CONNECT` only and answers it the way real ones may when the
    /// destination speaks first (an h2 server's SETTINGS, an SSH banner): it waits (up
    /// to a second) for the destination's first bytes and sends them in the same write
    /// as its `200`, so they reach the client in one read with the answer's head.
    pub async fn start_eager(user: &str, password: &str) -> CorpProxy {
        let expected = basic(user, password);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(eager_connect(client, expected.clone(), record.clone()));
            }
        });
        CorpProxy {
            addr,
            user: user.into(),
            password: password.into(),
            seen,
        }
    }

    /// `http://user:password@127.0.0.1:PORT`, with the credentials percent-encoded.
    pub fn url(&self) -> String {
        self.url_with(&self.user, &self.password)
    }

    /// This proxy's URL with other credentials.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{}:{}@{}", encode(user), encode(password), self.addr)
    }

    /// The `Proxy-Authorization` value this proxy accepts.
    pub fn expected_auth(&self) -> String {
        basic(&self.user, &self.password)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Targets of accepted `CONNECT`s, in order.
    pub fn connects(&self) -> Vec<String> {
        self.accepted(|s| s.method == "CONNECT")
    }

    /// Absolute URIs of accepted forwarded requests, in order.
    pub fn forwards(&self) -> Vec<String> {
        self.accepted(|s| s.method != "CONNECT")
    }

    fn accepted(&self, keep: impl Fn(&Seen) -> bool) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.accepted && keep(s))
            .map(|s| s.target)
            .collect()
    }
}

async fn handle(
    mut req: Request<Incoming>,
    expected: &str,
    record: &Mutex<Vec<Seen>>,
    upstream: &Client<HttpConnector, Incoming>,
) -> Response<TestBody> {
    let auth = req
        .headers()
        .get("proxy-authorization")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let accepted = auth.as_deref() == Some(expected);
    let connect = req.method() == Method::CONNECT;
    let target = match connect {
        true => req
            .uri()
            .authority()
            .map_or(String::new(), |a| a.to_string()),
        false => req.uri().to_string(),
    };
    record.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        target: target.clone(),
        auth,
        accepted,
    });
    if !accepted {
        let mut resp = status(StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        resp.headers_mut().insert(
            "proxy-authenticate",
            "Basic realm=\"corp\"".parse().unwrap(),
        );
        return resp;
    }
    // Every name is loopback here: only the port of the target counts.
    let port = match connect {
        true => req.uri().port_u16(),
        false => req.uri().port_u16().or(Some(80)),
    };
    let Some(port) = port.filter(|_| connect || req.uri().scheme().is_some()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if connect {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
            return status(StatusCode::BAD_GATEWAY);
        };
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(up), &mut tcp).await;
            }
        });
        return status(StatusCode::OK);
    }
    let (mut parts, b) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://127.0.0.1:{port}{path}")
        .parse::<Uri>()
        .unwrap();
    parts.headers.remove("proxy-authorization");
    parts.headers.remove("proxy-connection");
    match upstream.request(Request::from_parts(parts, b)).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

/// One `CONNECT` for [`CorpProxy::start_eager`], parsed by hand so the answer's bytes
/// are under the test's control.
async fn eager_connect(mut client: TcpStream, expected: String, record: Arc<Mutex<Vec<Seen>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(n) if n > 0 && head.len() < 16 * 1024 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or("").to_string();
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_string());
    let accepted = method == "CONNECT" && auth.as_deref() == Some(expected.as_str());
    record.lock().unwrap().push(Seen {
        method: method.into(),
        target: target.into(),
        auth,
        accepted,
    });
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let (true, Some(port)) = (accepted, port) else {
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let mut answer = b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec();
    let mut first = vec![0u8; 16 * 1024];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), upstream.read(&mut first)).await
    {
        answer.extend_from_slice(&first[..n]);
    }
    if client.write_all(&answer).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

fn status(code: StatusCode) -> Response<TestBody> {
    let mut resp = Response::new(body(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
