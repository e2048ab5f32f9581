//! The fleet's refresh token in the shared store (SPEC §9): which refresh token this
//! replica may present, and how a rotation gets written. The token source asks only while
//! it holds the fetch lease, so one replica at a time refreshes.
//!
//! The rules, each against a way a grant gets revoked:
//! - Before every refresh the stored token is taken: a replica never presents one that
//!   another replica has rotated away.
//! - A rotation is written by compare-and-set on its generation, in a task of its own (a
//!   fetch cut off by its timeout cannot lose it). When the store does not take it, it
//!   is `unsaved`: the task retries until the store takes it, and the source keeps the
//!   fetch lease until then (or until it expires), so no other replica refreshes with
//!   the used token meanwhile; this replica writes it before anything else.
//! - When the record is gone although this replica saw later generations (Redis flushed
//!   or restarted without persistence), the token in memory is presented only if this
//!   replica wrote the last generation it knows — and the record is re-seeded with it;
//!   otherwise the refresh fails until someone provides a new refresh token.
//!
//! Nothing here logs or returns a refresh token.

use crate::secret::Secret;
use crate::store::{Store, TokenKeys};
use crate::token::idp::{failure, Failure, FailureKind};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How soon a rotation the store did not take is written again: doubling, up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(2);

/// The fleet's refresh token in the shared store.
pub(in crate::token::grant) struct FleetRefresh {
    store: Arc<Store>,
    keys: TokenKeys,
    known: Mutex<Known>,
    /// Held across each read-decide-write of the record, so the background writer of an
    /// unsaved rotation and the next refresh never interleave.
    record: tokio::sync::Mutex<()>,
    /// True while no rotation of ours awaits the store (`!known.unsaved`), for the
    /// source's lease holder to wait on.
    saved: watch::Sender<bool>,
}

/// What this replica knows of the record.
#[derive(Clone, Copy, Default)]
struct Known {
    /// The generation the token in memory has (or rotated from, while `unsaved`).
    generation: u64,
    /// The token in memory is a rotation of `generation` the store has not taken yet.
    unsaved: bool,
    /// This replica wrote `generation` (or holds its unsaved successor): if the record
    /// disappears, the token in memory is the newest one this replica can know of.
    ours: bool,
    /// The loss of the record was logged (once, until the record is read again).
    loss_logged: bool,
}

impl FleetRefresh {
    pub(in crate::token::grant) fn new(store: Arc<Store>, keys: TokenKeys) -> Arc<Self> {
        Arc::new(Self {
            store,
            keys,
            known: Mutex::default(),
            record: tokio::sync::Mutex::new(()),
            saved: watch::Sender::new(true),
        })
    }

    /// Whether no rotation of ours awaits the store, as it changes: while one does, the
    /// lease must not be released.
    pub(in crate::token::grant) fn saved(&self) -> watch::Receiver<bool> {
        self.saved.subscribe()
    }

    /// Makes `current` the fleet's current refresh token and returns its generation:
    /// first writes a rotation of ours the store has not taken yet, then takes the
    /// stored one. A stored one that does not decrypt (a new `encryption_key`) is
    /// overwritten by the next rotation. Fails when the store does: a replica does not
    /// refresh with a token it cannot know is unused.
    pub(in crate::token::grant) async fn current(
        &self,
        provider: &str,
        current: &Mutex<Secret>,
    ) -> Result<u64, Failure> {
        let _record = self.record.lock().await;
        let stored = self
            .store
            .get_refresh(&self.keys)
            .await
            .map_err(|_| down())?;
        let known = self.known();
        if known.unsaved && stored.generation == known.generation {
            let token = load(current);
            let won = self.store.cas_refresh(&self.keys, known.generation, &token);
            if !won.await.map_err(|_| down())? {
                return Err(down());
            }
            self.set(known.generation + 1, false, true);
            return Ok(known.generation + 1);
        }
        if stored.generation == 0 && known.generation > 0 {
            return self.reseed(provider, current, known).await;
        }
        let ours = stored.token.as_ref() == Some(&load(current)) && known.ours;
        if let Some(token) = stored.token {
            *current.lock().unwrap_or_else(|p| p.into_inner()) = token;
        }
        self.set(stored.generation, false, ours);
        Ok(stored.generation)
    }

