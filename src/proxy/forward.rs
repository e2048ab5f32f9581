//! Sending: the one send path to the upstream (phase 7) and the replay after a rejected
//! token or a DPoP nonce challenge (phase 8). The replay-safety rule is written at
//! [`replay_once`]. Every attempt of a DPoP or `sign` route gets a fresh proof and a
//! fresh signature (`sender`).

use super::body::{AppBody, AppBodyError};
use super::{sender, Outcome};
use crate::config::RouteConfig;
use crate::error::{Body, ProxyError};
use crate::metrics::{ReplayOutcome, RouteMetrics, UpstreamErrorKind};
use crate::runtime::{BodyBudget, Reservation, RouteRuntime};
use crate::token::{Rejection, Token, TokenSource};
use crate::upstream::{self, Client};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use std::sync::Arc;
use std::time::Duration;

/// A request on its way to the upstream: everything but the token header.
pub(super) struct Outgoing<'s> {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: OutgoingBody,
    pub client: &'s Client,
    /// The token header is set (there is a token, and the app's own header does not win).
    pub inject: bool,
    /// The app's side of an HTTP/1.1 upgrade, spliced once the upstream accepts it.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// `Content-Digest` of the body, for a `sign` route (computed once, sent with every
    /// attempt).
    pub digest: Option<HeaderValue>,
    /// The upstream nonce the latest attempt's DPoP proof carried: a nonce challenge is
    /// worth a replay only with another one.
    pub dpop_nonce: Option<Arc<str>>,
}

/// The request body: in memory (and so replayable, holding its share of the replay
/// budget), or streamed (sent once).
pub(super) enum OutgoingBody {
    Buffered(
        Bytes,
        #[allow(dead_code, reason = "held for its Drop, which gives the budget back")]
        Option<Reservation>,
    ),
    Streamed(Option<AppBody>),
}

impl Outgoing<'_> {
    fn replayable(&self) -> bool {
        matches!(self.body, OutgoingBody::Buffered(..))
    }

    /// The request for one attempt, with `token` in the route's header (and for a DPoP
    /// route a fresh proof), signed when the route signs. A request that cannot be
    /// replayed gives its headers and body away; a replayable one keeps them for the
    /// replay.
    fn request(
        &mut self,
        route: &RouteConfig,
        token: Option<&Token>,
    ) -> Result<Request<Body>, ProxyError> {
        let mut headers = match self.replayable() {
            true => self.headers.clone(),
            false => std::mem::take(&mut self.headers),
        };
        if let Some(t) = token {
            headers.insert(&route.header, t.header_value(&route.value_prefix));
            if let Some(dpop) = &route.dpop {
                let (proof, nonce) = sender::proof(dpop, &self.method, &self.uri, &headers, t)?;
                headers.insert(crate::sender::dpop::DPOP, proof);
                self.dpop_nonce = nonce;
            }
        }
        if let Some(signer) = &route.sign {
            let digest = self.digest.as_ref();
            sender::sign(
                signer,
                &self.method,
                &self.uri,
                &mut headers,
                &self.body,
                digest,
            )?;
        }
        let body = match &mut self.body {
            OutgoingBody::Buffered(b, _) => crate::error::full(b.clone()),
            OutgoingBody::Streamed(b) => b
                .take()
                .map(boxed)
                .unwrap_or_else(|| crate::error::full("")),
        };
        Ok(request(
            self.method.clone(),
            self.uri.clone(),
            self.version,
            headers,
            body,
        ))
    }
}

/// Buffers a body for a possible replay when it is small enough (known length, at most
/// `max_replay_body`), the route replays at all, and the replay budget
/// (`limits.max_buffered_bodies`) has room; other bodies stream.
pub(super) async fn buffer_for_replay(
    route: &RouteConfig,
    body: AppBody,
    budget: &Arc<BodyBudget>,
) -> Result<OutgoingBody, ProxyError> {
    let size = body
        .size_hint()
        .exact()
        .filter(|n| *n <= route.max_replay_body);
    // A DPoP route may replay once for a nonce (RFC 9449 §9), whatever `retry_on` says.
    let replays = !route.retry_on.is_empty() || route.dpop.is_some();
    let Some(size) = size.filter(|_| replays) else {
        return Ok(OutgoingBody::Streamed(Some(body)));
    };
    if body.is_end_stream() {
        return Ok(OutgoingBody::Buffered(Bytes::new(), None));
    }
    let Some(reservation) = budget.reserve(size) else {
        tracing::debug!(route = %route.name, size, "replay budget exhausted; streaming the body");
        return Ok(OutgoingBody::Streamed(Some(body)));
    };
    let bytes = body
        .collect()
        .await
        .map_err(|e| match AppBodyError::find(&*e) {
            Some(app) => app.to_proxy_error(),
            None => ProxyError::BadRequest {
                detail: format!("reading the request body failed: {e}"),
            },
        })?
        .to_bytes();
    Ok(OutgoingBody::Buffered(bytes, Some(reservation)))
}

/// Phase 7: the first attempt, with `token` when it is injected.
pub(super) async fn attempt(
    route: &RouteRuntime,
    out: &mut Outgoing<'_>,
    token: Option<&Token>,
) -> Result<Response<Body>, ProxyError> {
    let config = &route.config;
    let req = out.request(config, token)?;
    let resp = send(out.client, req, config.upstream_timeout, &route.metrics).await?;
    sender::remember_nonce(config, &out.uri, resp.headers());
    Ok(resp)
}

