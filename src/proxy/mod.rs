//! The request lifecycle, and the only module that knows the order of its phases. Each
//! phase is one function, called in this order by [`serve`]:
//!
//! 1. [`admit`]: the proxy client (`clients`, `Proxy-Authorization`), or the client of
//!    the tunnel the request came through;
//! 2. [`target`]: what the request is for (absolute-form, origin-form, or the authority
//!    of the tunnel it came through), with the path checked; CONNECT leaves here for
//!    [`tunnel`];
//! 3. [`route`]: the first matching route, or [`unmatched`];
//! 4. [`allow`]: may this client, and this browser, use the route; may a token go to
//!    its destination over plain http;
//! 5. [`token`]: the route's token (for token exchange: the subject's);
//! 6. [`prepare`]: destination (never the proxy itself),
//!    hop-by-hop headers, Host, the client to send with, and the replay decision (the
//!    body is buffered only when a replay may need it);
//! 7. [`forward::attempt`]: the one send path, within `upstream_timeout`;
//! 8. [`forward::replay_once`]: the answer is in `retry_on`: renew the token and replay
//!    once (the rule is written there);
//! 9. [`respond`]: the app's HTTP version, splice an accepted upgrade; count, log.
//!
//! Every failure becomes a [`ProxyError`] and is rendered in `error`. One log line per
//! request; it never holds a header value, userinfo or a query string.

mod body;
mod forward;
mod guard;
mod log;
#[cfg(test)]
mod props;
mod rewrite;
mod sender;
mod sniff;
mod splice;
mod target;
mod tunnel;
mod unmatched;

use crate::config::{OnTokenError, ProxyClient};
use crate::error::{Body, ErrorContext, ProxyError};
use crate::listener::Peer;
use crate::route;
use crate::runtime::{RouteRuntime, Runtime, Snapshot, Tokens};
use crate::token::{Token, TokenSource};
use body::AppBody;
use forward::{Outgoing, OutgoingBody};
use futures_util::future::BoxFuture;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;
use std::sync::Arc;
use target::RequestTarget;
use tokio::time::Instant;

pub use rewrite::strip_hop_by_hop;

/// Where a request came from: the proxy listener, or inside a served CONNECT tunnel
/// (then it is proxied as `scheme://authority/path`: `https` inside intercepted TLS,
/// `http` for plain HTTP sent straight into the tunnel).
#[derive(Clone, Copy)]
enum Via<'a> {
    Listener,
    Tunnel(&'a Tunnel),
}

/// A served tunnel: its authority, the scheme its requests are proxied as, and the proxy
/// client that opened it.
struct Tunnel {
    authority: Authority,
    scheme: Scheme,
    client: Option<String>,
}

/// What the request log line reports, filled in as the phases run.
#[derive(Default)]
struct Outcome<'s> {
    client: Option<&'s str>,
    route: Option<&'s RouteRuntime>,
    /// Where the request went (routed requests).
    upstream: Option<Authority>,
    /// The `error` code of a proxy-generated answer.
    error: Option<&'static str>,
    token: bool,
    replayed: bool,
}

/// Serves one request from the app on the current snapshot, which it keeps to the end.
pub async fn handle(runtime: Arc<Runtime>, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    serve_logged(&runtime, peer, req, Via::Listener).await
}

/// The handler for the requests inside a served tunnel. Boxed, so that the tunnel,
/// opened by this same lifecycle, is handed a plain function.
fn tunneled(runtime: Arc<Runtime>, peer: Peer, tunnel: Tunnel) -> tunnel::Handler {
    let tunnel = Arc::new(tunnel);
    Arc::new(move |req| -> BoxFuture<'static, Response<Body>> {
        let (runtime, tunnel) = (runtime.clone(), tunnel.clone());
        Box::pin(async move { serve_logged(&runtime, peer, req, Via::Tunnel(&tunnel)).await })
    })
}

async fn serve_logged(
    runtime: &Arc<Runtime>,
    peer: Peer,
    mut req: Request<Incoming>,
    via: Via<'_>,
) -> Response<Body> {
    let snap = runtime.snapshot();
    let _in_flight = runtime.metrics.request_started();
    let started = Instant::now();
    let log = log::RequestLog::start(&mut req);
    let mut out = Outcome::default();
    let resp = match serve(runtime, &snap, peer, req, via, &mut out).await {
        Ok(resp) => resp,
        Err(e) => error_response(e, &mut out),
    };
    let took = started.elapsed();
    match out.route {
        Some(r) => r.metrics.request(resp.status().as_u16(), took),
        None => snap.unmatched_metrics.request(resp.status().as_u16(), took),
    }
    log.emit(peer, &out, &resp, took);
    resp
}

