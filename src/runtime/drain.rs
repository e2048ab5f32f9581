//! Tunnels at shutdown. The listener's graceful drain watches the connections it accepted;
//! a CONNECT (or an upgrade) leaves that watch once its `200`/`101` is sent, and what runs
//! inside it afterwards is tracked here: requests served inside a tunnel finish (their
//! connection is shut down gracefully once shutdown begins), and blind tunnels get the
//! rest of `shutdown_grace` to close on their own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Live tunnels and the shutdown signal they watch.
pub struct Tunnels {
    live: AtomicUsize,
    idle: Notify,
    draining: watch::Sender<bool>,
}

/// One tunnel, counted until dropped.
pub struct TunnelGuard(Arc<Tunnels>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tunnels {
    pub fn new() -> Arc<Tunnels> {
        Arc::new(Tunnels {
            live: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: watch::channel(false).0,
        })
    }

    /// Counts a tunnel from now (before its task is spawned) until the guard is dropped.
    pub fn track(self: &Arc<Self>) -> TunnelGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        TunnelGuard(self.clone())
    }

    /// Turns true when shutdown begins.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    pub(super) fn start_draining(&self) {
        self.draining.send_replace(true);
    }

    /// Completes when no tunnel is left.
    pub async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_last_tunnel() {
        let t = Tunnels::new();
        t.idle().await;
        let (a, b) = (t.track(), t.track());
        let mut draining = t.draining();
        t.start_draining();
        assert!(*draining.borrow_and_update());
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.idle().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "one tunnel is left");
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("idle once the last tunnel closed")
            .unwrap();
    }
}
