//! Whether the store is up, what its operations did, and the one log line per outage.
//!
//! Plain atomics, so metrics and `/status` can read them at any time without a lock or a
//! Redis round trip. The reconnect loop in `redis` waits on [`Health::wake`].

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::Notify;

/// A store operation, the `op` label of `token_sidecar_store_operations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Get,
    Put,
    Lease,
    Release,
    DeleteIf,
    GetRefresh,
    CasRefresh,
    Wait,
    /// The reconnect loop's probe.
    Ping,
    /// (Re)subscribing to publications.
    Subscribe,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Get,
        Op::Put,
        Op::Lease,
        Op::Release,
        Op::DeleteIf,
        Op::GetRefresh,
        Op::CasRefresh,
        Op::Wait,
        Op::Ping,
        Op::Subscribe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Lease => "lease",
            Op::Release => "release",
            Op::DeleteIf => "delete_if",
            Op::GetRefresh => "get_refresh",
            Op::CasRefresh => "cas_refresh",
            Op::Wait => "wait",
            Op::Ping => "ping",
            Op::Subscribe => "subscribe",
        }
    }
}

/// How an operation ended, the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Done: a value found, written, a lease taken, a compare-and-set won.
    Ok,
    /// Nothing there (get, wait: nothing acceptable arrived in time).
    Absent,
    /// The condition did not hold: lease held by another, compare failed.
    Lost,
    /// A value was there but did not authenticate (wrong key, tampered): ignored.
    Invalid,
    /// Redis answered with an error or the connection failed.
    Error,
    /// No answer within the store's `timeout`.
    Timeout,
    /// Not attempted: the store is down and the reconnect loop has not seen it back.
    Down,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Absent,
        Outcome::Lost,
        Outcome::Invalid,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::Down,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Absent => "absent",
            Outcome::Lost => "lost",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Down => "down",
        }
    }
}

/// At most one warning about values that do not authenticate per this long.
const INVALID_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Up/down state, operation counts and the outage log.
pub(super) struct Health {
    state: AtomicU8,
    counts: [[AtomicU64; Outcome::ALL.len()]; Op::ALL.len()],
    outages: AtomicU64,
    detail: Mutex<Detail>,
    /// Woken when the store goes down, so the reconnect loop starts probing.
    pub(super) wake: Notify,
}

#[derive(Default)]
struct Detail {
    down_since: Option<Instant>,
    last_error: Option<String>,
    subscribe_warned: bool,
    /// When a value that did not authenticate was last logged.
    invalid_warned_at: Option<Instant>,
}

impl Health {
    pub(super) fn new() -> Health {
        Health {
            state: AtomicU8::new(CONNECTING),
            counts: Default::default(),
            outages: AtomicU64::new(0),
            detail: Mutex::new(Detail::default()),
            wake: Notify::new(),
        }
    }

    /// True after a successful operation, until a failed one.
    pub(super) fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// True in a known outage: operations are not attempted. Before the first answer
    /// ("connecting") they are.
    pub(super) fn is_down(&self) -> bool {
        self.state.load(Ordering::Acquire) == DOWN
    }

    /// True until the first answer after start or after an outage.
    pub(super) fn needs_probe(&self) -> bool {
        !self.is_up()
    }

    pub(super) fn count(&self, op: Op, outcome: Outcome) {
        self.counts[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn counted(&self, op: Op, outcome: Outcome) -> u64 {
        self.counts[op as usize][outcome as usize].load(Ordering::Relaxed)
    }

    pub(super) fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    pub(super) fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Redis answered. Ends an outage, with one log line.
    pub(super) fn answered(&self) {
        if self.is_up() {
            return;
        }
        // Transitions happen under the lock, so a failure and an answer racing each other
        // leave the state and `down_since` consistent.
        let mut detail = self.lock();
        if self.state.swap(UP, Ordering::AcqRel) == UP {
            return;
        }
        match detail.down_since.take() {
            Some(t) => tracing::info!(
                outage_ms = t.elapsed().as_millis() as u64,
                "token store reachable again; sharing tokens through it"
            ),
            None => tracing::debug!("token store connected"),
        }
    }

    /// An operation failed (`reason` holds no secret). Starts an outage, with one log
    /// line, unless one is already on.
    pub(super) fn failed(&self, op: Op, outcome: Outcome, reason: String) {
        self.count(op, outcome);
        let mut detail = self.lock();
        let previous = self.state.swap(DOWN, Ordering::AcqRel);
        detail.last_error = Some(reason);
        if previous == DOWN {
            return;
        }
        detail.down_since = Some(Instant::now());
        self.outages.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            op = op.as_str(),
            error = detail.last_error.as_deref().unwrap_or_default(),
            "token store unavailable; each token is fetched by this process alone until it is back"
        );
        drop(detail);
        self.wake.notify_one();
    }

    /// Subscribing to publications failed while Redis answers otherwise (an ACL without
    /// channel rights, say): logged once per store, as waiters still work by polling.
    pub(super) fn subscribe_failed(&self, reason: String) {
        let mut detail = self.lock();
        if !std::mem::replace(&mut detail.subscribe_warned, true) {
            tracing::warn!(
                error = reason.as_str(),
                "token store: cannot subscribe to publications; replicas waiting for a token poll instead"
            );
        }
    }

    /// A stored value did not authenticate (wrong `encryption_key`, tampered, copied
    /// under another name): one warning a minute at most (a waiting replica polls).
    pub(super) fn invalid_value(&self) {
        let mut detail = self.lock();
        let now = Instant::now();
        if detail
            .invalid_warned_at
            .is_none_or(|t| now.duration_since(t) >= INVALID_WARN_EVERY)
        {
            detail.invalid_warned_at = Some(now);
            tracing::warn!("token store: ignored a stored value that does not authenticate (another encryption_key, or tampered); fetching instead");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct() {
        let ops: std::collections::HashSet<_> = Op::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(ops.len(), Op::ALL.len());
        let outcomes: std::collections::HashSet<_> =
            Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes.len(), Outcome::ALL.len());
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
        }
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn one_outage_per_down_period() {
        let h = Health::new();
        assert!(!h.is_up() && !h.is_down() && h.needs_probe());
        h.answered();
        assert!(h.is_up() && !h.needs_probe());
        h.failed(Op::Get, Outcome::Timeout, "timed out".into());
        h.failed(Op::Put, Outcome::Error, "connection refused".into());
        assert!(h.is_down());
        assert_eq!(h.outages(), 1);
        assert_eq!(h.last_error().as_deref(), Some("connection refused"));
        assert_eq!(h.counted(Op::Get, Outcome::Timeout), 1);
        assert_eq!(h.counted(Op::Put, Outcome::Error), 1);
        h.answered();
        assert!(h.is_up());
        h.failed(Op::Get, Outcome::Error, "again".into());
        assert_eq!(h.outages(), 2);
    }
}
