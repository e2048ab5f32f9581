//! The fleet rules of SPEC §9 for one token source: how a fetch goes through the shared
//! store. Runs only inside the source's fetch task, never on the request path.
//!
//! A fetch first reads the store: a stored token that is fresh (before its refresh
//! point), is not the one this process already holds and is not the one an upstream
//! just rejected is adopted. Otherwise the fetch takes the lease (`SET NX PX`), reads
//! once more (another replica may have stored one in between), asks the IdP, stores and
//! publishes the token, and releases the lease. A replica that finds the lease taken
//! waits for the publication, bounded by the provider's `timeout`, and adopts it.
//! When the store fails, or nothing is published in time, the process fetches on its
//! own (its own single flight), as without a store — except a `refresh_token` grant,
//! which asks the IdP only under the lease: a refresh token another replica may already
//! have used would get the whole grant revoked.

use super::TokenSource;
use crate::config::{Grant, ProviderConfig};
use crate::secret::Secret;
use crate::store::{Store, StoredToken, TokenKeys};
use crate::token::fetch::{adopted, log_adopted, log_bypassed, to_stored};
use crate::token::idp::{failure, Failure, FailureKind};
use crate::token::Token;
use std::sync::Arc;
use std::time::Duration;

/// The store a runtime hands its token sources, with the fetch lease.
#[derive(Clone)]
pub struct StoreLink {
    pub store: Arc<Store>,
    /// `token_store.lease`: longer than every provider's `timeout`.
    pub lease: Duration,
}

impl StoreLink {
    /// The link of a provider (and, for token exchange, a subject): its keys, and
    /// whether its IdP may be asked only under the lease. `None` for providers that do
    /// not use the store (a token file is read by every replica itself).
    pub(in crate::token) fn fleet(
        &self,
        cfg: &ProviderConfig,
        subject: Option<&Secret>,
    ) -> Option<Fleet> {
        let lease_only = match cfg.origin.grant() {
            None => return None,
            Some(g) => matches!(g, Grant::RefreshToken { .. }),
        };
        let fingerprint = subject.map(Secret::fingerprint);
        let identity = cfg.key.identity_bytes();
        Some(Fleet {
            keys: self
                .store
                .keys(&identity, fingerprint.as_ref().map(|f| &f[..])),
            store: self.store.clone(),
            lease: self.lease,
            lease_only,
        })
    }
}

/// One source's place in the store.
pub(in crate::token) struct Fleet {
    pub(in crate::token) store: Arc<Store>,
    pub(in crate::token) keys: TokenKeys,
    lease: Duration,
    /// `refresh_token`: the IdP is asked only by the lease holder.
    lease_only: bool,
}

/// Why a fetch went to the IdP without the store.
const STORE_FAILED: &str = "store_unavailable";
const NOT_PUBLISHED: &str = "not_published_in_time";

impl TokenSource {
    /// A token through the store: adopted, or fetched under the lease and published.
    /// `held` is the token this process has now (a refresh wants a newer one);
    /// `rejected` the one an upstream just refused (deleted from the store if it is
    /// still there, never adopted).
    pub(super) async fn fetch_shared(
        &self,
        fleet: &Fleet,
        held: Option<Arc<Token>>,
        rejected: Option<Secret>,
    ) -> Result<Arc<Token>, Failure> {
        let (store, keys) = (&fleet.store, &fleet.keys);
        let accept = |t: &StoredToken| {
            let same = |s: &Secret| t.access_token == *s;
            t.is_fresh()
                && !held.as_ref().is_some_and(|h| same(&h.access_token))
                && !rejected.as_ref().is_some_and(same)
        };
        if let Some(r) = &rejected {
            // Exactly the rejected token: a replacement another replica stored stays.
            let _ = store.delete_if(keys, r).await;
        }
        match store.get(keys).await {
            Ok(Some(t)) if accept(&t) => {
                if let Some(t) = self.adopt(t) {
                    return Ok(t);
                }
            }
            Ok(_) => {}
            Err(_) => return self.fetch_bypassing(fleet, STORE_FAILED).await,
        }
        let lease = match store.try_lease(keys, fleet.lease).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                let timeout = self.config.load().timeout;
                return match store.wait(keys, timeout, &accept).await {
                    Ok(Some(t)) => match self.adopt(t) {
                        Some(t) => Ok(t),
                        None => self.fetch_bypassing(fleet, NOT_PUBLISHED).await,
                    },
                    Ok(None) => self.fetch_bypassing(fleet, NOT_PUBLISHED).await,
                    Err(_) => self.fetch_bypassing(fleet, STORE_FAILED).await,
                };
            }
            Err(_) => return self.fetch_bypassing(fleet, STORE_FAILED).await,
        };
        // Another replica may have stored a token between the read and the lease.
        let again = match store.get(keys).await {
            Ok(Some(t)) if accept(&t) => self.adopt(t),
            _ => None,
        };
        let result = match again {
            Some(t) => Ok(t),
            None => {
                let fetched = self.fetch_from_idp().await;
                if let Ok(t) = &fetched {
                    self.publish(fleet, t).await;
                }
                fetched
            }
        };
        let _ = store.release(&lease).await;
        result
    }

    /// Without the store's help: the process's own fetch, stored for the others if the
    /// store takes it. A `refresh_token` grant does not ask the IdP without the lease.
    async fn fetch_bypassing(&self, fleet: &Fleet, reason: &str) -> Result<Arc<Token>, Failure> {
        let cfg = self.config.load_full();
        if fleet.lease_only {
            return Err(Failure {
                retry_after: Some(Duration::from_secs(1)),
                ..failure(
                    FailureKind::Transient,
                    "the token store is unavailable: a refresh token shared by a fleet is not used without it (a refresh token another replica used would get the grant revoked)".into(),
                )
            });
        }
        log_bypassed(&cfg, reason);
        let fetched = self.fetch_from_idp().await;
        if let Ok(t) = &fetched {
            self.publish(fleet, t).await;
        }
        fetched
    }

    /// Writes `token` to the store (expiring with it) and publishes it to waiters.
    async fn publish(&self, fleet: &Fleet, token: &Token) {
        let ttl = token
            .expires_at_wall
            .duration_since(std::time::SystemTime::now());
        let ttl = ttl.unwrap_or_default();
        let _ = fleet.store.put(&fleet.keys, &to_stored(token), ttl).await;
    }

    /// A stored token as this process's own; counted and audited.
    fn adopt(&self, stored: StoredToken) -> Option<Arc<Token>> {
        let token = adopted(stored, &self.config.load(), &self.prefixes.load())?;
        self.metrics.adopted();
        log_adopted(&self.config.load(), &token);
        Some(token)
    }
}
