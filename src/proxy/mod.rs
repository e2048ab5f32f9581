//! The request lifecycle, and the only module that knows the order of its phases. Each
//! phase is one function, called in this order by [`serve`]:
//!
//! 1. [`target`]: what the request is for (absolute-form, origin-form, or the authority
//!    of the tunnel it came through); CONNECT leaves here for [`tunnel`];
//! 2. [`route`]: the first matching route, or [`unmatched`];
//! 3. [`token`]: the route's token (for token exchange: the subject's);
//! 4. [`prepare`]: destination, hop-by-hop headers, Host, the client to send with, and
//!    the replay decision (the body is buffered only when a replay may need it);
//! 5. [`forward::send`]: the one send path, within `upstream_timeout`;
//! 6. [`forward::replay_once`]: the answer is in `retry_on`: renew the token and replay
//!    once (the rule is written there);
//! 7. [`respond`]: splice an accepted upgrade, count, log.
//!
//! Every failure becomes a [`ProxyError`] and is rendered in `error`. One log line per
//! request; it never holds a header value, userinfo or a query string.

mod forward;
mod rewrite;
mod target;
mod tunnel;

use crate::config::{OnTokenError, Unmatched};
use crate::error::{Body, ErrorContext, ProxyError};
use crate::route;
use crate::runtime::{RouteRuntime, Runtime, Snapshot, Tokens};
use crate::token::{Token, TokenSource};
use forward::{Outgoing, OutgoingBody};

use futures_util::future::BoxFuture;
use http::uri::Authority;
use http::{HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use target::RequestTarget;
use tokio::time::Instant;

pub use rewrite::strip_hop_by_hop;

/// `upstream_timeout` for traffic that matched no route (routes default to the same).
const UNMATCHED_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a request came from: the proxy listener, or inside an intercepted CONNECT
/// tunnel to `authority` (then it is proxied as `https://authority/path`).
#[derive(Clone, Copy)]
enum Via<'a> {
    Listener,
    Tunnel(&'a Authority),
}

/// What the request log line reports, filled in as the phases run.
#[derive(Default)]
struct Outcome<'s> {
    route: Option<&'s RouteRuntime>,
    token: bool,
    replayed: bool,
}

/// Serves one request from the app on the current snapshot, which it keeps to the end.
pub async fn handle(runtime: Arc<Runtime>, req: Request<Incoming>) -> Response<Body> {
    serve_logged(&runtime, req, Via::Listener).await
}

/// The handler for the requests inside an intercepted tunnel to `authority`. Boxed, so
/// that the tunnel, opened by this same lifecycle, is handed a plain function.
fn tunneled(runtime: Arc<Runtime>, authority: Authority) -> tunnel::Handler {
    Arc::new(move |req| -> BoxFuture<'static, Response<Body>> {
        let (runtime, authority) = (runtime.clone(), authority.clone());
        Box::pin(async move { serve_logged(&runtime, req, Via::Tunnel(&authority)).await })
    })
}

async fn serve_logged(
    runtime: &Arc<Runtime>,
    req: Request<Incoming>,
    via: Via<'_>,
) -> Response<Body> {
    let snap = runtime.snapshot();
    let started = Instant::now();
    // Cheap handles (reference-counted) for the log line, read after the request is gone.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let host_header = req.headers().get(http::header::HOST).cloned();
    let mut out = Outcome::default();
    let resp = match serve(runtime, &snap, req, via, &mut out).await {
        Ok(resp) => resp,
        Err(e) => error_response(e, &out),
    };
    let took = started.elapsed();
    match out.route {
        Some(r) => r.metrics.request(resp.status().as_u16(), took),
        None => snap.unmatched_metrics.request(resp.status().as_u16(), took),
    }
    if tracing::enabled!(tracing::Level::INFO) {
        let host = target::request_host(&uri, host_header.as_ref()).unwrap_or("-");
        tracing::info!(
            route = out.route.map_or("-", |r| r.config.name.as_str()),
            provider = out.route.map_or("-", |r| r.config.provider.as_str()),
            method = %method,
            host,
            path = uri.path(),
            status = resp.status().as_u16(),
            latency_ms = took.as_secs_f64() * 1000.0,
            token = out.token,
            replayed = out.replayed,
            "request"
        );
    }
    resp
}

