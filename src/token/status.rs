//! What `/status` shows of a token source, or of a token-exchange provider's subjects:
//! state, times (wall clock, for display only) and counters. Pure functions of what the
//! sources hand over; never a token.

use super::Token;
use serde::Serialize;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// What `/status` shows of a provider (SPEC §7). Never a token.
#[derive(Debug, Serialize)]
pub struct ProviderStatus {
    pub state: &'static str,
    pub has_token: bool,
    pub expires_at: Option<String>,
    pub expires_in_seconds: Option<u64>,
    pub refresh_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub consecutive_failures: u32,
    pub scope: Option<String>,
    pub fetches_total: u64,
    pub failures_total: u64,
    pub last_error: Option<String>,
    pub last_fetch_at: Option<String>,
    /// Where the current token came from: `idp` (this process asked) or `store` (another
    /// replica did, SPEC §9); `null` without a token.
    pub source: Option<&'static str>,
    /// Token exchange providers: how many subjects have a cached token source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<usize>,
}

/// Counters and the last attempt, for `/status`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub fetches_total: u64,
    pub failures_total: u64,
    /// The error of the last attempt, `None` if it succeeded.
    pub last_error: Option<String>,
    /// When the last attempt was sent.
    pub last_fetch_at: Option<SystemTime>,
}

impl Stats {
    /// Counts one attempt, sent at `at`: its outcome is the failure's detail, if any.
    pub(super) fn record(&mut self, outcome: Result<(), &str>, at: SystemTime) {
        self.fetches_total += 1;
        self.failures_total += u64::from(outcome.is_err());
        self.last_fetch_at = Some(at);
        self.last_error = outcome.err().map(str::to_string);
    }
}

/// What `/status` needs of a token source, read at one moment.
pub(super) struct SourceView {
    pub current: Option<Arc<Token>>,
    pub refreshing: bool,
    pub consecutive_failures: u32,
    /// The IdP refused the client (SPEC §5).
    pub rejected: bool,
    /// When the backoff after the last failure ends, if one was set.
    pub retry_at: Option<Instant>,
    /// The scheduler is idle or stopped: no attempt is planned.
    pub parked: bool,
    pub stats: Stats,
}

/// The `/status` of one token source.
pub(super) fn of_source(v: SourceView) -> ProviderStatus {
    let now = Instant::now();
    let wall = |t: Instant| rfc3339(instant_to_wall(t, now));
    let token = v.current.as_ref().filter(|t| t.is_valid(now));
    let failures = v.consecutive_failures;
    let state = if v.refreshing {
        "refreshing"
    } else if v.rejected {
        "rejected"
    } else if failures > 0 {
        "failing"
    } else {
        match (&v.current, token) {
            (None, _) => "empty",
            (Some(t), Some(_)) if now < t.refresh_at => "fresh",
            (Some(_), Some(_)) => "stale",
            (Some(_), None) => "expired",
        }
    };
    let next_attempt = match (v.retry_at.filter(|_| failures > 0), token) {
        // Nothing is planned: a rejected source waits for a request after its pause.
        _ if v.parked || v.rejected => None,
        (Some(retry_at), _) => Some(retry_at),
        (None, Some(t)) => Some(t.scheduled_at),
        (None, None) => None,
    };
    ProviderStatus {
        state,
        has_token: token.is_some(),
        expires_at: token.map(|t| rfc3339(t.expires_at_wall)),
        expires_in_seconds: token.map(|t| t.expires_at.saturating_duration_since(now).as_secs()),
        refresh_at: token.map(|t| rfc3339(t.refresh_at_wall)),
        next_attempt_at: next_attempt.map(wall),
        consecutive_failures: failures,
        scope: token.and_then(|t| t.scope.clone()),
        fetches_total: v.stats.fetches_total,
        failures_total: v.stats.failures_total,
        last_error: v.stats.last_error,
        last_fetch_at: v.stats.last_fetch_at.map(rfc3339),
        source: token.map(|t| t.provenance.as_str()),
        subjects: None,
    }
}

/// The `/status` of a token-exchange provider from its subjects' (stats, valid token):
/// counts summed; the time of the most recent fetch over all subjects, and that fetch's
/// error (none if it succeeded); `source` of the token that lasts longest.
pub(super) fn per_subject(subjects: Vec<(Stats, Option<Arc<Token>>)>) -> ProviderStatus {
    let mut status = ProviderStatus {
        state: "per_subject",
        has_token: false,
        expires_at: None,
        expires_in_seconds: None,
        refresh_at: None,
        next_attempt_at: None,
        consecutive_failures: 0,
        scope: None,
        fetches_total: 0,
        failures_total: 0,
        last_error: None,
        last_fetch_at: None,
        source: None,
        subjects: Some(subjects.len()),
    };
    let mut latest: Option<SystemTime> = None;
    let mut newest: Option<SystemTime> = None;
    for (stats, token) in subjects {
        if let Some(t) = token {
            status.has_token = true;
            if Some(t.expires_at_wall) > newest {
                newest = Some(t.expires_at_wall);
                status.source = Some(t.provenance.as_str());
            }
        }
        status.fetches_total += stats.fetches_total;
        status.failures_total += stats.failures_total;
        if stats.last_fetch_at > latest {
            latest = stats.last_fetch_at;
            status.last_error = stats.last_error;
        }
    }
    status.last_fetch_at = latest.map(rfc3339);
    status
}

/// `2026-11-21T22:54:31Z`: RFC 3339 in UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (H. Hinnant), valid for all dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The wall-clock time of a monotonic instant (for display only).
fn instant_to_wall(t: Instant, now: Instant) -> SystemTime {
    let wall = SystemTime::now();
    if t >= now {
        wall + (t - now)
    } else {
        wall - (now - t)
    }
}
