//! The pooled upstream HTTP client: keep-alive connections, TLS with rustls (system roots
//! plus a route's `ca_file`), HTTP/2 when the upstream offers it via ALPN.
//!
//! One client (one connection pool) exists per distinct TLS trust and connect timeout,
//! shared by every route that needs that combination and kept across config reloads.
//! It never follows redirects: they go back to the app.

use crate::error::Body;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Body>;

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

/// What makes two upstream clients different: extra trust, connect timeout, protocol.
type PoolKey = (Option<PathBuf>, Duration, Protocol);

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
    ) -> Result<Client, String> {
        let key = (ca_file.cloned(), connect_timeout, protocol);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = build(ca_file, connect_timeout, protocol)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn build(
    ca_file: Option<&PathBuf>,
    connect_timeout: Duration,
    protocol: Protocol,
) -> Result<Client, String> {
    // ALPN (h2, http/1.1) is set by the connector builder below.
    let tls = crate::trust::client_config(ca_file.map(|p| p.as_path()), &[])?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let https = match protocol {
        Protocol::Http1 => builder.wrap_connector(http),
        Protocol::Auto | Protocol::H2c => builder.enable_http2().wrap_connector(http),
    };
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .http2_only(protocol == Protocol::H2c)
            .build(https),
    )
}

/// Classifies a client error and describes it without any request data.
pub fn describe(e: &hyper_util::client::legacy::Error) -> (FailureKind, String) {
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
