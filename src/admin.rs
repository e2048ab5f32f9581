//! The admin API (SPEC §7) on its own listener: health, readiness, status, and manual
//! token refresh. Nothing it returns contains a token or a secret, except
//! `GET /providers/{name}/token` for providers that opted in with `expose_token: true`.

use crate::error::{json_response, Body, ErrorContext, ProxyError};
use crate::sidecar::Sidecar;
use crate::token::TokenSource;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

pub async fn handle(sidecar: Arc<Sidecar>, req: Request<Incoming>) -> Response<Body> {
    let snap = sidecar.snapshot();
    let path = req.uri().path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, ["readyz"]) => {
            let not_ready: Vec<String> = snap
                .providers
                .iter()
                .filter(|(_, p)| p.config.prefetch && p.source.peek().is_none())
                .map(|(name, _)| format!("provider {name} holds no valid token yet"))
                .collect();
            let status = if not_ready.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(
                status,
                &json!({"ready": not_ready.is_empty(), "not_ready": not_ready}),
            )
        }
        (&Method::GET, ["status"]) => {
            let providers: serde_json::Map<String, Value> = snap
                .providers
                .iter()
                .map(|(name, p)| (name.clone(), provider_status(&p.source)))
                .collect();
            let routes: Vec<Value> = snap
                .config
                .routes
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "host": r.host.as_ref().map(|h| h.to_string()),
                        "path_prefix": r.path_prefix,
                        "provider": r.provider,
                        "upstream": r.upstream.as_ref().map(|u| format!("{}://{}{}", u.scheme, u.authority, u.base_path)),
                    })
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"providers": providers, "routes": routes}),
            )
        }
        (&Method::POST, ["providers", name, "refresh"]) => match snap.providers.get(*name) {
            None => not_found(&format!("no provider named {name}")),
            Some(p) => match p.source.refresh_now().await {
                Ok(_) => json_response(StatusCode::OK, &provider_status(&p.source)),
                Err(e) => ProxyError::Token(e).to_response(ErrorContext {
                    route: None,
                    provider: Some(name),
                }),
            },
        },
        (&Method::GET, ["providers", name, "token"]) => match snap.providers.get(*name) {
            Some(p) if p.config.expose_token => match p.source.get().await {
                Ok(t) => {
                    let expires_in = t
                        .expires_at
                        .saturating_duration_since(Instant::now())
                        .as_secs();
                    json_response(
                        StatusCode::OK,
                        &json!({"access_token": t.secret().expose(), "token_type": t.token_type, "expires_in": expires_in}),
                    )
                }
                Err(e) => ProxyError::Token(e).to_response(ErrorContext {
                    route: None,
                    provider: Some(name),
                }),
            },
            _ => not_found(&format!(
                "provider {name} does not expose its token (expose_token: true) or does not exist"
            )),
        },
        (&Method::POST, ["reload"]) | (&Method::GET, ["metrics"]) => json_response(
            StatusCode::NOT_IMPLEMENTED,
            &json!({"error": "not_implemented", "detail": format!("{path} is not built in this version yet (see README, \"Not built yet\")")}),
        ),
        _ => not_found(&format!("no admin endpoint {} {path}", req.method())),
    }
}

fn not_found(detail: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "detail": detail}),
    )
}

/// SPEC §7 provider status. Never a token.
pub fn provider_status(source: &TokenSource) -> Value {
    let stats = source.stats();
    let token = source.peek();
    let now = Instant::now();
    json!({
        "has_token": token.is_some(),
        "expires_at": token.as_ref().map(|t| rfc3339(t.expires_at_wall)),
        "expires_in_seconds": token.as_ref().map(|t| t.expires_at.saturating_duration_since(now).as_secs()),
        "refresh_at": token.as_ref().map(|t| rfc3339(t.refresh_at_wall)),
        "scope": token.as_ref().and_then(|t| t.scope.clone()),
        "fetches_total": stats.fetches_total,
        "failures_total": stats.failures_total,
        "last_error": stats.last_error,
        "last_fetch_at": stats.last_fetch_at.map(rfc3339),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_301_671, "2026-11-21T22:54:31Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
    }
}
