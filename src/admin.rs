//! The admin API (SPEC §7) on its own listener: health, readiness, status, metrics,
//! reloads and manual token refresh. Nothing it returns contains a token or a secret,
//! except `GET /providers/{name}/token` for providers that opted in with
//! `expose_token: true`. It is handed the runtime and the reloader; it owns neither.
//!
//! Probes and metrics answer anyone who can connect. Control endpoints answer loopback
//! peers, and others only with `Authorization: Bearer <admin_token_file's token>`
//! (compared in constant time). The proxy never relays to this listener, so a request
//! through the proxy always arrives here from the proxy's own address — and is refused
//! there before it is sent.

use crate::config::{strip_port, Readiness};
use crate::error::{json_response, Body, ErrorContext, ProxyError};
use crate::listener::Peer;
use crate::reload::Reloader;
use crate::runtime::{ProviderRuntime, Runtime, Snapshot, Tokens};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// `POST /providers/{name}/refresh` starts at most one fetch per provider this often.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// What the admin endpoints act on.
pub struct Admin {
    runtime: Arc<Runtime>,
    reloader: Arc<Reloader>,
    /// When each provider's last manual refresh started.
    refreshed: Mutex<HashMap<String, Instant>>,
}

/// The admin endpoints: who may call them, and with which methods.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint<'p> {
    Healthz,
    Readyz,
    Metrics,
    Status,
    Reload,
    Refresh(&'p str),
    Token(&'p str),
}

impl<'p> Endpoint<'p> {
    fn of(path: &'p str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        Some(match segments.as_slice() {
            ["healthz"] => Endpoint::Healthz,
            ["readyz"] => Endpoint::Readyz,
            ["metrics"] => Endpoint::Metrics,
            ["status"] => Endpoint::Status,
            ["reload"] => Endpoint::Reload,
            ["providers", name, "refresh"] => Endpoint::Refresh(name),
            ["providers", name, "token"] => Endpoint::Token(name),
            _ => return None,
        })
    }

    /// Probes and metrics answer anyone; the rest is control.
    fn is_control(self) -> bool {
        !matches!(
            self,
            Endpoint::Healthz | Endpoint::Readyz | Endpoint::Metrics
        )
    }

    /// `Allow`: `HEAD` works wherever `GET` does.
    fn allow(self) -> &'static str {
        match self {
            Endpoint::Reload | Endpoint::Refresh(_) => "POST",
            _ => "GET, HEAD",
        }
    }
}

impl Admin {
    pub fn new(runtime: Arc<Runtime>, reloader: Arc<Reloader>) -> Self {
        Admin {
            runtime,
            reloader,
            refreshed: Mutex::default(),
        }
    }

