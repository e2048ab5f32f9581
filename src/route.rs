//! Route matching: which route, if any, selects a request. Pure functions over the
//! compiled config; no IO, no allocation on the match path.

use crate::config::{HostPattern, RouteConfig};
use http::Method;

/// What a request is matched on.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Lowercase host name (IPv6 in brackets); `None` when the request names none.
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub path: &'a str,
    pub method: &'a Method,
}

/// The first route, in file order, that selects `target`. Generic over what holds the
/// route config, so callers get back their own element (the runtime's route, with its
/// token source and clients), not an index into a parallel list.
pub fn find<'r, R: AsRef<RouteConfig>>(routes: &'r [R], target: &Target<'_>) -> Option<&'r R> {
    routes.iter().find(|r| matches(r.as_ref(), target))
}

/// Like [`find`], among the routes that take part in interception (for requests inside
/// an intercepted tunnel).
pub fn find_intercepting<'r, R: AsRef<RouteConfig>>(
    routes: &'r [R],
    target: &Target<'_>,
) -> Option<&'r R> {
    routes.iter().find(|r| {
        let r = r.as_ref();
        r.intercept && matches(r, target)
    })
}

/// True when some route that takes part in interception (`intercept`, default true)
/// names this host (for CONNECT, which carries no path or method).
pub fn names_host<R: AsRef<RouteConfig>>(routes: &[R], host: &str, port: u16) -> bool {
    routes.iter().any(|r| {
        let r = r.as_ref();
        r.intercept
            && r.host
                .as_ref()
                .is_some_and(|p| host_matches(p, host, Some(port)))
    })
}

pub fn matches(route: &RouteConfig, t: &Target<'_>) -> bool {
    if let Some(pattern) = &route.host {
        let Some(host) = t.host else { return false };
        if !host_matches(pattern, host, t.port) {
            return false;
        }
    }
    if let Some(prefix) = &route.path_prefix {
        if !path_has_prefix(t.path, prefix) {
            return false;
        }
    }
    match &route.methods {
        Some(methods) => methods.contains(t.method),
        None => true,
    }
}

pub fn host_matches(pattern: &HostPattern, host: &str, port: Option<u16>) -> bool {
    pattern.matches(host, port)
}

/// `/v2` is a prefix of `/v2`, `/v2/`, `/v2/x`, but not of `/v2x`.
pub use crate::config::path_has_prefix;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;
    use std::sync::Arc;

    fn routes(yaml_routes: &str) -> Vec<Arc<RouteConfig>> {
        let yaml = format!(
            "providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\nroutes:\n{yaml_routes}"
        );
        Config::from_text(Path::new("t.yaml"), &yaml, &|_| None)
            .unwrap()
            .routes
    }

    fn pick(
        routes: &[Arc<RouteConfig>],
        host: Option<&str>,
        port: Option<u16>,
        method: &str,
        path: &str,
    ) -> Option<String> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        find(
            routes,
            &Target {
                host,
                port,
                path,
                method: &method,
            },
        )
        .map(|r| r.name.clone())
    }

    #[test]
    fn table() {
        let rs = routes(
            "  - { name: exact, match: { host: API.Example.com, path_prefix: /v2/, methods: [get] }, provider: p }\n\
             \x20 - { name: port, match: { host: 'api.example.com:8443' }, provider: p }\n\
             \x20 - { name: wild, match: { host: '*.example.com' }, provider: p }\n\
             \x20 - { name: rev, match: { path_prefix: /crm }, provider: p, upstream: 'http://127.0.0.1:9' }\n",
        );
        type Case<'a> = (
            Option<&'a str>,
            Option<u16>,
            &'a str,
            &'a str,
            Option<&'a str>,
        );
        let cases: &[Case<'_>] = &[
            (
                Some("api.example.com"),
                Some(80),
                "GET",
                "/v2/x",
                Some("exact"),
            ),
            (
                Some("api.example.com"),
                Some(80),
                "GET",
                "/v2",
                Some("exact"),
            ),
            (
                Some("api.example.com"),
                Some(80),
                "GET",
                "/v2x",
                Some("wild"),
            ),
            (Some("api.other.test"), Some(80), "GET", "/v2", None),
            (
                Some("api.example.com"),
                Some(8443),
                "GET",
                "/v2x",
                Some("port"),
            ),
            (
                Some("api.example.com"),
                Some(80),
                "POST",
                "/v2/x",
                Some("wild"),
            ),
            (
                Some("a.b.example.com"),
                Some(443),
                "POST",
                "/",
                Some("wild"),
            ),
            (Some("example.com"), Some(80), "GET", "/", None),
            (Some("badexample.com"), Some(80), "GET", "/", None),
            (Some("other.test"), Some(80), "GET", "/crm/x", Some("rev")),
            (None, None, "GET", "/crm", Some("rev")),
            (None, None, "GET", "/crmx", None),
            (None, None, "GET", "/v2/x", None),
        ];
        for (host, port, method, path, want) in cases {
            assert_eq!(
                pick(&rs, *host, *port, method, path).as_deref(),
                *want,
                "{host:?}:{port:?} {method} {path}"
            );
        }
    }

    #[test]
    fn first_match_wins() {
        let rs = routes(
            "  - { name: a, match: { host: x.test }, provider: p }\n  - { name: b, match: { host: x.test, path_prefix: /v1 }, provider: p }\n",
        );
        assert_eq!(
            pick(&rs, Some("x.test"), Some(80), "GET", "/v1/y").as_deref(),
            Some("a")
        );
    }

    #[test]
    fn prefix_boundaries() {
        assert!(path_has_prefix("/a/b", "/a"));
        assert!(path_has_prefix("/a", "/a"));
        assert!(!path_has_prefix("/ab", "/a"));
        assert!(!path_has_prefix("/", "/a"));
    }
}
