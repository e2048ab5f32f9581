//! Tunnels: CONNECT (`HTTPS_PROXY` traffic) and HTTP/1.1 upgrades (WebSocket). A header cannot be added inside TLS that the sidecar
//! does not terminate, so a CONNECT to a host that an intercepting route names is
//! terminated with a minted certificate (`tls_intercept`) and the requests inside are
//! proxied like plain ones; without `tls_intercept` it is refused with an explanation.
//! Other CONNECTs follow `unmatched`: a blind tunnel, or 403 `no_route`. Tunnels close when
//! either side closes, or after [`TUNNEL_IDLE_TIMEOUT`] without a byte either way.

use super::guard;
use crate::config::Unmatched;
use crate::error::{Body, ProxyError};
use crate::metrics::TunnelKind;
use crate::route;
use crate::runtime::{Runtime, Snapshot};
use futures_util::future::BoxFuture;
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A tunnel (or an upgraded connection) with no traffic either way for this long is closed.
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Serves the requests inside an intercepted tunnel (the proxy's own lifecycle).
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// Answers a CONNECT: intercepted (its requests served by the handler `inner` makes for
/// the tunnel's authority), refused, or a blind tunnel.
pub async fn connect(
    runtime: &Arc<Runtime>,
    snap: &Snapshot,
    req: Request<Incoming>,
    inner: impl FnOnce(Arc<Runtime>, Authority) -> Handler,
) -> Result<Response<Body>, ProxyError> {
    let bad = |d: &str| ProxyError::BadRequest {
        detail: d.to_string(),
    };
    let authority = req
        .uri()
        .authority()
        .cloned()
        .ok_or_else(|| bad("CONNECT needs a host:port target"))?;
    let port = authority
        .port_u16()
        .ok_or_else(|| bad("CONNECT needs a host:port target"))?;
    let host = authority.host();
    // Never the proxy's own listeners, whichever branch would take the CONNECT.
    let own = guard::Reach {
        own: &runtime.own,
        no_local: false,
    };
    guard::destination(host, port, own).await?;
    if route::names_host(&snap.config.routes, host, port) {
        let Some(interceptor) = &snap.interceptor else {
            return Err(ProxyError::InterceptUnavailable {
                detail: format!(
                    "{host}:{port} is routed, but its traffic is TLS-encrypted and tls_intercept is not configured, so no header can be added; \
                     send plain http:// through the proxy and let the route's upstream speak https, or configure tls_intercept"
                ),
            });
        };
        let tls = interceptor
            .server_config(host)
            .map_err(|e| ProxyError::UpstreamUnavailable {
                detail: format!("cannot intercept {host}: {e}"),
            })?;
        let runtime = runtime.clone();
        let handler = inner(runtime.clone(), authority.clone());
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => intercept(&runtime, upgraded, tls, authority, handler).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return Ok(established());
    }
    if snap.config.unmatched == Unmatched::Deny {
        return Err(ProxyError::NoRoute {
            detail: format!("no route matches CONNECT {host}:{port}"),
        });
    }
    let upstream = open_blind(runtime, snap, &authority).await?;
    let _ = upstream.set_nodelay(true);
    let runtime = runtime.clone();
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let _active = runtime.metrics.tunnel_opened(TunnelKind::Blind);
                splice(TokioIo::new(upgraded), upstream, TUNNEL_IDLE_TIMEOUT).await;
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Ok(established())
}

/// Connects a blind tunnel: only to `tunnel_ports`, never to the proxy itself, and on a
/// shared listener never to loopback or link-local addresses (SPEC §4 Shared egress).
/// There, every failure reads the same, so a refusal never tells an open port from a
/// closed one.
async fn open_blind(
    runtime: &Runtime,
    snap: &Snapshot,
    authority: &Authority,
) -> Result<TcpStream, ProxyError> {
    let (host, port) = (authority.host(), authority.port_u16().unwrap_or(443));
    let shared = snap.config.shared_egress();
    if !snap.config.tunnel_ports.allows(port) {
        return Err(ProxyError::DestinationForbidden {
            detail: format!("tunnels go only to tunnel_ports, not to port {port}"),
        });
    }
    let reach = guard::Reach {
        own: &runtime.own,
        no_local: shared,
    };
    let checked = guard::destination(host, port, reach)
        .await
        .map_err(|e| match e {
            ProxyError::DestinationForbidden { .. } => e,
            _ if shared => ProxyError::UpstreamUnavailable {
                detail: format!("cannot open a tunnel to {authority}"),
            },
            _ => e,
        })?;
    let connecting = async {
        match checked {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect(authority.as_str()).await,
        }
    };
    let failed = |what: String| match shared {
        true => ProxyError::UpstreamUnavailable {
            detail: format!("cannot open a tunnel to {authority}"),
        },
        false => ProxyError::UpstreamUnavailable { detail: what },
    };
    match tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, connecting).await {
        Err(_) if !shared => Err(ProxyError::UpstreamTimeout {
            detail: format!("connecting to {authority} timed out"),
        }),
        Err(_) => Err(failed(String::new())),
        Ok(Err(e)) => Err(failed(format!("cannot connect to {authority}: {e}"))),
        Ok(Ok(s)) => Ok(s),
    }
}

