//! [`Store`]: the operations `token` builds the fleet rules from, each one bounded Redis
//! round trip (or two, for `delete_if`) under the store's `timeout`.
//!
//! Key layout, all under `key_prefix` and one hash tag per token so a token's keys share
//! a cluster slot: `{prefix}{<tag>}:token` (the sealed access token, expiring with it),
//! `:lease` (the fetch lease, a random owner), `:refresh` (a hash of generation and
//! sealed refresh token) and the channel `:published` (the sealed token, published when
//! it is written). `<tag>` is the HMAC of the provider identity and subject.

use super::connect::{reason, Conn, Connector};
use super::health::{Health, Op, Outcome};
use super::notify::Waiters;
use super::reconnect::no_answer;
use super::record::{decode_access, encode_access, StoredToken};
use super::seal::Sealer;
use super::{StoreConfig, StoreError, Unavailable};
use crate::secret::Secret;
use ::redis::{cmd, Cmd, Value};
use arc_swap::ArcSwapOption;
use ring::rand::SecureRandom;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// `SET` the sealed token with its lifetime and `PUBLISH` it, in one step. The publication
/// is a shortcut (waiters poll too), so a `PUBLISH` Redis refuses — an ACL user without
/// channel rights, Redis 7's default `acl-pubsub-default resetchannels` — must not undo
/// the write or fail the script: `pcall`. Returns 1 when published, 0 when refused.
const PUT_AND_PUBLISH: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local published = redis.pcall('PUBLISH', ARGV[3], ARGV[1])
if type(published) == 'table' and published.err then
  return 0
end
return 1";

/// Deletes the key only while it holds exactly ARGV[1] (a lease owner, a sealed token).
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// A shared token store on Redis. Build one per config with [`Store::new`]; it connects
/// and reconnects in the background. Dropping it stops that.
pub struct Store {
    pub(super) sealer: Sealer,
    prefix: String,
    /// The channel pattern this process subscribes to: every publication under `prefix`.
    pub(super) pattern: String,
    pub(super) timeout: Duration,
    pub(super) connector: Connector,
    pub(super) conn: ArcSwapOption<Conn>,
    /// Woken when a connection attempt of the reconnect loop ends, for operations
    /// issued while connecting.
    pub(super) attempted: Notify,
    pub(super) health: Arc<Health>,
    pub(super) waiters: Arc<Waiters>,
    reconnect_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The Redis names of one token (one provider identity, one subject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenKeys {
    pub(super) token: String,
    pub(super) lease: String,
    pub(super) refresh: String,
    pub(super) channel: String,
}

impl TokenKeys {
    /// The key of the sealed access token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The key of the refresh-token record.
    pub fn refresh(&self) -> &str {
        &self.refresh
    }

    /// The key of the fetch lease.
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// The channel the token is published on when it is written.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

/// A fetch lease this process holds until it is released or expires.
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    key: String,
    owner: String,
}

/// The stored refresh token: its generation (0 when there is none) and the token, `None`
/// when absent or when it does not authenticate (the generation still counts for the
/// compare-and-set).
#[derive(Debug, PartialEq, Eq)]
pub struct RefreshState {
    pub generation: u64,
    pub token: Option<Secret>,
}

impl Store {
    /// Checks the config and starts connecting in the background; Redis need not be up.
    /// Must be called within a tokio runtime.
    pub fn new(cfg: &StoreConfig) -> Result<Arc<Store>, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
        let store = Arc::new(Store {
            sealer: Sealer::new(&cfg.encryption_key)?,
            prefix: cfg.key_prefix.clone(),
            pattern: format!("{}*", glob_escape(&cfg.key_prefix)),
            timeout: cfg.timeout,
            connector: Connector::new(cfg)?,
            conn: ArcSwapOption::empty(),
            attempted: Notify::new(),
            health: Arc::new(Health::new()),
            waiters: Arc::default(),
            reconnect_task: Mutex::new(None),
        });
        let task = runtime.spawn(super::reconnect::run(
            Arc::downgrade(&store),
            store.health.clone(),
        ));
        *store
            .reconnect_task
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(store)
    }

    /// The names of the token of provider `identity` (a stable serialisation of what
    /// identifies the token) and, for token exchange, `subject` (its fingerprint).
    pub fn keys(&self, identity: &[u8], subject: Option<&[u8]>) -> TokenKeys {
        let tag = self.sealer.name_tag(identity, subject);
        let base = format!("{}{{{tag}}}", self.prefix);
        TokenKeys {
            token: format!("{base}:token"),
            lease: format!("{base}:lease"),
            refresh: format!("{base}:refresh"),
            channel: format!("{base}:published"),
        }
    }

    /// The stored access token, if there is one that authenticates.
    pub async fn get(&self, keys: &TokenKeys) -> Result<Option<StoredToken>, Unavailable> {
        let raw = self.read(Op::Get, &keys.token).await?;
        let (token, outcome) = match raw {
            None => (None, Outcome::Absent),
            Some(raw) => match self.open_token(keys, &raw) {
                Some(t) => (Some(t), Outcome::Ok),
                None => (None, Outcome::Invalid),
            },
        };
        self.health.count(Op::Get, outcome);
        Ok(token)
    }

    /// Stores `token` for `ttl` (until it expires) and publishes it to waiting replicas.
    /// A zero `ttl` stores nothing.
    pub async fn put(
        &self,
        keys: &TokenKeys,
        token: &StoredToken,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Ok(());
        }
        let sealed = self.seal(Op::Put, &keys.token, b"", &encode_access(token))?;
        let mut c = cmd("EVAL");
        c.arg(PUT_AND_PUBLISH).arg(1).arg(&keys.token);
        c.arg(&sealed).arg(ms).arg(&keys.channel);
        let _: Value = self.query(Op::Put, &c).await?;
        self.health.count(Op::Put, Outcome::Ok);
        Ok(())
    }

