//! One fetch: up to `retries.max_attempts` attempts with backoff, all within the
//! provider's `timeout`, each asking the fetcher for one token response; the response
//! becomes a [`Token`] with its header values and refresh points. Logs and audit events
//! per attempt.
//!
//! Free functions over what they are given: the source runs them in its fetch task,
//! records each attempt through `record` and settles the result. Nothing here touches the
//! source's state or knows the grant.

use super::grant::Fetcher;
use super::idp::{failure, Failure, FailureKind, TokenResponse};
use super::lifetime::{self, backoff, refresh_margin};
use super::{jwt, schedule, sensitive_value, Provenance, Token};
use crate::config::{format_duration, ProviderConfig};
use crate::store::{unix_ms, StoredToken};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Tries until a token arrives, a failure is not worth retrying, the attempts are used up
/// or the next one would end after the provider's `timeout`. `record` sees every attempt:
/// its outcome (the failure's detail), when it was sent and how long it took.
pub(super) async fn fetch_with_retries(
    fetcher: &Fetcher,
    cfg: &ProviderConfig,
    prefixes: &[Box<str>],
    record: impl Fn(Result<(), &str>, SystemTime, Duration),
) -> Result<Arc<Token>, Failure> {
    let deadline = Instant::now() + cfg.timeout;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent_at = Instant::now();
        let sent_wall = SystemTime::now();
        let result = attempt_once(fetcher, cfg, prefixes, deadline, sent_at, sent_wall).await;
        let took = sent_at.elapsed();
        let failure = match result {
            Ok(token) => {
                record(Ok(()), sent_wall, took);
                log_fetched(cfg, &token, attempt, took);
                return Ok(token);
            }
            Err(f) => f,
        };
        record(Err(&failure.detail), sent_wall, took);
        let wait = backoff(attempt, &cfg.retries, failure.retry_after);
        let give_up = !failure.retryable
            || attempt >= cfg.retries.max_attempts
            || Instant::now() + wait >= deadline;
        log_failed(cfg, &failure, attempt, (!give_up).then_some(wait));
        if give_up {
            return Err(failure);
        }
        tokio::time::sleep(wait).await;
    }
}

/// One attempt, cut off at `deadline`: a usable token or why not.
async fn attempt_once(
    fetcher: &Fetcher,
    cfg: &ProviderConfig,
    prefixes: &[Box<str>],
    deadline: Instant,
    sent_at: Instant,
    sent_wall: SystemTime,
) -> Result<Arc<Token>, Failure> {
    let remaining = deadline.saturating_duration_since(sent_at);
    let resp = match tokio::time::timeout(remaining, fetcher.fetch(cfg)).await {
        Ok(resp) => resp?,
        Err(_) => {
            return Err(Failure {
                retryable: false,
                ..failure(
                    FailureKind::Transient,
                    format!(
                        "token endpoint did not answer within {}",
                        format_duration(cfg.timeout)
                    ),
                )
            })
        }
    };
    let token = build_token(resp, sent_at, sent_wall, cfg, prefixes);
    // Never cache, let alone inject, a token that is already expired.
    if !token.is_valid(Instant::now()) {
        return Err(failure(
            FailureKind::Malformed,
            "token endpoint answered a token that had expired on arrival".into(),
        ));
    }
    Ok(token)
}

/// The token of `resp`, with its lifetime counted from when the request was sent.
fn build_token(
    resp: TokenResponse,
    sent_at: Instant,
    sent_wall: SystemTime,
    cfg: &ProviderConfig,
    prefixes: &[Box<str>],
) -> Arc<Token> {
    let lifetime = lifetime::lifetime(
        resp.expires_in,
        jwt::exp(resp.access_token.expose()),
        sent_wall,
    );
    let margin = refresh_margin(lifetime, cfg.refresh_before_expiry);
    let header_values = prefixes
        .iter()
        .map(|p| (p.clone(), sensitive_value(p, &resp.access_token)))
        .collect();
    let refresh_at = sent_at + (lifetime - margin);
    let expires_at = sent_at + lifetime;
    let arrived = Instant::now();
    Arc::new(Token {
        header_values,
        token_type: resp.token_type,
        scope: resp.scope,
        lifetime,
        expires_at,
        refresh_at,
        scheduled_at: schedule::scheduled_at(sent_at, arrived, refresh_at, expires_at, margin),
        expires_at_wall: sent_wall + lifetime,
        refresh_at_wall: sent_wall + (lifetime - margin),
        access_token: resp.access_token,
        provenance: Provenance::Idp,
        accepted: Default::default(),
    })
}

