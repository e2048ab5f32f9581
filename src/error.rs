//! Every error the proxy itself produces, mapped to its status and JSON body in one
//! exhaustive `match` (SPEC §6). Upstream answers never pass through here.

use crate::token::TokenError;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use std::time::Duration;

/// Request and response bodies on both sides of the proxy. The error is boxed so that the
/// app's request body can say why it failed (stalled or malformed; see `proxy`).
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A proxy-generated failure. `detail` strings never hold a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("token unavailable: {0}")]
    Token(TokenError),
    #[error("no route matched")]
    NoRoute { detail: String },
    #[error("upstream unavailable: {detail}")]
    UpstreamUnavailable { detail: String },
    #[error("upstream timed out: {detail}")]
    UpstreamTimeout { detail: String },
    #[error("bad request: {detail}")]
    BadRequest { detail: String },
    #[error("TLS traffic cannot be intercepted: {detail}")]
    InterceptUnavailable { detail: String },
    #[error("no subject token: {detail}")]
    SubjectTokenMissing { detail: String },
    /// The proxy itself, a link-local address, or a loopback / port the proxy may not
    /// reach for this client (SPEC §4).
    #[error("destination forbidden: {detail}")]
    DestinationForbidden { detail: String },
    /// The token would travel over plain http to a non-loopback host.
    #[error("insecure destination: {detail}")]
    InsecureDestination { detail: String },
    /// A browser's cross-site request, or a Host a host-less route does not serve.
    #[error("browser request forbidden: {detail}")]
    BrowserRequestForbidden { detail: String },
    /// `clients` is configured and the request carries no valid `Proxy-Authorization`.
    #[error("proxy authentication required")]
    ProxyAuthRequired { detail: String },
    /// The authenticated client may not use this route.
    #[error("client forbidden: {detail}")]
    ClientForbidden { detail: String },
    /// The app's request body sent nothing for `body_read_timeout`.
    #[error("request body timed out: {detail}")]
    RequestTimeout { detail: String },
}

/// Which route and provider an error concerns, when known.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorContext<'a> {
    pub route: Option<&'a str>,
    pub provider: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    detail: &'a str,
}

impl ProxyError {
    /// Status, `error` code, detail and `Retry-After` of this error.
    pub fn parts(&self) -> (StatusCode, &'static str, &str, Option<Duration>) {
        match self {
            ProxyError::Token(TokenError::Unavailable {
                detail,
                retry_after,
            }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                detail,
                Some(*retry_after),
            ),
            ProxyError::Token(TokenError::Rejected { detail }) => {
                (StatusCode::BAD_GATEWAY, "token_rejected", detail, None)
            }
            ProxyError::Token(TokenError::InvalidResponse { detail }) => (
                StatusCode::BAD_GATEWAY,
                "token_invalid_response",
                detail,
                None,
            ),
            ProxyError::NoRoute { detail } => (StatusCode::FORBIDDEN, "no_route", detail, None),
            ProxyError::UpstreamUnavailable { detail } => (
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                detail,
                None,
            ),
            ProxyError::UpstreamTimeout { detail } => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                detail,
                None,
            ),
            ProxyError::BadRequest { detail } => {
                (StatusCode::BAD_REQUEST, "bad_request", detail, None)
            }
            ProxyError::SubjectTokenMissing { detail } => (
                StatusCode::UNAUTHORIZED,
                "subject_token_missing",
                detail,
                None,
            ),
            ProxyError::InterceptUnavailable { detail } => {
                (StatusCode::FORBIDDEN, "tls_not_intercepted", detail, None)
            }
            ProxyError::DestinationForbidden { detail } => {
                (StatusCode::FORBIDDEN, "destination_forbidden", detail, None)
            }
            ProxyError::InsecureDestination { detail } => {
                (StatusCode::FORBIDDEN, "insecure_destination", detail, None)
            }
            ProxyError::BrowserRequestForbidden { detail } => (
                StatusCode::FORBIDDEN,
                "browser_request_forbidden",
                detail,
                None,
            ),
            ProxyError::ProxyAuthRequired { detail } => (
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "proxy_auth_required",
                detail,
                None,
            ),
            ProxyError::ClientForbidden { detail } => {
                (StatusCode::FORBIDDEN, "client_forbidden", detail, None)
            }
            ProxyError::RequestTimeout { detail } => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout", detail, None)
            }
        }
    }

    pub fn to_response(&self, cx: ErrorContext<'_>) -> Response<Body> {
        let (status, code, detail, retry_after) = self.parts();
        let body = ErrorBody {
            error: code,
            provider: cx.provider,
            route: cx.route,
            detail,
        };
        let mut json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        json.push(b'\n');
        let mut resp = Response::new(full(Bytes::from(json)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-token-sidecar-error", HeaderValue::from_static(code));
        if matches!(self, ProxyError::ProxyAuthRequired { .. }) {
            h.insert(
                http::header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token-sidecar\""),
            );
        }
        if let Some(after) = retry_after {
            // Whole seconds, rounded up: never earlier than the next attempt.
            let secs = after.as_millis().div_ceil(1000).max(1) as u64;
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response for the admin API.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let mut json = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    json.push(b'\n');
    let mut resp = Response::new(full(json));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn maps_every_error_to_spec_status_and_code() {
        let d = || "d".to_string();
        let cases = [
            (
                ProxyError::Token(TokenError::Unavailable {
                    detail: d(),
                    retry_after: Duration::from_secs(3),
                }),
                503,
                "token_unavailable",
            ),
            (
                ProxyError::Token(TokenError::Rejected { detail: d() }),
                502,
                "token_rejected",
            ),
            (
                ProxyError::Token(TokenError::InvalidResponse { detail: d() }),
                502,
                "token_invalid_response",
            ),
            (ProxyError::NoRoute { detail: d() }, 403, "no_route"),
            (
                ProxyError::UpstreamUnavailable { detail: d() },
                502,
                "upstream_unavailable",
            ),
            (
                ProxyError::UpstreamTimeout { detail: d() },
                504,
                "upstream_timeout",
            ),
            (ProxyError::BadRequest { detail: d() }, 400, "bad_request"),
            (
                ProxyError::SubjectTokenMissing { detail: d() },
                401,
                "subject_token_missing",
            ),
        ];
        for (err, status, code) in cases {
            let resp = err.to_response(ErrorContext {
                route: Some("r"),
                provider: Some("p"),
            });
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()["x-token-sidecar-error"], code);
            assert_eq!(resp.headers().contains_key("retry-after"), status == 503);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], code);
            assert_eq!(v["route"], "r");
            assert_eq!(v["provider"], "p");
            assert_eq!(v["detail"], "d");
        }
    }
}
