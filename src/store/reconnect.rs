//! The store's background loop: connects at start, reconnects after an outage with
//! backoff, and keeps the publication subscription in place. Operations never wait for
//! it (while the store is down they are not attempted); it is what ends an outage.
//!
//! While the store is up it sends a `PING` every few seconds (the hot path never touches
//! the store, so an outage would otherwise go unseen until the next refresh point).
//! While the store is down the loop probes it with `PING`, first on the current
//! connection (the connection manager reconnects by itself), then on a fresh one built
//! from the config, so a connection stuck in a bad state (a failed authentication, a
//! cluster that lost all its nodes) is replaced rather than retried forever.

use super::connect::{reason, Conn, PushHandler};
use super::health::{Health, Op, Outcome};
use super::redis::Store;
use ::redis::{cmd, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(5);
/// While the store is up and idle (the hot path never touches it), it is probed this
/// often, so that `store_up` and `/status` notice an outage without traffic.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Runs until the store is dropped.
pub(super) async fn run(store: Weak<Store>, health: Arc<Health>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        let wake = health.wake.notified();
        tokio::pin!(wake);
        // Enabled before looking, so a failure reported in between is not missed.
        wake.as_mut().enable();
        let done = match store.upgrade() {
            None => return,
            Some(store) => store.maintain().await,
        };
        if done {
            backoff = BACKOFF_FIRST;
            tokio::select! {
                _ = &mut wake => {}
                _ = tokio::time::sleep(HEARTBEAT) => match store.upgrade() {
                    Some(store) => store.heartbeat().await,
                    None => return,
                },
            }
        } else {
            // ±25 % jitter, so a fleet does not reconnect in lockstep.
            let jitter = 0.75 + fastrand::f64() * 0.5;
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            backoff = (backoff * 2).min(BACKOFF_LAST);
        }
    }
}

impl Store {
    /// The current connection, waiting for the first one while connecting; `None`
    /// when the store went down meanwhile.
    pub(super) async fn connection(&self) -> Option<Arc<Conn>> {
        loop {
            let attempted = self.attempted.notified();
            tokio::pin!(attempted);
            attempted.as_mut().enable();
            if let Some(conn) = self.conn.load_full() {
                return Some(conn);
            }
            if self.health.is_down() {
                return None;
            }
            attempted.await;
        }
    }

    /// The handler the connection hands publications to.
    pub(super) fn push_handler(&self) -> PushHandler {
        let waiters = Arc::downgrade(&self.waiters);
        Arc::new(move |push| {
            if let Some(w) = waiters.upgrade() {
                w.deliver(push);
            }
        })
    }

    /// One round: probe if needed, then subscribe if needed. True when nothing is left
    /// to do until the next failure.
    async fn maintain(&self) -> bool {
        if self.health.needs_probe() && !self.probe().await {
            return false;
        }
        match self.conn.load_full() {
            Some(conn) if !conn.subscribed.load(Ordering::Acquire) => {
                if self.subscribe(&conn).await {
                    return true;
                }
                // Retried with backoff; meanwhile the store is still watched (a refused
                // subscription does not take it down, an unanswered PING does).
                self.ping(&conn).await;
                false
            }
            _ => true,
        }
    }

    /// An idle store's probe: a `PING` on the current connection; a failure takes the
    /// store down (one log line) and the loop reconnects.
    async fn heartbeat(&self) {
        if let Some(conn) = self.conn.load_full() {
            self.ping(&conn).await;
        }
    }

    /// Probes the current connection, else a fresh one. True when Redis answered.
    async fn probe(&self) -> bool {
        let answered = self.try_connections().await;
        // Operations waiting for a first connection go on: with it, or failing fast.
        self.attempted.notify_waiters();
        answered
    }

    async fn try_connections(&self) -> bool {
        if let Some(conn) = self.conn.load_full() {
            if self.ping(&conn).await {
                return true;
            }
        }
        let fresh = tokio::time::timeout(
            self.connector.connect_timeout,
            self.connector.connect(self.push_handler()),
        )
        .await;
        let conn = match fresh {
            Ok(Ok(conn)) => Arc::new(conn),
            Ok(Err(e)) => {
                self.health.failed(Op::Ping, Outcome::Error, reason(&e));
                return false;
            }
            Err(_) => {
                let why = no_answer(self.connector.connect_timeout);
                self.health.failed(Op::Ping, Outcome::Timeout, why);
                return false;
            }
        };
        if !self.ping(&conn).await {
            return false;
        }
        self.conn.store(Some(conn));
        true
    }

    async fn ping(&self, conn: &Conn) -> bool {
        // The connect bound: on a fresh connection (or one the manager is re-establishing)
        // the first PING includes connecting.
        let bound = self.connector.connect_timeout;
        let answer = tokio::time::timeout(bound, conn.query::<Value>(&cmd("PING"))).await;
        match answer {
            Ok(Ok(_)) => {
                self.health.count(Op::Ping, Outcome::Ok);
                self.health.answered();
                true
            }
            Ok(Err(e)) => {
                self.health.failed(Op::Ping, Outcome::Error, reason(&e));
                false
            }
            Err(_) => {
                self.health
                    .failed(Op::Ping, Outcome::Timeout, no_answer(bound));
                false
            }
        }
    }

    /// Subscribes `conn` to every publication under the prefix. A failure does not take
    /// the store down (waiters poll instead); it is logged once per store and retried.
    async fn subscribe(&self, conn: &Conn) -> bool {
        let result = tokio::time::timeout(self.timeout, conn.psubscribe(&self.pattern)).await;
        let why = match result {
            Ok(Ok(())) => {
                self.health.count(Op::Subscribe, Outcome::Ok);
                return true;
            }
            Ok(Err(e)) => {
                self.health.count(Op::Subscribe, Outcome::Error);
                reason(&e)
            }
            Err(_) => {
                self.health.count(Op::Subscribe, Outcome::Timeout);
                no_answer(self.timeout)
            }
        };
        self.health.subscribe_failed(why);
        false
    }
}

/// The reason for a timeout.
pub(super) fn no_answer(bound: Duration) -> String {
    format!("no answer within {} ms", bound.as_millis())
}