/// Phase 8: the upstream answered `first` to a request carrying `token`. A DPoP route's
/// 401 that asks for a nonce (`WWW-Authenticate: DPoP error="use_dpop_nonce"`) says the
/// token is fine, only the proof lacked the nonce: it is replayed once with the same
/// token and a new proof carrying the nonce the upstream sent (RFC 9449 §9), if it sent
/// a valid one other than the one the proof carried (asking again with the same proof
/// would only get the same answer); the token is never invalidated for it. Otherwise,
/// if the status is in `retry_on`, the token is invalidated (compare-and-invalidate:
/// only if it is still the cached one) and the request replayed once with a renewed
/// token.
///
/// Replay safety rule: a request is replayed only if its whole body is already in memory
/// (known length, at most `max_replay_body`) and only once, whichever the reason. A
/// streamed body has been consumed by the first attempt and can never be sent twice; an
/// upgrade is never replayed. Without a replay the rejected token is still dropped. A
/// replay gets a fresh proof and a fresh signature, like any attempt.
pub(super) async fn replay_once<'s>(
    route: &'s RouteRuntime,
    source: &Arc<TokenSource>,
    out: &mut Outgoing<'_>,
    token: &Arc<Token>,
    first: Response<Body>,
    outcome: &mut Outcome<'s>,
) -> Result<Response<Body>, ProxyError> {
    let config = &route.config;
    if config.dpop.is_some() && is_nonce_challenge(&first) {
        let sent = out.dpop_nonce.as_deref();
        let new_nonce =
            crate::sender::dpop::nonce_of(first.headers()).is_some_and(|n| Some(n) != sent);
        if !new_nonce {
            tracing::debug!(route = %config.name, "the upstream asked for a DPoP nonce without a new one; not replaying");
            return Ok(first);
        }
        return replay_with_nonce(route, source, out, token, first, outcome).await;
    }
    if !config.retry_on.contains(&first.status()) {
        if first.status().is_success() {
            token.mark_accepted();
        }
        return Ok(first);
    }
    let cause = Rejection {
        route: &config.name,
        status: first.status().as_u16(),
    };
    if !out.replayable() {
        source.invalidate(token, cause);
        return Ok(first);
    }
    let Some(fresh) = source.renew_after_reject(token, cause).await else {
        return Ok(first);
    };
    drop(first);
    outcome.replayed = true;
    tracing::debug!(route = %config.name, "replaying once with a renewed token");
    let second = replay(route, out, &fresh).await?;
    if second.status().is_success() {
        fresh.mark_accepted();
    }
    Ok(second)
}

/// A 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9).
fn is_nonce_challenge(resp: &Response<Body>) -> bool {
    resp.status() == http::StatusCode::UNAUTHORIZED
        && crate::sender::dpop::is_nonce_challenge(resp.headers())
}

/// The DPoP nonce replay of [`replay_once`]: the same token, a proof with the new nonce
/// (kept by the first attempt). A second 401 in `retry_on` drops the token, so the next
/// request renews it, unless it is a nonce challenge again (the token was not refused;
/// the next request carries the newest nonce); it is not replayed again.
async fn replay_with_nonce<'s>(
    route: &'s RouteRuntime,
    source: &Arc<TokenSource>,
    out: &mut Outgoing<'_>,
    token: &Arc<Token>,
    first: Response<Body>,
    outcome: &mut Outcome<'s>,
) -> Result<Response<Body>, ProxyError> {
    if !out.replayable() {
        return Ok(first);
    }
    drop(first);
    outcome.replayed = true;
    tracing::debug!(route = %route.config.name, "replaying once with the upstream's DPoP nonce");
    let second = replay(route, out, token).await?;
    if route.config.retry_on.contains(&second.status()) && !is_nonce_challenge(&second) {
        let cause = Rejection {
            route: &route.config.name,
            status: second.status().as_u16(),
        };
        source.invalidate(token, cause);
    }
    Ok(second)
}

/// The one replay of a request: a fresh attempt with `token`, counted.
async fn replay(
    route: &RouteRuntime,
    out: &mut Outgoing<'_>,
    token: &Token,
) -> Result<Response<Body>, ProxyError> {
    let config = &route.config;
    let req = out.request(config, Some(token))?;
    let second = send(out.client, req, config.upstream_timeout, &route.metrics).await;
    route
        .metrics
        .replay(match second.as_ref().map(|r| r.status().as_u16()) {
            Ok(s) if s < 400 => ReplayOutcome::Success,
            Ok(s) if s < 500 => ReplayOutcome::ClientError,
            _ => ReplayOutcome::ServerError,
        });
    if let Ok(resp) = &second {
        sender::remember_nonce(config, &out.uri, resp.headers());
    }
    second
}

/// The one send path: forwards on the pooled client and waits at most `timeout` for the
/// response headers. Hop-by-hop headers of the answer are dropped (a 101 keeps
/// `Connection: upgrade` and `Upgrade`: they are the answer itself).
pub(super) async fn send(
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
            // The app's body failing is the app's fault: 400 or 408, never an upstream error.
            if let Some(app) = AppBodyError::find(&e) {
                return Err(app.to_proxy_error());
            }
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
    let upgrade = (parts.status == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(http::header::UPGRADE).cloned())
        .flatten();
    super::strip_hop_by_hop(&mut parts.headers);
    if let Some(proto) = upgrade {
        parts.headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        parts.headers.insert(http::header::UPGRADE, proto);
    }
    Ok(Response::from_parts(
        parts,
        body.map_err(Into::into).boxed(),
    ))
}

pub(super) fn request(
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

/// The app's body as the upstream client takes it. A body that is already complete (a
/// GET's) is sent as an empty body, whose box allocates nothing.
pub(super) fn boxed(body: AppBody) -> Body {
    match body.is_end_stream() {
        true => http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
        false => body.boxed(),
    }
}
