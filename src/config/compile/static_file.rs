//! Validation of a `kind: static_file` provider: a bearer token read from a file.

use super::{
    Cx, Duration, PathBuf, ProviderConfig, RawProvider, Retries, TokenKey, TokenOrigin, YamlPath,
};

impl Cx<'_> {
    /// `kind: static_file`: a bearer token read from `token_file`.
    pub(super) fn static_file_provider(
        &mut self,
        path: &YamlPath,
        name: &str,
        raw: &RawProvider,
        egress: crate::outbound::Egress,
        before: usize,
    ) -> Option<ProviderConfig> {
        let file = self.required(
            &path.key("token_file"),
            &raw.token_file,
            "the file holding the token",
        )?;
        self.unused_with_static_file(path, raw);
        let refresh_before_expiry = self.refresh_before_expiry(path, raw);
        let idle_timeout = self.idle_timeout(path, raw);
        if self.problems.len() > before {
            return None;
        }
        let origin = TokenOrigin::StaticFile {
            token_file: PathBuf::from(file),
        };
        Some(ProviderConfig {
            name: name.to_string(),
            key: TokenKey::new(&origin),
            origin,
            refresh_before_expiry,
            // Not configurable: one read per fetch, and 1 s to 10 s before the next fetch
            // after a failed read.
            timeout: Duration::from_secs(10),
            retries: Retries {
                max_attempts: 1,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10),
            },
            prefetch: raw.prefetch.unwrap_or(false),
            idle_timeout,
            expose_token: raw.expose_token.unwrap_or(false),
            // Fetches nothing over the network; its routes inherit it.
            egress,
        })
    }

    /// The OAuth keys, which a `static_file` provider does not use.
    fn unused_with_static_file(&mut self, path: &YamlPath, raw: &RawProvider) {
        for (key, present) in [
            ("token_url", raw.token_url.is_some()),
            ("client_id", raw.client_id.is_some()),
            ("client_secret", raw.client_secret.is_some()),
            ("client_auth", raw.client_auth.is_some()),
            ("grant_type", raw.grant_type.is_some()),
            ("scopes", raw.scopes.is_some()),
            ("audience", raw.audience.is_some()),
            ("resource", raw.resource.is_some()),
            ("extra_params", raw.extra_params.is_some()),
            ("timeout", raw.timeout.is_some()),
            ("retries", raw.retries.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("allow_http", raw.allow_http.is_some()),
            ("private_key_file", raw.private_key_file.is_some()),
            ("client_assertion_file", raw.client_assertion_file.is_some()),
            ("client_cert_file", raw.client_cert_file.is_some()),
            ("refresh_token", raw.refresh_token.is_some()),
            ("subject_token_from", raw.subject_token_from.is_some()),
            ("tenant_id", raw.tenant_id.is_some()),
            ("dpop", raw.dpop.is_some()),
        ] {
            if present {
                self.problem(&path.key(key), "not used with kind: static_file");
            }
        }
    }
}
