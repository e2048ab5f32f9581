//! Accept loops: HTTP/1.1 (with upgrades, for CONNECT) and HTTP/2 with prior knowledge
//! (h2c, for gRPC clients) on one socket, the connection limits of SPEC §4 (`limits`),
//! and the graceful drain on shutdown.
//!
//! Nothing a client sends can hold a connection forever: the first request head must be
//! complete within `header_read_timeout` of the accept (protocol detection included), and
//! a connection without a request in flight or started for `idle_timeout` is closed
//! (bytes alone, like h2 PINGs, do not keep it open). At most `max_connections` are served at once; the rest wait in the backlog.

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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
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
    shutdown: watch::Receiver<bool>,
    grace: Duration,
    what: &'static str,
) where
    F: Fn(Peer, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let slots = connection_slots(&limits);
    serve_with(listener, handler, limits, slots, shutdown, grace, what).await
}

/// The `max_connections` slots of one listening socket, for [`serve_with`]: accept loops
/// that share a socket share its slots.
pub fn connection_slots(limits: &Limits) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(limits.max_connections.max(1)))
}

/// [`serve`], with the connection slots given: several accept loops on one socket (one
/// per worker runtime) together serve at most `max_connections`.
pub async fn serve_with<F, Fut>(
    listener: TcpListener,
    handler: F,
    limits: Limits,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    what: &'static str,
) where
    F: Fn(Peer, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&limits));
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
                    // The request counts as in flight until its response body has been
                    // sent (or dropped), so a long download is not an idle connection.
                    let resp = fut.await.map(|body| InFlightBody {
                        body,
                        _guard: guard,
                    });
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        let io = TokioIo::new(stream);
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
/// relaxed atomics of this connection only; never shared between connections. Only
/// requests count as activity: bytes alone (an h2 PING, a dribbled header) do not.
#[derive(Default)]
struct ConnState {
    /// Requests whose response body has not been sent yet.
    in_flight: AtomicUsize,
    /// Requests so far (the first one ends the `header_read_timeout`).
    requests: AtomicU64,
}

impl ConnState {
    fn request_started(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight; dropped when its response body is done (or dropped).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Completes when the connection should be closed: no complete request head within
/// `header_read_timeout` of the accept, or idle (no request in flight, none started) for
/// `idle_timeout`.
async fn watchdog(state: &ConnState, limits: &Limits) -> &'static str {
    tokio::time::sleep(limits.header_read_timeout).await;
    if state.requests.load(Ordering::Relaxed) == 0 {
        return "no request head within header_read_timeout";
    }
    let tick = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let (mut seen, mut since) = (state.requests.load(Ordering::Relaxed), Instant::now());
    loop {
        tokio::time::sleep(tick).await;
        let now = state.requests.load(Ordering::Relaxed);
        if now != seen || state.in_flight.load(Ordering::Relaxed) > 0 {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= limits.idle_timeout {
            return "idle_timeout";
        }
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct InFlightBody {
    body: Body,
    _guard: InFlight,
}

impl hyper::body::Body for InFlightBody {
    type Data = bytes::Bytes;
    type Error = crate::error::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
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

/// Serves one connection that did not come from the accept loop (the inside of a CONNECT
/// tunnel) under the same `limits` as an accepted one: the same HTTP/1.1 and h2c options
/// and the same watchdog (`header_read_timeout` from now to the first request head,
/// `idle_timeout` between requests). When `drain` turns true (shutdown), the connection
/// finishes the requests in flight and closes, as accepted ones do. Returns when the
/// connection ends or is cut off.
pub(crate) async fn serve_inside<I, F, Fut>(
    io: I,
    handler: F,
    limits: &Limits,
    mut drain: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let state = Arc::new(ConnState::default());
    let handler = Arc::new(handler);
    let svc = {
        let state = state.clone();
        service_fn(move |req| {
            let fut = handler(req);
            let guard = state.request_started();
            async move {
                let resp = fut.await.map(|body| InFlightBody {
                    body,
                    _guard: guard,
                });
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let builder = builder(limits);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let watchdog = watchdog(&state, limits);
    tokio::pin!(watchdog);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "tunnelled connection ended with an error");
                }
                return;
            }
            reason = watchdog.as_mut() => {
                tracing::debug!(reason, "closing a tunnelled connection");
                return;
            }
            _ = stopped(&mut drain), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
