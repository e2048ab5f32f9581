//! `grant_type: refresh_token` (RFC 6749 §6). Holds the current refresh token, which the
//! IdP may rotate with any response; stores each rotated one in `refresh_token_store`
//! (atomically, mode 0600, off the runtime) so a restart continues from it; after
//! `invalid_grant` tries the configured token once if the stored one differs; a refusal
//! pauses the provider as for any grant (SPEC §5), with an error saying what to do.
//!
//! With a shared store (SPEC §9) the current refresh token lives there, sealed, with a
//! generation: see [`fleet`].
//!
//! It never logs, returns in an error, or shows in `/status` a refresh token.

use crate::config::ProviderConfig;
use crate::file::{io_reason, write_atomic, Existing};
use crate::secret::Secret;
use crate::store::{Store, TokenKeys};
use crate::token::idp::{Failure, FailureKind, IdpClient, TokenResponse};
use fleet::FleetRefresh;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(in crate::token) struct RefreshToken {
    idp: Arc<IdpClient>,
    /// The configured refresh token, tried once when the IdP rejects a different one.
    configured: Option<Secret>,
    /// `refresh_token_store`: where each rotated token is written.
    store: Option<PathBuf>,
    /// The refresh token the next request sends. Shared with the store writer, which
    /// writes whatever is current when it runs.
    current: Arc<Mutex<Secret>>,
    /// Held by the store writer, so writes to the store never overlap: with each writing
    /// the then-current token, the last write always leaves the newest one.
    store_writer: Arc<Mutex<()>>,
    /// The shared store, when the fleet shares this grant.
    fleet: Option<Arc<FleetRefresh>>,
}

impl RefreshToken {
    pub(super) fn new(
        idp: Arc<IdpClient>,
        initial: Secret,
        configured: Option<Secret>,
        store: Option<PathBuf>,
    ) -> Self {
        Self {
            idp,
            configured,
            store,
            current: Arc::new(Mutex::new(initial)),
            store_writer: Arc::default(),
            fleet: None,
        }
    }

    /// Shares the refresh token through `store` under `keys` (SPEC §9).
    pub(super) fn share(&mut self, store: Arc<Store>, keys: TokenKeys) {
        self.fleet = Some(FleetRefresh::new(store, keys));
    }

    /// With a shared store: whether no rotated refresh token awaits the store, as it
    /// changes. While one does, the fetch lease must not be released, so no other
    /// replica refreshes with the used one.
    pub(super) fn rotation_saved(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.fleet.as_ref().map(|f| f.saved())
    }

    pub(super) fn current(&self) -> Secret {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn adopt(&self, token: Secret) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    pub(super) async fn fetch(&self, cfg: &ProviderConfig) -> Result<TokenResponse, Failure> {
        let (configured, store) = (self.configured.as_ref(), self.store.as_deref());
        // The generation the request below rotates from, with a shared store.
        let from = match &self.fleet {
            Some(f) => Some(f.current(&cfg.name, &self.current).await?),
            None => None,
        };
        let mut resp = self.send(cfg, &self.current()).await;
        // The stored token is dead but the operator configured a different one (the fix
        // the error log asks for): try that one, once — unless the fleet has rotated it
        // already (generation 1 or more): then the configured one is a used one.
        let fleet_rotated = from.is_some_and(|g| g > 0);
        if let (Err(f), Some(configured), false) = (&resp, configured, fleet_rotated) {
            if f.detail.contains("invalid_grant") && self.current() != *configured {
                tracing::warn!(provider = %cfg.name, "the stored refresh token was rejected; trying the configured one");
                self.adopt(configured.clone());
                resp = self.send(cfg, configured).await;
            }
        }
        match &mut resp {
            Ok(TokenResponse {
                refresh_token: Some(rotated),
                ..
            }) => {
                self.adopt(rotated.clone());
                if let (Some(f), Some(from)) = (&self.fleet, from) {
                    f.rotated(&cfg.name, &self.current, from, rotated).await;
                }
                if let Some(store) = store {
                    self.store(&cfg.name, store).await;
                }
            }
            Ok(_) => {}
            // A dead refresh token (invalid_grant) stays dead until someone provides a new
            // one; it pauses the provider like any refusal (SPEC §5: 30 s, then the next
            // request tries once more), and says what to do.
            Err(f) if f.kind == FailureKind::Rejected && f.detail.contains("invalid_grant") => {
                tracing::error!(
                    provider = %cfg.name,
                    "the refresh token was rejected (invalid_grant): provide a new refresh_token (or a new value in refresh_token_store) and reload"
                );
            }
            Err(_) => {}
        }
        resp
    }

    async fn send(&self, cfg: &ProviderConfig, token: &Secret) -> Result<TokenResponse, Failure> {
        let grant = vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", token.expose().to_string()),
        ];
        self.idp.send(cfg.timeout, grant).await
    }

    /// Writes the current refresh token to `path` on a blocking thread (an fsync on the
    /// runtime would stall every request with `workers: 1`). A failure is logged, not
    /// returned: the token in hand is good, only a restart would use an old one.
    async fn store(&self, provider: &str, path: &Path) {
        let (current, writer, target) = (
            self.current.clone(),
            self.store_writer.clone(),
            path.to_path_buf(),
        );
        let written = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = writer.lock().unwrap_or_else(|p| p.into_inner());
            let token = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
            write_atomic(&target, token.expose().as_bytes(), 0o600, Existing::Replace)
                .map_err(|e| io_reason(&e))
        })
        .await
        .unwrap_or_else(|_| Err("the writer stopped unexpectedly".into()));
        match written {
            Ok(()) => tracing::debug!(provider = %provider, "rotated refresh token stored"),
            Err(reason) => tracing::error!(
                provider = %provider,
                store = %path.display(),
                error = %reason,
                "cannot store the rotated refresh token; a restart would use an old one"
            ),
        }
    }
}

mod fleet;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_store_ends_with_the_newest_token_mode_0600() {
        let yaml = "providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    grant_type: refresh_token\n    refresh_token: rt-0\n";
        let cfg = Config::from_text(Path::new("t.yaml"), yaml, &|_| None)
            .unwrap()
            .providers[0]
            .clone();
        let client = cfg.origin.oauth().unwrap().clone();
        let idp = Arc::new(IdpClient::new("p", client).unwrap());
        let r = RefreshToken::new(idp, Secret::new("rt-0"), None, None);
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("p.rt");
        r.adopt(Secret::new("rt-1"));
        let first = r.store("p", &store);
        r.adopt(Secret::new("rt-2"));
        tokio::join!(first, r.store("p", &store));
        assert_eq!(std::fs::read_to_string(&store).unwrap(), "rt-2");
        let mode = std::fs::metadata(&store).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(r.current().expose(), "rt-2");
    }
}