fn established() -> Response<Body> {
    let mut resp = Response::new(crate::error::full(""));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Terminates TLS on the app's side of the tunnel and serves the requests inside
/// (HTTP/1.1 or h2, by ALPN) with `handler`.
async fn intercept(
    runtime: &Runtime,
    upgraded: hyper::upgrade::Upgraded,
    tls: Arc<rustls::ServerConfig>,
    authority: Authority,
    handler: Handler,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stream = match tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        acceptor.accept(TokioIo::new(upgraded)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // Typically the app does not trust the CA yet: say so clearly.
            tracing::warn!(host = authority.host(), port = authority.port_u16(), error = %e, "TLS handshake with the app failed (does the app trust the tls_intercept CA?)");
            return;
        }
        Err(_) => return,
    };
    let _active = runtime.metrics.tunnel_opened(TunnelKind::Intercepted);
    let svc = service_fn(move |req| {
        let fut = handler(req);
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(TUNNEL_IDLE_TIMEOUT);
    // HTTP/1.1 and h2 alike: the connection ends after TUNNEL_IDLE_TIMEOUT without traffic.
    let (io, idle) = watched(stream, TUNNEL_IDLE_TIMEOUT);
    tokio::select! {
        r = builder.serve_connection_with_upgrades(TokioIo::new(io), svc) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "intercepted connection ended with an error");
            }
        }
        _ = idle => tracing::debug!("closing an idle intercepted tunnel"),
    }
}

/// Splices the app's and the upstream's sides of an accepted upgrade (after `101`).
pub(super) fn splice_upgrade(
    runtime: &Arc<Runtime>,
    client_side: hyper::upgrade::OnUpgrade,
    upstream_side: hyper::upgrade::OnUpgrade,
) {
    let runtime = runtime.clone();
    tokio::spawn(async move {
        match (client_side.await, upstream_side.await) {
            (Ok(a), Ok(b)) => {
                let _active = runtime.metrics.tunnel_opened(TunnelKind::Upgrade);
                splice(TokioIo::new(a), TokioIo::new(b), TUNNEL_IDLE_TIMEOUT).await;
            }
            _ => tracing::debug!("upgrade did not complete"),
        }
    });
}

/// Copies bytes both ways until either side closes or nothing moves for `idle`.
async fn splice<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a, quiet) = watched(a, idle);
    let mut b = b;
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tunnel closed with an error");
            }
        }
        _ = quiet => tracing::debug!("closing an idle tunnel"),
    }
}

/// `stream`, recording when bytes last moved through it either way, and a future that
/// completes once nothing has moved for `idle`.
fn watched<S>(stream: S, idle: Duration) -> (Activity<S>, impl std::future::Future<Output = ()>) {
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let watchdog = {
        let last = last.clone();
        async move {
            loop {
                tokio::time::sleep(idle / 4).await;
                let quiet = epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return;
                }
            }
        }
    };
    (
        Activity {
            inner: stream,
            last,
            epoch,
        },
        watchdog,
    )
}

/// A stream that records when bytes last moved through it.
struct Activity<S> {
    inner: S,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<S> Activity<S> {
    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Activity<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Activity<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
