//! The admin API (SPEC §7) on its own listener: health, readiness, status, metrics,
//! reloads and manual token refresh. Nothing it returns contains a token or a secret,
//! except `GET /providers/{name}/token` for providers that opted in with
//! `expose_token: true`. It is handed the runtime and the reloader; it owns neither.

use crate::error::{json_response, Body, ErrorContext, ProxyError};
use crate::reload::Reloader;
use crate::runtime::{ProviderRuntime, Runtime, Snapshot, Tokens};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::time::Instant;

/// What the admin endpoints act on.
pub struct Admin {
    runtime: Arc<Runtime>,
    reloader: Arc<Reloader>,
}

impl Admin {
    pub fn new(runtime: Arc<Runtime>, reloader: Arc<Reloader>) -> Self {
        Admin { runtime, reloader }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let snap = self.runtime.snapshot();
        let path = req.uri().path().trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        match (req.method(), segments.as_slice()) {
            (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, ["readyz"]) => readyz(&snap),
            (&Method::GET, ["status"]) => status(&snap),
            (&Method::GET, ["metrics"]) => self.metrics(&snap),
            (&Method::POST, ["reload"]) => self.reload().await,
            (&Method::POST, ["providers", name, "refresh"]) => refresh(&snap, name).await,
            (&Method::GET, ["providers", name, "token"]) => expose(&snap, name).await,
            _ => not_found(&format!("no admin endpoint {} {path}", req.method())),
        }
    }

    fn metrics(&self, snap: &Snapshot) -> Response<Body> {
        let routes = snap
            .routes
            .iter()
            .map(|r| (r.config.name.as_str(), &*r.metrics))
            .chain(std::iter::once(("-", &*snap.unmatched_metrics)));
        let providers = snap
            .providers
            .iter()
            .map(|(name, p)| (name.as_str(), p.tokens.metrics()));
        let body = crate::metrics::render(routes, providers, &self.runtime.metrics);
        let mut resp = Response::new(crate::error::full(body));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }

    async fn reload(&self) -> Response<Body> {
        let reloader = self.reloader.clone();
        match tokio::task::spawn_blocking(move || reloader.reload("POST /reload")).await {
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
}

/// 200 when every `prefetch` provider holds a valid token, else 503 naming the others.
fn readyz(snap: &Snapshot) -> Response<Body> {
    let not_ready: Vec<String> = snap
        .providers
        .iter()
        .filter(|(_, p)| p.config.prefetch && p.tokens.single().is_some_and(|s| s.peek().is_none()))
        .map(|(name, _)| format!("provider {name} holds no valid token yet"))
        .collect();
    let status = match not_ready.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_response(
        status,
        &json!({"ready": not_ready.is_empty(), "not_ready": not_ready}),
    )
}

fn status(snap: &Snapshot) -> Response<Body> {
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

/// `POST /providers/{name}/refresh`: fetch now, answer the provider's status.
async fn refresh(snap: &Snapshot, name: &str) -> Response<Body> {
    match snap.providers.get(name) {
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
            Err(e) => token_error(e, name),
        },
    }
}

/// `GET /providers/{name}/token`, only for providers with `expose_token: true`.
async fn expose(snap: &Snapshot, name: &str) -> Response<Body> {
    let source = match snap.providers.get(name) {
        Some(ProviderRuntime {
            config,
            tokens: Tokens::Single(source),
        }) if config.expose_token => source,
        _ => {
            return not_found(&format!(
                "provider {name} does not expose its token (expose_token: true) or does not exist"
            ))
        }
    };
    match source.get().await {
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
        Err(e) => token_error(e, name),
    }
}

fn token_error(e: crate::token::TokenError, provider: &str) -> Response<Body> {
    ProxyError::Token(e).to_response(ErrorContext {
        route: None,
        provider: Some(provider),
    })
}

fn not_found(detail: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "detail": detail}),
    )
}
