//! The upstream client's connector: a direct TCP connection, or one through the egress
//! proxy — a `CONNECT` tunnel for TLS destinations (and for plain ones when the client
//! must own the connection end to end: h2c, upgrades), else a connection to the proxy
//! that hyper's client sends absolute-form requests on (`Connected::proxy(true)`).
//!
//! TLS, when the destination needs it, is added on top by the caller's TLS connector, so
//! through a tunnel it runs end to end with the destination, verified as usual.
//!
//! hyper-util's `Tunnel` connector is not used: it accepts only a 200, names neither the
//! proxy nor the status in its errors, and has no deadline of its own. The handshake here
//! is short (`handshake.rs`), any 2xx accepted, everything bounded by the connect timeout.

use super::handshake::{handshake, TunnelError};
use super::{Egress, ProxyEndpoint};
use http::uri::Scheme;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects to destinations as its [`Egress`] says. Cheap to clone (one per connection).
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    egress: Egress,
    /// Plain-http destinations get a tunnel too (h2c prior knowledge and upgrades need the
    /// connection to themselves; a proxy would not pass them on in absolute-form).
    tunnel_plain: bool,
    /// For the proxy's `CONNECT` answer (the TCP connect has the `HttpConnector`'s).
    timeout: Duration,
}

impl Connector {
    /// `http` connects (to destinations, or to the proxy); `timeout` bounds the wait for
    /// the proxy's answer to a `CONNECT`.
    pub fn new(http: HttpConnector, egress: Egress, tunnel_plain: bool, timeout: Duration) -> Self {
        Connector {
            http,
            egress,
            tunnel_plain,
            timeout,
        }
    }

    /// The proxy a request to `uri` is sent to in absolute-form (and so needs
    /// `Proxy-Authorization` on the request itself), if any.
    pub fn absolute_form_via(&self, uri: &Uri) -> Option<&Arc<ProxyEndpoint>> {
        if self.tunnel_plain || uri.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        self.egress.proxy_for(uri.host()?)
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let proxy = dst.host().and_then(|h| self.egress.proxy_for(h)).cloned();
        let tunnel = dst.scheme() != Some(&Scheme::HTTP) || self.tunnel_plain;
        let timeout = self.timeout;
        Box::pin(async move {
            let Some(proxy) = proxy else {
                let io = http.call(dst).await?;
                return Ok(Stream { io, proxied: false });
            };
            let io = http
                .call(proxy.uri().clone())
                .await
                .map_err(|e| TunnelError::unreachable(&proxy, &e))?;
            if !tunnel {
                return Ok(Stream { io, proxied: true });
            }
            let target = target(&dst).ok_or_else(|| TunnelError {
                message: "the destination has no host to CONNECT to".into(),
            })?;
            let tcp = io.into_inner();
            let tcp = tokio::time::timeout(timeout, handshake(tcp, &target, &proxy))
                .await
                .map_err(|_| TunnelError {
                    message: format!(
                        "the egress proxy {proxy} did not answer the CONNECT to {target} within {timeout:?}"
                    ),
                })??;
            Ok(Stream {
                io: TokioIo::new(tcp),
                proxied: false,
            })
        })
    }
}

/// `host:port` of `dst`, the port defaulting by scheme.
fn target(dst: &Uri) -> Option<String> {
    let host = dst.host()?;
    let port = dst
        .port_u16()
        .unwrap_or(if dst.scheme() == Some(&Scheme::HTTP) {
            80
        } else {
            443
        });
    Some(format!("{host}:{port}"))
}

/// A connection [`Connector`] made: TCP to the destination, to the proxy (requests in
/// absolute-form), or a tunnel through the proxy.
pub struct Stream {
    io: TokioIo<TcpStream>,
    /// Requests on this connection go to the proxy in absolute-form.
    proxied: bool,
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
