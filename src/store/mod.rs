//! The shared token store (SPEC §9): a Redis (or Valkey) that replicas of one fleet use
//! to share tokens, so N replicas make the IdP calls of one.
//!
//! This module owns the store's connection, its cryptography and its operations; it does
//! not know about providers, grants or the request path. `token` decides when to read,
//! write, lease and wait; this module makes each of those one bounded Redis operation.
//!
//! Invariants:
//! - Redis is trusted with availability, never with confidentiality or integrity: key
//!   names are keyed hashes ([`Sealer::name_tag`]), values are sealed with AES-256-GCM
//!   bound to their key name, and a value that does not authenticate is treated as
//!   absent (and counted), never returned.
//! - Every operation is bounded by the store's `timeout` and never panics; a failure is
//!   an `Err(Unavailable)` the caller answers by working without the store. While the
//!   store is down, operations are not even attempted (outcome `down`) until the
//!   reconnect loop sees it answer again.
//! - One log line per outage, one when it ends; no log line or error holds a token, a
//!   password, the encryption key or a URL's credentials.

mod connect;
mod health;
mod notify;
mod reconnect;
mod record;
mod redis;
mod rotation;
mod seal;
mod wait;

pub use self::health::{Op, Outcome};
pub use self::record::{unix_ms, StoredToken};
pub use self::redis::{Lease, RefreshState, Store, TokenKeys};
pub use self::seal::{Sealer, ShortKey, MIN_KEY_LEN};
pub use self::wait::Waited;

use crate::secret::Secret;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the store needs, as the config compiles it from `token_store`. `Debug`
/// shows no password, key or URL credentials.
#[derive(Clone)]
pub struct StoreConfig {
    pub endpoint: Endpoint,
    /// ACL user (Redis 6+); `None` authenticates as `default` (password only).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Trusted in addition to the system roots, for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// Prepended to every key and channel name.
    pub key_prefix: String,
    /// The bound on one store operation; slower counts as a failure.
    pub timeout: Duration,
    /// At least [`MIN_KEY_LEN`] bytes; key names and values are derived from it.
    pub encryption_key: Secret,
}

impl StoreConfig {
    /// A digest of every setting and `lease`, in a fixed byte layout: equal digests, the
    /// same store (what a reload compares).
    pub fn fingerprint(&self, lease: Duration) -> crate::secret::Fingerprint {
        let mut b = Vec::with_capacity(256);
        let mut put = |bytes: &[u8]| {
            b.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            b.extend_from_slice(bytes);
        };
        match &self.endpoint {
            Endpoint::Standalone(url) => put(url.as_bytes()),
            Endpoint::Cluster(urls) => {
                put(b"cluster");
                urls.iter().for_each(|u| put(u.as_bytes()));
            }
        }
        put(self.username.as_deref().unwrap_or("").as_bytes());
        put(&self
            .password
            .as_ref()
            .map(Secret::fingerprint)
            .unwrap_or_default());
        let ca = self.ca_file.as_ref().map(|p| p.display().to_string());
        put(ca.unwrap_or_default().as_bytes());
        put(self.key_prefix.as_bytes());
        put(&(self.timeout.as_nanos() as u64).to_be_bytes());
        put(&self.encryption_key.fingerprint());
        put(&(lease.as_nanos() as u64).to_be_bytes());
        crate::secret::fingerprint(&b)
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("encryption_key", &self.encryption_key)
            .finish()
    }
}

/// Checks `cfg` as [`Store::new`] does (key length, URLs, trust roots) without
/// connecting or needing a runtime: what `validate` reports.
pub fn check(cfg: &StoreConfig) -> Result<(), StoreError> {
    Sealer::new(&cfg.encryption_key)?;
    connect::Connector::new(cfg)?;
    Ok(())
}

/// Where the store is. `Debug` blanks the credentials a URL may carry.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// One server (`redis://` or `rediss://`, optionally with `/db`).
    Standalone(String),
    /// Seed nodes of a Redis Cluster (`cluster: true`); the rest are discovered.
    Cluster(Vec<String>),
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Standalone(url) => f.debug_tuple("Standalone").field(&redact(url)).finish(),
            Endpoint::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact(u)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// `url` with any `user:password@` replaced by `[redacted]@`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Why a store cannot be built from its config. Messages name the setting and never hold
/// a URL (it may carry a password), a password or the key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    ShortKey(#[from] ShortKey),
    #[error("token_store.redis: {0}")]
    Url(String),
    #[error("token_store.redis.ca_file: {0}")]
    CaFile(String),
    #[error("the token store must be built within a tokio runtime")]
    NoRuntime,
}

/// The store could not do what was asked (down, slow, an error): the caller proceeds as
/// if there were no store. Why is counted and logged by the store, once per outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("token store unavailable")]
pub struct Unavailable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_credentials() {
        let cfg = StoreConfig {
            endpoint: Endpoint::Cluster(vec![
                "redis://u:pw-in-url@h:1/0".into(),
                "rediss://h2:2".into(),
            ]),
            username: Some("user".into()),
            password: Some(Secret::new("the-password")),
            ca_file: None,
            key_prefix: "p:".into(),
            timeout: Duration::from_millis(250),
            encryption_key: Secret::new("k".repeat(40)),
        };
        let shown = format!("{cfg:?}");
        for secret in ["pw-in-url", "the-password", "kkkk"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("[redacted]@h:1/0") && shown.contains("rediss://h2:2"));
    }

    #[test]
    fn fingerprints_change_with_every_setting() {
        let base = StoreConfig {
            endpoint: Endpoint::Standalone("redis://h:1".into()),
            username: None,
            password: None,
            ca_file: None,
            key_prefix: "p:".into(),
            timeout: Duration::from_millis(250),
            encryption_key: Secret::new("k".repeat(40)),
        };
        let lease = Duration::from_secs(15);
        let f = base.fingerprint(lease);
        assert_eq!(f, base.clone().fingerprint(lease));
        assert_ne!(f, base.fingerprint(Duration::from_secs(16)));
        let mut other = base.clone();
        other.encryption_key = Secret::new("j".repeat(40));
        assert_ne!(f, other.fingerprint(lease));
        let mut other = base.clone();
        other.password = Some(Secret::new("pw"));
        assert_ne!(f, other.fingerprint(lease));
        let mut other = base;
        other.key_prefix = "q:".into();
        assert_ne!(f, other.fingerprint(lease));
    }
}
