//! Tokens: the per-provider cache, single-flight fetching, compare-and-invalidate after a
//! rejected token, the background refresh scheduler, and the IdP client. The only module
//! that talks to an IdP.
//!
//! Hot path: [`TokenSource::get`] is one lock-free `ArcSwap` load, two `Instant`
//! comparisons and a relaxed atomic load; the header value was built when the token
//! arrived. Locks are taken only when a fetch has to start or a status is read. No log
//! line, error, metric or status here contains a token.
//!
//! Map: `source` (the cache and its cold state) asks a `grant::Fetcher` for one token
//! response per attempt; `fetch` runs the attempts with retries and turns a response into
//! a [`Token`]; `schedule` refreshes in the background; `idp` and `wire` speak HTTP and
//! the OAuth2 formats; `scrub` is the one way a text from outside (an IdP's error, a
//! transport error) gets into a failure's detail, and so into logs, `/status` and error
//! bodies; `exchange` keeps one source per subject; `status` is `/status`.
//! Everything that depends on the grant (rotation, file polling, subjects) lives in
//! `grant`, nowhere else.

mod assertion;
mod exchange;
mod fetch;
mod grant;
mod idp;
pub mod jwt;
mod lifetime;
mod schedule;
mod scrub;
mod source;
mod status;
mod wire;

use crate::secret::Secret;
use http::HeaderValue;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

pub use assertion::{AssertionSigner, SigningAlg};
pub use exchange::ExchangeSource;
pub use idp::{Failure, FailureKind, IdpClient, TokenResponse};
pub use lifetime::{backoff, refresh_margin};
pub use schedule::refresh_jitter;
pub use source::{StoreLink, TokenSource};
pub use status::{rfc3339, ProviderStatus, Stats};

/// An access token with everything derived from it at fetch time.
pub struct Token {
    access_token: Secret,
    /// One prebuilt, sensitive header value per `value_prefix` in use.
    header_values: Vec<(Box<str>, HeaderValue)>,
    pub token_type: String,
    pub scope: Option<String>,
    /// The IdP's `expires_in` (or the JWT/default fallback).
    pub lifetime: Duration,
    pub expires_at: Instant,
    /// End of freshness: `expires_at - refresh_before_expiry`.
    pub refresh_at: Instant,
    /// When the scheduler refreshes it: shortly before `refresh_at` (jitter).
    pub scheduled_at: Instant,
    pub expires_at_wall: SystemTime,
    pub refresh_at_wall: SystemTime,
    /// Where it came from: this process's own IdP request, or the shared store.
    pub provenance: Provenance,
    /// An upstream answered a request carrying it with a 2xx.
    accepted: AtomicBool,
}

/// Where a token came from (`/status` `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// This process asked the IdP (or read the token file).
    Idp,
    /// Another replica fetched it; this one adopted it from the shared store.
    Store,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Idp => "idp",
            Provenance::Store => "store",
        }
    }
}

impl Token {
    /// The header value `"{prefix}{token}"`, prebuilt for the prefixes routes use.
    pub fn header_value(&self, prefix: &str) -> HeaderValue {
        if let Some((_, v)) = self.header_values.iter().find(|(p, _)| &**p == prefix) {
            return v.clone();
        }
        // A prefix added by a config reload after this token was fetched.
        sensitive_value(prefix, &self.access_token)
    }

    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// Notes that an upstream took this token. Written once (a load on every later
    /// call), so the cache line stays shared between the threads that read it.
    pub fn mark_accepted(&self) {
        if !self.accepted.load(Ordering::Relaxed) {
            self.accepted.store(true, Ordering::Relaxed);
        }
    }

    /// Whether an upstream has taken this token at least once.
    pub fn was_accepted(&self) -> bool {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The token itself, for `--print-token`, `expose_token` and the `ath` of DPoP proofs
    /// (its hash) only.
    pub fn secret(&self) -> &Secret {
        &self.access_token
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn sensitive_value(prefix: &str, token: &Secret) -> HeaderValue {
    let mut v = HeaderValue::try_from(format!("{prefix}{}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Why no token could be had (SPEC §6).
#[derive(Clone, Debug, thiserror::Error)]
pub enum TokenError {
    /// Unreachable, timed out, 5xx or 429 after retries.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    /// The IdP refused the client (4xx).
    #[error("{detail}")]
    Rejected { detail: String },
    /// The IdP answered something that is not a token response.
    #[error("{detail}")]
    InvalidResponse { detail: String },
}

/// Who rejected a token, for the log and the audit event.
#[derive(Clone, Copy, Debug)]
pub struct Rejection<'a> {
    pub route: &'a str,
    pub status: u16,
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rejected;
#[cfg(test)]
mod tests_schedule;