fn error_response(e: ProxyError, out: &mut Outcome<'_>) -> Response<Body> {
    out.error = Some(e.parts().1);
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
    peer: Peer,
    mut req: Request<Incoming>,
    via: Via<'_>,
    out: &mut Outcome<'s>,
) -> Result<Response<Body>, ProxyError> {
    let version = req.version();
    let client = admit(snap, &req, via)?;
    out.client = client.map(|c| c.name.as_str());
    let target = target(&mut req, via)?;
    if req.method() == Method::CONNECT {
        let name = client.map(|c| c.name.clone());
        let inner = move |runtime, authority, scheme| {
            tunneled(
                runtime,
                peer,
                Tunnel {
                    authority,
                    scheme,
                    client: name,
                },
            )
        };
        return tunnel::connect(runtime, snap, req, inner).await;
    }
    let Some(route) = route(snap, &req, &target, via) else {
        let resp = unmatched::forward(runtime, snap, req, &target).await?;
        return Ok(respond(runtime, resp, version, None));
    };
    out.route = Some(route);
    allow(snap, route, client, &req)?;
    let (source, token) = token(route, &mut req).await?;
    let mut outgoing = prepare(runtime, snap, route, req, token.as_ref(), out).await?;
    let upgrade = outgoing.upgrade.take();
    let token = token.filter(|_| outgoing.inject);
    let first = forward::attempt(route, &mut outgoing, token.as_deref()).await?;
    let resp = match &token {
        Some(token) => {
            forward::replay_once(route, &source, &mut outgoing, token, first, out).await?
        }
        None => first,
    };
    Ok(respond(runtime, resp, version, upgrade))
}

/// Phase 1: the proxy client. With `clients` configured, every request proves one with
/// `Proxy-Authorization: Basic` (which is never forwarded: it is hop-by-hop); requests
/// inside a served tunnel belong to the client that opened it, as long as the
/// current config still has that client.
fn admit<'s>(
    snap: &'s Snapshot,
    req: &Request<Incoming>,
    via: Via<'_>,
) -> Result<Option<&'s ProxyClient>, ProxyError> {
    match via {
        Via::Listener => guard::authenticate(&snap.config, req),
        Via::Tunnel(_) if snap.config.clients.is_empty() => Ok(None),
        Via::Tunnel(t) => t
            .client
            .as_deref()
            .and_then(|name| snap.config.client(name))
            .map(Some)
            .ok_or_else(|| ProxyError::ProxyAuthRequired {
                detail: "the client that opened this tunnel is no longer configured".into(),
            }),
    }
}

/// Phase 2: what the request is for. Inside a tunnel, the tunnel's authority with the
/// request's path (whatever its Host header says). Paths that could escape a route's
/// prefix, and HTTP/1.1 requests with no or two `Host` headers, are refused here,
/// before routing.
fn target(req: &mut Request<Incoming>, via: Via<'_>) -> Result<RequestTarget, ProxyError> {
    target::check_host_header(req)?;
    if req.method() == Method::CONNECT {
        if let Via::Tunnel(_) = via {
            return Err(ProxyError::BadRequest {
                detail: "CONNECT inside a tunnel is not supported".into(),
            });
        }
        return Ok(RequestTarget::default());
    }
    target::check_path(req.uri().path())?;
    if let Via::Tunnel(t) = via {
        target::into_tunnel_uri(req, &t.scheme, &t.authority)?;
    }
    Ok(RequestTarget::of(req, matches!(via, Via::Tunnel(_))))
}

/// Phase 3: the first route, in file order, that selects the request. Inside an
/// served tunnel, routes that opted out of interception do not apply.
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

