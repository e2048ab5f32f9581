//! What `/status` shows of a token source: its state, times (wall clock, for display
//! only) and counters. Never a token.

use super::*;

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
    /// Token exchange providers: how many subjects have a cached token source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<usize>,
}

impl TokenSource {
    /// The provider's state for `/status`.
    pub fn status(&self) -> ProviderStatus {
        let stats = self.stats();
        let now = Instant::now();
        let wall = |t: Instant| rfc3339(instant_to_wall(t, now));
        let current = self.current.load_full();
        let token = current.as_ref().filter(|t| t.is_valid(now));
        let failures = self.consecutive_failures.load(Ordering::Acquire);
        let state = if self.refreshing.load(Ordering::Acquire) {
            "refreshing"
        } else if failures > 0 {
            "failing"
        } else {
            match (&current, token) {
                (None, _) => "empty",
                (Some(t), Some(_)) if now < t.refresh_at => "fresh",
                (Some(_), Some(_)) => "stale",
                (Some(_), None) => "expired",
            }
        };
        let retry = self.retry_not_before.load(Ordering::Acquire);
        let parked = self.idle.load(Ordering::Acquire) || self.stopped.load(Ordering::Acquire);
        let next_attempt = match (failures > 0 && retry > 0, token) {
            _ if parked => None,
            (true, _) => Some(self.epoch + Duration::from_millis(retry)),
            (false, Some(t)) => Some(t.scheduled_at),
            (false, None) => None,
        };
        ProviderStatus {
            state,
            has_token: token.is_some(),
            expires_at: token.map(|t| rfc3339(t.expires_at_wall)),
            expires_in_seconds: token
                .map(|t| t.expires_at.saturating_duration_since(now).as_secs()),
            refresh_at: token.map(|t| rfc3339(t.refresh_at_wall)),
            next_attempt_at: next_attempt.map(wall),
            consecutive_failures: failures,
            scope: token.and_then(|t| t.scope.clone()),
            fetches_total: stats.fetches_total,
            failures_total: stats.failures_total,
            last_error: stats.last_error,
            last_fetch_at: stats.last_fetch_at.map(rfc3339),
            subjects: None,
        }
    }
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
