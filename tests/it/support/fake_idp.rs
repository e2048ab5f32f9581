//! A fake OAuth2 token endpoint that counts what it saw and can be told to fail.

use super::{body, TestBody};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the IdP answers to one token request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A token with this lifetime (None: no `expires_in`).
    Token(Option<u64>),
    /// A status with a JSON body.
    Status(u16, &'static str),
    /// A 200 whose body is not a token response.
    Garbage,
    /// Wait this long, then answer normally.
    Slow(Duration),
}

#[derive(Default)]
struct State {
    requests: AtomicUsize,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    issued: Mutex<Vec<String>>,
    issued_at: Mutex<Vec<tokio::time::Instant>>,
    seen: Mutex<Vec<(Option<String>, String)>>,
    paths: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct FakeIdp {
    pub addr: SocketAddr,
    state: Arc<State>,
    scheme: &'static str,
}

pub struct Builder {
    ttl: Option<u64>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl FakeIdp {
    pub fn builder() -> Builder {
        Builder {
            ttl: Some(3600),
            script: VecDeque::new(),
            default: None,
            tls: None,
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}://{}/oauth2/token", self.scheme, self.addr)
    }

    /// `scheme://host:port`, for presets that build the token URL themselves.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The request paths seen, in order.
    pub fn paths(&self) -> Vec<String> {
        self.state.paths.lock().unwrap().clone()
    }

    /// Token requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every token issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// When each token was issued (before its response was sent), in order.
    pub fn issued_at(&self) -> Vec<tokio::time::Instant> {
        self.state.issued_at.lock().unwrap().clone()
    }

    /// (Authorization header, form body) of every request.
    pub fn seen(&self) -> Vec<(Option<String>, String)> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Replace the answer to all later requests.
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = Some(reply);
    }
}

impl Builder {
    pub fn ttl(mut self, secs: u64) -> Self {
        self.ttl = Some(secs);
        self
    }

    pub fn no_expires_in(mut self) -> Self {
        self.ttl = None;
        self
    }

    /// The next `n` requests get `reply`, then normal tokens again.
    pub fn then(mut self, n: usize, reply: Reply) -> Self {
        for _ in 0..n {
            self.script.push_back(reply.clone());
        }
        self
    }

    /// Every request (after the scripted ones) gets `reply`.
    pub fn always(mut self, reply: Reply) -> Self {
        self.default = Some(reply);
        self
    }

    /// Serve over TLS with this config (which may require client certificates).
    pub fn tls(mut self, cfg: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(cfg);
        self
    }

    pub async fn run(self) -> FakeIdp {
        let state = Arc::new(State {
            script: Mutex::new(self.script),
            default: Mutex::new(Some(self.default.unwrap_or(Reply::Token(self.ttl)))),
            ..State::default()
        });
        let st = state.clone();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let addr = super::serve_tls(move |req| handle(st.clone(), req), self.tls).await;
        FakeIdp {
            addr,
            state,
            scheme,
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<TestBody> {
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    state
        .paths
        .lock()
        .unwrap()
        .push(req.uri().path().to_string());
    let form =
        String::from_utf8(req.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    state.seen.lock().unwrap().push((auth, form));
    let mut reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.default.lock().unwrap().clone().unwrap());
    if let Reply::Slow(d) = reply {
        tokio::time::sleep(d).await;
        reply = Reply::Token(Some(3600));
    }
    let (status, text) = match reply {
        Reply::Token(ttl) => {
            let token = format!("at-{n}-{:016x}", fastrand::u64(..));
            state.issued.lock().unwrap().push(token.clone());
            state
                .issued_at
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now());
            let json = match ttl {
                Some(t) => {
                    serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": t, "scope": "read"})
                }
                None => serde_json::json!({"access_token": token, "token_type": "Bearer"}),
            };
            (200, json.to_string())
        }
        Reply::Status(code, json) => (code, json.to_string()),
        Reply::Garbage => (200, "<html>surprise</html>".to_string()),
        Reply::Slow(_) => unreachable!(),
    };
    let mut resp = Response::new(body(text));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}
