//! [`run`]: wires the runtime, the listeners and the reload triggers together, and owns
//! the order of shutdown. The top of the module graph: nothing imports it but the binary,
//! the demo and the tests.

use crate::admin::Admin;
use crate::config::Config;
use crate::reload::Reloader;
use crate::runtime::{Runtime, SetupError};
use crate::workers::Workers;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long the admin listener's own requests may take to finish at shutdown, after the
/// proxy has drained.
const ADMIN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The sockets the sidecar serves; the caller binds them (tests bind port 0).
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: Option<TcpListener>,
    /// Threads serving `proxy`, each with a runtime of its own (the binary: `workers`,
    /// default the CPUs); 0 or 1: the caller's runtime serves it.
    pub proxy_workers: usize,
}

/// Runs the sidecar on `listeners` until `shutdown` completes, then drains in-flight
/// requests for up to `shutdown_grace`. Reloads the config on file change, SIGHUP and
/// `POST /reload` when it came from a file.
///
/// With `proxy_workers` above 1 the proxy listener is served by that many threads of their
/// own (see [`crate::workers`]) and the caller's runtime (best a current-thread one) runs
/// the rest, background work of the workers included; else it serves everything.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SetupError> {
    let grace = config.shutdown_grace;
    let limits = config.limits.clone();
    let source = config.source.clone();
    let own = [Some(&listeners.proxy), listeners.admin.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let runtime = Runtime::new(config, own, listeners.proxy_workers)?;
    let reloader = Reloader::new(runtime.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    runtime.start_schedulers();

    if source.is_file() {
        tokio::spawn(crate::reload::watch(
            reloader.clone(),
            source,
            stop_rx.clone(),
        ));
        tokio::spawn(crate::reload::on_sighup(reloader.clone(), stop_rx.clone()));
    }
    // The admin listener stops last: while the proxy drains, `/readyz` answers 503
    // `draining` so that load balancers stop sending, and probes still get an answer.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin_task = listeners.admin.map(|listener| {
        let admin = Arc::new(Admin::new(runtime.clone(), reloader));
        let handler = move |peer, req| admin.clone().handle(peer, req);
        tokio::spawn(crate::listener::serve(
            listener,
            handler,
            limits.clone(),
            admin_stop_rx,
            // Probes and scrapes are short: once the proxy has drained, the admin
            // listener does not add another whole grace period.
            ADMIN_GRACE.min(grace),
            "admin",
        ))
    });
    let rt = runtime.clone();
    let handler = move |peer, req| crate::proxy::handle(rt.clone(), peer, req);
    let n = listeners.proxy_workers;
    let mut proxy = match Proxy::start(n, listeners.proxy, handler, limits, stop_rx, grace) {
        Ok(p) => p,
        Err(e) => {
            runtime.stop();
            return Err(SetupError(format!("cannot start {n} proxy workers: {e}")));
        }
    };

    shutdown.await;
    tracing::info!(grace = %crate::config::format_duration(grace), "shutting down: no new connections; draining in-flight requests");
    let deadline = tokio::time::Instant::now() + grace;
    runtime.start_draining();
    let _ = stop_tx.send(true);
    proxy.drained().await;
    // Requests inside CONNECT tunnels finish too, and blind tunnels and upgrades get what
    // is left of the grace period.
    if tokio::time::timeout_at(deadline, runtime.tunnels.idle())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining tunnels");
    }
    let _ = admin_stop_tx.send(true);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    runtime.stop();
    proxy.finish().await;
    Ok(())
}

/// The proxy listener, served on the caller's runtime or by worker threads of their own.
enum Proxy {
    Here(tokio::task::JoinHandle<()>),
    Workers(Workers),
}

impl Proxy {
    fn start<F, Fut>(
        workers: usize,
        listener: TcpListener,
        handler: F,
        limits: crate::config::Limits,
        stop: watch::Receiver<bool>,
        grace: std::time::Duration,
    ) -> std::io::Result<Proxy>
    where
        F: Fn(crate::listener::Peer, http::Request<hyper::body::Incoming>) -> Fut
            + Clone
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = http::Response<crate::error::Body>> + Send + 'static,
    {
        if workers > 1 {
            return Workers::start(workers, listener, handler, limits, stop, grace)
                .map(Proxy::Workers);
        }
        let serve = crate::listener::serve(listener, handler, limits, stop, grace, "proxy");
        Ok(Proxy::Here(tokio::spawn(serve)))
    }

    /// Completes when the listener is closed and its connections have drained (or the
    /// grace period is over).
    async fn drained(&mut self) {
        match self {
            Proxy::Here(task) => {
                let _ = task.await;
            }
            Proxy::Workers(w) => w.drained().await,
        }
    }

    /// Stops what still runs on the worker threads (tunnels) and waits for them.
    async fn finish(self) {
        if let Proxy::Workers(w) = self {
            w.finish().await;
        }
    }
}
