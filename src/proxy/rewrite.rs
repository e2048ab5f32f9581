//! Turning the app's request into the upstream's: target URI, hop-by-hop headers, Host.
//! Pure functions on `http` types; no IO.

use crate::config::RouteConfig;
use crate::error::ProxyError;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the proxy's own credentials.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers and the headers `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The protocol an HTTP/1.1 request asks to upgrade to (`Connection: upgrade` plus
/// `Upgrade: websocket`, say), if any.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    // `h2c` upgrades would take the connection out of the proxy's hands (and need the
    // stripped HTTP2-Settings): they are not forwarded as upgrades.
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
        .filter(|p| !p.as_bytes().eq_ignore_ascii_case(b"h2c"))
}

/// A gRPC request (`content-type: application/grpc…`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Where a request goes: its scheme, authority and path with query.
pub struct Destination {
    pub uri: Uri,
    /// The value for the `Host` header.
    pub host: HeaderValue,
}

/// The destination of a routed request: the route's `upstream` (with `strip_prefix`), or
/// the request's own target. `app_host` is the host the app addressed (Host header, or
/// the HTTP/2 authority), kept with `preserve_host`.
pub fn destination(
    route: &RouteConfig,
    target: &Uri,
    app_host: Option<&str>,
) -> Result<Destination, ProxyError> {
    let Some(up) = &route.upstream else {
        return own_target(target, app_host);
    };
    let original = target
        .path_and_query()
        .map(PathAndQuery::as_str)
        .unwrap_or("/");
    let rest = match (&route.path_prefix, route.strip_prefix) {
        (Some(prefix), true) => original.strip_prefix(prefix.as_str()).unwrap_or(original),
        _ => original,
    };
    let path_and_query = match (up.base_path.is_empty(), rest.starts_with('/')) {
        // The common case: the request's own path, shared rather than copied.
        (true, true) if rest.len() == original.len() => target
            .path_and_query()
            .cloned()
            .map_or_else(|| Ok(PathAndQuery::from_static("/")), Ok),
        (_, true) => PathAndQuery::try_from(format!("{}{rest}", up.base_path)),
        (_, false) => PathAndQuery::try_from(format!("{}/{rest}", up.base_path)),
    }
    .map_err(|_| bad_request("the request path cannot be joined to the route's upstream URL"))?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(up.scheme.clone());
    parts.authority = Some(up.authority.clone());
    parts.path_and_query = Some(path_and_query);
    let uri = Uri::from_parts(parts).map_err(|_| {
        bad_request("the request path cannot be joined to the route's upstream URL")
    })?;
    // Built per request only with preserve_host; the upstream's value is prebuilt.
    let host = match app_host
        .filter(|_| route.preserve_host)
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        Some(h) => h,
        None => up.host_header.clone(),
    };
    Ok(Destination { uri, host })
}

/// The destination of a request that goes where it says: the absolute-form target, or for
/// an origin-form request, `http://` plus its Host header.
pub fn own_target(target: &Uri, host_header: Option<&str>) -> Result<Destination, ProxyError> {
    let path_and_query = target
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let (scheme, authority) = match (target.scheme(), target.authority()) {
        (Some(s), Some(a)) => (s.clone(), without_userinfo(a)?),
        _ => {
            let h = host_header.ok_or_else(|| bad_request("the request names no host"))?;
            let a = Authority::try_from(h)
                .map_err(|_| bad_request("the Host header is not a valid host"))?;
            (Scheme::HTTP, a)
        }
    };
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(bad_request(
            "only http:// and https:// targets can be proxied",
        ));
    }
    let host = authority_value(&authority)?;
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| bad_request("the request target is not a valid URI"))?;
    Ok(Destination { uri, host })
}

fn authority_value(a: &Authority) -> Result<HeaderValue, ProxyError> {
    HeaderValue::from_str(a.as_str()).map_err(|_| bad_request("invalid target host"))
}

/// `user:pass@host:port` → `host:port`: credentials in a URL go nowhere.
fn without_userinfo(a: &Authority) -> Result<Authority, ProxyError> {
    match a.as_str().rsplit_once('@') {
        Some((_, host)) => {
            Authority::try_from(host).map_err(|_| bad_request("invalid target host"))
        }
        None => Ok(a.clone()),
    }
}

fn bad_request(detail: &str) -> ProxyError {
    ProxyError::BadRequest {
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn route(extra: &str) -> std::sync::Arc<RouteConfig> {
        let yaml = format!(
            "providers:\n  p: {{ token_url: 'http://127.0.0.1:1/t', client_id: c, client_secret: s }}\nroutes:\n  - {{ provider: p, {extra} }}\n"
        );
        Config::from_text(Path::new("t.yaml"), &yaml, &|_| None)
            .unwrap()
            .routes[0]
            .clone()
    }

    #[test]
    fn upstream_with_strip_prefix_and_base_path() {
        let r = route("match: { path_prefix: /crm }, upstream: 'https://api.test:8443/base/', strip_prefix: true");
        let cases = [
            ("/crm/v1/x?q=1", "https://api.test:8443/base/v1/x?q=1"),
            ("/crm", "https://api.test:8443/base/"),
            ("/crm?a=b", "https://api.test:8443/base/?a=b"),
        ];
        for (path, want) in cases {
            let d = destination(&r, &path.parse().unwrap(), Some("app.local")).unwrap();
            assert_eq!(d.uri.to_string(), want, "{path}");
            assert_eq!(d.host, "api.test:8443");
        }
    }

    #[test]
    fn preserve_host_keeps_the_apps_host() {
        let r = route(
            "match: { path_prefix: /crm }, upstream: 'http://127.0.0.1:9', preserve_host: true",
        );
        let d = destination(&r, &"/crm/x".parse().unwrap(), Some("app.local")).unwrap();
        assert_eq!(d.uri.to_string(), "http://127.0.0.1:9/crm/x");
        assert_eq!(d.host, "app.local");
    }

    #[test]
    fn forward_targets_go_where_they_say() {
        let r = route("match: { host: api.test }");
        let d = destination(
            &r,
            &"http://user:pw@api.test:8080/a?b".parse().unwrap(),
            Some("wrong"),
        )
        .unwrap();
        assert_eq!(d.uri.to_string(), "http://api.test:8080/a?b");
        assert_eq!(d.host, "api.test:8080");
    }

    #[test]
    fn strips_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
            .collect();
        left.sort();
        assert_eq!(left, vec!["x-kept=yes"]);
    }
}
