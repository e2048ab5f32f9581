//! The pooled upstream HTTP client: keep-alive connections, TLS with rustls (system roots
//! plus a route's `ca_file`), HTTP/2 when the upstream offers it via ALPN.
//!
//! One client (one connection pool) exists per distinct TLS trust, connect timeout,
//! protocol and egress (`egress_proxy` and `no_proxy`, SPEC §11), shared by every route
//! that needs that combination and kept across config reloads, so routes with different
//! egress never share a connection. It never follows redirects: they go back to the app.

use crate::error::Body;
use crate::outbound::{Connector, Egress};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Inner = hyper_util::client::legacy::Client<HttpsConnector<Connector>, Body>;

/// A pooled upstream client. Cheap to clone (the pools are shared).
///
/// With worker threads (`workers > 1`) it holds one pool per thread, so that a request
/// goes out on a connection driven by its own thread's runtime (no cross-thread wake-up
/// per request); threads that are not workers share the first.
#[derive(Clone)]
pub struct Client {
    inners: Arc<[Inner]>,
    /// Decides, per request, whether it goes to the egress proxy in absolute-form.
    connector: Connector,
}

thread_local! {
    /// Which pool of a [`Client`] this thread uses: 1 + the worker's index on a worker
    /// thread, else 0.
    static POOL: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as proxy worker `index` (its requests use pool `index + 1`).
pub fn set_worker(index: usize) {
    POOL.with(|p| p.set(index + 1));
}

impl Client {
    /// Sends `req`. A plain-http request that goes to the egress proxy in absolute-form
    /// carries the proxy's `Proxy-Authorization` (the app's was stripped as hop-by-hop),
    /// prebuilt and sensitive; the proxy's 407 to it is an error, never the app's answer.
    pub fn request(
        &self,
        mut req: Request<Body>,
    ) -> impl Future<Output = Result<Response<Incoming>, SendError>> + Send + 'static {
        let proxy = self.connector.absolute_form_via(req.uri()).cloned();
        if let Some(auth) = proxy.as_ref().and_then(|p| p.auth()) {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
        let pool = POOL.with(Cell::get);
        let inner = self.inners.get(pool).unwrap_or(&self.inners[0]);
        let sent = inner.request(req);
        async move {
            let resp = sent.await.map_err(SendError::Client)?;
            match proxy {
                Some(p) if resp.status() == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED => Err(
                    SendError::ProxyAuth(p.authority().to_string(), p.auth().is_some()),
                ),
                _ => Ok(resp),
            }
        }
    }
}

/// Why [`Client::request`] got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Client(#[source] hyper_util::client::legacy::Error),
    /// The egress proxy (`host:port`; whether credentials were sent) answered 407 to an
    /// absolute-form request.
    #[error("the egress proxy {0} answered 407 (proxy authentication required)")]
    ProxyAuth(String, bool),
}

/// How sending a request upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Tls,
    Other,
}

/// Which HTTP versions a client speaks to upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1, or HTTP/2 where a TLS upstream offers it (ALPN).
    Auto,
    /// HTTP/2 with prior knowledge over plain TCP: gRPC apps in front of http:// upstreams.
    H2c,
    /// HTTP/1.1 only, also over TLS: upgrades (WebSocket) exist only in HTTP/1.1.
    Http1,
}

/// What makes two upstream clients different: extra trust, connect timeout, protocol,
/// and how connections go out (proxy with its credentials, and `no_proxy`).
type PoolKey = (Option<PathBuf>, Duration, Protocol, Egress);

/// Clients by [`PoolKey`], so that reloads reuse warm pools.
pub struct Pools {
    clients: Mutex<HashMap<PoolKey, Client>>,
    /// Worker threads (`workers`): each client gets a pool per worker plus one for the
    /// other threads.
    workers: usize,
}

impl Pools {
    /// Pools for `workers` worker threads (1: one pool per client, for every thread).
    pub fn new(workers: usize) -> Pools {
        Pools {
            clients: Mutex::default(),
            workers: if workers > 1 { workers } else { 0 },
        }
    }

