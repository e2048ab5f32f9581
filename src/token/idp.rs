//! The OAuth2 token endpoint client (RFC 6749 §4.4 client credentials). The only code in
//! the crate that talks to an IdP. It turns every answer into a [`TokenResponse`] or a
//! classified [`Failure`] whose detail carries the IdP's `error`/`error_description`
//! (RFC 6749 §5.2) and never a secret or a token.

use super::wire::{basic_auth, oauth_error, parse_token, persist_secret, scrub, token_form};
use crate::config::{format_duration, ClientAuth, Grant, ProviderConfig};
use crate::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

/// The largest token response we read; anything longer is not a token response.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

pub struct IdpClient {
    http: reqwest::Client,
    /// For `private_key_jwt`: loaded once, signs a new assertion per request.
    signer: Option<super::AssertionSigner>,
    /// For `grant_type: refresh_token`: the current refresh token (rotated by the IdP),
    /// shared with the token source so a reload can carry it over.
    pub(super) refresh: Option<Arc<std::sync::Mutex<Secret>>>,
}

/// A successful token response.
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: String,
    pub expires_in: Option<Duration>,
    pub scope: Option<String>,
    /// A rotated refresh token, when the IdP sent one.
    pub refresh_token: Option<Secret>,
}

/// Why one token request failed, and whether trying again may help.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
    /// The IdP's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// SPEC §5: network errors, timeouts, 5xx, 429 and malformed 2xx bodies are retried.
    pub retryable: bool,
    /// The IdP's HTTP status, when it answered.
    pub status: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Network error, timeout, 5xx, 429: retried.
    Transient,
    /// Not a token response (a malformed 2xx, retried; or a redirect, not retried).
    Malformed,
    /// The IdP refused the client (other 4xx): not retried.
    Rejected,
}

