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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let subject_exp = crate::token::jwt::exp(subject.expose());
        let sent = SystemTime::now();
        if subject_exp.is_some_and(|exp| unix(sent) >= exp) {
            return Err(failure(
                FailureKind::Rejected,
                "the subject token has expired".into(),
            ));
        }
        let resp = self.idp.send(timeout, grant).await?;
        Ok(cap_to_subject(resp, subject_exp, sent))
    }
}

/// SPEC §5: a token obtained by exchange is never kept past the subject token's own
/// `exp`: its lifetime is cut to what the subject has left when the request was sent.
fn cap_to_subject(
    mut resp: TokenResponse,
    subject_exp: Option<u64>,
    sent: SystemTime,
) -> TokenResponse {
    let Some(exp) = subject_exp else {
        return resp;
    };
    let own = crate::token::lifetime::lifetime(
        resp.expires_in,
        crate::token::jwt::exp(resp.access_token.expose()),
        sent,
    );
    let left = Duration::from_secs(exp.saturating_sub(unix(sent)));
    resp.expires_in = Some(own.min(left));
    resp
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(expires_in: u64) -> TokenResponse {
        TokenResponse {
            access_token: Secret::new("opaque"),
            token_type: "Bearer".into(),
            expires_in: Some(Duration::from_secs(expires_in)),
            scope: None,
            refresh_token: None,
        }
    }

    #[test]
    fn exchanged_tokens_end_with_their_subject() {
        let sent = UNIX_EPOCH + Duration::from_secs(1_000);
        let capped = cap_to_subject(response(3600), Some(1_004), sent);
        assert_eq!(capped.expires_in, Some(Duration::from_secs(4)));
        let shorter = cap_to_subject(response(2), Some(1_004), sent);
        assert_eq!(
            shorter.expires_in,
            Some(Duration::from_secs(2)),
            "the token's own lifetime when shorter"
        );
        let opaque_subject = cap_to_subject(response(3600), None, sent);
        assert_eq!(opaque_subject.expires_in, Some(Duration::from_secs(3600)));
    }
}