    pub fn client(
        &self,
        ca_file: Option<&PathBuf>,
        connect_timeout: Duration,
        protocol: Protocol,
        egress: &Egress,
    ) -> Result<Client, String> {
        let key = (ca_file.cloned(), connect_timeout, protocol, egress.clone());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = build(ca_file, connect_timeout, protocol, egress, self.workers + 1)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn build(
    ca_file: Option<&PathBuf>,
    connect_timeout: Duration,
    protocol: Protocol,
    egress: &Egress,
    pools: usize,
) -> Result<Client, String> {
    // ALPN (h2, http/1.1) is set by the connector builder below.
    let tls = crate::trust::client_config(ca_file.map(|p| p.as_path()), &[])?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    // h2c and upgrades (HTTP/1.1-only clients) need the connection to themselves: through
    // a proxy they get a CONNECT tunnel also to plain-http destinations.
    let tunnel_plain = protocol != Protocol::Auto;
    let connector = Connector::new(http, egress.clone(), tunnel_plain, connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let https = match protocol {
        Protocol::Http1 => builder.wrap_connector(connector.clone()),
        Protocol::Auto | Protocol::H2c => builder.enable_http2().wrap_connector(connector.clone()),
    };
    let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .http2_only(protocol == Protocol::H2c);
    let inners = (0..pools.max(1))
        .map(|_| builder.build(https.clone()))
        .collect();
    Ok(Client { inners, connector })
}

/// Whether `e` is a rustls error, or an `io::Error` wrapping one at any depth (the
/// connector's errors wrap tokio-rustls' `io::Error`s, and `io::Error::source` skips the
/// error it wraps).
fn is_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_rustls(inner),
        None => false,
    }
}

/// Classifies a client error and describes it without any request data (and without the
/// egress proxy's credentials: its errors name it by `host:port`).
pub fn describe(e: &SendError) -> (FailureKind, String) {
    let e = match e {
        SendError::Client(e) => e,
        SendError::ProxyAuth(proxy, sent) => {
            let why = match sent {
                true => "it did not accept the credentials in egress_proxy",
                false => "egress_proxy has no credentials (http://user:password@host:port)",
            };
            return (
                FailureKind::Connect,
                format!("cannot reach the upstream: the egress proxy {proxy} answered 407 (proxy authentication required): {why}"),
            );
        }
    };
    let mut cur: &(dyn std::error::Error + 'static) = e;
    let mut root = e.to_string();
    let mut tls = false;
    loop {
        tls |= is_rustls(cur);
        match cur.source() {
            Some(next) => {
                root = next.to_string();
                cur = next;
            }
            None => break,
        }
    }
    let kind = if tls {
        FailureKind::Tls
    } else if e.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Other
    };
    let detail = match kind {
        FailureKind::Tls => format!("TLS handshake with the upstream failed: {root}"),
        FailureKind::Connect => format!("cannot connect to the upstream: {root}"),
        FailureKind::Other => format!("the upstream connection failed: {root}"),
    };
    (kind, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An HTTP/1.1 server on loopback answering 200 with keep-alive; counts connections.
    async fn counting_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(crate::error::full("ok")))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        (addr, accepted)
    }

    async fn get(client: &Client, addr: std::net::SocketAddr) {
        let req = Request::get(format!("http://{addr}/"))
            .body(crate::error::full(""))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        // Read to the end so the connection goes back to its pool.
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
    }

    /// Each worker thread has a pool of its own: worker 1 does not take the connection
    /// worker 0 left idle (its task runs on worker 0's runtime), while worker 0 reuses it.
    #[tokio::test]
    async fn each_worker_sends_on_connections_of_its_own_pool() {
        let (addr, accepted) = counting_server().await;
        let pools = Pools::new(2);
        let timeout = Duration::from_secs(2);
        let client = pools
            .client(None, timeout, Protocol::Auto, &Egress::default())
            .unwrap();
        set_worker(0);
        get(&client, addr).await;
        get(&client, addr).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "worker 0 reuses its connection"
        );
        set_worker(1);
        get(&client, addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "worker 1 opens its own");
        get(&client, addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "and reuses it");
        // One worker: one pool for every thread.
        let single = Pools::new(1)
            .client(None, timeout, Protocol::Auto, &Egress::default())
            .unwrap();
        get(&single, addr).await;
        set_worker(0);
        get(&single, addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// TLS to a server that answers in plain HTTP is a TLS failure, not a connect one.
    #[tokio::test]
    async fn a_handshake_with_a_plain_http_server_is_a_tls_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = Pools::new(1)
            .client(
                None,
                Duration::from_secs(2),
                Protocol::Auto,
                &Egress::default(),
            )
            .unwrap();
        let req = Request::get(format!("https://{addr}/"))
            .body(crate::error::full(""))
            .unwrap();
        let err = client.request(req).await.unwrap_err();
        let (kind, detail) = describe(&err);
        assert_eq!(kind, FailureKind::Tls, "{detail}");
    }
}