impl IdpClient {
    pub fn new(cfg: &ProviderConfig) -> Result<Self, String> {
        let identity = match &cfg.client_auth {
            ClientAuth::TlsClientAuth {
                cert_file,
                key_file,
            } => Some(crate::trust::client_identity(cert_file, key_file)?),
            _ => None,
        };
        let signer = match &cfg.client_auth {
            ClientAuth::PrivateKeyJwt(p) => Some(super::AssertionSigner::load(
                &p.key_file,
                p.alg,
                p.key_id.clone(),
            )?),
            _ => None,
        };
        let tls = crate::trust::client_config_with(
            cfg.ca_file.as_deref(),
            &[b"h2", b"http/1.1"],
            identity,
        )?;
        let http = reqwest::Client::builder()
            // The config from `trust`, as for upstreams: reqwest loads no roots of its own.
            // A rustls version other than reqwest's would fail here, not fall back.
            .tls_backend_preconfigured(tls)
            // A redirect could carry the client secret to another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            // The sidecar may itself be the app's HTTP_PROXY: never send IdP calls there.
            .no_proxy()
            .user_agent(concat!("token-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                format!(
                    "cannot build the HTTP client for provider {}: {e}",
                    cfg.name
                )
            })?;
        let refresh = match &cfg.grant {
            Grant::RefreshToken { initial, .. } => {
                Some(Arc::new(std::sync::Mutex::new(initial.clone())))
            }
            _ => None,
        };
        Ok(Self {
            http,
            signer,
            refresh,
        })
    }

    /// Sends one token request.
    pub async fn request(&self, cfg: &ProviderConfig) -> Result<TokenResponse, Failure> {
        let grant: Vec<(&str, String)> = match (&cfg.grant, &self.refresh) {
            (Grant::RefreshToken { .. }, Some(current)) => {
                let rt = current
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .expose()
                    .to_string();
                vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", rt),
                ]
            }
            (Grant::TokenExchange(_), _) => {
                return Err(failure(
                    FailureKind::Rejected,
                    "token exchange needs a subject token from the request".into(),
                ))
            }
            _ => vec![("grant_type", "client_credentials".into())],
        };
        let mut resp = self.send(cfg, grant).await;
        // The stored token is dead but the operator configured a different one (the fix
        // the error log asks for): try that one, once.
        if let (
            Err(f),
            Some(current),
            Grant::RefreshToken {
                configured: Some(configured),
                ..
            },
        ) = (&resp, &self.refresh, &cfg.grant)
        {
            let stale = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if f.detail.contains("invalid_grant") && stale != *configured {
                tracing::warn!(provider = %cfg.name, "the stored refresh token was rejected; trying the configured one");
                *current.lock().unwrap_or_else(|p| p.into_inner()) = configured.clone();
                resp = self
                    .send(
                        cfg,
                        vec![
                            ("grant_type", "refresh_token".into()),
                            ("refresh_token", configured.expose().to_string()),
                        ],
                    )
                    .await;
            }
        }
        if let (Ok(resp), Some(current), Grant::RefreshToken { store, .. }) =
            (&resp, &self.refresh, &cfg.grant)
        {
            if let Some(rotated) = &resp.refresh_token {
                *current.lock().unwrap_or_else(|p| p.into_inner()) = rotated.clone();
                if let Some(store) = store {
                    match persist_secret(store, rotated) {
                        Ok(()) => {
                            tracing::debug!(provider = %cfg.name, "rotated refresh token stored")
                        }
                        Err(e) => {
                            tracing::error!(provider = %cfg.name, error = %e, "cannot store the rotated refresh token; a restart would use an old one")
                        }
                    }
                }
            }
        }
        if let (Err(f), Grant::RefreshToken { .. }) = (&resp, &cfg.grant) {
            if f.kind == FailureKind::Rejected && f.detail.contains("invalid_grant") {
                tracing::error!(
                    provider = %cfg.name,
                    "the refresh token was rejected (invalid_grant): provide a new refresh_token (or a new value in refresh_token_store) and reload"
                );
            }
        }
        resp
    }

    /// RFC 8693 §2.1: exchanges `subject` for a token.
    pub async fn exchange(
        &self,
        cfg: &ProviderConfig,
        subject: &Secret,
    ) -> Result<TokenResponse, Failure> {
        let Grant::TokenExchange(x) = &cfg.grant else {
            return Err(failure(
                FailureKind::Rejected,
                "not a token exchange provider".into(),
            ));
        };
        let mut grant: Vec<(&str, String)> = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ),
            ("subject_token", subject.expose().to_string()),
            ("subject_token_type", x.subject_token_type.clone()),
        ];
        if let (Some(file), Some(kind)) = (&x.actor_token_file, &x.actor_token_type) {
            let actor = std::fs::read_to_string(file).map_err(|e| {
                failure(
                    FailureKind::Transient,
                    format!(
                        "cannot read the actor token file {}: {}",
                        file.display(),
                        e.kind()
                    ),
                )
            })?;
            grant.push(("actor_token", actor.trim().to_string()));
            grant.push(("actor_token_type", kind.clone()));
        }
        if let Some(t) = &x.requested_token_type {
            grant.push(("requested_token_type", t.clone()));
        }
        self.send(cfg, grant).await
    }

    /// Sends one token request with `grant` parameters plus the provider's scope,
    /// audience, resource, extra parameters and client authentication.
    async fn send(
        &self,
        cfg: &ProviderConfig,
        grant: Vec<(&str, String)>,
    ) -> Result<TokenResponse, Failure> {
        let mut req = self
            .http
            .post(cfg.token_url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            // Per request, so a reload can change `timeout` without a new client.
            .timeout(cfg.timeout);
        if let (ClientAuth::Basic, Some(secret)) = (&cfg.client_auth, &cfg.client_secret) {
            let mut value = http::HeaderValue::try_from(basic_auth(&cfg.client_id, secret))
                .map_err(|_| {
                    failure(
                        FailureKind::Rejected,
                        "client credentials cannot be sent in a header".into(),
                    )
                })?;
            value.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, value);
        }
        let assertion = self.assertion(cfg)?;
        let resp = req
            .body(token_form(cfg, &grant, assertion.as_ref()))
            .send()
            .await
            .map_err(|e| transport_failure(&e, cfg.timeout))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(resp)
            .await
            .map_err(|e| transport_failure(&e, cfg.timeout))?;
        if status.is_success() {
            return parse_token(&body).map_err(|detail| Failure {
                status: Some(status.as_u16()),
                ..failure(FailureKind::Malformed, detail)
            });
        }
        let what = oauth_error(&body)
            .map(|e| format!(" {}", scrub(&e, cfg, &grant, assertion.as_ref())))
            .unwrap_or_default();
        let detail = format!("token endpoint answered {}{what}", status.as_u16());
        let kind = if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            FailureKind::Transient
        } else if status.is_redirection() {
            return Err(Failure {
                kind: FailureKind::Malformed,
                detail: format!("{detail} (a redirect; token requests never follow redirects)"),
                retry_after: None,
                retryable: false,
                status: Some(status.as_u16()),
            });
        } else {
            FailureKind::Rejected
        };
        Err(Failure {
            kind,
            detail,
            retry_after,
            retryable: kind == FailureKind::Transient,
            status: Some(status.as_u16()),
        })
    }
}

