//! The request lifecycle, and the only module that knows the order of its phases:
//!
//! 1. read the target (absolute-form, origin-form or CONNECT);
//! 2. match a route;
//! 3. take a token from the route's provider;
//! 4. rewrite the request (destination, hop-by-hop headers, Host) and inject the header;
//! 5. forward it on the pooled client, within `upstream_timeout`;
//! 6. if the answer is in `retry_on`, renew the token and replay once (see the rule at
//!    the replay below).
//!
//! Every failure becomes a [`ProxyError`] and is rendered in `error`. One log line per
//! request; it never holds a header value, userinfo or a query string.

mod connect;
mod rewrite;

use crate::config::{OnTokenError, Unmatched};
use crate::error::{Body, ErrorContext, ProxyError};
use crate::metrics::{ReplayOutcome, RouteMetrics, TunnelKind, UpstreamErrorKind};
use crate::route::{self, Target};
use crate::sidecar::{RouteRuntime, Sidecar, Snapshot, Tokens};
use crate::token::Rejection;
use crate::token::Token;
use crate::upstream::{self, Client};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub use rewrite::strip_hop_by_hop;

/// `upstream_timeout` for traffic that matched no route (routes default to the same).
const UNMATCHED_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// What the request log line reports, filled in as the phases run.
#[derive(Default)]
struct Outcome<'s> {
    route: Option<&'s RouteRuntime>,
    token: bool,
    replayed: bool,
}

/// Serves one request from the app on the current snapshot, which it keeps to the end.
pub async fn handle(sidecar: Arc<Sidecar>, req: Request<Incoming>) -> Response<Body> {
    serve_logged(sidecar, req, false).await
}

