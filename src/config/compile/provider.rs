//! Validation of one `providers.<name>` entry.

use crate::outbound::Egress;

use super::{
    is_loopback_host, Arc, Cx, Duration, Grant, Keyword, OAuthClient, ProviderConfig, RawProvider,
    Retries, Secret, Text, TokenKey, TokenOrigin, YamlPath,
};

/// The values of `kind`.
const KINDS: &[&str] = &["oauth2", "azure_ad", "static_file"];

/// `scopes`, `audience`, `resource` and `extra_params`, checked.
struct TokenParams {
    scopes: Vec<String>,
    audience: Option<String>,
    resource: Option<String>,
    extra_params: Vec<(String, String)>,
}

/// Request parameters that the token client sets itself; `extra_params` may not replace them.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "audience",
    "resource",
    // Set by the grants (refresh_token, token_exchange): sent twice, the IdP could take
    // the configured one over the real one (RFC 6749 §3.2: a parameter appears once).
    "refresh_token",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
];

impl Cx<'_> {
    pub(super) fn provider(
        &mut self,
        path: &YamlPath,
        name: &str,
        raw: &RawProvider,
        top_egress: &Egress,
    ) -> Option<ProviderConfig> {
        let before = self.problems.len();
        if !valid_name(name) {
            self.problem(
                path,
                format!("invalid provider name {name:?}: use letters, digits, '-', '_' and '.'"),
            );
        }
        // What the other keys mean depends on `kind`: a misspelt one is checked as the
        // kind it is nearest to; with no near one, checking them would only be noise.
        let kind_name = match self.keyword(&path.key("kind"), &raw.kind, KINDS) {
            Keyword::Absent => "oauth2",
            Keyword::Known(kind) | Keyword::Invalid(Some(kind)) => kind,
            Keyword::Invalid(None) => return None,
        };
        // SPEC §11: how its token requests go out, and what its routes inherit.
        let egress = self
            .outbound(path, &raw.egress_proxy, &raw.no_proxy)
            .over(top_egress);
        if kind_name == "static_file" {
            return self.static_file_provider(path, name, raw, egress, before);
        }
        self.oauth_provider(path, name, raw, kind_name == "azure_ad", egress, before)
    }

    /// An OAuth2 token endpoint: `kind: oauth2` (the default) or `azure_ad`. `before` is
    /// the problem count when this provider's checks began.
    fn oauth_provider(
        &mut self,
        path: &YamlPath,
        name: &str,
        raw: &RawProvider,
        azure: bool,
        egress: Egress,
        before: usize,
    ) -> Option<ProviderConfig> {
        let token_url = self.provider_token_url(path, raw, azure, &egress);
        let client_id = self.required(
            &path.key("client_id"),
            &raw.client_id,
            "the OAuth2 client id",
        );
        let (auth_method, client_auth) = self.client_auth(path, raw, token_url.as_ref(), azure);
        if azure && auth_method == Some("tls_client_auth") {
            self.problem(&path.key("client_auth"), "Entra ID (kind: azure_ad) takes client_secret, private_key_jwt or client_assertion_file");
        }
        let grant = self.grant(path, raw);
        if azure && !matches!(grant, Some(Grant::ClientCredentials) | None) {
            self.problem(
                &path.key("grant_type"),
                "kind: azure_ad supports client_credentials only",
            );
        }
        let client_secret = self.client_secret(path, raw, auth_method, grant.as_ref());
        let params = self.token_params(path, raw);
        let refresh_before_expiry = self.refresh_before_expiry(path, raw);
        let timeout =
            self.positive_duration(&path.key("timeout"), &raw.timeout, Duration::from_secs(10));
        let retries = self.retries(&path.key("retries"), raw);
        let idle_timeout = self.idle_timeout(path, raw);
        let ca_file = self.ca_file(&path.key("ca_file"), &raw.ca_file);
        let dpop = self.dpop(path, raw);
        if self.problems.len() > before {
            return None;
        }
        let grant = grant?;
        self.per_subject_limits(path, raw, &grant);
        if self.problems.len() > before {
            return None;
        }
        let client = OAuthClient {
            token_url: token_url?,
            client_id: client_id?,
            client_secret,
            client_auth: client_auth?,
            grant,
            scopes: params.scopes,
            audience: params.audience,
            resource: params.resource,
            extra_params: params.extra_params,
            ca_file,
            egress: egress.clone(),
            dpop,
        };
        let origin = TokenOrigin::OAuth(Arc::new(client));
        Some(ProviderConfig {
            name: name.to_string(),
            key: TokenKey::new(&origin),
            origin,
            refresh_before_expiry,
            timeout,
            retries,
            prefetch: raw.prefetch.unwrap_or(false),
            idle_timeout,
            expose_token: raw.expose_token.unwrap_or(false),
            egress,
        })
    }

    /// `token_url`, or for `kind: azure_ad` the URL built from `tenant_id` and
    /// `authority` (and the scopes Entra ID needs).
    fn provider_token_url(
        &mut self,
        path: &YamlPath,
        raw: &RawProvider,
        azure: bool,
        egress: &Egress,
    ) -> Option<reqwest::Url> {
        if raw.token_file.is_some() {
            self.problem(&path.key("token_file"), "only for kind: static_file");
        }
        let allow_http = raw.allow_http.unwrap_or(false);
        let token_url = if azure {
            self.azure_token_url(path, raw, allow_http, egress)
        } else {
            for (key, present) in [
                ("tenant_id", raw.tenant_id.is_some()),
                ("authority", raw.authority.is_some()),
            ] {
                if present {
                    self.problem(&path.key(key), "only for kind: azure_ad");
                }
            }
            self.token_url(&path.key("token_url"), &raw.token_url, allow_http, egress)
        };
        if azure && raw.scopes.as_ref().is_none_or(|s| s.is_empty()) {
            self.problem(
                &path.key("scopes"),
                "kind: azure_ad needs scopes (e.g. https://management.azure.com/.default)",
            );
        }
        token_url
    }

    /// `client_secret`, which only `basic` and `post` use. `method` is the valid
    /// `client_auth` (`None`: invalid, reported), `grant` the grant when it is valid.
    fn client_secret(
        &mut self,
        path: &YamlPath,
        raw: &RawProvider,
        method: Option<&str>,
        grant: Option<&Grant>,
    ) -> Option<Secret> {
        match method {
            // Whether a secret is needed depends on both: with either invalid (and
            // reported), asking for one could be wrong.
            None => None,
            Some("basic" | "post") if grant.is_none() && raw.client_secret.is_none() => None,
            // A refresh token may belong to a public client, which has no secret.
            Some("basic" | "post")
                if matches!(grant, Some(Grant::RefreshToken { .. }))
                    && raw.client_secret.is_none() =>
            {
                None
            }
            Some("basic" | "post") => self
                .required(
                    &path.key("client_secret"),
                    &raw.client_secret,
                    "the client secret",
                )
                .map(Secret::new),
            _ => {
                if raw.client_secret.is_some() {
                    self.problem(
                        &path.key("client_secret"),
                        "not used with this client_auth: remove it",
                    );
                }
                None
            }
        }
    }

    /// What the token is for: `scopes`, `audience`, `resource`, `extra_params`.
    fn token_params(&mut self, path: &YamlPath, raw: &RawProvider) -> TokenParams {
        let mut scopes = Vec::new();
        for (i, s) in raw.scopes.iter().flatten().enumerate() {
            let p = path.key("scopes").index(i);
            match self.text(&p, &Some(s.clone())) {
                Some(s) if s.is_empty() || s.contains(char::is_whitespace) => {
                    self.problem(&p, "a scope must be one non-empty word without spaces (list scopes as separate items)")
                }
                Some(s) => scopes.push(s),
                None => {}
            }
        }
        let audience = self.text(&path.key("audience"), &raw.audience);
        let resource = self.text(&path.key("resource"), &raw.resource);
        if let Some(r) = &resource {
            if reqwest::Url::parse(r).is_err() {
                self.problem(
                    &path.key("resource"),
                    format!("resource must be an absolute URI (RFC 8707), got {r:?}"),
                );
            }
        }
        let mut extra_params = Vec::new();
        for (k, v) in raw.extra_params.iter().flatten() {
            let p = path.key("extra_params").key(k);
            if RESERVED_PARAMS.contains(&k.as_str()) {
                self.problem(
                    &p,
                    format!(
                        "{k} is set by token-sidecar itself; use the provider key for it (scopes, audience, resource, the grant's keys)"
                    ),
                );
            } else if let Some(v) = self.text(&p, &Some(v.clone())) {
                extra_params.push((k.clone(), v));
            }
        }
        TokenParams {
            scopes,
            audience,
            resource,
            extra_params,
        }
    }

    /// Token exchange gets one token per subject: nothing to prefetch or hand out.
    fn per_subject_limits(&mut self, path: &YamlPath, raw: &RawProvider, grant: &Grant) {
        if !matches!(grant, Grant::TokenExchange(_)) {
            return;
        }
        for (key, set) in [
            ("prefetch", raw.prefetch == Some(true)),
            ("expose_token", raw.expose_token == Some(true)),
        ] {
            if set {
                self.problem(
                    &path.key(key),
                    "not possible with grant_type: token_exchange (tokens are per subject)",
                );
            }
        }
    }

    pub(super) fn refresh_before_expiry(
        &mut self,
        path: &YamlPath,
        raw: &RawProvider,
    ) -> Option<Duration> {
        raw.refresh_before_expiry.as_ref().map(|_| {
            self.duration(
                &path.key("refresh_before_expiry"),
                &raw.refresh_before_expiry,
                Duration::ZERO,
            )
        })
    }

    pub(super) fn idle_timeout(&mut self, path: &YamlPath, raw: &RawProvider) -> Duration {
        self.positive_duration(
            &path.key("idle_timeout"),
            &raw.idle_timeout,
            Duration::from_secs(3600),
        )
    }

    /// `{authority}/{tenant_id}/oauth2/v2.0/token` for `kind: azure_ad`.
    fn azure_token_url(
        &mut self,
        path: &YamlPath,
        raw: &RawProvider,
        allow_http: bool,
        egress: &Egress,
    ) -> Option<reqwest::Url> {
        if raw.token_url.is_some() {
            self.problem(&path.key("token_url"), "kind: azure_ad builds the token URL from authority and tenant_id: remove token_url");
        }
        let tenant = self.required(
            &path.key("tenant_id"),
            &raw.tenant_id,
            "the Entra ID tenant (directory) id",
        )?;
        if !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            self.problem(
                &path.key("tenant_id"),
                "a tenant id is a GUID or a domain name",
            );
            return None;
        }
        let authority = self
            .text(&path.key("authority"), &raw.authority)
            .unwrap_or_else(|| "https://login.microsoftonline.com".to_string());
        let url = Text(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        ));
        self.token_url(&path.key("authority"), &Some(url), allow_http, egress)
    }

    fn token_url(
        &mut self,
        path: &YamlPath,
        raw: &Option<Text>,
        allow_http: bool,
        egress: &Egress,
    ) -> Option<reqwest::Url> {
        let text = self.required(path, raw, "the IdP's token endpoint URL")?;
        let url = match reqwest::Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.problem(path, format!("invalid URL: {e}"));
                return None;
            }
        };
        let host = url.host_str().unwrap_or_default().to_string();
        // Through an egress proxy (SPEC §11) the request goes to the proxy in cleartext:
        // a loopback IdP is local only when reached directly or via a loopback proxy.
        let remote_proxy = egress.remote_proxy_for(&host);
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&host) && remote_proxy.is_none() => {}
            "http" if allow_http => self.warn(path, format!(
                "plain http to {host}: the client secret and tokens cross the network unencrypted (allow_http: true)"
            )),
            "http" => match remote_proxy.filter(|_| is_loopback_host(&host)) {
                Some(proxy) => self.problem(
                    path,
                    format!("plain http:// to {host} goes through the egress proxy {proxy}, so the client secret would cross the network unencrypted: list {host} in no_proxy, use https, or set allow_http: true"),
                ),
                None => self.problem(
                    path,
                    format!("plain http:// to {host} would send the client secret unencrypted: use https, or set allow_http: true"),
                ),
            },
            other => self.problem(path, format!("unsupported URL scheme {other:?}: expected https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.problem(
                path,
                "credentials in the URL are not allowed: use client_id and client_secret",
            );
        }
        (host.is_empty()).then(|| self.problem(path, "the URL has no host"));
        Some(url)
    }

    fn retries(&mut self, path: &YamlPath, raw: &RawProvider) -> Retries {
        let r = raw.retries.as_ref();
        let none = None;
        let max_attempts = match self.text(
            &path.key("max_attempts"),
            r.map_or(&none, |r| &r.max_attempts),
        ) {
            None => 3,
            Some(t) => match t.trim().parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    self.problem(
                        &path.key("max_attempts"),
                        format!("invalid attempt count {t:?}: expected 1 to 100"),
                    );
                    3
                }
            },
        };
        let before = self.problems.len();
        let initial_backoff = self.positive_duration(
            &path.key("initial_backoff"),
            r.map_or(&none, |r| &r.initial_backoff),
            Duration::from_millis(200),
        );
        let max_backoff = self.positive_duration(
            &path.key("max_backoff"),
            r.map_or(&none, |r| &r.max_backoff),
            Duration::from_secs(10),
        );
        // A default stands in for an invalid value: comparing it would mislead.
        let both_valid = self.problems.len() == before
            && !self.is_poisoned(&path.key("initial_backoff"))
            && !self.is_poisoned(&path.key("max_backoff"));
        if both_valid && initial_backoff > max_backoff {
            self.problem(
                &path.key("initial_backoff"),
                "initial_backoff is larger than max_backoff",
            );
        }
        Retries {
            max_attempts,
            initial_backoff,
            max_backoff,
        }
    }
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
