//! Validation of one `routes[i]` entry.

use super::{
    parse_host_pattern, parse_size, Arc, Cx, Duration, HeaderName, HostPattern, Method,
    OnTokenError, RawRoute, RouteConfig, StatusCode, Text, Upstream, YamlPath,
};
use crate::config::RouteDpop;
use crate::outbound::Egress;
use crate::sender::DpopKey;
use std::collections::{BTreeMap, BTreeSet};

/// Headers a route may not inject: they frame or address the request itself.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
];

/// The `Authorization` scheme of DPoP-bound tokens (RFC 9449 §7.1).
const DPOP_PREFIX: &str = "DPoP ";

/// The names a route may refer to: providers, and top-level `clients` (`None` when the
/// file has no `clients`).
pub(super) struct Names<'a> {
    pub providers: &'a BTreeSet<&'a str>,
    pub clients: Option<&'a BTreeSet<&'a str>>,
    /// The egress of each provider that compiled (SPEC §11), which its routes inherit.
    pub egress: &'a BTreeMap<&'a str, &'a Egress>,
    /// The top level's, for a route whose provider did not compile.
    pub top_egress: &'a Egress,
    /// The DPoP keys of the providers that have `dpop`.
    pub dpop: &'a BTreeMap<&'a str, Arc<DpopKey>>,
}

