//! Accept loops: HTTP/1.1 (with upgrades, for CONNECT) and HTTP/2 with prior knowledge
//! (h2c, for gRPC clients) on one socket, the connection limits of SPEC §4 (`limits`),
//! and the graceful drain on shutdown.
//!
//! Nothing a client sends can hold a connection forever: the first request head must be
//! complete within `header_read_timeout` of the accept (protocol detection included), and
//! a connection with no request in flight and no byte moving for `idle_timeout` is
//! closed. At most `max_connections` are served at once; the rest wait in the backlog.

use crate::config::Limits;
use crate::error::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// The largest request head and the most request body one HTTP/1.1 connection buffers
/// that the upstream has not taken yet; the HTTP/2 flow-control windows match it.
const CONNECTION_BUFFER: usize = 64 * 1024;

/// Who is on the other end of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
}

/// Serves `handler` on `listener` until `shutdown` turns true, then stops accepting and
/// gives open connections up to `grace` to finish their requests.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    handler: F,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    what: &'static str,
) where
    F: Fn(Peer, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // Wait for a free slot before accepting: further connections stay in the backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(listener = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::default());
        let svc = {
            let (handler, state, peer) = (handler.clone(), state.clone(), Peer { addr });
            service_fn(move |req| {
                let fut = handler(peer, req);
                let guard = state.request_started();
                async move {
                    let resp = fut.await;
                    drop(guard);
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        let io = TokioIo::new(Counted {
            inner: stream,
            state: state.clone(),
        });
        let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
        let conn = graceful.watch(conn);
        let limits = limits.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(listener = what, error = %e, "connection ended with an error");
                },
                reason = watchdog(&state, &limits) => {
                    tracing::debug!(listener = what, peer = %addr, reason, "closing the connection");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!(listener = what, "all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(listener = what, "shutdown grace period over; closing remaining connections"),
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper times every request head from the end of the previous response, so on a
        // keep-alive connection this is also its idle limit: `idle_timeout` governs there.
        // The first head is held to `header_read_timeout` from the accept by the watchdog.
        .header_read_timeout(limits.header_read_timeout.max(limits.idle_timeout))
        .max_buf_size(CONNECTION_BUFFER)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(CONNECTION_BUFFER as u32)
        .initial_connection_window_size(CONNECTION_BUFFER as u32)
        .max_header_list_size(CONNECTION_BUFFER as u32);
    builder
}

/// What the watchdog of one connection looks at. Written on the request path with
/// relaxed atomics of this connection only; never shared between connections.
#[derive(Default)]
struct ConnState {
    /// A request head arrived (the first one ends the `header_read_timeout`).
    seen: AtomicBool,
    /// Requests whose response has not been produced yet.
    in_flight: AtomicUsize,
    /// Reads and writes that moved bytes, so far.
    io: AtomicU64,
}

impl ConnState {
    fn request_started(self: &Arc<Self>) -> InFlight {
        self.seen.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight; dropped when its response is ready (or the request is gone).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Completes when the connection should be closed: no complete request head within
/// `header_read_timeout` of the accept, or idle (nothing in flight, no byte moved) for
/// `idle_timeout`.
async fn watchdog(state: &ConnState, limits: &Limits) -> &'static str {
    tokio::time::sleep(limits.header_read_timeout).await;
    if !state.seen.load(Ordering::Relaxed) {
        return "no request head within header_read_timeout";
    }
    let tick = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let (mut io, mut since) = (state.io.load(Ordering::Relaxed), Instant::now());
    loop {
        tokio::time::sleep(tick).await;
        let now_io = state.io.load(Ordering::Relaxed);
        if now_io != io || state.in_flight.load(Ordering::Relaxed) > 0 {
            (io, since) = (now_io, Instant::now());
        } else if since.elapsed() >= limits.idle_timeout {
            return "idle_timeout";
        }
    }
}

/// The connection's stream, counting the reads and writes that move bytes.
struct Counted<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Counted<S> {
    fn moved(&self) {
        self.state.io.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes once the shutdown flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
