//! Validation of one `providers.<name>` entry.

use super::*;

/// Request parameters that the token client sets itself; `extra_params` may not replace them.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "resource",
];

impl Cx<'_> {
    pub(super) fn provider(
        &mut self,
        path: &YamlPath,
        name: &str,
        raw: &RawProvider,
    ) -> Option<ProviderConfig> {
        let before = self.problems.len();
        if !valid_name(name) {
            self.problem(
                path,
                format!("invalid provider name {name:?}: use letters, digits, '-', '_' and '.'"),
            );
        }
        if let Some(kind) = self.text(&path.key("kind"), &raw.kind) {
            match kind.as_str() {
                "azure_ad" | "static_file" => {
                    self.problem(&path.key("kind"), format!("kind {kind:?} is not built in this version yet (see README, \"Not built yet\")"))
                }
                _ => self.problem(&path.key("kind"), format!("unknown kind {kind:?}: expected azure_ad or static_file")),
            }
        }
        for key in raw.unbuilt_keys() {
            self.problem(
                &path.key(key),
                "this key is not built in this version yet (see README, \"Not built yet\")",
            );
        }
        let client_auth = match self
            .text(&path.key("client_auth"), &raw.client_auth)
            .as_deref()
        {
            None | Some("basic") => ClientAuth::Basic,
            Some("post") => ClientAuth::Post,
            Some(other @ ("private_key_jwt" | "client_assertion_file" | "tls_client_auth")) => {
                self.problem(
                    &path.key("client_auth"),
                    format!(
                        "{other} is not built in this version yet (see README, \"Not built yet\")"
                    ),
                );
                ClientAuth::Basic
            }
            Some(other) => {
                self.problem(
                    &path.key("client_auth"),
                    format!("unknown value {other:?}: expected basic or post"),
                );
                ClientAuth::Basic
            }
        };
        match self
            .text(&path.key("grant_type"), &raw.grant_type)
            .as_deref()
        {
            None | Some("client_credentials") => {}
            Some(other @ ("token_exchange" | "refresh_token")) => self.problem(
                &path.key("grant_type"),
                format!("{other} is not built in this version yet (see README, \"Not built yet\")"),
            ),
            Some(other) => self.problem(
                &path.key("grant_type"),
                format!("unknown value {other:?}: expected client_credentials"),
            ),
        }

        let allow_http = raw.allow_http.unwrap_or(false);
        let token_url = self.token_url(&path.key("token_url"), &raw.token_url, name, allow_http);
        let client_id = self.required(
            &path.key("client_id"),
            &raw.client_id,
            "the OAuth2 client id",
        );
        let client_secret = self
            .required(
                &path.key("client_secret"),
                &raw.client_secret,
                "the client secret",
            )
            .map(Secret::new);

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
                        "{k} is set by token-sidecar itself; use the provider key of that name"
                    ),
                );
            } else if let Some(v) = self.text(&p, &Some(v.clone())) {
                extra_params.push((k.clone(), v));
            }
        }
        let refresh_before_expiry = raw.refresh_before_expiry.as_ref().map(|_| {
            self.duration(
                &path.key("refresh_before_expiry"),
                &raw.refresh_before_expiry,
                Duration::ZERO,
            )
        });
        let timeout =
            self.positive_duration(&path.key("timeout"), &raw.timeout, Duration::from_secs(10));
        let retries = self.retries(&path.key("retries"), raw);
        let idle_timeout = self.positive_duration(
            &path.key("idle_timeout"),
            &raw.idle_timeout,
            Duration::from_secs(3600),
        );
        let ca_file = self.ca_file(&path.key("ca_file"), &raw.ca_file);

        if self.problems.len() > before {
            return None;
        }
        Some(ProviderConfig {
            name: name.to_string(),
            token_url: token_url?,
            client_id: client_id?,
            client_secret,
            client_auth,
            scopes,
            audience,
            resource,
            extra_params,
            refresh_before_expiry,
            timeout,
            retries,
            prefetch: raw.prefetch.unwrap_or(false),
            idle_timeout,
            ca_file,
            expose_token: raw.expose_token.unwrap_or(false),
        })
    }

    fn token_url(
        &mut self,
        path: &YamlPath,
        raw: &Option<Text>,
        provider: &str,
        allow_http: bool,
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
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&host) => {}
            "http" if allow_http => self.warnings.push(format!(
                "providers.{provider}.token_url uses plain http to {host}: the client secret and tokens cross the network unencrypted (allow_http: true)"
            )),
            "http" => self.problem(
                path,
                format!("plain http:// to {host} would send the client secret unencrypted: use https, or set allow_http: true"),
            ),
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
        if initial_backoff > max_backoff {
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