/// `token` as the shared store keeps it: its wall-clock expiry and refresh point, so
/// every replica agrees on when it stops being fresh.
pub(super) fn to_stored(token: &Token) -> StoredToken {
    StoredToken {
        access_token: token.access_token.clone(),
        token_type: token.token_type.clone(),
        scope: token.scope.clone(),
        expires_at_ms: unix_ms(token.expires_at_wall),
        refresh_at_ms: unix_ms(token.refresh_at_wall),
    }
}

/// A token another replica stored, as this process's own: its expiry and refresh point
/// carried over from the wall clock to the monotonic one, its header values built once.
/// `None` once it has expired by this machine's clock, and `None` when it is not of the
/// type `cfg` needs (`DPoP` with `dpop`, `Bearer` otherwise): a Bearer token sent with a
/// proof, or a DPoP token sent as Bearer, would only be refused upstream.
pub(super) fn adopted(
    stored: StoredToken,
    cfg: &ProviderConfig,
    prefixes: &[Box<str>],
) -> Option<Arc<Token>> {
    let dpop = cfg.origin.oauth().is_some_and(|c| c.dpop.is_some());
    let want = if dpop { "DPoP" } else { "Bearer" };
    if !stored.token_type.eq_ignore_ascii_case(want) {
        return None;
    }
    let (now, wall) = (Instant::now(), SystemTime::now());
    let left = stored.remaining();
    if left.is_zero() {
        return None;
    }
    let fresh_for = stored.fresh_for().min(left);
    let (expires_at, refresh_at) = (now + left, now + fresh_for);
    let header_values = prefixes
        .iter()
        .map(|p| (p.clone(), sensitive_value(p, &stored.access_token)))
        .collect();
    Some(Arc::new(Token {
        header_values,
        token_type: stored.token_type,
        scope: stored.scope,
        lifetime: left,
        expires_at,
        refresh_at,
        scheduled_at: schedule::scheduled_at(now, now, refresh_at, expires_at, left - fresh_for),
        expires_at_wall: wall + left,
        refresh_at_wall: wall + fresh_for,
        access_token: stored.access_token,
        provenance: Provenance::Store,
        accepted: Default::default(),
    }))
}

/// The audit event of a token taken from the store instead of the IdP.
pub(super) fn log_adopted(cfg: &ProviderConfig, token: &Token) {
    tracing::debug!(provider = %cfg.name, expires_in = token.lifetime.as_secs(), "token adopted from the store");
    tracing::info!(
        target: "audit",
        event = "token_adopted",
        provider = %cfg.name,
        grant = cfg.origin.grant_name(),
        scope = token.scope.as_deref().unwrap_or(""),
        expires_in = token.lifetime.as_secs(),
    );
}

/// The audit event of a fetch made without the store, and why.
pub(super) fn log_bypassed(cfg: &ProviderConfig, reason: &str) {
    tracing::debug!(provider = %cfg.name, reason, "fetching without the token store");
    tracing::info!(
        target: "audit",
        event = "token_store_bypassed",
        provider = %cfg.name,
        reason,
    );
}

/// One line per attempt: the audit event (kept at info whatever the log level); the
/// plain line is for debugging only, so a failure is never logged twice.
fn log_fetched(cfg: &ProviderConfig, token: &Token, attempt: u32, took: Duration) {
    tracing::debug!(provider = %cfg.name, expires_in = token.lifetime.as_secs(), attempt, "token fetched");
    tracing::info!(
        target: "audit",
        event = "token_fetched",
        provider = %cfg.name,
        grant = cfg.origin.grant_name(),
        scope = token.scope.as_deref().unwrap_or(""),
        expires_in = token.lifetime.as_secs(),
        attempt,
        latency_ms = took.as_millis() as u64,
    );
}