    /// Takes the fetch lease for `ttl` (`SET NX PX`) unless another owner holds it.
    pub async fn try_lease(
        &self,
        keys: &TokenKeys,
        ttl: Duration,
    ) -> Result<Option<Lease>, Unavailable> {
        let mut owner = [0u8; 16];
        if ring::rand::SystemRandom::new().fill(&mut owner).is_err() {
            self.health.count(Op::Lease, Outcome::Error);
            return Err(Unavailable);
        }
        let owner = owner.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut c = cmd("SET");
        c.arg(&keys.lease).arg(&owner).arg("NX").arg("PX").arg(ms);
        let reply: Value = self.query(Op::Lease, &c).await?;
        if matches!(reply, Value::Nil) {
            self.health.count(Op::Lease, Outcome::Lost);
            return Ok(None);
        }
        self.health.count(Op::Lease, Outcome::Ok);
        Ok(Some(Lease {
            key: keys.lease.clone(),
            owner,
        }))
    }

    /// Releases `lease` if this process still owns it; true when it did. A lease that
    /// expired and was taken by another replica is left alone.
    pub async fn release(&self, lease: &Lease) -> Result<bool, Unavailable> {
        let deleted = self
            .compare_and_delete(Op::Release, &lease.key, lease.owner.as_bytes())
            .await?;
        Ok(deleted)
    }

    /// Deletes the stored access token only if it is `rejected` (the token an API just
    /// answered 401 to), so a fleet-wide herd of 401s deletes it once and never deletes
    /// the replacement. True when it was deleted.
    pub async fn delete_if(
        &self,
        keys: &TokenKeys,
        rejected: &Secret,
    ) -> Result<bool, Unavailable> {
        let Some(raw) = self.read(Op::DeleteIf, &keys.token).await? else {
            self.health.count(Op::DeleteIf, Outcome::Absent);
            return Ok(false);
        };
        match self.open_token(keys, &raw) {
            None => {
                self.health.count(Op::DeleteIf, Outcome::Invalid);
                Ok(false)
            }
            Some(t) if !t.access_token.matches(rejected.expose().as_bytes()) => {
                self.health.count(Op::DeleteIf, Outcome::Lost);
                Ok(false)
            }
            // Exactly these bytes: if another replica replaced the token since the read,
            // the replacement stays.
            Some(_) => {
                self.compare_and_delete(Op::DeleteIf, &keys.token, &raw)
                    .await
            }
        }
    }

