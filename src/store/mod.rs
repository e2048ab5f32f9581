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

pub use self::health::{Op, Outcome};
pub use self::record::{unix_ms, StoredToken};
pub use self::redis::{Lease, RefreshState, Store, TokenKeys};
pub use self::seal::{Sealer, ShortKey, MIN_KEY_LEN};

use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the store needs, as the config compiles it from `token_store`.
#[derive(Clone, Debug)]
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

/// Where the store is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// One server (`redis://` or `rediss://`, optionally with `/db`).
    Standalone(String),
    /// Seed nodes of a Redis Cluster (`cluster: true`); the rest are discovered.
    Cluster(Vec<String>),
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
