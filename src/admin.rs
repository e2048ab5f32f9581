//! The admin API (SPEC §7) on its own listener: health, readiness, status, and manual
//! token refresh. Nothing it returns contains a token or a secret, except
//! `GET /providers/{name}/token` for providers that opted in with `expose_token: true`.

use crate::error::{json_response, Body, ErrorContext, ProxyError};
use crate::sidecar::{ProviderRuntime, Sidecar, Tokens};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::Arc;
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
                .filter(|(_, p)| {
                    p.config.prefetch && p.tokens.single().is_some_and(|s| s.peek().is_none())
                })
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
            let providers: std::collections::BTreeMap<&str, _> = snap
                .providers
                .iter()
                .map(|(name, p)| (name.as_str(), p.tokens.status()))
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
            Some(ProviderRuntime {
                tokens: Tokens::Exchange(_),
                ..
            }) => json_response(
                StatusCode::CONFLICT,
                &json!({"error": "per_subject", "detail": format!("provider {name} exchanges one token per subject; there is no single token to refresh")}),
            ),
            Some(ProviderRuntime {
                tokens: Tokens::Single(source),
                ..
            }) => match source.refresh_now().await {
                Ok(_) => json_response(StatusCode::OK, &source.status()),
                Err(e) => ProxyError::Token(e).to_response(ErrorContext {
                    route: None,
                    provider: Some(name),
                }),
            },
        },
        (&Method::GET, ["providers", name, "token"]) => match snap.providers.get(*name) {
            Some(ProviderRuntime {
                config,
                tokens: Tokens::Single(source),
            }) if config.expose_token => match source.get().await {
                Ok(t) => {
                    source.metrics.exposed();
                    tracing::info!(target: "audit", event = "token_exposed", provider = %name);
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
        (&Method::GET, ["metrics"]) => {
            let routes = snap
                .routes
                .iter()
                .map(|r| (r.config.name.as_str(), &*r.metrics))
                .chain(std::iter::once(("-", &*snap.unmatched_metrics)));
            let providers = snap
                .providers
                .iter()
                .map(|(name, p)| (name.as_str(), p.tokens.metrics()));
            let body = crate::metrics::render(routes, providers, &sidecar.metrics);
            let mut resp = Response::new(crate::error::full(body));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        (&Method::POST, ["reload"]) => {
            let sc = sidecar.clone();
            match tokio::task::spawn_blocking(move || sc.reload("POST /reload")).await {
                Ok(Ok(summary)) => json_response(StatusCode::OK, &summary),
                Ok(Err(problems)) => json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"outcome": "error", "problems": problems, "detail": "the old config keeps serving"}),
                ),
                Err(_) => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"outcome": "error", "detail": "reload failed"}),
                ),
            }
        }
        _ => not_found(&format!("no admin endpoint {} {path}", req.method())),
    }
}

fn not_found(detail: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "detail": detail}),
    )
}