    /// The bound on one store operation (`token_store.redis.timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True while Redis answers (the `token_sidecar_store_up` gauge).
    pub fn up(&self) -> bool {
        self.health.is_up()
    }

    /// Why the store last failed (no secret in it), for `/status`.
    pub fn last_error(&self) -> Option<String> {
        self.health.last_error()
    }

    /// Outages since start (each logged once).
    pub fn outages(&self) -> u64 {
        self.health.outages()
    }

    /// Every `(op, outcome, count)` (`token_sidecar_store_operations_total`).
    pub fn operations(&self) -> impl Iterator<Item = (Op, Outcome, u64)> + '_ {
        Op::ALL.into_iter().flat_map(move |op| {
            Outcome::ALL
                .into_iter()
                .map(move |o| (op, o, self.health.counted(op, o)))
        })
    }

    pub(super) fn open_token(&self, keys: &TokenKeys, raw: &[u8]) -> Option<StoredToken> {
        let token = self
            .sealer
            .open(&keys.token, b"", raw)
            .and_then(|plain| decode_access(&plain));
        if token.is_none() {
            self.health.invalid_value();
        }
        token
    }

    pub(super) fn seal(
        &self,
        op: Op,
        name: &str,
        ctx: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, Unavailable> {
        self.sealer.seal(name, ctx, plain).ok_or_else(|| {
            self.health.count(op, Outcome::Error);
            Unavailable
        })
    }

    async fn read(&self, op: Op, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        self.query(op, cmd("GET").arg(key)).await
    }

    async fn compare_and_delete(
        &self,
        op: Op,
        key: &str,
        expected: &[u8],
    ) -> Result<bool, Unavailable> {
        let mut c = cmd("EVAL");
        c.arg(COMPARE_AND_DELETE).arg(1).arg(key).arg(expected);
        let deleted: i64 = self.query(op, &c).await?;
        let outcome = if deleted == 1 {
            Outcome::Ok
        } else {
            Outcome::Lost
        };
        self.health.count(op, outcome);
        Ok(deleted == 1)
    }

    /// One command under the store's rules: not attempted while the store is down,
    /// bounded by `timeout` (including waiting for the first connection), failures
    /// counted and reported to [`Health`]. Successes are counted by the caller, which
    /// knows the outcome.
    pub(super) async fn query<T: ::redis::FromRedisValue>(
        &self,
        op: Op,
        c: &Cmd,
    ) -> Result<T, Unavailable> {
        if self.health.is_down() {
            self.health.count(op, Outcome::Down);
            return Err(Unavailable);
        }
        let attempt = async {
            // `None`: the first connection failed while this waited for it.
            let conn = self.connection().await.ok_or(None)?;
            conn.query(c).await.map_err(Some)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(v)) => {
                self.health.answered();
                return Ok(v);
            }
            Ok(Err(None)) => self.health.count(op, Outcome::Down),
            Ok(Err(Some(e))) if e.code() == Some("WRONGTYPE") => {
                // Someone else's value under our key: Redis is fine, this key is not.
                self.health.count(op, Outcome::Error);
            }
            Ok(Err(Some(e))) => self.health.failed(op, Outcome::Error, reason(&e)),
            Err(_) => self
                .health
                .failed(op, Outcome::Timeout, no_answer(self.timeout)),
        }
        Err(Unavailable)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let task = self
            .reconnect_task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

/// `prefix` with Redis glob characters escaped, for `PSUBSCRIBE`.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token source spawns tasks that use the store: all of it must be `Send`.
    #[allow(dead_code, reason = "a compile-time check, never called")]
    fn futures_are_send(s: &Store, k: &TokenKeys, l: &Lease, t: &StoredToken, x: &Secret) {
        fn send<T: Send + Sync>(_: &T) {}
        fn send_future<F: std::future::Future + Send>(_: F) {}
        send(s);
        send_future(s.get(k));
        send_future(s.put(k, t, Duration::ZERO));
        send_future(s.try_lease(k, Duration::ZERO));
        send_future(s.release(l));
        send_future(s.delete_if(k, x));
        send_future(s.get_refresh(k));
        send_future(s.cas_refresh(k, 0, x));
        send_future(s.wait(k, Duration::ZERO, |_| true));
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("token-sidecar:"), "token-sidecar:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
