//! Warnings about a config that is valid but probably unsafe or not what was meant
//! (SPEC §8 `validate` warnings, and §4 Plaintext "where it can see it"). They look at
//! the compiled config as a whole, so they run last.

use super::{is_loopback_host, Config, Cx, RouteConfig, Unmatched, YamlPath};
use crate::config::{Grant, TokenOrigin};

impl Cx<'_> {
    pub(super) fn advise(&mut self, c: &Config) {
        let root = YamlPath::default();
        if c.shared_egress() && c.unmatched == Unmatched::Forward {
            self.warn(
                &root.key("unmatched"),
                format!(
                    "listen {} is not a loopback address, and unmatched: forward lets every client that reaches it use the proxy to reach any host (an open proxy); use unmatched: deny",
                    c.listen
                ),
            );
        }
        self.advise_admin(&root, c);
        self.advise_store(&root, c);
        for (i, route) in c.routes.iter().enumerate() {
            self.advise_route(&root.key("routes").index(i), route, c);
        }
    }

    /// A `refresh_token` grant shares its refresh token through the store, and so cannot
    /// refresh while the store is down (README "Known gaps"): say so where it is set.
    fn advise_store(&mut self, root: &YamlPath, c: &Config) {
        if c.token_store.is_none() {
            return;
        }
        for p in &c.providers {
            let TokenOrigin::OAuth(client) = &p.origin else {
                continue;
            };
            if matches!(client.grant, Grant::RefreshToken { .. }) {
                self.warn(
                    &root.key("providers").key(&p.name).key("grant_type"),
                    "refresh_token with token_store: while the store is unreachable this provider is not refreshed (its access token serves until it expires, then requests get 503 token_unavailable), because a replica cannot know whether another one already used the refresh token; run Redis with persistence and replicas",
                );
            }
        }
    }

    fn advise_admin(&mut self, root: &YamlPath, c: &Config) {
        let Some(admin) = c.admin_listen else {
            if c.admin_token_file.is_some() {
                self.warn(
                    &root.key("admin_token_file"),
                    "has no effect without admin_listen",
                );
            }
            return;
        };
        let exposed: Vec<&str> = c
            .providers
            .iter()
            .filter(|p| p.expose_token)
            .map(|p| p.name.as_str())
            .collect();
        if !admin.ip().to_canonical().is_loopback()
            && c.admin_token.is_none()
            && !exposed.is_empty()
        {
            self.warn(
                &root.key("admin_listen"),
                format!(
                    "{admin} is not a loopback address and admin_token_file is not set, while expose_token is on for {}: only loopback peers can fetch those tokens (others get 403); set admin_token_file, or keep admin_listen on loopback",
                    exposed.join(", ")
                ),
            );
        }
    }

    fn advise_route(&mut self, path: &YamlPath, r: &RouteConfig, c: &Config) {
        let prefix = &r.value_prefix;
        if !prefix.is_empty() && !prefix.ends_with(' ') {
            self.warn(
                &path.key("value_prefix"),
                format!(
                    "{prefix:?} does not end in a space, so the header is sent as \"{prefix}<token>\"; write \"{prefix} \" if a space was meant"
                ),
            );
        }
        if r.max_replay_body > c.limits.max_buffered_bodies && !r.retry_on.is_empty() {
            self.warn(
                &path.key("max_replay_body"),
                "is larger than limits.max_buffered_bodies: bodies above that budget are never replayed",
            );
        }
        if r.allow_http {
            return;
        }
        const REFUSED: &str = "requests on this route will be refused with 403 insecure_destination (a token never crosses the network unencrypted)";
        match &r.upstream {
            Some(up) if up.scheme == http::uri::Scheme::HTTP => {
                let host = up.authority.host();
                if !is_loopback_host(host) {
                    self.warn(
                        &path.key("upstream"),
                        format!("plain http:// to {host}: {REFUSED}; use https://, or set allow_http: true"),
                    );
                }
            }
            Some(_) => {}
            None => {
                let intercepted = c.tls_intercept.is_some() && r.intercept;
                if let Some(host) = r.host.as_ref().filter(|h| !h.is_loopback()) {
                    if !intercepted {
                        self.warn(
                            &path.key("match").key("host"),
                            format!("without upstream or tls_intercept, this route only sees plain http:// requests to {host}: {REFUSED}; set upstream: https://…, configure tls_intercept, or set allow_http: true"),
                        );
                    }
                }
            }
        }
    }
}
