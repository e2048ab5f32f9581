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
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

type Inner = hyper_util::client::legacy::Client<HttpsConnector<Connector>, Body>;

/// A pooled upstream client. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Client {
    inner: Inner,
    /// Decides, per request, whether it goes to the egress proxy in absolute-form.
    connector: Connector,
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
        let sent = self.inner.request(req);
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
#[derive(Default)]
pub struct Pools {
    clients: Mutex<HashMap<PoolKey, Client>>,
}

impl Pools {
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
        let client = build(ca_file, connect_timeout, protocol, egress)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn build(
    ca_file: Option<&PathBuf>,
    connect_timeout: Duration,
    protocol: Protocol,
    egress: &Egress,
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
    let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .http2_only(protocol == Protocol::H2c)
        .build(https);
    Ok(Client { inner, connector })
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
        if cur.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                tls = true;
            }
        }
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
