//! RFC 8693 token exchange for one subject: the subject token taken from a request, plus
//! the actor token re-read from its file at every fetch (off the runtime: it may be a
//! rotating projected token). One fetcher per subject; `token::exchange` keeps them.
//!
//! Neither token ever appears in a log line or an error.

use crate::config::Exchange;
use crate::file::{io_reason, read_trimmed};
use crate::secret::Secret;
use crate::token::idp::{failure, Failure, FailureKind, IdpClient, TokenResponse};
use std::sync::Arc;
use std::time::Duration;

pub(in crate::token) struct ExchangeFetcher {
    idp: Arc<IdpClient>,
    /// The provider's settings, shared by the fetchers of all its subjects.
    settings: Arc<Exchange>,
    /// `None` for a provider asked for a token without a request (`token-sidecar token`).
    subject: Option<Secret>,
}

impl ExchangeFetcher {
    pub(in crate::token) fn new(
        idp: Arc<IdpClient>,
        settings: Arc<Exchange>,
        subject: Option<Secret>,
    ) -> Self {
        Self {
            idp,
            settings,
            subject,
        }
    }

    /// RFC 8693 §2.1: exchanges the subject token for a token; gives up after `timeout`.
    pub(super) async fn fetch(&self, timeout: Duration) -> Result<TokenResponse, Failure> {
        let x = &*self.settings;
        let Some(subject) = &self.subject else {
            return Err(failure(
                FailureKind::Rejected,
                "token exchange needs a subject token from the request".into(),
            ));
        };
        let mut grant: Vec<(&str, String)> = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ),
            ("subject_token", subject.expose().to_string()),
            ("subject_token_type", x.subject_token_type.clone()),
        ];
        if let (Some(file), Some(kind)) = (&x.actor_token_file, &x.actor_token_type) {
            let actor = read_trimmed(file).await.map_err(|e| {
                failure(
                    FailureKind::Transient,
                    format!(
                        "cannot read the actor token file {}: {}",
                        file.display(),
                        io_reason(&e)
                    ),
                )
            })?;
            grant.push(("actor_token", actor));
            grant.push(("actor_token_type", kind.clone()));
        }
        if let Some(t) = &x.requested_token_type {
            grant.push(("requested_token_type", t.clone()));
        }
        self.idp.send(timeout, grant).await
    }
}
