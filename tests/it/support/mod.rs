//! In-process fakes and harnesses, all on loopback port 0.

pub mod corp_proxy;
pub mod dpop;
pub mod fake_idp;
pub mod fake_upstream;
pub mod httpsig;
pub mod jose;
pub mod keys;
pub mod redis;
pub mod sidecar;
pub mod tls;

pub use fake_idp::FakeIdp;
pub use fake_upstream::FakeUpstream;
pub use sidecar::TestSidecar;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

pub fn body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Serves `handler` on a fresh loopback port (HTTP/1.1 and h2c) until the runtime ends.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    serve_tls(handler, None).await
}

/// Like [`serve`], over TLS when `tls` is given (ALPN h2 and http/1.1), with upgrades.
pub async fn serve_tls<F, Fut>(
    handler: F,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (handler, tls) = (handler.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = handler.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                            .await;
                    }
                    Some(cfg) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await
                        else {
                            return;
                        };
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// reqwest is built without a default TLS provider (the sidecar configures its own);
/// test clients use ring too.
fn tls_init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client that sends everything through the sidecar as its HTTP proxy.
pub fn proxied_client(proxy: SocketAddr) -> reqwest::Client {
    tls_init();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client that talks to servers directly.
pub fn direct_client() -> reqwest::Client {
    tls_init();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A YAML provider block for `idp` (client `svc`, secret `s3cr3t-client-secret`).
pub fn provider_yaml(name: &str, idp: &FakeIdp, extra: &str) -> String {
    format!(
        "  {name}:\n    token_url: {}\n    client_id: svc\n    client_secret: s3cr3t-client-secret\n{extra}",
        idp.token_url()
    )
}

pub const CLIENT_SECRET: &str = "s3cr3t-client-secret";

/// An upstream handler that accepts any upgrade, records the request's Authorization
/// header in `auth`, answers 101 and then echoes every byte.
pub fn upgrade_echo(
    auth: std::sync::Arc<std::sync::Mutex<Option<String>>>,
) -> impl Fn(Request<Incoming>) -> std::pin::Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |mut req: Request<Incoming>| {
        let auth = auth.clone();
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            *auth.lock().unwrap() = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 64];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut resp = Response::new(body(""));
            *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
            resp.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            resp.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            resp
        })
    }
}