/// Phase 4: the route's `clients`, the browser rules (SPEC §4 Browsers), and plain
/// http for a token (SPEC §4 Plaintext) unless the app's own header goes instead.
fn allow(
    snap: &Snapshot,
    route: &RouteRuntime,
    client: Option<&ProxyClient>,
    req: &Request<Incoming>,
) -> Result<(), ProxyError> {
    let config = &route.config;
    guard::client_allowed(config, client)?;
    // A Host that is there but not text reads as an empty name (refused by the browser
    // rules), never as an absent one.
    let host = match req.headers().get(http::header::HOST) {
        Some(h) => Some(h.to_str().unwrap_or("")),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    guard::browser_allowed(&snap.config, config, req.headers(), host)?;
    let apps_header_wins = !config.overwrite && req.headers().contains_key(&config.header);
    if !apps_header_wins {
        guard::plaintext_allowed(config, req.uri())?;
    }
    Ok(())
}

/// Phase 5: the token source (the provider's, or for token exchange the subject's, taken
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

/// Phase 6: the request as the upstream will get it, without the token header. Refuses
/// a destination that is the proxy itself (SPEC §4 Own listeners). Decides the client (gRPC to a plain-http upstream needs h2c; upgrades exist only in HTTP/1.1;
/// everything else goes as HTTP/1.1, upgraded to h2 by ALPN where a TLS upstream offers
/// it) and whether the body is buffered for a replay. A `sign` route buffers every body
/// (it is digested) or refuses it with 400; proofs and signatures are made per attempt.
async fn prepare<'s>(
    runtime: &Runtime,
    snap: &Snapshot,
    route: &'s RouteRuntime,
    mut req: Request<Incoming>,
    token: Option<&Arc<Token>>,
    out: &mut Outcome<'s>,
) -> Result<Outgoing<'s>, ProxyError> {
    let config = &route.config;
    let (limits, budget) = (&snap.config.limits, &runtime.body_budget);
    // An HTTP/1.1 Upgrade (WebSocket): forwarded with its token, then spliced after 101.
    let upgrade =
        rewrite::upgrade_protocol(req.headers()).map(|proto| (proto, hyper::upgrade::on(&mut req)));
    let grpc = req.version() == Version::HTTP_2 && rewrite::is_grpc(req.headers());
    let (mut parts, body) = req.into_parts();
    let app_host = target::request_host(&parts.uri, parts.headers.get(http::header::HOST));
    let dest = rewrite::destination(config, &parts.uri, app_host)?;
    out.upstream = dest.uri.authority().cloned();
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
    destination_allowed(runtime, &dest.uri).await?;
    out.token = inject;
    let (client, version) = match (
        &upgrade,
        grpc && dest.uri.scheme() == Some(&http::uri::Scheme::HTTP),
    ) {
        (Some(_), _) => (&route.h1_client, Version::HTTP_11),
        (None, true) => (&route.h2c_client, Version::HTTP_2),
        (None, false) => (&route.client, Version::HTTP_11),
    };
    let body = AppBody::new(body, limits.body_read_timeout);
    if config.sign.is_some() && upgrade.is_some() && !hyper::body::Body::is_end_stream(&body) {
        return Err(ProxyError::BadRequest {
            detail: "this route signs requests (sign): an upgrade request with a body cannot be digested".into(),
        });
    }
    let body = match (&config.sign, inject && upgrade.is_none()) {
        (Some(_), _) if upgrade.is_none() => sender::buffer_to_sign(config, body, budget).await?,
        (_, true) => forward::buffer_for_replay(config, body, budget).await?,
        _ => OutgoingBody::Streamed(Some(body)),
    };
    let digest = config.sign.as_ref().and_then(|s| sender::digest(s, &body));
    Ok(Outgoing {
        method: parts.method,
        uri: dest.uri,
        version,
        headers: parts.headers,
        body,
        client,
        inject,
        upgrade: upgrade.map(|(_, on)| on),
        digest,
        dpop_nonce: None,
    })
}

/// Phase 9: the response goes back in the app's HTTP version, whatever the upstream's
/// (an HTTP/1.0 upstream must not turn the app's HTTP/1.1 keep-alive connection into a
/// closing HTTP/1.0 one); an accepted upgrade is spliced to the app's side.
fn respond(
    runtime: &Arc<Runtime>,
    mut resp: Response<Body>,
    version: Version,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    // HTTP/1.1 for every HTTP/1.x app: hyper itself answers an HTTP/1.0 app in HTTP/1.0,
    // keeping its connection when it asked for keep-alive.
    *resp.version_mut() = match version {
        Version::HTTP_2 => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    if let Some(client_side) = upgrade {
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let upstream_side = hyper::upgrade::on(&mut resp);
            tunnel::splice_upgrade(runtime, client_side, upstream_side);
        }
    }
    resp
}

/// A routed request never goes to the proxy's own listeners, whatever name is used.
async fn destination_allowed(runtime: &Runtime, uri: &http::Uri) -> Result<(), ProxyError> {
    let (Some(host), Some(port)) = (uri.host(), target::port_of(uri)) else {
        return Ok(());
    };
    let reach = guard::Reach {
        own: &runtime.own,
        no_local: false,
    };
    guard::destination(host, port, reach).await.map(|_| ())
}
