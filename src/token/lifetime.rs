//! Token lifetime arithmetic (SPEC §5): pure functions, unit-tested without a clock.

use super::idp::{Failure, FailureKind};
use crate::config::Retries;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Assumed when the IdP says nothing about expiry.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
const MAX_DEFAULT_MARGIN: Duration = Duration::from_secs(300);
/// Longer lifetimes are treated as this long: the token is simply refreshed sooner, and
/// instant arithmetic can never overflow.
pub const MAX_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// `expires_in`, else the JWT `exp` claim relative to when the request was sent, else
/// five minutes; at most [`MAX_LIFETIME`]. An `exp` already past gives zero: the token is
/// expired on arrival and the caller treats it as unusable.
pub fn lifetime(
    expires_in: Option<Duration>,
    jwt_exp: Option<u64>,
    sent_wall: SystemTime,
) -> Duration {
    let raw = match (expires_in, jwt_exp) {
        (Some(e), _) => e,
        (None, Some(exp)) => {
            let sent = sent_wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            Duration::from_secs(exp).saturating_sub(sent)
        }
        (None, None) => DEFAULT_LIFETIME,
    };
    raw.min(MAX_LIFETIME)
}

/// How long before expiry a token stops being fresh: the configured
/// `refresh_before_expiry`, or min(5 min, half the lifetime). A configured margin as long
/// as the lifetime itself would make every token stale on arrival, so the default applies.
pub fn refresh_margin(lifetime: Duration, configured: Option<Duration>) -> Duration {
    match configured {
        Some(m) if m < lifetime => m,
        _ => (lifetime / 2).min(MAX_DEFAULT_MARGIN),
    }
}

/// The wait before retry number `attempt` (1-based count of attempts so far): full
/// jitter over an exponentially growing window, at least the IdP's `Retry-After`, never
/// more than `max_backoff`.
pub fn backoff(attempt: u32, retries: &Retries, retry_after: Option<Duration>) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let window = retries
        .initial_backoff
        .saturating_mul(1 << exp)
        .min(retries.max_backoff);
    let jittered = window.mul_f64(fastrand::f64());
    jittered
        .max(retry_after.unwrap_or_default())
        .min(retries.max_backoff)
}

/// After the IdP refused the client, no fetch on a request's behalf before this long
/// (SPEC §5): requests get the rejection at once, and the scheduler does not retry.
pub const REJECTED_PAUSE: Duration = Duration::from_secs(30);

/// How long a source waits after its `failures`-th failed fetch in a row, ending in
/// `failure`: after a rejection [`REJECTED_PAUSE`]; otherwise a [`backoff`] of at least
/// `initial_backoff` (honouring the IdP's `Retry-After` for transient failures). Either
/// way at least the fetcher's `min_backoff`.
pub fn backoff_after_failure(failures: u32, retries: &Retries, failure: &Failure) -> Duration {
    let wait = match failure.kind {
        FailureKind::Rejected => REJECTED_PAUSE,
        FailureKind::Transient => {
            let hint = failure
                .retry_after
                .unwrap_or(retries.initial_backoff)
                .min(retries.max_backoff);
            backoff(failures, retries, Some(hint)).max(retries.initial_backoff)
        }
        FailureKind::Malformed => backoff(failures, retries, None).max(retries.initial_backoff),
    };
    wait.max(failure.min_backoff.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::idp::failure;

    #[test]
    fn backoff_after_failure_honours_retry_after_and_the_fetchers_floor() {
        let s = Duration::from_secs;
        let r = Retries {
            max_attempts: 1,
            initial_backoff: s(1),
            max_backoff: s(8),
        };
        let transient = |retry_after| Failure {
            retry_after,
            ..failure(FailureKind::Transient, "t".into())
        };
        for _ in 0..100 {
            let first = backoff_after_failure(1, &r, &transient(None));
            assert_eq!(first, s(1), "the first backoff is initial_backoff");
            let later = backoff_after_failure(5, &r, &transient(None));
            assert!(later >= s(1) && later <= s(8), "{later:?}");
            assert_eq!(backoff_after_failure(1, &r, &transient(Some(s(5)))), s(5));
            assert_eq!(backoff_after_failure(1, &r, &transient(Some(s(60)))), s(8));
            let rejected = failure(FailureKind::Rejected, "r".into());
            for failures in [1, 5, 100] {
                assert_eq!(
                    backoff_after_failure(failures, &r, &rejected),
                    REJECTED_PAUSE,
                    "a rejection pauses 30 s, whatever max_backoff says"
                );
            }
            let malformed = failure(FailureKind::Malformed, "m".into());
            let wait = backoff_after_failure(5, &r, &malformed);
            assert!(wait >= s(1) && wait <= s(8), "{wait:?}");
            let held = Failure {
                min_backoff: Some(s(3600)),
                ..rejected
            };
            assert_eq!(
                backoff_after_failure(1, &r, &held),
                s(3600),
                "above max_backoff"
            );
        }
    }

    #[test]
    fn margins() {
        let s = Duration::from_secs;
        let cases = [
            (s(3600), None, s(300)),
            (s(300), None, s(150)),
            (s(30), None, s(15)),
            (s(3600), Some(s(60)), s(60)),
            (s(30), Some(s(60)), s(15)),
        ];
        for (life, configured, want) in cases {
            assert_eq!(
                refresh_margin(life, configured),
                want,
                "{life:?} {configured:?}"
            );
        }
    }

    #[test]
    fn lifetime_falls_back_to_jwt_exp_then_five_minutes() {
        let sent = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            lifetime(Some(Duration::from_secs(60)), Some(5_000), sent),
            Duration::from_secs(60)
        );
        assert_eq!(lifetime(None, Some(1_600), sent), Duration::from_secs(600));
        assert_eq!(lifetime(None, Some(900), sent), Duration::ZERO);
        assert_eq!(lifetime(None, None, sent), Duration::from_secs(300));
        assert_eq!(lifetime(None, Some(u64::MAX), sent), MAX_LIFETIME);
        assert_eq!(
            lifetime(Some(Duration::from_secs(u64::MAX / 2)), None, sent),
            MAX_LIFETIME
        );
    }

    #[test]
    fn backoff_grows_within_cap_and_honours_retry_after() {
        let r = Retries {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
        };
        for _ in 0..200 {
            assert!(backoff(1, &r, None) <= Duration::from_millis(200));
            assert!(backoff(3, &r, None) <= Duration::from_millis(800));
            assert!(backoff(10, &r, None) <= Duration::from_secs(1));
            assert_eq!(
                backoff(1, &r, Some(Duration::from_secs(30))),
                Duration::from_secs(1)
            );
            assert!(backoff(1, &r, Some(Duration::from_millis(500))) >= Duration::from_millis(500));
        }
    }
}