pub(super) async fn serve_logged(
    sidecar: Arc<Sidecar>,
    req: Request<Incoming>,
    tunneled: bool,
) -> Response<Body> {
    let snap = sidecar.snapshot();
    let started = Instant::now();
    // Cheap handles (reference-counted) for the log line, read after the request is gone.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let host_header = req.headers().get(http::header::HOST).cloned();
    let mut out = Outcome::default();
    let resp = match serve(&sidecar, &snap, req, tunneled, &mut out).await {
        Ok(resp) => resp,
        Err(e) => {
            let (route, provider) = out
                .route
                .map(|r| (r.config.name.as_str(), r.config.provider.as_str()))
                .unzip();
            if let ProxyError::Token(te) = &e {
                tracing::warn!(route, provider, error = %te, "no token for the request");
            }
            e.to_response(ErrorContext { route, provider })
        }
    };
    let took = started.elapsed();
    match out.route {
        Some(r) => r.metrics.request(resp.status().as_u16(), took),
        None => snap.unmatched_metrics.request(resp.status().as_u16(), took),
    }
    if tracing::enabled!(tracing::Level::INFO) {
        let host = request_host(&uri, host_header.as_ref()).unwrap_or("-");
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

async fn serve<'s>(
    sidecar: &Arc<Sidecar>,
    snap: &'s Snapshot,
    mut req: Request<Incoming>,
    tunneled: bool,
    out: &mut Outcome<'s>,
) -> Result<Response<Body>, ProxyError> {
    if req.method() == Method::CONNECT {
        if tunneled {
            return Err(ProxyError::BadRequest {
                detail: "CONNECT inside an intercepted tunnel is not supported".into(),
            });
        }
        return connect::handle(sidecar, snap, req).await;
    }
    // Absolute-form (`GET http://host/path`) is forward-proxy traffic, and so is every
    // request inside an intercepted tunnel. Other HTTP/2 requests always carry an
    // authority, so they are treated as origin-form (reverse proxy).
    let absolute = tunneled || (req.version() < Version::HTTP_2 && req.uri().scheme().is_some());
    let (host, port) = split_host_port(
        request_host(req.uri(), req.headers().get(http::header::HOST)),
        req.uri(),
    );
    let target = Target {
        host,
        port,
        path: req.uri().path(),
        method: req.method(),
    };
    // Inside an intercepted tunnel, routes that opted out of interception do not apply.
    let found = match tunneled {
        true => route::find_intercepting(&snap.config.routes, &target),
        false => route::find(&snap.config.routes, &target),
    };
    let Some(index) = found else {
        return unmatched(snap, req, absolute).await;
    };
    let rt = &snap.routes[index];
    out.route = Some(rt);
    let route = &rt.config;

    // The token source: the provider's, or for token exchange the subject's, taken from
    // the request (and, unless configured otherwise, not forwarded).
    let source = match &rt.tokens {
        Tokens::Single(s) => s.clone(),
        Tokens::Exchange(x) => {
            let Some(subject) = x.subject(req.headers()) else {
                return Err(ProxyError::SubjectTokenMissing {
                    detail: format!("this route exchanges the token in the {} header, and the request carries none", x.settings().header),
                });
            };
            let settings = x.settings();
            if !settings.forward_subject_header {
                req.headers_mut().remove(&settings.header);
            }
            x.source_for(&subject)
        }
    };
    let token = match source.get().await {
        Ok(t) => Some(t),
        Err(e) if route.on_token_error == OnTokenError::Forward => {
            tracing::warn!(route = %route.name, provider = %route.provider, error = %e, "no token; forwarding without one (on_token_error: forward)");
            None
        }
        Err(e) => return Err(ProxyError::Token(e)),
    };

    // An HTTP/1.1 Upgrade (WebSocket): forwarded with its token, then spliced after 101.
    let upgrade =
        rewrite::upgrade_protocol(req.headers()).map(|proto| (proto, hyper::upgrade::on(&mut req)));
    let grpc = req.version() == Version::HTTP_2 && rewrite::is_grpc(req.headers());
    let (mut parts, body) = req.into_parts();
    let app_host = request_host(&parts.uri, parts.headers.get(http::header::HOST));
    let dest = rewrite::destination(route, &parts.uri, app_host)?;
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
    let token = token.filter(|_| route.overwrite || !parts.headers.contains_key(&route.header));
    out.token = token.is_some();

    // gRPC from an HTTP/2 app to a plain-http upstream needs h2c; everything else goes
    // as HTTP/1.1, upgraded to h2 by ALPN where a TLS upstream offers it.
    let (client, version) = match grpc && dest.uri.scheme() == Some(&http::uri::Scheme::HTTP) {
        true => (&rt.h2c_client, Version::HTTP_2),
        false => (&rt.client, Version::HTTP_11),
    };
    if let Some((_, client_side)) = upgrade {
        // Upgrades exist only in HTTP/1.1: never let ALPN pick h2 for them.
        let mut headers = parts.headers;
        if let Some(t) = &token {
            headers.insert(&route.header, t.header_value(&route.value_prefix));
        }
        let req = outgoing(
            parts.method,
            dest.uri,
            Version::HTTP_11,
            headers,
            body.boxed(),
        );
        let mut resp = send(&rt.h1_client, req, route.upstream_timeout, &rt.metrics).await?;
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let upstream_side = hyper::upgrade::on(&mut resp);
            let sidecar = sidecar.clone();
            tokio::spawn(async move {
                match (client_side.await, upstream_side.await) {
                    (Ok(a), Ok(b)) => {
                        let _active = sidecar.metrics.tunnel_opened(TunnelKind::Upgrade);
                        connect::splice(
                            TokioIo::new(a),
                            TokioIo::new(b),
                            connect::TUNNEL_IDLE_TIMEOUT,
                        )
                        .await;
                    }
                    _ => tracing::debug!("upgrade did not complete"),
                }
            });
        } else if let Some(t) = token.filter(|_| route.retry_on.contains(&resp.status())) {
            // No replay for upgrades; the rejected token is still dropped.
            source.invalidate(&t, rejection(route, &resp));
        }
        return Ok(resp);
    }
    let Some(token) = token else {
        return send(
            client,
            outgoing(parts.method, dest.uri, version, parts.headers, body.boxed()),
            route.upstream_timeout,
            &rt.metrics,
        )
        .await;
    };

    // Replay safety rule: a request is replayed only if its whole body is already in
    // memory (known length, at most `max_replay_body`) and only once. A streamed body has
    // been consumed by the first attempt and can never be sent twice.
    let replayable = !route.retry_on.is_empty()
        && body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= route.max_replay_body);
    if !replayable {
        let mut headers = parts.headers;
        headers.insert(&route.header, token.header_value(&route.value_prefix));
        let resp = send(
            client,
            outgoing(parts.method, dest.uri, version, headers, body.boxed()),
            route.upstream_timeout,
            &rt.metrics,
        )
        .await?;
        if route.retry_on.contains(&resp.status()) {
            // No replay, but the rejected token must not be used again.
            source.invalidate(&token, rejection(route, &resp));
        }
        return Ok(resp);
    }
    let bytes = if body.is_end_stream() {
        bytes::Bytes::new()
    } else {
        body.collect()
            .await
            .map_err(|e| ProxyError::BadRequest {
                detail: format!("reading the request body failed: {e}"),
            })?
            .to_bytes()
    };
    let attempt = |token: &Token, headers: HeaderMap| {
        let mut headers = headers;
        headers.insert(&route.header, token.header_value(&route.value_prefix));
        outgoing(
            parts.method.clone(),
            dest.uri.clone(),
            version,
            headers,
            crate::error::full(bytes.clone()),
        )
    };
    let first = send(
        client,
        attempt(&token, parts.headers.clone()),
        route.upstream_timeout,
        &rt.metrics,
    )
    .await?;
    if !route.retry_on.contains(&first.status()) {
        return Ok(first);
    }
    let Some(fresh) = source
        .renew_after_reject(&token, rejection(route, &first))
        .await
    else {
        return Ok(first);
    };
    drop(first);
    out.replayed = true;
    tracing::debug!(route = %route.name, "replaying once with a renewed token");
    let second = send(
        client,
        attempt(&fresh, parts.headers),
        route.upstream_timeout,
        &rt.metrics,
    )
    .await;
    rt.metrics
        .replay(match second.as_ref().map(|r| r.status().as_u16()) {
            Ok(s) if s < 400 => ReplayOutcome::Success,
            Ok(s) if s < 500 => ReplayOutcome::ClientError,
            _ => ReplayOutcome::ServerError,
        });
    second
}

