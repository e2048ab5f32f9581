//! `kind: static_file`: the token is the content of a file that something else keeps
//! current (a Vault agent, a projected volume). Every fetch re-reads it; the scheduler
//! looks at the file's signature every couple of seconds and fetches when it changed.
//! All file IO happens off the runtime.
//!
//! It never logs or returns in an error the file's content.

use crate::file::{io_reason, read_trimmed, signature, Signature};
use crate::secret::Secret;
use crate::token::idp::{failure, Failure, FailureKind, TokenResponse};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How often the token file is looked at for changes.
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(2);

pub(in crate::token) struct StaticFile {
    path: PathBuf,
    seen: Mutex<Seen>,
}

/// What the last look at the file found.
#[derive(PartialEq)]
enum Seen {
    /// Not looked at yet: the first look notices no change.
    Nothing,
    Missing,
    File(Signature),
}

impl StaticFile {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            seen: Mutex::new(Seen::Nothing),
        }
    }

    /// The file's content as a bearer token.
    pub(super) async fn fetch(&self) -> Result<TokenResponse, Failure> {
        let token = read_trimmed(&self.path).await.map_err(|e| {
            failure(
                FailureKind::Transient,
                format!(
                    "cannot read the token file {}: {}",
                    self.path.display(),
                    io_reason(&e)
                ),
            )
        })?;
        if token.is_empty() || http::HeaderValue::from_str(&token).is_err() {
            return Err(failure(
                FailureKind::Malformed,
                format!(
                    "the token file {} holds no usable token",
                    self.path.display()
                ),
            ));
        }
        Ok(TokenResponse {
            access_token: Secret::new(token),
            token_type: "Bearer".into(),
            expires_in: None,
            scope: None,
            refresh_token: None,
        })
    }

    /// True when the file's (modification time, size) differs from the last look.
    pub(super) async fn changed(&self) -> bool {
        let now = match signature(&self.path).await {
            Some(sig) => Seen::File(sig),
            None => Seen::Missing,
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *seen != Seen::Nothing && *seen != now;
        *seen = now;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_token_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let f = StaticFile::new(path.clone());
        let err = f.fetch().await.err().unwrap();
        assert!(
            err.detail.ends_with("token: no such file"),
            "{}",
            err.detail
        );
        assert!(!f.changed().await, "the first look is no change");
        std::fs::write(&path, "t0k3n\n").unwrap();
        assert!(f.changed().await, "created");
        assert!(!f.changed().await);
        assert_eq!(f.fetch().await.unwrap().access_token.expose(), "t0k3n");
        std::fs::write(&path, "se\u{1}cret\n").unwrap();
        let err = f.fetch().await.err().unwrap();
        assert_eq!(err.kind, FailureKind::Malformed, "not a header value");
        assert!(!err.detail.contains("cret"), "{}", err.detail);
        assert!(f.changed().await, "rewritten");
    }
}
