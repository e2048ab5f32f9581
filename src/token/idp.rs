//! The OAuth2 token endpoint client (RFC 6749 §4.4 client credentials). The only code in
//! the crate that talks to an IdP. It turns every answer into a [`TokenResponse`] or a
//! classified [`Failure`] whose detail carries the IdP's `error`/`error_description`
//! (RFC 6749 §5.2) and never a secret or a token.

use crate::config::{format_duration, ClientAuth, Grant, ProviderConfig};
use crate::secret::Secret;
use base64::Engine;
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

/// RFC 7521 §4.2 / RFC 7523 §2.2.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

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

/// Writes `secret` to `path` atomically (a temp file in the same directory, mode 0600,
/// then a rename), so a crash never leaves half a token.
fn persist_secret(path: &std::path::Path, secret: &Secret) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(secret.expose().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("{}: {}", path.display(), e.kind()))
}

/// The form body of a token request (RFC 6749 §4.4.2, §6; RFC 8693 §2.1).
fn token_form(
    cfg: &ProviderConfig,
    grant: &[(&str, String)],
    assertion: Option<&Secret>,
) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in grant {
        form.append_pair(k, v);
    }
    if !cfg.scopes.is_empty() {
        form.append_pair("scope", &cfg.scopes.join(" "));
    }
    if let Some(a) = &cfg.audience {
        form.append_pair("audience", a);
    }
    if let Some(r) = &cfg.resource {
        form.append_pair("resource", r);
    }
    for (k, v) in &cfg.extra_params {
        form.append_pair(k, v);
    }
    match (&cfg.client_auth, &cfg.client_secret) {
        (ClientAuth::Basic, Some(_)) => {}
        (ClientAuth::Post, Some(secret)) => {
            form.append_pair("client_id", &cfg.client_id);
            form.append_pair("client_secret", secret.expose());
        }
        _ => {
            form.append_pair("client_id", &cfg.client_id);
        }
    }
    if let Some(a) = assertion {
        form.append_pair("client_assertion_type", JWT_BEARER_ASSERTION);
        form.append_pair("client_assertion", a.expose());
    }
    form.finish()
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

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and encoded.
fn basic_auth(client_id: &str, secret: &Secret) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let pw: String = form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{pw}"))
    )
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

/// RFC 6749 §5.2 `error` and `error_description`, cleaned for use in a message.
fn oauth_error(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = clean(v.get("error")?.as_str()?);
    match v.get("error_description").and_then(|d| d.as_str()) {
        Some(d) => Some(format!("{error}: {}", clean(d))),
        None => Some(error),
    }
}

/// Grant parameters that carry credentials.
const SECRET_PARAMS: &[&str] = &["refresh_token", "subject_token", "actor_token"];

/// The IdP's own text goes into errors, logs and `/status`; some IdPs echo what they were
/// sent, so every credential of the request is cut out of it (those long enough to be
/// credentials: a one-letter test secret must not blank out every such letter).
fn scrub(
    text: &str,
    cfg: &ProviderConfig,
    grant: &[(&str, String)],
    assertion: Option<&Secret>,
) -> String {
    let secrets = cfg
        .client_secret
        .iter()
        .chain(assertion)
        .map(|s| s.expose())
        .chain(
            grant
                .iter()
                .filter(|(k, _)| SECRET_PARAMS.contains(k))
                .map(|(_, v)| v.as_str()),
        );
    let mut out = text.to_string();
    for secret in secrets.filter(|s| s.len() >= 8) {
        out = out.replace(secret, "[redacted]");
    }
    out
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn parse_token(body: &[u8]) -> Result<TokenResponse, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| "token endpoint answered 2xx with a body that is not JSON".to_string())?;
    let access_token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "token endpoint answered 2xx without an access_token".to_string())?;
    if http::HeaderValue::from_str(access_token).is_err() {
        return Err(
            "token endpoint answered an access_token that cannot be sent in a header".to_string(),
        );
    }
    let expires_in = match v.get("expires_in") {
        None | Some(serde_json::Value::Null) => None,
        Some(e) => {
            let secs = e
                .as_f64()
                .or_else(|| e.as_str().and_then(|s| s.trim().parse().ok()));
            match secs {
                Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s.min(1e10))),
                _ => {
                    return Err(
                        "token endpoint answered an expires_in that is not a positive number"
                            .to_string(),
                    )
                }
            }
        }
    };
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        token_type: v
            .get("token_type")
            .and_then(|t| t.as_str())
            .unwrap_or("Bearer")
            .to_string(),
        expires_in,
        scope: v.get("scope").and_then(|s| s.as_str()).map(str::to_string),
        refresh_token: v
            .get("refresh_token")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        // RFC 6749 §2.3.1 + Appendix B: ':' and non-ASCII are percent-encoded first.
        let h = basic_auth("my id", &Secret::new("p:ss/é"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(h.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+id:p%3Ass%2F%C3%A9");
    }

    #[test]
    fn parses_token_responses() {
        let t = parse_token(
            br#"{"access_token":"abc","token_type":"bearer","expires_in":"3600","scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "abc");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(t.scope.as_deref(), Some("a b"));
        assert!(parse_token(br#"{"access_token":"abc"}"#)
            .unwrap()
            .expires_in
            .is_none());
        for bad in [
            &b"<html>"[..],
            br#"{"token":"x"}"#,
            br#"{"access_token":""}"#,
            br#"{"access_token":"a","expires_in":-5}"#,
            br#"{"access_token":"a\nb"}"#,
        ] {
            assert!(
                parse_token(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_bodies_become_details() {
        assert_eq!(
            oauth_error(
                br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#
            )
            .as_deref(),
            Some("invalid_client: Client authentication failed")
        );
        assert_eq!(oauth_error(b"nope"), None);
    }
}
