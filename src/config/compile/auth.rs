//! Validation of a provider's grant (`grant_type` and its keys) and client authentication
//! (`client_auth` and its keys). Keys of another grant or method are errors.

use super::*;
use crate::keys::{SigningAlg, SigningKey};

impl Cx<'_> {
    /// `grant_type` and the keys that belong to it; keys of another grant are errors.
    pub(super) fn grant(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<Grant> {
        let grant = self
            .text(&path.key("grant_type"), &raw.grant_type)
            .unwrap_or_else(|| "client_credentials".to_string());
        let owned: [(&str, bool, &str); 9] = [
            (
                "refresh_token",
                raw.refresh_token.is_some(),
                "refresh_token",
            ),
            (
                "refresh_token_store",
                raw.refresh_token_store.is_some(),
                "refresh_token",
            ),
            (
                "subject_token_from",
                raw.subject_token_from.is_some(),
                "token_exchange",
            ),
            (
                "subject_token_type",
                raw.subject_token_type.is_some(),
                "token_exchange",
            ),
            (
                "actor_token_file",
                raw.actor_token_file.is_some(),
                "token_exchange",
            ),
            (
                "actor_token_type",
                raw.actor_token_type.is_some(),
                "token_exchange",
            ),
            (
                "requested_token_type",
                raw.requested_token_type.is_some(),
                "token_exchange",
            ),
            ("max_subjects", raw.max_subjects.is_some(), "token_exchange"),
            (
                "forward_subject_header",
                raw.forward_subject_header.is_some(),
                "token_exchange",
            ),
        ];
        self.keys_belong_to(path, "grant_type", &grant, &owned);
        match grant.as_str() {
            "client_credentials" => Some(Grant::ClientCredentials),
            "refresh_token" => {
                let store = self
                    .text(&path.key("refresh_token_store"), &raw.refresh_token_store)
                    .map(PathBuf::from);
                let stored = store
                    .as_ref()
                    .and_then(|s| std::fs::read_to_string(s).ok())
                    .filter(|t| !t.trim().is_empty());
                let configured = self
                    .text(&path.key("refresh_token"), &raw.refresh_token)
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| Secret::new(t.trim()));
                // The store holds the latest rotated token: it wins over the configured one.
                let initial = match (stored, &configured) {
                    (Some(t), _) => Secret::new(t.trim()),
                    (None, Some(t)) => t.clone(),
                    (None, None) => {
                        self.problem(
                            &path.key("refresh_token"),
                            "missing required field (the initial refresh token)",
                        );
                        return None;
                    }
                };
                Some(Grant::RefreshToken {
                    initial,
                    configured,
                    store,
                })
            }
            "token_exchange" => {
                let from = raw.subject_token_from.as_ref();
                let fpath = path.key("subject_token_from");
                let none = None;
                let header = self.required(
                    &fpath.key("header"),
                    from.map_or(&none, |f| &f.header),
                    "the request header with the subject token",
                );
                let header = header.and_then(|h| match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        self.problem(&fpath.key("header"), format!("invalid header name {h:?}"));
                        None
                    }
                });
                // From the app's own Authorization header, the scheme is not part of the token.
                let default_prefix = if header.as_ref() == Some(&http::header::AUTHORIZATION) {
                    "Bearer "
                } else {
                    ""
                };
                let prefix = self
                    .text(&fpath.key("prefix"), from.map_or(&none, |f| &f.prefix))
                    .unwrap_or_else(|| default_prefix.to_string());
                let actor_token_file = self
                    .text(&path.key("actor_token_file"), &raw.actor_token_file)
                    .map(PathBuf::from);
                let actor_token_type =
                    self.text(&path.key("actor_token_type"), &raw.actor_token_type);
                if actor_token_file.is_some() != actor_token_type.is_some() {
                    self.problem(
                        &path.key("actor_token_type"),
                        "actor_token_file and actor_token_type go together",
                    );
                }
                let max_subjects = match self.text(&path.key("max_subjects"), &raw.max_subjects) {
                    None => 10_000,
                    Some(t) => t
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=10_000_000).contains(n))
                        .unwrap_or_else(|| {
                            self.problem(
                                &path.key("max_subjects"),
                                format!("invalid count {t:?}: expected 1 to 10000000"),
                            );
                            10_000
                        }),
                };
                Some(Grant::TokenExchange(Exchange {
                    header: header?,
                    prefix,
                    subject_token_type: self
                        .text(&path.key("subject_token_type"), &raw.subject_token_type)
                        .unwrap_or_else(|| {
                            "urn:ietf:params:oauth:token-type:access_token".to_string()
                        }),
                    actor_token_file,
                    actor_token_type,
                    requested_token_type: self
                        .text(&path.key("requested_token_type"), &raw.requested_token_type),
                    max_subjects,
                    forward_subject_header: raw.forward_subject_header.unwrap_or(false),
                }))
            }
            other => {
                self.problem(&path.key("grant_type"), format!("unknown value {other:?}: expected client_credentials, refresh_token or token_exchange"));
                None
            }
        }
    }

    /// `client_auth` and the keys that belong to it; keys of another method are errors.
    pub(super) fn client_auth(
        &mut self,
        path: &YamlPath,
        raw: &RawProvider,
        token_url: Option<&reqwest::Url>,
        azure: bool,
    ) -> ClientAuth {
        let method = self
            .text(&path.key("client_auth"), &raw.client_auth)
            .unwrap_or_else(|| "basic".to_string());
        let owned: [(&str, bool, &str); 7] = [
            (
                "private_key_file",
                raw.private_key_file.is_some(),
                "private_key_jwt",
            ),
            ("signing_alg", raw.signing_alg.is_some(), "private_key_jwt"),
            ("key_id", raw.key_id.is_some(), "private_key_jwt"),
            (
                "assertion_audience",
                raw.assertion_audience.is_some(),
                "private_key_jwt",
            ),
            (
                "client_assertion_file",
                raw.client_assertion_file.is_some(),
                "client_assertion_file",
            ),
            (
                "client_cert_file",
                raw.client_cert_file.is_some(),
                "tls_client_auth",
            ),
            (
                "client_key_file",
                raw.client_key_file.is_some(),
                "tls_client_auth",
            ),
        ];
        self.keys_belong_to(path, "client_auth", &method, &owned);
        match method.as_str() {
            "basic" => ClientAuth::Basic,
            "post" => ClientAuth::Post,
            "private_key_jwt" => {
                let alg = match self
                    .text(&path.key("signing_alg"), &raw.signing_alg)
                    .as_deref()
                {
                    None | Some("RS256") => SigningAlg::Rs256,
                    Some("ES256") => SigningAlg::Es256,
                    Some("PS256") => SigningAlg::Ps256,
                    Some(other) => {
                        self.problem(
                            &path.key("signing_alg"),
                            format!("unknown value {other:?}: expected RS256, ES256 or PS256"),
                        );
                        SigningAlg::Rs256
                    }
                };
                let key_file = self
                    .required(
                        &path.key("private_key_file"),
                        &raw.private_key_file,
                        "the client's private key (PEM)",
                    )
                    .map(PathBuf::from);
                let key_id = self.text(&path.key("key_id"), &raw.key_id);
                let key = key_file.as_ref().and_then(|f| match SigningKey::load(f, alg) {
                    Err(e) => {
                        self.problem(&path.key("private_key_file"), e);
                        None
                    }
                    Ok(key) => {
                        if azure && !key.has_certificate() {
                            self.problem(
                                &path.key("private_key_file"),
                                "Entra ID (kind: azure_ad) identifies certificate credentials by thumbprint: put the certificate (PEM) in the key file too",
                            );
                        }
                        Some(Arc::new(key))
                    }
                });
                let audience = self
                    .text(&path.key("assertion_audience"), &raw.assertion_audience)
                    .or_else(|| token_url.map(|u| u.to_string()));
                match (key_file, key, audience) {
                    (Some(key_file), Some(key), Some(audience)) => {
                        ClientAuth::PrivateKeyJwt(PrivateKeyJwt {
                            key_file,
                            key,
                            key_id,
                            audience,
                        })
                    }
                    _ => ClientAuth::Basic,
                }
            }
            "client_assertion_file" => {
                let file = self.required(
                    &path.key("client_assertion_file"),
                    &raw.client_assertion_file,
                    "the assertion file (e.g. a projected service-account token)",
                );
                // Read at every token request: it may appear or rotate after start-up.
                if let Some(f) = &file {
                    if !Path::new(f).exists() {
                        self.warnings.push(format!("{path}.client_assertion_file {f} does not exist yet; token requests fail until it does"));
                    }
                }
                file.map_or(ClientAuth::Basic, |f| {
                    ClientAuth::AssertionFile(PathBuf::from(f))
                })
            }
            "tls_client_auth" => {
                let cert = self.required(
                    &path.key("client_cert_file"),
                    &raw.client_cert_file,
                    "the client certificate (PEM)",
                );
                let key = self.required(
                    &path.key("client_key_file"),
                    &raw.client_key_file,
                    "the client key (PEM)",
                );
                let (Some(cert_file), Some(key_file)) = (cert, key) else {
                    return ClientAuth::Basic;
                };
                let (cert_file, key_file) = (PathBuf::from(cert_file), PathBuf::from(key_file));
                match crate::trust::client_identity(&cert_file, &key_file) {
                    Ok(identity) => ClientAuth::TlsClientAuth {
                        cert_file,
                        key_file,
                        identity: Arc::new(identity),
                    },
                    Err(e) => {
                        self.problem(&path.key("client_cert_file"), e);
                        ClientAuth::Basic
                    }
                }
            }
            other => {
                self.problem(
                    &path.key("client_auth"),
                    format!("unknown value {other:?}: expected basic, post, private_key_jwt, client_assertion_file or tls_client_auth"),
                );
                ClientAuth::Basic
            }
        }
    }

    /// Reports each present key of `owned` (key, present, the `selector` value it belongs
    /// to) whose value is not the chosen one.
    fn keys_belong_to(
        &mut self,
        path: &YamlPath,
        selector: &str,
        chosen: &str,
        owned: &[(&str, bool, &str)],
    ) {
        for (key, present, belongs) in owned {
            if *present && chosen != *belongs {
                self.problem(&path.key(key), format!("only with {selector}: {belongs}"));
            }
        }
    }
}
