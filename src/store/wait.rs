//! [`Store::wait`]: how a replica that found the fetch lease taken waits for its
//! holder's token — woken by the publication, polling as a fallback (pub/sub is at most
//! once, and an ACL user may have no channel rights) — and notices a holder that gave up.

use super::health::{Op, Outcome};
use super::record::StoredToken;
use super::redis::{Store, TokenKeys};
use super::Unavailable;
use ::redis::cmd;
use std::time::Duration;
use tokio::time::Instant;

/// The token and whether its lease is held, in one step (the keys share a hash slot).
/// Both `GET`, so the ACL needs no other command.
const TOKEN_AND_LEASE: &str = r"
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) and 1 or 0}";

/// How often `wait` reads the key when no publication arrives: from the first to the
/// last interval, doubling.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_LAST: Duration = Duration::from_millis(500);

/// How [`Store::wait`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The holder's token (or another one the caller accepts).
    Token(StoredToken),
    /// Nobody holds the lease and no acceptable token is stored: the holder failed, died
    /// or gave up. Worth taking the lease again.
    LeaseFree,
    /// `within` passed with the lease still held and nothing acceptable stored.
    TimedOut,
}

impl Store {
    /// Waits up to `within` for the lease holder's token: a stored one that `accept`s
    /// (for example: one not yet at its refresh point), woken by publications and
    /// polling as a fallback. Each poll also sees whether the lease is still held, so a
    /// holder that failed or gave up ends the wait at once ([`Waited::LeaseFree`]) instead
    /// of at `within`. `Err` when the store failed (the caller fetches itself).
    pub async fn wait(
        &self,
        keys: &TokenKeys,
        within: Duration,
        accept: impl Fn(&StoredToken) -> bool,
    ) -> Result<Waited, Unavailable> {
        let deadline = Instant::now() + within;
        // Registered before the first read, so a publication in between is not lost.
        let mut interest = self.waiters.register(&keys.channel);
        let mut poll = POLL_FIRST;
        loop {
            let mut c = cmd("EVAL");
            c.arg(TOKEN_AND_LEASE)
                .arg(2)
                .arg(&keys.token)
                .arg(&keys.lease);
            let (raw, leased): (Option<Vec<u8>>, i64) = self.query(Op::Wait, &c).await?;
            let found = raw.and_then(|raw| self.open_token(keys, &raw));
            if let Some(t) = found.filter(&accept) {
                self.health.count(Op::Wait, Outcome::Ok);
                return Ok(Waited::Token(t));
            }
            if leased == 0 {
                self.health.count(Op::Wait, Outcome::Absent);
                return Ok(Waited::LeaseFree);
            }
            if Instant::now() >= deadline {
                self.health.count(Op::Wait, Outcome::Absent);
                return Ok(Waited::TimedOut);
            }
            let next_poll = (Instant::now() + poll).min(deadline);
            poll = (poll * 2).min(POLL_LAST);
            loop {
                tokio::select! {
                    payload = interest.next() => {
                        if let Some(t) = self.open_token(keys, &payload).filter(&accept) {
                            self.health.count(Op::Wait, Outcome::Ok);
                            return Ok(Waited::Token(t));
                        }
                    }
                    () = tokio::time::sleep_until(next_poll) => break,
                }
            }
        }
    }
}