    /// The IdP rotated the token of generation `from` into `rotated` (already in
    /// `current`): writes it as `from + 1`, in a task of its own, and returns after the
    /// first attempt. If that failed, the task writes it as soon as the store takes it.
    /// Lost (another replica wrote first, which the lease should prevent): the stored
    /// one is taken, never two kept.
    pub(in crate::token::grant) async fn rotated(
        self: &Arc<Self>,
        provider: &str,
        current: &Arc<Mutex<Secret>>,
        from: u64,
        rotated: &Secret,
    ) {
        // Before any await: if the fetch is cut off from here on, the rotation is still
        // known to be unsaved.
        self.set(from, true, true);
        let (first_tx, first) = oneshot::channel();
        tokio::spawn(write_rotation(
            self.clone(),
            provider.to_string(),
            current.clone(),
            (from, rotated.clone()),
            first_tx,
        ));
        let _ = first.await;
    }

    /// The record is gone (flushed, restarted without persistence) after this replica
    /// saw generation `known.generation`. Presenting the token in memory is safe only if
    /// this replica wrote that generation: then it re-seeds the record with it.
    async fn reseed(
        &self,
        provider: &str,
        current: &Mutex<Secret>,
        known: Known,
    ) -> Result<u64, Failure> {
        if !known.ours {
            if !known.loss_logged {
                tracing::error!(
                    provider = %provider,
                    generation = known.generation,
                    "the fleet's refresh token is gone from the token store (flushed, or restarted without persistence) and this replica's copy may have been used by another replica: not refreshing; provide a new refresh_token and reload"
                );
                self.known
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .loss_logged = true;
            }
            return Err(Failure {
                retry_after: Some(Duration::from_secs(5)),
                ..failure(
                    FailureKind::Transient,
                    "the fleet's refresh token is gone from the token store and this replica's copy may have been used: provide a new refresh_token and reload".into(),
                )
            });
        }
        let token = load(current);
        let won = self.store.cas_refresh(&self.keys, 0, &token);
        if !won.await.map_err(|_| down())? {
            // Another replica re-seeded it meanwhile: the next attempt takes theirs.
            return Err(down());
        }
        tracing::warn!(
            provider = %provider,
            generation = known.generation,
            "the fleet's refresh token was gone from the token store; re-seeded it with this replica's, the last one written (run Redis with persistence)"
        );
        self.set(1, false, true);
        Ok(1)
    }

    fn known(&self) -> Known {
        *self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, generation: u64, unsaved: bool, ours: bool) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Known {
            generation,
            unsaved,
            ours,
            loss_logged: false,
        };
        self.saved.send_replace(!unsaved);
    }
}

/// Writes the rotation `(from, rotated)` until the store takes it or it is superseded
/// (a refresh wrote it first), reporting on `first` after the first attempt.
async fn write_rotation(
    f: Arc<FleetRefresh>,
    provider: String,
    current: Arc<Mutex<Secret>>,
    (from, rotated): (u64, Secret),
    first: oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut wait = RETRY_FIRST;
    loop {
        let record = f.record.lock().await;
        let known = f.known();
        if !(known.unsaved && known.generation == from) {
            break;
        }
        match f.store.cas_refresh(&f.keys, from, &rotated).await {
            Ok(true) => {
                f.set(from + 1, false, true);
                if first.is_none() {
                    tracing::info!(provider = %provider, "the rotated refresh token is now in the token store");
                }
                break;
            }
            Ok(false) => {
                f.lost_rotation(&provider, &current, &rotated).await;
                break;
            }
            Err(_) => {
                if first.is_some() {
                    tracing::warn!(provider = %provider, "the rotated refresh token could not be written to the token store; keeping the fetch lease and writing it as soon as the store answers");
                }
            }
        }
        drop(record);
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_LAST);
    }
    if let Some(tx) = first.take() {
        let _ = tx.send(());
    }
}

impl FleetRefresh {
    /// The compare-and-set of `rotated` lost: the stored generation moved. If the store
    /// holds `rotated` (an earlier write went through but its answer was lost), it is
    /// ours; if the record is gone, `current` decides at the next refresh; otherwise
    /// another replica rotated at the same time and its token is taken.
    async fn lost_rotation(&self, provider: &str, current: &Mutex<Secret>, rotated: &Secret) {
        let Ok(stored) = self.store.get_refresh(&self.keys).await else {
            return;
        };
        match stored.token {
            Some(t) if t == *rotated => self.set(stored.generation, false, true),
            _ if stored.generation == 0 => {}
            token => {
                tracing::warn!(provider = %provider, "another replica rotated the shared refresh token at the same time; adopting the stored one");
                if let Some(t) = token {
                    *current.lock().unwrap_or_else(|p| p.into_inner()) = t;
                }
                self.set(stored.generation, false, false);
            }
        }
    }
}

fn load(current: &Mutex<Secret>) -> Secret {
    current.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn down() -> Failure {
    Failure {
        retry_after: Some(Duration::from_secs(1)),
        ..failure(
            FailureKind::Transient,
            "the token store is unavailable: the fleet's refresh token cannot be read".into(),
        )
    }
}