impl IdpClient {
    /// The client assertion for this request, for the assertion-based methods.
    fn assertion(&self, cfg: &ProviderConfig) -> Result<Option<Secret>, Failure> {
        match (&cfg.client_auth, &self.signer) {
            (ClientAuth::PrivateKeyJwt(p), Some(signer)) => signer
                .sign(&cfg.client_id, &p.audience)
                .map(Some)
                .map_err(|e| failure(FailureKind::Rejected, e)),
            // Re-read every time: Kubernetes rotates projected service-account tokens.
            (ClientAuth::AssertionFile(path), _) => match std::fs::read_to_string(path) {
                Ok(t) if !t.trim().is_empty() => Ok(Some(Secret::new(t.trim()))),
                Ok(_) => Err(failure(
                    FailureKind::Transient,
                    format!("the client assertion file {} is empty", path.display()),
                )),
                Err(e) => Err(failure(
                    FailureKind::Transient,
                    format!(
                        "cannot read the client assertion file {}: {}",
                        path.display(),
                        e.kind()
                    ),
                )),
            },
            _ => Ok(None),
        }
    }
}

/// A `static_file` token: the file's content, re-read at every fetch.
pub fn read_token_file(path: &std::path::Path) -> Result<TokenResponse, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        failure(
            FailureKind::Transient,
            format!(
                "cannot read the token file {}: {}",
                path.display(),
                e.kind()
            ),
        )
    })?;
    let token = text.trim();
    if token.is_empty() || http::HeaderValue::from_str(token).is_err() {
        return Err(failure(
            FailureKind::Malformed,
            format!("the token file {} holds no usable token", path.display()),
        ));
    }
    Ok(TokenResponse {
        access_token: Secret::new(token),
        token_type: "Bearer".into(),
        expires_in: None,
        scope: None,
        refresh_token: None,
    })
}

fn failure(kind: FailureKind, detail: String) -> Failure {
    Failure {
        kind,
        detail,
        retry_after: None,
        retryable: kind != FailureKind::Rejected,
        status: None,
    }
}

fn transport_failure(e: &reqwest::Error, timeout: Duration) -> Failure {
    let detail = if e.is_timeout() {
        format!(
            "token endpoint did not answer within {}",
            format_duration(timeout)
        )
    } else if e.is_connect() {
        format!("cannot connect to token endpoint: {}", root_cause(e))
    } else {
        format!("token request failed: {}", root_cause(e))
    };
    failure(FailureKind::Transient, detail)
}

/// The innermost error message (reqwest's own message repeats the URL).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
