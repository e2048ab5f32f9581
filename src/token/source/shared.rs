//! The fleet rules of SPEC §9 for one token source: how a fetch goes through the shared
//! store. Runs only inside the source's fetch task, never on the request path.
//!
//! A fetch first reads the store: a stored token that is fresh (before its refresh
//! point), is not the one this process already holds and is not the one an upstream
//! just rejected is adopted. Otherwise the fetch takes the lease (`SET NX PX`), reads
//! once more (another replica may have stored one in between), asks the IdP, and hands
//! the token to its waiters at once; storing, publishing and then releasing the lease
//! follow in a task of their own. A replica that finds the lease taken waits for the
//! publication and adopts it; when the holder frees the lease without a token (its
//! fetch failed, it gave up) the waiter tries the lease itself. Waiting ends within the
//! provider's `timeout`; when nothing was published by then (the holder died, or its IdP
//! is slow), the fetch of our own gets a whole `timeout` of its own, since a request
//! never fails because of the store. The holder's fetch ends before its lease does.
//! When the store fails, or nothing is published in time, the process fetches on its
//! own (its own single flight), as without a store — except a `refresh_token` grant,
//! which asks the IdP only under the lease: a refresh token another replica may already
//! have used would get the whole grant revoked. For the same reason a holder whose
//! rotated refresh token the store did not take keeps the lease until it is written.

use super::TokenSource;
use crate::config::{format_duration, Grant, ProviderConfig};
use crate::secret::Secret;
use crate::store::{Lease, Store, StoredToken, TokenKeys, Waited};
use crate::token::fetch::{adopted, log_adopted, log_bypassed, to_stored};
use crate::token::idp::{failure, Failure, FailureKind};
use crate::token::Token;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

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
    ///
    /// Waiting for another replica and taking over its lease end within the provider's
    /// `timeout`; a fetch of our own after that gets a `timeout` of its own.
    pub(super) async fn fetch_shared(
        &self,
        fleet: &Fleet,
        held: Option<Arc<Token>>,
        rejected: Option<Secret>,
    ) -> Result<Arc<Token>, Failure> {
        let deadline = Instant::now() + self.config.load().timeout;
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
            Err(_) => return self.fetch_bypassing(fleet, STORE_FAILED, deadline).await,
        }
        // Take the lease, or wait for its holder; a holder that fails or dies without a
        // token frees it, and the lease is tried again, within the same deadline.
        let (lease, lease_until) = loop {
            let asked = Instant::now();
            match store.try_lease(keys, fleet.lease).await {
                Ok(Some(lease)) => break (lease, asked + fleet.lease),
                Ok(None) => {}
                Err(_) => return self.fetch_bypassing(fleet, STORE_FAILED, deadline).await,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match store.wait(keys, left, &accept).await {
                Ok(Waited::Token(t)) => {
                    return match self.adopt(t) {
                        Some(t) => Ok(t),
                        None => self.fetch_bypassing(fleet, NOT_PUBLISHED, deadline).await,
                    }
                }
                Ok(Waited::LeaseFree) if Instant::now() < deadline => {}
                Ok(_) => return self.fetch_bypassing(fleet, NOT_PUBLISHED, deadline).await,
                Err(_) => return self.fetch_bypassing(fleet, STORE_FAILED, deadline).await,
            }
        };
        // Another replica may have stored a token between the read and the lease.
        if let Ok(Some(t)) = store.get(keys).await {
            if let Some(t) = accept(&t).then(|| self.adopt(t)).flatten() {
                self.finish(fleet, None, Some((lease, lease_until)));
                return Ok(t);
            }
        }
        // The fetch ends early enough for the token (and a rotated refresh token) to be
        // written while the lease is still ours: a few store operations before it ends.
        let until = deadline.min(
            lease_until
                .checked_sub(store.timeout() * 4)
                .unwrap_or(lease_until),
        );
        let fetched = match until.checked_duration_since(Instant::now()) {
            Some(budget) if !budget.is_zero() => self.fetch_from_idp_within(budget).await,
            _ => Err(out_of_time(&self.config.load())),
        };
        self.finish(fleet, fetched.as_ref().ok(), Some((lease, lease_until)));
        fetched
    }

    /// Without the store's help: the process's own fetch, stored for the others if the
    /// store takes it. It gets the provider's whole `timeout` once nothing was published
    /// in time (the holder died, or its IdP is slow: a request never fails because of the
    /// store), else what is left of `deadline`. A `refresh_token` grant does not ask the
    /// IdP without the lease.
    async fn fetch_bypassing(
        &self,
        fleet: &Fleet,
        reason: &str,
        deadline: Instant,
    ) -> Result<Arc<Token>, Failure> {
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
        let left = match reason {
            NOT_PUBLISHED => cfg.timeout,
            _ => deadline.saturating_duration_since(Instant::now()),
        };
        if left.is_zero() {
            return Err(out_of_time(&cfg));
        }
        log_bypassed(&cfg, reason);
        let fetched = self.fetch_from_idp_within(left).await;
        self.finish(fleet, fetched.as_ref().ok(), None);
        fetched
    }

    /// After a fetch: writes `token` to the store (expiring with it, published to the
    /// waiters) and then releases `lease`, in a task of its own, so the requests waiting
    /// for the token get it without waiting for the store. The order matters: released
    /// before the token is stored, the lease would let another replica fetch again. A
    /// rotated refresh token the store has not taken yet holds both back until it is
    /// written (or the lease expires): no other replica may refresh with the used one.
    fn finish(&self, fleet: &Fleet, token: Option<&Arc<Token>>, lease: Option<(Lease, Instant)>) {
        let put = token.map(|t| {
            let ttl = t.expires_at_wall.duration_since(SystemTime::now());
            (to_stored(t), ttl.unwrap_or_default())
        });
        let saved = self.fetcher.rotation_saved();
        let (store, keys) = (fleet.store.clone(), fleet.keys.clone());
        tokio::spawn(async move {
            if let (Some(mut saved), Some((_, until))) = (saved, &lease) {
                let written = tokio::time::timeout_at(*until, saved.wait_for(|s| *s)).await;
                if !matches!(written, Ok(Ok(_))) {
                    return;
                }
            }
            if let Some((token, ttl)) = put {
                let _ = store.put(&keys, &token, ttl).await;
            }
            if let Some((lease, _)) = lease {
                let _ = store.release(&lease).await;
            }
        });
    }

    /// A stored token as this process's own; counted and audited.
    fn adopt(&self, stored: StoredToken) -> Option<Arc<Token>> {
        let token = adopted(stored, &self.config.load(), &self.prefixes.load())?;
        self.metrics.adopted();
        log_adopted(&self.config.load(), &token);
        Some(token)
    }
}

/// No time left of the provider's `timeout` for a fetch of our own: another replica held
/// the fetch lease all along (still fetching, or it died and the lease has yet to expire).
fn out_of_time(cfg: &ProviderConfig) -> Failure {
    Failure {
        retry_after: Some(Duration::from_secs(1)),
        ..failure(
            FailureKind::Transient,
            format!(
                "no token within {}: another replica held the fetch lease and published none",
                format_duration(cfg.timeout)
            ),
        )
    }
}