fn rejection<'a>(route: &'a crate::config::RouteConfig, resp: &Response<Body>) -> Rejection<'a> {
    Rejection {
        route: &route.name,
        status: resp.status().as_u16(),
    }
}

/// A request that matched no route: refused under `unmatched: deny`, otherwise forwarded
/// untouched (no token) when it names its own target.
async fn unmatched(
    snap: &Snapshot,
    req: Request<Incoming>,
    absolute: bool,
) -> Result<Response<Body>, ProxyError> {
    let host = request_host(req.uri(), req.headers().get(http::header::HOST)).unwrap_or("-");
    if snap.config.unmatched == Unmatched::Deny {
        return Err(ProxyError::NoRoute {
            detail: format!(
                "no route matches {} {host}{}",
                req.method(),
                req.uri().path()
            ),
        });
    }
    if !absolute {
        return Err(ProxyError::BadRequest {
            detail: format!("no route matches {host}{}, and an origin-form request names no target to forward to", req.uri().path()),
        });
    }
    let (mut parts, body) = req.into_parts();
    let dest = rewrite::own_target(&parts.uri, None)?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(http::header::HOST, dest.host);
    let req = outgoing(
        parts.method,
        dest.uri,
        Version::HTTP_11,
        parts.headers,
        body.boxed(),
    );
    send(
        &snap.default_client,
        req,
        UNMATCHED_UPSTREAM_TIMEOUT,
        &snap.unmatched_metrics,
    )
    .await
}

fn outgoing(
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    req
}

/// Forwards on the pooled client; waits at most `timeout` for the response headers.
async fn send(
    client: &Client,
    req: Request<Body>,
    timeout: Duration,
    metrics: &RouteMetrics,
) -> Result<Response<Body>, ProxyError> {
    let resp = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => {
            metrics.upstream_error(UpstreamErrorKind::Timeout);
            return Err(ProxyError::UpstreamTimeout {
                detail: format!(
                    "no response headers within {}",
                    crate::config::format_duration(timeout)
                ),
            });
        }
        Ok(Err(e)) => {
            let (kind, detail) = upstream::describe(&e);
            metrics.upstream_error(match kind {
                upstream::FailureKind::Tls => UpstreamErrorKind::Tls,
                upstream::FailureKind::Connect | upstream::FailureKind::Other => {
                    UpstreamErrorKind::Connect
                }
            });
            return Err(ProxyError::UpstreamUnavailable { detail });
        }
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    // A 101 keeps `Connection: upgrade` and `Upgrade`: they are the answer itself.
    let upgrade = (parts.status == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(http::header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(proto) = upgrade {
        parts.headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        parts.headers.insert(http::header::UPGRADE, proto);
    }
    Ok(Response::from_parts(parts, body.boxed()))
}

/// The `host[:port]` a request is for: the URI's authority, else the Host header; any
/// `user:password@` is dropped so that it can reach neither a route match nor a log.
fn request_host<'a>(uri: &'a Uri, host_header: Option<&'a HeaderValue>) -> Option<&'a str> {
    let authority = match uri.authority() {
        Some(a) => a.as_str(),
        None => host_header?.to_str().ok()?,
    };
    Some(authority.rsplit('@').next().unwrap_or(authority))
}

/// Splits `host[:port]`; the port defaults from the URI's scheme.
fn split_host_port<'a>(authority: Option<&'a str>, uri: &Uri) -> (Option<&'a str>, Option<u16>) {
    let Some(a) = authority else {
        return (None, None);
    };
    let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    if a.starts_with('[') {
        if let Some(end) = a.find(']') {
            let port = a[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (Some(&a[..=end]), Some(port));
        }
    }
    match a.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => (Some(h), Some(port)),
            Err(_) => (Some(a), Some(default_port)),
        },
        None => (Some(a), Some(default_port)),
    }
}
