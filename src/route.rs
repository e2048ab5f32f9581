//! Route matching: which route, if any, selects a request. Pure functions over the
//! compiled config; no IO, no allocation on the match path.

use crate::config::{HostPattern, RouteConfig};
use http::Method;

/// What a request is matched on.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Lowercase host name (IPv6 in brackets); `None` when the request names none.
    pub host: Option<&'a str>,
    /// The port the request names; `None` means `default_port`.
    pub port: Option<u16>,
    /// The default port of the request's scheme: 443 for `https` and CONNECT, else 80. A
    /// `match.host` without a port selects only this port (SPEC §4 Ports).
    pub default_port: u16,
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
/// names this host (for CONNECT, which carries no path or method, and whose default
/// port is 443).
pub fn names_host<R: AsRef<RouteConfig>>(routes: &[R], host: &str, port: u16) -> bool {
    names_host_by(routes, host, port, CONNECT_DEFAULT_PORT)
}

/// Like [`names_host`], with `default_port` for the patterns without a port: 80 asks
/// whether a route names `http://host:port` (plain HTTP inside a CONNECT tunnel).
pub fn names_host_by<R: AsRef<RouteConfig>>(
    routes: &[R],
    host: &str,
    port: u16,
    default_port: u16,
) -> bool {
    routes.iter().any(|r| {
        let r = r.as_ref();
        r.intercept
            && r.host
                .as_ref()
                .is_some_and(|p| host_matches(p, host, Some(port), default_port))
    })
}

/// A CONNECT's target is TLS unless shown otherwise, so its default port is https's.
pub const CONNECT_DEFAULT_PORT: u16 = 443;

pub fn matches(route: &RouteConfig, t: &Target<'_>) -> bool {
    if let Some(pattern) = &route.host {
        let Some(host) = t.host else { return false };
        if !host_matches(pattern, host, t.port, t.default_port) {
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

/// True when `pattern` selects `host` on `port` (`None`: the default port) for a
/// request whose scheme's default port is `default_port`.
pub fn host_matches(
    pattern: &HostPattern,
    host: &str,
    port: Option<u16>,
    default_port: u16,
) -> bool {
    pattern.matches(host, port, default_port)
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
        default_port: u16,
        method: &str,
        path: &str,
    ) -> Option<String> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        find(
            routes,
            &Target {
                host,
                port,
                default_port,
                path,
                method: &method,
            },
        )
        .map(|r| r.name.clone())
    }

    /// `host[:port]` as a request names it.
    fn split(authority: &str) -> (Option<&str>, Option<u16>) {
        match authority.rsplit_once(':') {
            _ if authority == "-" => (None, None),
            Some((h, p)) if p.parse::<u16>().is_ok() => (Some(h), p.parse().ok()),
            _ => (Some(authority), None),
        }
    }

    #[test]
    fn table() {
        let rs = routes(
            "  - { name: exact, match: { host: API.Example.com, path_prefix: /v2/, methods: [get] }, provider: p }\n\
             \x20 - { name: port, match: { host: 'api.example.com:8443' }, provider: p }\n\
             \x20 - { name: wild, match: { host: '*.example.com' }, provider: p }\n\
             \x20 - { name: rev, match: { path_prefix: /crm }, provider: p, upstream: 'http://127.0.0.1:9' }\n\
             \x20 - { name: anyport, match: { host: 'any.test:*' }, provider: p }\n\
             \x20 - { name: wildport, match: { host: '*.port.test:8443' }, provider: p }\n\
             \x20 - { name: wildany, match: { host: '*.any.test:*' }, provider: p }\n\
             \x20 - { name: v6, match: { host: '[::1]:8080' }, provider: p }\n\
             \x20 - { name: v6default, match: { host: '[::1]' }, provider: p }\n",
        );
        // SCHEME AUTHORITY METHOD PATH ROUTE; `-` for no authority, no route.
        let cases = [
            "http api.example.com:80 GET /v2/x exact",
            "http api.example.com:80 GET /v2 exact",
            "http api.example.com:80 GET /v2x wild",
            "http api.other.test:80 GET /v2 -",
            "http api.example.com:8443 GET /v2x port",
            "http api.example.com:80 POST /v2/x wild",
            "https a.b.example.com:443 POST / wild",
            "http example.com:80 GET / -",
            "http badexample.com:80 GET / -",
            "http other.test:80 GET /crm/x rev",
            "http - GET /crm rev",
            "http - GET /crmx -",
            "http - GET /v2/x -",
            // A host without a port: only the scheme's default port (SPEC §4 Ports).
            "http api.example.com GET /v2/x exact",
            "https api.example.com:443 GET /v2/x exact",
            "https api.example.com GET /v2/x exact",
            "http api.example.com:8080 GET /v2/x -",
            "https api.example.com:80 GET /v2/x -",
            "http a.b.example.com:443 POST / -",
            "https api.example.com:8443 GET /v2/x port",
            // `:*` any port, with and without a wildcard.
            "http any.test:1 GET / anyport",
            "https any.test GET / anyport",
            "http any.test:65535 GET / anyport",
            "http a.any.test:9 GET / wildany",
            "https a.port.test:8443 GET / wildport",
            "https a.port.test GET / -",
            "http port.test:8443 GET / -",
            // IPv6, in brackets, in any spelling.
            "http [::1]:8080 GET / v6",
            "http [0::1]:8080 GET / v6",
            "http [::1] GET / v6default",
            "https [::1]:443 GET / v6default",
            "http [::1]:8081 GET / -",
        ];
        for case in cases {
            let f: Vec<&str> = case.split(' ').collect();
            let default_port = if f[0] == "https" { 443 } else { 80 };
            let (host, port) = split(f[1]);
            let want = (f[4] != "-").then_some(f[4]);
            assert_eq!(
                pick(&rs, host, port, default_port, f[2], f[3]).as_deref(),
                want,
                "{case}"
            );
        }
    }

    /// CONNECT carries no scheme; its default port is https's.
    #[test]
    fn connect_names_hosts_on_443_by_default() {
        let rs = routes(
            "  - { match: { host: a.test }, provider: p }\n\
             \x20 - { match: { host: 'b.test:8443' }, provider: p }\n\
             \x20 - { match: { host: 'c.test:*' }, provider: p }\n\
             \x20 - { match: { host: d.test }, provider: p, intercept: false }\n",
        );
        for (host, port, want) in [
            ("a.test", 443, true),
            ("a.test", 80, false),
            ("a.test", 8443, false),
            ("b.test", 8443, true),
            ("b.test", 443, false),
            ("c.test", 1, true),
            ("c.test", 443, true),
            ("d.test", 443, false),
            ("e.test", 443, false),
        ] {
            assert_eq!(names_host(&rs, host, port), want, "{host}:{port}");
        }
        // Plain http inside the tunnel: a pattern without a port names port 80.
        for (host, port, want) in [
            ("a.test", 80, true),
            ("a.test", 443, false),
            ("b.test", 8443, true),
            ("c.test", 1, true),
            ("d.test", 80, false),
        ] {
            assert_eq!(names_host_by(&rs, host, port, 80), want, "{host}:{port}");
        }
    }

    #[test]
    fn first_match_wins() {
        let rs = routes(
            "  - { name: a, match: { host: x.test }, provider: p }\n  - { name: b, match: { host: x.test, path_prefix: /v1 }, provider: p }\n",
        );
        assert_eq!(
            pick(&rs, Some("x.test"), Some(80), 80, "GET", "/v1/y").as_deref(),
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
