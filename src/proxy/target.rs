//! Phase 1 helpers: what a request is for. Pure functions on `http` types; no IO.

use crate::error::ProxyError;
use crate::route::Target;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri, Version};

/// How a request names its target.
#[derive(Clone, Copy, Default)]
pub(super) struct RequestTarget {
    /// Absolute-form (`GET http://host/path`) is forward-proxy traffic, and so is every
    /// request inside a served tunnel. Other HTTP/2 requests always carry an
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

/// RFC 9112 §3.2: an HTTP/1.1 request with more than one `Host` header, or (except
/// CONNECT, whose authority is its target) without one, is answered 400: which host it
/// means is ambiguous, and routes and the browser checks read it.
pub(super) fn check_host_header(
    req: &http::Request<hyper::body::Incoming>,
) -> Result<(), ProxyError> {
    if req.version() != http::Version::HTTP_11 {
        return Ok(());
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let detail = match (hosts.next(), hosts.next()) {
        (Some(_), None) => return Ok(()),
        (Some(_), Some(_)) => "the request has more than one Host header",
        (None, _) if req.method() == http::Method::CONNECT => return Ok(()),
        (None, _) => "an HTTP/1.1 request must carry a Host header",
    };
    Err(ProxyError::BadRequest {
        detail: detail.into(),
    })
}

/// SPEC §4 Paths: a path with a dot segment (`.` or `..`, also percent-encoded as `%2e`)
/// or an encoded slash or backslash (`%2f`, `%5c`) is refused before routing, so that
/// `path_prefix: /v2` can never be escaped with `/v2/../admin` (servers and frameworks
/// differ in how they normalise such paths; the proxy refuses to guess).
pub(super) fn check_path(path: &str) -> Result<(), ProxyError> {
    let refuse = |what: &str| {
        Err(ProxyError::BadRequest {
            detail: format!("the request path contains {what}, which the proxy refuses"),
        })
    };
    let encoded_slash = path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'f') | (b'5', b'c')
            )
    });
    if encoded_slash {
        return refuse("an encoded slash or backslash");
    }
    for segment in path.split('/') {
        if is_dot_segment(segment) {
            return refuse("a dot segment");
        }
    }
    Ok(())
}

/// `.` or `..`, with any of the dots written as `%2e` / `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let mut dots = 0;
    let mut rest = segment.as_bytes();
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3
            && rest[0] == b'%'
            && rest[1] == b'2'
            && rest[2].eq_ignore_ascii_case(&b'e')
        {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// Rewrites the target of a request that arrived inside a served CONNECT tunnel to
/// `authority`: it is proxied as `scheme://authority/path` (`https` inside intercepted
/// TLS, `http` for plain HTTP in the tunnel), whatever its Host header or h2
/// `:authority` says.
pub(super) fn into_tunnel_uri<B>(
    req: &mut Request<B>,
    scheme: &Scheme,
    authority: &Authority,
) -> Result<(), ProxyError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme.clone());
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

/// The port a URI reaches: its own, else its scheme's default.
pub(super) fn port_of(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_escape_a_prefix_are_refused() {
        let refused = [
            "/v2/../admin",
            "/v2/./x",
            "/v2/..",
            "/..",
            "/v2/%2e%2e/admin",
            "/v2/%2E%2E/admin",
            "/v2/.%2e/admin",
            "/v2/%2e./admin",
            "/v2/%2e/admin",
            "/v2/..%2fadmin",
            "/v2%2F..%2Fadmin",
            "/v2/a%5c..%5cadmin",
            "/v2/a%5Cb",
        ];
        for p in refused {
            assert!(check_path(p).is_err(), "{p} must be refused");
        }
        let allowed = [
            "/",
            "",
            "/v2/x",
            "/v2/.well-known/x",
            "/v2/...",
            "/v2/a..b",
            "/v2/%2e%2e%2e",
            "/v2/x.json",
            "/v2/%25%2e",
            "/v2/%2",
            "/v2/a%20b",
        ];
        for p in allowed {
            assert!(check_path(p).is_ok(), "{p} must be allowed");
        }
    }
}
