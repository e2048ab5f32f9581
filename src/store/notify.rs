//! Local delivery of publications: the connection's push handler hands every message on
//! our channel pattern to [`Waiters::deliver`], which wakes the tasks waiting for that
//! channel. Nothing here talks to Redis.
//!
//! Publications are a shortcut, not a guarantee: pub/sub is at most once (a message sent
//! while the connection is re-established is lost), so `Store::wait` also polls.

use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The last payload published on a channel, `None` before the first.
type Slot = watch::Sender<Option<Arc<[u8]>>>;

/// The channels someone in this process waits on, each with the last payload seen.
#[derive(Default)]
pub(super) struct Waiters {
    channels: Mutex<HashMap<String, Slot>>,
}

/// One task's interest in one channel; dropping it forgets the channel when it was the
/// last one.
pub(super) struct Interest {
    waiters: Arc<Waiters>,
    channel: String,
    rx: watch::Receiver<Option<Arc<[u8]>>>,
}

impl Waiters {
    /// Registers interest in `channel`. Register before reading the key, so a
    /// publication between the read and the wait is not lost.
    pub(super) fn register(self: &Arc<Self>, channel: &str) -> Interest {
        let mut map = self.lock();
        let tx = map
            .entry(channel.to_string())
            .or_insert_with(|| watch::channel(None).0);
        Interest {
            waiters: self.clone(),
            channel: channel.to_string(),
            rx: tx.subscribe(),
        }
    }

    /// Hands a push from the connection to the waiters of its channel.
    pub(super) fn deliver(&self, push: PushInfo) {
        let (channel, payload) = match (push.kind, push.data.as_slice()) {
            (PushKind::PMessage, [_pattern, channel, payload]) => (channel, payload),
            (PushKind::Message, [channel, payload]) => (channel, payload),
            _ => return,
        };
        let (Some(channel), Some(payload)) = (bytes(channel), bytes(payload)) else {
            return;
        };
        let Ok(channel) = std::str::from_utf8(channel) else {
            return;
        };
        if let Some(tx) = self.lock().get(channel) {
            tx.send_replace(Some(Arc::from(payload)));
        }
    }

    /// Channels with waiters (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Interest {
    /// The next payload published on the channel after registration (or after the last
    /// one returned). Pending forever if none comes: callers bound it with a deadline.
    pub(super) async fn next(&mut self) -> Arc<[u8]> {
        loop {
            if self.rx.changed().await.is_err() {
                // The sender lives in the map while this interest exists; never reached.
                std::future::pending::<()>().await;
            }
            if let Some(payload) = self.rx.borrow_and_update().clone() {
                return payload;
            }
        }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        // This receiver still counts until the end of `drop`: one left means it was ours.
        if map
            .get(&self.channel)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            map.remove(&self.channel);
        }
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pmessage(channel: &str, payload: &[u8]) -> PushInfo {
        PushInfo {
            kind: PushKind::PMessage,
            data: vec![
                Value::BulkString(b"p*".to_vec()),
                Value::BulkString(channel.as_bytes().to_vec()),
                Value::BulkString(payload.to_vec()),
            ],
        }
    }

    #[tokio::test]
    async fn delivers_to_the_channel_waiters_only() {
        let w = Arc::new(Waiters::default());
        let mut a = w.register("a");
        let mut a2 = w.register("a");
        let mut b = w.register("b");
        w.deliver(pmessage("a", b"one"));
        assert_eq!(&*a.next().await, b"one");
        assert_eq!(&*a2.next().await, b"one");
        let pending = tokio::time::timeout(Duration::from_millis(20), b.next()).await;
        assert!(pending.is_err(), "b saw a's message");
        // Other kinds and shapes are ignored.
        w.deliver(PushInfo {
            kind: PushKind::Subscribe,
            data: vec![Value::BulkString(b"b".to_vec()), Value::Int(1)],
        });
        w.deliver(PushInfo {
            kind: PushKind::PMessage,
            data: vec![Value::Nil],
        });
        let pending = tokio::time::timeout(Duration::from_millis(20), b.next()).await;
        assert!(pending.is_err());
    }

    #[tokio::test]
    async fn a_message_before_next_is_kept() {
        let w = Arc::new(Waiters::default());
        let mut a = w.register("a");
        w.deliver(pmessage("a", b"early"));
        assert_eq!(&*a.next().await, b"early");
    }

    #[test]
    fn the_last_interest_forgets_the_channel() {
        let w = Arc::new(Waiters::default());
        let a = w.register("a");
        let a2 = w.register("a");
        assert_eq!(w.len(), 1);
        drop(a);
        assert_eq!(w.len(), 1);
        drop(a2);
        assert_eq!(w.len(), 0);
        // Delivering to nobody is fine.
        w.deliver(pmessage("a", b"x"));
    }
}