fn error_response(e: ProxyError, out: &Outcome<'_>) -> Response<Body> {
    let (route, provider) = out
        .route
        .map(|r| (r.config.name.as_str(), r.config.provider.as_str()))
        .unzip();
    if let ProxyError::Token(te) = &e {
        tracing::warn!(route, provider, error = %te, "no token for the request");
    }
    e.to_response(ErrorContext { route, provider })
}

/// The phases, in order.
async fn serve<'s>(
    runtime: &Arc<Runtime>,
    snap: &'s Snapshot,
    mut req: Request<Incoming>,
    via: Via<'_>,
    out: &mut Outcome<'s>,
) -> Result<Response<Body>, ProxyError> {
    let target = target(&mut req, via)?;
    if req.method() == Method::CONNECT {
        return tunnel::connect(runtime, snap, req, tunneled).await;
    }
    let Some(route) = route(snap, &req, &target, via) else {
        return unmatched(snap, req, &target).await;
    };
    out.route = Some(route);
    let (source, token) = token(route, &mut req).await?;
    let mut outgoing = prepare(route, req, token.as_ref(), out).await?;
    let upgrade = outgoing.upgrade.take();
    let token = token.filter(|_| outgoing.inject);
    let first = forward::attempt(route, &mut outgoing, token.as_deref()).await?;
    let resp = match &token {
        Some(token) => {
            forward::replay_once(route, &source, &mut outgoing, token, first, out).await?
        }
        None => first,
    };
    Ok(respond(runtime, resp, upgrade))
}

/// Phase 1: what the request is for. Inside a tunnel, the tunnel's authority with the
/// request's path (whatever its Host header says).
fn target(req: &mut Request<Incoming>, via: Via<'_>) -> Result<RequestTarget, ProxyError> {
    if req.method() == Method::CONNECT {
        if let Via::Tunnel(_) = via {
            return Err(ProxyError::BadRequest {
                detail: "CONNECT inside an intercepted tunnel is not supported".into(),
            });
        }
        return Ok(RequestTarget::default());
    }
    if let Via::Tunnel(authority) = via {
        target::into_tunnel_uri(req, authority)?;
    }
    Ok(RequestTarget::of(req, matches!(via, Via::Tunnel(_))))
}

/// Phase 2: the first route, in file order, that selects the request. Inside an
/// intercepted tunnel, routes that opted out of interception do not apply.
fn route<'s>(
    snap: &'s Snapshot,
    req: &Request<Incoming>,
    target: &RequestTarget,
    via: Via<'_>,
) -> Option<&'s RouteRuntime> {
    let t = target.route_target(req);
    match via {
        Via::Tunnel(_) => route::find_intercepting(&snap.routes, &t),
        Via::Listener => route::find(&snap.routes, &t),
    }
}

/// Phase 3: the token source (the provider's, or for token exchange the subject's, taken
/// from the request and, unless configured otherwise, not forwarded) and its token.
async fn token(
    route: &RouteRuntime,
    req: &mut Request<Incoming>,
) -> Result<(Arc<TokenSource>, Option<Arc<Token>>), ProxyError> {
    let config = &route.config;
    let source = match &route.tokens {
        Tokens::Single(s) => s.clone(),
        Tokens::Exchange(x) => {
            let settings = x.settings();
            let Some(subject) = x.subject(req.headers()) else {
                return Err(ProxyError::SubjectTokenMissing {
                    detail: format!("this route exchanges the token in the {} header, and the request carries none", settings.header),
                });
            };
            if !settings.forward_subject_header {
                req.headers_mut().remove(&settings.header);
            }
            x.source_for(&subject)
        }
    };
    match source.get().await {
        Ok(t) => Ok((source, Some(t))),
        Err(e) if config.on_token_error == OnTokenError::Forward => {
            tracing::warn!(route = %config.name, provider = %config.provider, error = %e, "no token; forwarding without one (on_token_error: forward)");
            Ok((source, None))
        }
        Err(e) => Err(ProxyError::Token(e)),
    }
}