/// `retry_in`: the wait before the next attempt, `None` when this was the last one.
fn log_failed(cfg: &ProviderConfig, failure: &Failure, attempt: u32, retry_in: Option<Duration>) {
    tracing::debug!(provider = %cfg.name, attempt, error = %failure.detail, retrying = retry_in.is_some(), "token fetch failed");
    tracing::warn!(
        target: "audit",
        event = "token_fetch_failed",
        provider = %cfg.name,
        status = failure.status.unwrap_or(0),
        error = %failure.detail,
        attempt,
        retry_in_ms = retry_in.map_or(0, |w| w.as_millis() as u64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    /// A client-credentials provider, with `dpop` (a fresh P-256 key) when asked.
    fn provider(dpop: bool) -> Arc<ProviderConfig> {
        use base64::Engine;
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = "providers:\n  p:\n    token_url: https://idp.example.com/t\n    client_id: c\n    client_secret: s\n".to_string();
        if dpop {
            let rng = ring::rand::SystemRandom::new();
            let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let file = dir.path().join("dpop.pem");
            let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
            std::fs::write(&file, pem).unwrap();
            yaml.push_str(&format!("    dpop: {{ key_file: {} }}\n", file.display()));
        }
        let path = std::path::Path::new("t.yaml");
        let c = crate::config::Config::from_text(path, &yaml, &|_| None).unwrap();
        c.providers[0].clone()
    }

    fn stored(expires_in: Duration, fresh_for: Duration) -> StoredToken {
        let now = unix_ms(SystemTime::now());
        StoredToken {
            access_token: Secret::new("at-shared"),
            token_type: "Bearer".into(),
            scope: Some("read".into()),
            expires_at_ms: now + expires_in.as_millis() as u64,
            refresh_at_ms: now + fresh_for.as_millis() as u64,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_adopted_token_keeps_the_fleets_refresh_point_on_the_monotonic_clock() {
        let prefixes: Vec<Box<str>> = vec!["Bearer ".into(), "".into()];
        let s = Duration::from_secs;
        let t = adopted(stored(s(60), s(30)), &provider(false), &prefixes).unwrap();
        let now = Instant::now();
        assert_eq!(t.provenance, Provenance::Store);
        // Wall-clock milliseconds carried over: within the few ms this test takes.
        let near = |a: Instant, want: Duration| {
            let d = a.duration_since(now);
            d <= want && want - d < Duration::from_millis(50)
        };
        assert!(near(t.expires_at, s(60)) && near(t.refresh_at, s(30)));
        // The scheduler refreshes within the jitter window before the refresh point.
        assert!(t.scheduled_at <= t.refresh_at);
        assert!(t.scheduled_at >= t.refresh_at - refresh_jitter_of(&t));
        assert_eq!(
            t.header_value("Bearer ").to_str().unwrap(),
            "Bearer at-shared"
        );
        assert!(t.header_value("").is_sensitive());
        // Round trip: what this process would store again is what it adopted.
        let back = to_stored(&t);
        assert_eq!(back.access_token.expose(), "at-shared");
        assert_eq!(back.scope.as_deref(), Some("read"));
        tokio::time::advance(s(61)).await;
        assert!(!t.is_valid(Instant::now()));
    }

    fn refresh_jitter_of(t: &Token) -> Duration {
        schedule::refresh_jitter(t.expires_at - t.refresh_at)
    }

    #[test]
    fn an_expired_stored_token_is_never_adopted() {
        let t = stored(Duration::ZERO, Duration::ZERO);
        assert!(adopted(t, &provider(false), &["Bearer ".into()]).is_none());
        // Past its refresh point but valid: adopted as stale (refresh at once).
        let stale = stored(Duration::from_secs(10), Duration::ZERO);
        let t = adopted(stale, &provider(false), &[]).unwrap();
        assert!(t.refresh_at <= Instant::now() + Duration::from_millis(5));
    }

    /// A token of the wrong type is never adopted: a DPoP provider takes only DPoP
    /// tokens from the store, any other provider only Bearer ones.
    #[test]
    fn a_stored_token_of_another_type_is_never_adopted() {
        let long = Duration::from_secs(60);
        let (bearer, dpop) = (provider(false), provider(true));
        let of_type = |t: &str| StoredToken {
            token_type: t.into(),
            ..stored(long, long)
        };
        assert!(adopted(of_type("Bearer"), &bearer, &[]).is_some());
        assert!(adopted(of_type("DPoP"), &bearer, &[]).is_none());
        assert!(adopted(of_type("DPoP"), &dpop, &[]).is_some());
        assert!(adopted(of_type("Bearer"), &dpop, &[]).is_none());
        assert!(adopted(of_type("mac"), &dpop, &[]).is_none());
    }
}