    pub async fn handle(self: Arc<Self>, peer: Peer, req: Request<Incoming>) -> Response<Body> {
        let snap = self.runtime.snapshot();
        let Some(endpoint) = Endpoint::of(req.uri().path()) else {
            return not_found(&format!("no admin endpoint {}", req.uri().path()));
        };
        let allowed = match endpoint.allow() {
            "POST" => req.method() == Method::POST,
            _ => req.method() == Method::GET || req.method() == Method::HEAD,
        };
        if !allowed {
            return method_not_allowed(endpoint.allow());
        }
        if endpoint.is_control() && !may_control(&snap, peer, &req) {
            return admin_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "control endpoints answer loopback peers that are not web pages (no Origin, no cross-site Sec-Fetch-Site, a Host that names the proxy), or a Bearer token from admin_token_file",
            );
        }
        match endpoint {
            Endpoint::Healthz => json_response(StatusCode::OK, &json!({"status": "ok"})),
            Endpoint::Readyz if self.runtime.draining() => {
                let mut resp = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "error": "draining", "not_ready": ["shutting down: draining in-flight requests"]}),
                );
                resp.headers_mut().insert(
                    "x-token-sidecar-error",
                    http::HeaderValue::from_static("draining"),
                );
                resp
            }
            Endpoint::Readyz => readyz(&snap),
            Endpoint::Metrics => self.metrics(&snap),
            Endpoint::Status => status(&snap),
            Endpoint::Reload => self.reload().await,
            Endpoint::Refresh(name) => self.refresh(&snap, name).await,
            Endpoint::Token(name) => expose(&snap, name, req.method() == Method::HEAD).await,
        }
    }

    /// `POST /providers/{name}/refresh`: fetch now (at most once a second per provider),
    /// answer the provider's status.
    async fn refresh(&self, snap: &Snapshot, name: &str) -> Response<Body> {
        let source = match snap.providers.get(name) {
            None => return not_found(&format!("no provider named {name}")),
            Some(ProviderRuntime {
                tokens: Tokens::Exchange(_),
                ..
            }) => {
                return admin_error(
                    StatusCode::CONFLICT,
                    "per_subject",
                    &format!("provider {name} exchanges one token per subject; there is no single token to refresh"),
                )
            }
            Some(ProviderRuntime {
                tokens: Tokens::Single(source),
                ..
            }) => source,
        };
        if let Some(wait) = self.refresh_throttled(name) {
            let mut resp = admin_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                &format!("provider {name} was refreshed less than a second ago"),
            );
            let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            return resp;
        }
        match source.refresh_now().await {
            Ok(_) => json_response(StatusCode::OK, &source.status()),
            Err(e) => token_error(e, name),
        }
    }

    /// `None` when a refresh of `name` may start now (and records it), else how long to
    /// wait.
    fn refresh_throttled(&self, name: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut refreshed = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = refreshed.get(name) {
            let since = now.duration_since(*last);
            if since < REFRESH_INTERVAL {
                return Some(REFRESH_INTERVAL - since);
            }
        }
        refreshed.insert(name.to_string(), now);
        None
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
        let store = snap.store.as_deref();
        let body = crate::metrics::render(routes, providers, &self.runtime.metrics, store);
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
/// With `readiness: listening`, ready as soon as the listeners are up: a shared egress
/// proxy keeps its Service endpoints through an IdP outage, and apps get a clear 503
/// `token_unavailable` instead of a refused connection.
fn readyz(snap: &Snapshot) -> Response<Body> {
    if snap.config.readiness == Readiness::Listening {
        return json_response(StatusCode::OK, &json!({"ready": true, "not_ready": []}));
    }
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
    // Without `token_store`, `kind` says so; `up` and `last_error` are then null.
    let store = match &snap.store {
        Some(s) => json!({"kind": "redis", "up": s.up(), "last_error": s.last_error()}),
        None => json!({"kind": "none", "up": null, "last_error": null}),
    };
    json_response(
        StatusCode::OK,
        &json!({"providers": providers, "routes": routes, "store": store}),
    )
}

/// `GET /providers/{name}/token`, only for providers with `expose_token: true`. `HEAD`
/// answers whether a token is there without fetching or exposing one.
async fn expose(snap: &Snapshot, name: &str, head: bool) -> Response<Body> {
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
    if head {
        let status = match source.peek() {
            Some(_) => StatusCode::OK,
            None => StatusCode::SERVICE_UNAVAILABLE,
        };
        return json_response(status, &json!({}));
    }
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

/// Control endpoints: the bearer of `admin_token_file`'s token, or a loopback peer that
/// is not a web page (a page in the developer's browser is a loopback peer too: the
/// browser rules of SPEC §4 apply, so DNS rebinding and cross-site POSTs get nowhere).
fn may_control(snap: &Snapshot, peer: Peer, req: &Request<Incoming>) -> bool {
    if peer.addr.ip().to_canonical().is_loopback() && !from_a_web_page(snap, req) {
        return true;
    }
    let Some(token) = &snap.config.admin_token else {
        return false;
    };
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| token.matches(presented))
}

/// `Sec-Fetch-Site` other than `same-origin`/`none`, any `Origin`, or a `Host` that is
/// not one of the proxy's own names.
fn from_a_web_page(snap: &Snapshot, req: &Request<Incoming>) -> bool {
    let h = req.headers();
    let site = h.get("sec-fetch-site").map(|v| v.as_bytes());
    let cross = site.is_some_and(|s| {
        !s.eq_ignore_ascii_case(b"same-origin") && !s.eq_ignore_ascii_case(b"none")
    });
    let host = h.get(http::header::HOST).and_then(|v| v.to_str().ok());
    let foreign_host = host.is_some_and(|h| !snap.config.is_own_name(strip_port(h)));
    cross || h.contains_key(http::header::ORIGIN) || foreign_host
}

/// An admin error: JSON `{"error", "detail"}` plus `x-token-sidecar-error`, like every
/// error the sidecar itself produces (SPEC §6).
fn admin_error(status: StatusCode, code: &'static str, detail: &str) -> Response<Body> {
    let mut resp = json_response(status, &json!({"error": code, "detail": detail}));
    resp.headers_mut().insert(
        "x-token-sidecar-error",
        http::HeaderValue::from_static(code),
    );
    resp
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = admin_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this endpoint answers {allow}"),
    );
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}

fn not_found(detail: &str) -> Response<Body> {
    admin_error(StatusCode::NOT_FOUND, "not_found", detail)
}