impl Cx<'_> {
    /// The route at `path`, if valid, and its name, if that could be worked out (also
    /// for an invalid route, so that a duplicate name is reported with its other
    /// problems).
    pub(super) fn route(
        &mut self,
        path: &YamlPath,
        raw: &RawRoute,
        names: &Names<'_>,
    ) -> (Option<String>, Option<RouteConfig>) {
        let before = self.problems.len();
        let (host, path_prefix, methods) = self.route_match(&path.key("match"), raw);
        let name = self.route_name(path, raw, host.as_ref(), path_prefix.as_deref(), before);
        let provider = self.route_provider(path, raw, names.providers);
        let (clients, allowed_origins) = self.route_audience(path, raw, names.clients);
        let upstream = self.route_upstream(path, raw);
        let (strip_prefix, preserve_host) = self.route_rewrite(path, raw, path_prefix.is_some());
        let dpop = provider
            .as_deref()
            .and_then(|p| names.dpop.get(p))
            .map(|key| {
                Arc::new(RouteDpop {
                    key: key.clone(),
                    nonces: Default::default(),
                })
            });
        let (header, value_prefix) = self.route_header(path, raw, dpop.is_some());
        let sign = self.sign(path, raw);
        let retry_on = self.retry_on(&path.key("retry_on"), &raw.retry_on);
        let max_replay_body = self.max_replay_body(&path.key("max_replay_body"), raw);
        let on_token_error = self.choice(
            &path.key("on_token_error"),
            &raw.on_token_error,
            &[
                ("reject", OnTokenError::Reject),
                ("forward", OnTokenError::Forward),
            ],
            OnTokenError::Reject,
        );
        let (ca_file, connect_timeout, upstream_timeout, egress) =
            self.route_connection(path, raw, provider.as_deref(), names);
        if self.problems.len() > before {
            return (name, None);
        }
        let (Some(name), Some(provider)) = (name, provider) else {
            return (None, None);
        };
        let route = RouteConfig {
            name: name.clone(),
            host,
            path_prefix,
            methods,
            provider,
            upstream,
            strip_prefix,
            preserve_host,
            header,
            value_prefix,
            overwrite: raw.overwrite.unwrap_or(true),
            retry_on,
            max_replay_body,
            on_token_error,
            intercept: raw.intercept.unwrap_or(true),
            ca_file,
            connect_timeout,
            upstream_timeout,
            clients,
            allowed_origins,
            allow_http: raw.allow_http.unwrap_or(false),
            egress,
            dpop,
            sign,
        };
        (Some(name), Some(route))
    }

    /// How the route reaches its upstream: extra trust, the connect and response
    /// timeouts, and the egress (its own `egress_proxy`/`no_proxy` over its provider's,
    /// over the top level's).
    fn route_connection(
        &mut self,
        path: &YamlPath,
        raw: &RawRoute,
        provider: Option<&str>,
        names: &Names<'_>,
    ) -> (Option<std::path::PathBuf>, Duration, Duration, Egress) {
        let ca_file = self.ca_file(&path.key("ca_file"), &raw.ca_file);
        let connect_timeout = self.positive_duration(
            &path.key("connect_timeout"),
            &raw.connect_timeout,
            Duration::from_secs(5),
        );
        let upstream_timeout = self.positive_duration(
            &path.key("upstream_timeout"),
            &raw.upstream_timeout,
            Duration::from_secs(60),
        );
        let inherited = provider
            .and_then(|p| names.egress.get(p).copied())
            .unwrap_or(names.top_egress);
        let egress = self
            .outbound(path, &raw.egress_proxy, &raw.no_proxy)
            .over(inherited);
        (ca_file, connect_timeout, upstream_timeout, egress)
    }

    /// `match`: host, path prefix and methods.
    fn route_match(
        &mut self,
        mpath: &YamlPath,
        raw: &RawRoute,
    ) -> (Option<HostPattern>, Option<String>, Option<Vec<Method>>) {
        let m = raw.match_.as_ref();
        let none = None;
        let host = self
            .text(&mpath.key("host"), m.map_or(&none, |m| &m.host))
            .and_then(|h| match parse_host_pattern(&h) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.problem(&mpath.key("host"), e);
                    None
                }
            });
        let path_prefix = self
            .text(
                &mpath.key("path_prefix"),
                m.map_or(&none, |m| &m.path_prefix),
            )
            .and_then(|p| {
                if !p.starts_with('/') || p.contains(['?', '#']) || p.contains(char::is_whitespace)
                {
                    self.problem(
                        &mpath.key("path_prefix"),
                        format!("invalid path prefix {p:?}: must start with '/' and hold no query"),
                    );
                    return None;
                }
                let trimmed = p.trim_end_matches('/');
                (!trimmed.is_empty()).then(|| trimmed.to_string())
            });
        let methods = m.and_then(|m| m.methods.as_ref()).map(|list| {
            let mut out = Vec::new();
            for (i, t) in list.iter().enumerate() {
                let p = mpath.key("methods").index(i);
                let Some(name) = self.text(&p, &Some(t.clone())) else {
                    continue;
                };
                match super::method::parse_method(&name) {
                    Ok(method) => out.push(method),
                    Err(e) => self.problem(&p, e),
                }
            }
            out
        });
        (host, path_prefix, methods)
    }

    /// `provider`: required, and one that is defined.
    fn route_provider(
        &mut self,
        path: &YamlPath,
        raw: &RawRoute,
        providers: &BTreeSet<&str>,
    ) -> Option<String> {
        let provider = self.required(
            &path.key("provider"),
            &raw.provider,
            "the name of a provider",
        );
        if let Some(p) = &provider {
            if !providers.contains(p.as_str()) {
                let known: Vec<&str> = providers.iter().copied().collect();
                self.problem(
                    &path.key("provider"),
                    format!("unknown provider {p:?} (defined: {})", known.join(", ")),
                );
            }
        }
        provider
    }

    /// `upstream`, which a route without `match.host` must have.
    fn route_upstream(&mut self, path: &YamlPath, raw: &RawRoute) -> Option<Upstream> {
        let upstream = self
            .text(&path.key("upstream"), &raw.upstream)
            .and_then(|u| match parse_upstream(&u) {
                Ok(up) => Some(up),
                Err(e) => {
                    self.problem(&path.key("upstream"), e);
                    None
                }
            });
        let host_given = raw.match_.as_ref().is_some_and(|m| m.host.is_some())
            || self.is_poisoned(&path.key("match").key("host"));
        if !host_given && raw.upstream.is_none() {
            self.problem(
                &path.key("upstream"),
                "a route without match.host applies to any host, so it needs an upstream (otherwise its token could go to any host)",
            );
        }
        upstream
    }

    /// `header` and `value_prefix`: where the token goes. A DPoP-bound token goes only as
    /// `Authorization: DPoP <token>` (RFC 9449 §7.1), so with `dpop` that is the default
    /// and nothing else is accepted.
    fn route_header(
        &mut self,
        path: &YamlPath,
        raw: &RawRoute,
        dpop: bool,
    ) -> (HeaderName, String) {
        if dpop {
            if self
                .text(&path.key("header"), &raw.header)
                .is_some_and(|h| !h.eq_ignore_ascii_case("authorization"))
            {
                self.problem(&path.key("header"), "the provider has dpop: its tokens go in Authorization (RFC 9449 §7.1); remove header");
            }
            if self
                .text(&path.key("value_prefix"), &raw.value_prefix)
                .is_some_and(|p| p != DPOP_PREFIX)
            {
                self.problem(&path.key("value_prefix"), "the provider has dpop: the value is \"DPoP <token>\" (RFC 9449 §7.1); remove value_prefix");
            }
            return (http::header::AUTHORIZATION, DPOP_PREFIX.to_string());
        }
        let header = match self.text(&path.key("header"), &raw.header) {
            None => http::header::AUTHORIZATION,
            Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) if FORBIDDEN_HEADERS.contains(&name.as_str()) => {
                    self.problem(
                        &path.key("header"),
                        format!("{h} cannot carry a token: it frames the request itself"),
                    );
                    http::header::AUTHORIZATION
                }
                Ok(name) => name,
                Err(_) => {
                    self.problem(&path.key("header"), format!("invalid header name {h:?}"));
                    http::header::AUTHORIZATION
                }
            },
        };
        let value_prefix = self
            .text(&path.key("value_prefix"), &raw.value_prefix)
            .unwrap_or_else(|| "Bearer ".to_string());
        if http::HeaderValue::from_str(&value_prefix).is_err() {
            self.problem(
                &path.key("value_prefix"),
                "value_prefix holds characters not allowed in a header value",
            );
        }
        (header, value_prefix)
    }

    /// `retry_on`: 4xx and 5xx codes, default 401.
    fn retry_on(&mut self, path: &YamlPath, raw: &Option<Vec<Text>>) -> Vec<StatusCode> {
        let Some(list) = raw else {
            return vec![StatusCode::UNAUTHORIZED];
        };
        let mut out = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let p = path.index(i);
            let Some(s) = self.text(&p, &Some(t.clone())) else {
                continue;
            };
            match s
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|n| StatusCode::from_u16(n).ok())
            {
                Some(code) if (400..600).contains(&code.as_u16()) => out.push(code),
                _ => self.problem(
                    &p,
                    format!("invalid status {s:?}: expected a 4xx or 5xx code"),
                ),
            }
        }
        out
    }

    /// `max_replay_body`: a size, default 1 MiB.
    fn max_replay_body(&mut self, path: &YamlPath, raw: &RawRoute) -> u64 {
        match self.text(path, &raw.max_replay_body) {
            None => 1 << 20,
            Some(t) => parse_size(&t).unwrap_or_else(|e| {
                self.problem(path, e);
                0
            }),
        }
    }

    /// `strip_prefix` and `preserve_host`, which rewrite the request for `upstream`.
    fn route_rewrite(&mut self, path: &YamlPath, raw: &RawRoute, has_prefix: bool) -> (bool, bool) {
        let strip_prefix = raw.strip_prefix.unwrap_or(false);
        // Judged only on what could be read: an unreadable `match` or `upstream` has
        // been reported.
        let readable = !["match", "upstream"]
            .iter()
            .any(|k| self.is_poisoned(&path.key(k)));
        if readable && strip_prefix && (raw.upstream.is_none() || !has_prefix) {
            self.problem(
                &path.key("strip_prefix"),
                "strip_prefix needs both upstream and match.path_prefix",
            );
        }
        let preserve_host = raw.preserve_host.unwrap_or(false);
        if preserve_host && raw.upstream.is_none() {
            self.warn(&path.key("preserve_host"), "has no effect without upstream");
        }
        (strip_prefix, preserve_host)
    }

    /// `name`, default `<host><path_prefix>`; `None` when it is invalid, or is the
    /// default and a part of it is (problems since `before` tell).
    fn route_name(
        &mut self,
        route: &YamlPath,
        raw: &RawRoute,
        host: Option<&HostPattern>,
        path_prefix: Option<&str>,
        before: usize,
    ) -> Option<String> {
        let parts_valid = ["host", "path_prefix"].iter().all(|k| {
            let p = route.key("match").key(k);
            !self.is_poisoned(&p) && !self.problems[before..].iter().any(|(at, _)| *at == p)
        });
        let path = &route.key("name");
        match self.text(path, &raw.name) {
            Some(n)
                if super::provider::valid_name(&n.replace(['/', ':', '*'], ""))
                    && !n.is_empty() =>
            {
                Some(n)
            }
            Some(n) => {
                self.problem(path, format!("invalid route name {n:?}"));
                None
            }
            // Written but unreadable (reported).
            None if raw.name.is_some() => None,
            None => parts_valid.then(|| default_name(host, path_prefix)),
        }
    }
}

