//! Per attempt, for the routes that need it: the DPoP proof (SPEC §10, RFC 9449) and the
//! HTTP message signature (RFC 9421) of the request as the upstream receives it, and the
//! buffering a signature needs (the body must be whole to be digested, RFC 9530).
//!
//! Other routes never get here: the send path checks two `Option`s, and their header
//! value stays the one prebuilt with the token.

use super::body::{AppBody, AppBodyError};
use super::forward::OutgoingBody;
use crate::config::{RouteConfig, RouteDpop};
use crate::error::ProxyError;
use crate::runtime::BodyBudget;
use crate::sender::{dpop, Message, ProofClaims, Signer};
use crate::token::Token;
use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use std::sync::Arc;

/// A fresh proof for this attempt: `htm`, `htu` (the URI the upstream receives, without
/// query and fragment), `ath` of `token`, and the upstream's latest nonce. `headers`
/// already hold the `Host` that is sent: with `preserve_host` it is the app's, not the
/// upstream URL's authority, and the server rebuilds `htu` from it (RFC 9449 §4.3).
/// Also the nonce the proof carries.
pub(super) fn proof(
    dpop: &RouteDpop,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    token: &Token,
) -> Result<(HeaderValue, Option<Arc<str>>), ProxyError> {
    let no_uri = || cannot("make the DPoP proof", "no absolute URI");
    let (scheme, authority) = (
        uri.scheme_str().ok_or_else(no_uri)?,
        uri.authority().ok_or_else(no_uri)?,
    );
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok());
    let htu = dpop::htu_of(scheme, host.as_ref().unwrap_or(authority), uri.path());
    let nonce = dpop.nonces.get(authority.as_str());
    let claims = ProofClaims {
        htm: method.as_str(),
        htu: &htu,
        access_token: Some(token.secret().expose()),
        nonce: nonce.as_deref(),
    };
    let proof = dpop
        .key
        .proof(&claims)
        .map_err(|e| cannot("make the DPoP proof", &e))?;
    Ok((proof, nonce))
}

/// Keeps the nonce an upstream sent (RFC 9449 §9: in a challenge, or with any answer).
pub(super) fn remember_nonce(route: &RouteConfig, uri: &Uri, headers: &HeaderMap) {
    if let (Some(dpop), Some(authority)) = (&route.dpop, uri.authority()) {
        dpop.nonces.update(authority.as_str(), headers);
    }
}

/// Adds `Content-Digest` (when `digest` is given) and then `Signature-Input` and
/// `Signature` over the request as it will be sent: `headers` already hold the token,
/// the proof and `Host`. A buffered body's `Content-Length` is set first: the client
/// would add it after signing (the app may have sent the body chunked), and then a
/// covered `content-length` would be left out of the signature.
pub(super) fn sign(
    signer: &Signer,
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &OutgoingBody,
    digest: Option<&HeaderValue>,
) -> Result<(), ProxyError> {
    if let Some(d) = digest {
        headers.insert("content-digest", d.clone());
    }
    // An empty body goes without one (hyper adds none either); the app's own stays.
    if let OutgoingBody::Buffered(bytes, _) = body {
        if !bytes.is_empty() {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
    }
    let authority = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_string();
    let msg = Message {
        method,
        scheme: uri.scheme_str().unwrap_or("http"),
        authority: &authority,
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
        headers,
    };
    // A header value that cannot be signed (not ASCII) is the app's request's fault.
    let signed = signer.sign(&msg).map_err(|e| ProxyError::BadRequest {
        detail: format!("this route signs requests (sign), and the request cannot be signed: {e}"),
    })?;
    // Beside the app's own signatures, if it made any (RFC 9421 §4.3).
    signer.attach(signed, headers);
    Ok(())
}

/// The body of a request to a `sign` route, whole: it is digested, and replays are
/// signed again over the same bytes. Up to `max_replay_body` (unknown lengths too) and
/// within the buffer budget; otherwise 400, never an unsigned request.
pub(super) async fn buffer_to_sign(
    route: &RouteConfig,
    body: AppBody,
    budget: &Arc<BodyBudget>,
) -> Result<OutgoingBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(OutgoingBody::Buffered(Bytes::new(), None));
    }
    let limit = route.max_replay_body;
    let too_large = || {
        ProxyError::BadRequest {
        detail: format!(
            "the request body is larger than max_replay_body ({limit} bytes): this route signs requests (sign) and cannot digest a body it cannot hold"
        ),
    }
    };
    let size = match body.size_hint().exact() {
        Some(n) if n > limit => return Err(too_large()),
        Some(n) => n,
        None => limit,
    };
    let Some(reservation) = budget.reserve(size) else {
        return Err(ProxyError::BadRequest {
            detail: "this route signs requests (sign), and the buffer for bodies (limits.max_buffered_bodies) is full: the body cannot be digested now".into(),
        });
    };
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let bytes = limited
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            match AppBodyError::find(&*e) {
                Some(app) => app.to_proxy_error(),
                None => ProxyError::BadRequest {
                    detail: format!("reading the request body failed: {e}"),
                },
            }
        })?
        .to_bytes();
    Ok(OutgoingBody::Buffered(bytes, Some(reservation)))
}

/// The digest of `body` for a `sign` route: for every body with content, and for empty
/// ones when the signature covers `content-digest` (RFC 9530 digests empty content too).
pub(super) fn digest(signer: &Signer, body: &OutgoingBody) -> Option<HeaderValue> {
    match body {
        OutgoingBody::Buffered(bytes, _) if !bytes.is_empty() || signer.covers_digest() => {
            Some(crate::sender::content_digest(bytes))
        }
        OutgoingBody::Streamed(_) if signer.covers_digest() => {
            Some(crate::sender::content_digest(b""))
        }
        _ => None,
    }
}

/// Making a proof or a signature failed (only when the system has no randomness).
fn cannot(what: &str, why: &str) -> ProxyError {
    ProxyError::BadRequest {
        detail: format!("cannot {what}: {why}"),
    }
}
