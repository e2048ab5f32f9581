//! Phase 1 helpers: what a request is for. Pure functions on `http` types; no IO.

use crate::error::ProxyError;
use crate::route::Target;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri, Version};

/// How a request names its target.
#[derive(Clone, Copy, Default)]
pub(super) struct RequestTarget {
    /// Absolute-form (`GET http://host/path`) is forward-proxy traffic, and so is every
    /// request inside an intercepted tunnel. Other HTTP/2 requests always carry an
    /// authority, so they are treated as origin-form (reverse proxy).
    pub absolute: bool,
}

impl RequestTarget {
    pub fn of<B>(req: &Request<B>, tunneled: bool) -> Self {
        RequestTarget {
            absolute: tunneled || (req.version() < Version::HTTP_2 && req.uri().scheme().is_some()),
        }
    }

    /// What routes are matched on: host and port (from the URI, else the Host header),
    /// path and method.
    pub fn route_target<'r, B>(&self, req: &'r Request<B>) -> Target<'r> {
        let default_port = default_port(req.uri());
        let (host, port) = split_host_port(
            request_host(req.uri(), req.headers().get(http::header::HOST)),
            default_port,
        );
        Target {
            host,
            port,
            default_port,
            path: req.uri().path(),
            method: req.method(),
        }
    }
}

/// Rewrites the target of a request that arrived inside an intercepted CONNECT tunnel
/// to `authority`: it is proxied as `https://authority/path`, whatever its Host header
/// says.
pub(super) fn into_tunnel_uri<B>(
    req: &mut Request<B>,
    authority: &Authority,
) -> Result<(), ProxyError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTPS);
    parts.authority = Some(authority.clone());
    parts.path_and_query = req
        .uri()
        .path_and_query()
        .cloned()
        .or_else(|| Some(PathAndQuery::from_static("/")));
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest {
        detail: "invalid request target inside the tunnel".into(),
    })?;
    Ok(())
}

/// The `host[:port]` a request is for: the URI's authority, else the Host header; any
/// `user:password@` is dropped so that it can reach neither a route match nor a log.
pub(super) fn request_host<'a>(
    uri: &'a Uri,
    host_header: Option<&'a HeaderValue>,
) -> Option<&'a str> {
    let authority = match uri.authority() {
        Some(a) => a.as_str(),
        None => host_header?.to_str().ok()?,
    };
    Some(authority.rsplit('@').next().unwrap_or(authority))
}

/// The default port of the URI's scheme: 443 for `https`, else 80.
fn default_port(uri: &Uri) -> u16 {
    if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    }
}

/// Splits `host[:port]`; the port defaults to `default_port`.
fn split_host_port(authority: Option<&str>, default_port: u16) -> (Option<&str>, Option<u16>) {
    let Some(a) = authority else {
        return (None, None);
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