/// SPEC §3: the default route name is `<host><path_prefix>`.
fn default_name(host: Option<&HostPattern>, prefix: Option<&str>) -> String {
    let host = host.map(|h| h.to_string()).unwrap_or_default();
    let name = format!("{host}{}", prefix.unwrap_or(""));
    if name.is_empty() {
        "/".to_string()
    } else {
        name
    }
}

fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("invalid upstream URL: {e}"))?;
    let scheme = match url.scheme() {
        "http" => http::uri::Scheme::HTTP,
        "https" => http::uri::Scheme::HTTPS,
        other => {
            return Err(format!(
                "unsupported upstream scheme {other:?}: expected http or https"
            ))
        }
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an upstream URL may not have a query or fragment".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the upstream URL are not allowed".to_string());
    }
    let host = url
        .host_str()
        .ok_or_else(|| "the upstream URL has no host".to_string())?;
    let authority_text = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let bad_host = || format!("invalid upstream host {host:?}");
    let authority = authority_text.parse().map_err(|_| bad_host())?;
    let host_header = http::HeaderValue::from_str(&authority_text).map_err(|_| bad_host())?;
    Ok(Upstream {
        scheme,
        authority,
        base_path: url.path().trim_end_matches('/').to_string(),
        host_header,
    })
}