/// Phase 4: the request as the upstream will get it, without the token header. Decides
/// the client (gRPC to a plain-http upstream needs h2c; upgrades exist only in HTTP/1.1;
/// everything else goes as HTTP/1.1, upgraded to h2 by ALPN where a TLS upstream offers
/// it) and whether the body is buffered for a replay.
async fn prepare<'s>(
    route: &'s RouteRuntime,
    mut req: Request<Incoming>,
    token: Option<&Arc<Token>>,
    out: &mut Outcome<'s>,
) -> Result<Outgoing<'s>, ProxyError> {
    let config = &route.config;
    // An HTTP/1.1 Upgrade (WebSocket): forwarded with its token, then spliced after 101.
    let upgrade =
        rewrite::upgrade_protocol(req.headers()).map(|proto| (proto, hyper::upgrade::on(&mut req)));
    let grpc = req.version() == Version::HTTP_2 && rewrite::is_grpc(req.headers());
    let (mut parts, body) = req.into_parts();
    let app_host = target::request_host(&parts.uri, parts.headers.get(http::header::HOST));
    let dest = rewrite::destination(config, &parts.uri, app_host)?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(http::header::HOST, dest.host);
    if grpc {
        // gRPC needs `TE: trailers` end to end; it is otherwise hop-by-hop.
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some((proto, _)) = &upgrade {
        parts.headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        parts.headers.insert(http::header::UPGRADE, proto.clone());
    }
    // Inject unless the app set the header itself and the route keeps it (overwrite: false).
    let inject =
        token.is_some() && (config.overwrite || !parts.headers.contains_key(&config.header));
    out.token = inject;
    let (client, version) = match (
        &upgrade,
        grpc && dest.uri.scheme() == Some(&http::uri::Scheme::HTTP),
    ) {
        (Some(_), _) => (&route.h1_client, Version::HTTP_11),
        (None, true) => (&route.h2c_client, Version::HTTP_2),
        (None, false) => (&route.client, Version::HTTP_11),
    };
    let body = match inject && upgrade.is_none() {
        true => forward::buffer_for_replay(config, body).await?,
        false => OutgoingBody::Streamed(Some(body)),
    };
    Ok(Outgoing {
        method: parts.method,
        uri: dest.uri,
        version,
        headers: parts.headers,
        body,
        client,
        inject,
        upgrade: upgrade.map(|(_, on)| on),
    })
}

/// Phase 7: an accepted upgrade is spliced to the app's side; the response goes back.
fn respond(
    runtime: &Arc<Runtime>,
    mut resp: Response<Body>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    if let Some(client_side) = upgrade {
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let upstream_side = hyper::upgrade::on(&mut resp);
            tunnel::splice_upgrade(runtime, client_side, upstream_side);
        }
    }
    resp
}

/// A request that matched no route: refused under `unmatched: deny`, otherwise forwarded
/// untouched (no token) when it names its own target.
async fn unmatched(
    snap: &Snapshot,
    req: Request<Incoming>,
    target: &RequestTarget,
) -> Result<Response<Body>, ProxyError> {
    let host =
        target::request_host(req.uri(), req.headers().get(http::header::HOST)).unwrap_or("-");
    if snap.config.unmatched == Unmatched::Deny {
        return Err(ProxyError::NoRoute {
            detail: format!(
                "no route matches {} {host}{}",
                req.method(),
                req.uri().path()
            ),
        });
    }
    if !target.absolute {
        return Err(ProxyError::BadRequest {
            detail: format!("no route matches {host}{}, and an origin-form request names no target to forward to", req.uri().path()),
        });
    }
    let (mut parts, body) = req.into_parts();
    let dest = rewrite::own_target(&parts.uri, None)?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(http::header::HOST, dest.host);
    let req = forward::request(
        parts.method,
        dest.uri,
        Version::HTTP_11,
        parts.headers,
        forward::boxed(body),
    );
    forward::send(
        &snap.default_client,
        req,
        UNMATCHED_UPSTREAM_TIMEOUT,
        &snap.unmatched_metrics,
    )
    .await
}
