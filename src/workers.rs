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
use tokio::sync::{oneshot, watch};

/// The proxy's worker threads. Each serves until the shutdown flag turns true and its
/// connections have drained ([`Workers::drained`]), then keeps its runtime, and so the
/// tunnels and upgraded connections still running on it, until [`Workers::finish`]: the
/// whole proxy drains together, as one runtime did.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
    drained: Vec<oneshot::Receiver<()>>,
    finish: watch::Sender<bool>,
}

impl Workers {
    /// Starts `n` threads serving `handler` on `listener`. Fails, with nothing left
    /// running, when a runtime, a handle on the socket or a thread cannot be made. Must be
    /// called on the main runtime: background work of the workers runs there.
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
        let main = tokio::runtime::Handle::current();
        // The socket stays non-blocking; each runtime registers a handle of its own on it
        // with its reactor, here, so that a failure is a start-up error.
        let socket = listener.into_std()?;
        let mut ready = Vec::with_capacity(n);
        for _ in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let listener = {
                let _in = rt.enter();
                TcpListener::from_std(socket.try_clone()?)?
            };
            ready.push((rt, listener));
        }
        drop(socket);
        let slots = crate::listener::connection_slots(&limits);
        let (finish, finish_rx) = watch::channel(false);
        let mut workers = Workers {
            threads: Vec::with_capacity(n),
            drained: Vec::with_capacity(n),
            finish,
        };
        for (i, (rt, listener)) in ready.into_iter().enumerate() {
            let (handler, limits, slots, shutdown, main) = (
                handler.clone(),
                limits.clone(),
                slots.clone(),
                shutdown.clone(),
                main.clone(),
            );
            let (drained_tx, drained) = oneshot::channel();
            let mut finish = finish_rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("proxy-worker-{i}"))
                .spawn(move || {
                    crate::upstream::set_worker(i);
                    crate::background::set_main(main);
                    rt.block_on(async move {
                        crate::listener::serve_with(
                            listener, handler, limits, slots, shutdown, grace, "proxy",
                        )
                        .await;
                        let _ = drained_tx.send(());
                        crate::listener::stopped(&mut finish).await;
                    });
                    rt.shutdown_timeout(Duration::from_millis(100));
                });
            match thread {
                Ok(t) => {
                    workers.threads.push(t);
                    workers.drained.push(drained);
                }
                Err(e) => {
                    // The threads already started end once the caller drops the shutdown
                    // sender (as it does on this error): `stopped` returns on a closed
                    // channel, and so does the wait for `finish`, dropped here.
                    return Err(e);
                }
            }
        }
        Ok(workers)
    }

    /// Completes when every worker has stopped accepting and drained its connections (or
    /// its grace period is over).
    pub async fn drained(&mut self) {
        for d in self.drained.drain(..) {
            let _ = d.await;
        }
    }

    /// Stops the worker runtimes (tunnels still open on them are closed) and waits for
    /// the threads to end.
    pub async fn finish(self) {
        let _ = self.finish.send(true);
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
