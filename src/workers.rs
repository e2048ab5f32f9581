//! Worker runtimes for `workers > 1`: the proxy listener is served by that many threads,
//! each running a current-thread tokio runtime of its own with its own accept loop on the
//! same listening socket (as Pingora and nginx do), instead of one multi-thread runtime.
//!
//! A connection, and every request on it, stays on the thread that accepted it: no work
//! stealing, no cross-thread wake-ups on the hot path. The kernel hands each new
//! connection to one of the threads waiting in `accept`, so a busy thread takes fewer. The
//! caller's runtime keeps everything else (admin listener, reloads, token refresh, the
//! shared store); what the proxy shares between threads is what it shared before: the
//! runtime snapshot (arc-swap), token sources, metrics (atomics) and the connection slots
//! of `limits.max_connections`, which all accept loops together respect.
//!
//! Measured in `bench/` (README "Performance"): per-thread runtimes against the
//! multi-thread runtime at `workers: 2`.

use crate::config::Limits;
use crate::error::Body;
use crate::listener::Peer;
use http::{Request, Response};
use hyper::body::Incoming;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The proxy's worker threads, running until the shutdown flag turns true and their
/// connections have drained.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` threads serving `handler` on `listener`. Fails, with nothing started,
    /// when a runtime or a handle on the socket cannot be made.
    pub fn start<F, Fut>(
        n: usize,
        listener: TcpListener,
        handler: F,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> std::io::Result<Workers>
    where
        F: Fn(Peer, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        // The socket stays non-blocking; every thread registers its own handle on it with
        // its own runtime's reactor.
        let socket = listener.into_std()?;
        let mut ready = Vec::with_capacity(n);
        for _ in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            ready.push((rt, socket.try_clone()?));
        }
        drop(socket);
        let slots = crate::listener::connection_slots(&limits);
        let mut threads = Vec::with_capacity(n);
        for (i, (rt, socket)) in ready.into_iter().enumerate() {
            let (handler, limits, slots, shutdown) = (
                handler.clone(),
                limits.clone(),
                slots.clone(),
                shutdown.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("proxy-worker-{i}"))
                .spawn(move || {
                    crate::upstream::set_worker(i);
                    rt.block_on(async move {
                        match TcpListener::from_std(socket) {
                            Ok(listener) => {
                                crate::listener::serve_with(
                                    listener, handler, limits, slots, shutdown, grace, "proxy",
                                )
                                .await
                            }
                            Err(e) => {
                                tracing::error!(worker = i, error = %e, "worker cannot serve the proxy listener")
                            }
                        }
                    });
                    // Tasks still running (a token fetch a request started, a store write)
                    // are dropped with the runtime, as they would be at process exit.
                    rt.shutdown_timeout(Duration::from_millis(100));
                });
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // The threads already started stop with the caller's shutdown flag.
                    return Err(e);
                }
            }
        }
        Ok(Workers { threads })
    }

    /// Waits until every worker thread has ended (after the shutdown flag turned true).
    pub async fn join(self) {
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a proxy worker thread panicked");
                }
            }
        });
        let _ = joined.await;
    }
}
