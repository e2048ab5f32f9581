//! The OAuth2 token endpoint client: the only code in the crate that talks to an IdP. It
//! sends one token request with the grant parameters a fetcher in `grant` chose, plus the
//! provider's scope, audience, resource and client authentication, and turns every answer
//! into a [`TokenResponse`] or a classified [`Failure`] whose detail carries the IdP's
//! `error`/`error_description` (RFC 6749 §5.2) and never a secret or a token: every text
//! from outside goes through `scrub` before it becomes part of a detail.
//!
//! It knows no grant: which parameters to send, and what to do with a rotated refresh
//! token, is the fetchers' business.
//!
//! With `dpop` (RFC 9449), every token request carries a fresh proof with the IdP's latest
//! nonce; an IdP that answers `use_dpop_nonce` with a new nonce is asked once more at
//! once, and the token must come back as `DPoP`.

use super::scrub::{scrub, Secrets};
use super::wire::{
    basic_auth, oauth_error, oauth_error_code, parse_token_for, request_secrets, token_form,
};
use super::TokenError;
use crate::config::{format_duration, ClientAuth, Dpop, OAuthClient};
use crate::file::{io_reason, read_trimmed};
use crate::outbound::ProxyEndpoint;
use crate::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

/// The largest token response we read; anything longer is not a token response.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

pub struct IdpClient {
    /// The token endpoint, the client's credentials, the grant and what to ask for.
    client: Arc<OAuthClient>,
    http: reqwest::Client,
    /// For `private_key_jwt`: loaded once, signs a new assertion per request.
    signer: Option<super::AssertionSigner>,
    /// The egress proxy token requests go through (SPEC §11), decided once for the token
    /// URL's host: a 407 is its answer, not the IdP's.
    proxy: Option<Arc<ProxyEndpoint>>,
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
    /// Our words, plus outside text only as `scrub::scrub` left it: shown as it is in
    /// logs, `/status` (`last_error`) and error bodies (`detail`).
    pub detail: String,
    /// The IdP's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// SPEC §5: network errors, timeouts, 5xx, 429 and malformed 2xx bodies are retried.
    pub retryable: bool,
    /// The IdP's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The fetcher's floor for the wait before the next fetch, when asking again soon is
    /// pointless (a refresh token the IdP rejected stays rejected until someone acts).
    pub min_backoff: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Network error, timeout, 5xx, 429: retried.
    Transient,
    /// Not a token response (a malformed 2xx): retried, unless asking again would give
    /// the same answer (a `token_type` other than Bearer).
    Malformed,
    /// The IdP refused the client (other 4xx, or a redirect): not retried, and the
    /// source pauses (see `lifetime::backoff_after_failure`).
    Rejected,
}

impl IdpClient {
    /// The client of `provider` for `client`: its TLS settings, client certificate,
    /// assertion signer and egress proxy.
    pub fn new(provider: &str, client: Arc<OAuthClient>) -> Result<Self, String> {
        // Keys were loaded when the config was compiled.
        let identity = match &client.client_auth {
            ClientAuth::TlsClientAuth { identity, .. } => Some(identity.pair()),
            _ => None,
        };
        let signer = match &client.client_auth {
            ClientAuth::PrivateKeyJwt(p) => {
                Some(super::AssertionSigner::new(p.key.clone(), p.key_id.clone()))
            }
            _ => None,
        };
        let tls = crate::trust::client_config_with(
            client.ca_file.as_deref(),
            &[b"h2", b"http/1.1"],
            identity,
        )?;
        let mut http = reqwest::Client::builder()
            // The config from `trust`, as for upstreams: reqwest loads no roots of its own.
            // A rustls version other than reqwest's would fail here, not fall back.
            .tls_backend_preconfigured(tls)
            // A redirect could carry the client secret to another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            // The sidecar may itself be the app's HTTP_PROXY: never send IdP calls there.
            // No proxy from the environment either: only the configured egress_proxy.
            .no_proxy()
            .user_agent(concat!("token-sidecar/", env!("CARGO_PKG_VERSION")));
        // SPEC §11: the provider's egress_proxy unless its `no_proxy` lists the token
        // URL's host (after `no_proxy()`, which clears the environment's list).
        let proxy = client.egress.proxy_for_url(&client.token_url).cloned();
        if let Some(proxy) = &proxy {
            http = http.proxy(crate::outbound::reqwest_proxy(proxy)?);
        }
        let http = http
            .build()
            .map_err(|e| format!("cannot build the HTTP client for provider {provider}: {e}"))?;
        Ok(Self {
            client,
            http,
            signer,
            proxy,
        })
    }

    /// Sends one token request with `grant` parameters plus the client's scope,
    /// audience, resource, extra parameters and client authentication; gives up after
    /// `timeout`. With `dpop`, an IdP that wants a (new) nonce is asked once more at once
    /// (RFC 9449 §8), with a new proof and a new client assertion.
    pub(super) async fn send(
        &self,
        timeout: Duration,
        grant: Vec<(&str, String)>,
    ) -> Result<TokenResponse, Failure> {
        match self.send_once(timeout, &grant).await? {
            Answer::Token(token) => Ok(token),
            Answer::UseNonce(_) => match self.send_once(timeout, &grant).await? {
                Answer::Token(token) => Ok(token),
                Answer::UseNonce(failure) => Err(failure),
            },
        }
    }

    /// One token request; [`Answer::UseNonce`] when a DPoP IdP asks for a nonce it sent.
    async fn send_once(
        &self,
        timeout: Duration,
        grant: &[(&str, String)],
    ) -> Result<Answer, Failure> {
        let cfg = &*self.client;
        let mut req = self
            .http
            .post(cfg.token_url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            // Per request, so a reload can change `timeout` without a new client.
            .timeout(timeout);
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
        let (req, sent_nonce) = with_proof(req, cfg)?;
        let assertion = self.assertion().await?;
        // Everything this request carries, to be cut out of whatever text comes back.
        let secrets = request_secrets(cfg, grant, assertion.as_ref());
        let resp = req
            .body(token_form(cfg, grant, assertion.as_ref()))
            .send()
            .await
            .map_err(|e| self.transport_failure(&e, timeout, &secrets))?;
        let status = resp.status();
        // RFC 9449 §8.2: a nonce may come with any answer; the next proofs carry it.
        let new_nonce = cfg.dpop.as_ref().is_some_and(|d| {
            d.idp_nonce.update(resp.headers());
            d.idp_nonce.get() != sent_nonce
        });
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let body = read_limited(resp)
            .await
            .map_err(|e| self.transport_failure(&e, timeout, &secrets))?;
        if !status.is_success() {
            let failure = Failure {
                retry_after,
                ..self.refusal(status, &body, &secrets)
            };
            // RFC 9449 §8: 400 `use_dpop_nonce` with a nonce we did not have yet.
            let use_nonce = status == http::StatusCode::BAD_REQUEST
                && new_nonce
                && oauth_error_code(&body).as_deref() == Some("use_dpop_nonce");
            return match use_nonce {
                true => Ok(Answer::UseNonce(failure)),
                false => Err(failure),
            };
        }
        let mut token =
            parse_token_for(&body, &secrets, cfg.dpop.is_some()).map_err(|f| Failure {
                status: Some(status.as_u16()),
                ..f
            })?;
        // RFC 6749 §5.1: without `scope`, the token has the scope that was asked for.
        if token.scope.is_none() && !cfg.scopes.is_empty() {
            token.scope = Some(cfg.scopes.join(" "));
        }
        Ok(Answer::Token(token))
    }

    /// A non-2xx answer. An http:// token URL goes to the egress proxy in absolute-form,
    /// so a 407 is the proxy's, not the IdP refusing the client.
    fn refusal(&self, status: http::StatusCode, body: &[u8], secrets: &Secrets) -> Failure {
        match (status, &self.proxy) {
            (http::StatusCode::PROXY_AUTHENTICATION_REQUIRED, Some(proxy)) => {
                self.proxy_refused(proxy, "token request")
            }
            _ => refusal(status, body, secrets),
        }
    }

    /// The egress proxy's 407: transient (retried with backoff, like a network error),
    /// naming the proxy by `host:port` only.
    fn proxy_refused(&self, proxy: &ProxyEndpoint, what: &str) -> Failure {
        let url = &self.client.token_url;
        let (host, port) = (url.host_str(), url.port_or_known_default());
        let detail = format!(
            "the egress proxy {proxy} answered 407 (proxy authentication required) to the {what} for {}:{}: {}",
            host.unwrap_or_default(), port.unwrap_or_default(), proxy.auth_refusal()
        );
        failure(FailureKind::Transient, detail)
    }

    /// A request that got no (whole) answer. The error's text is scrubbed like the
    /// IdP's: it may echo what was sent. Through the egress proxy, the detail names it.
    fn transport_failure(
        &self,
        e: &reqwest::Error,
        timeout: Duration,
        secrets: &Secrets,
    ) -> Failure {
        let root = scrub(&root_cause(e), secrets);
        let detail = if e.is_timeout() {
            format!(
                "token endpoint did not answer within {}",
                format_duration(timeout)
            )
        } else if let (true, Some(proxy)) = (e.is_connect(), &self.proxy) {
            // reqwest's words for a 407 to its CONNECT (https token URLs).
            if root.contains("proxy authorization required") {
                return self.proxy_refused(proxy, "CONNECT");
            }
            format!("cannot connect to token endpoint through the egress proxy {proxy}: {root}")
        } else if e.is_connect() {
            format!("cannot connect to token endpoint: {root}")
        } else {
            format!("token request failed: {root}")
        };
        failure(FailureKind::Transient, detail)
    }

    /// The client assertion for this request, for the assertion-based methods.
    async fn assertion(&self) -> Result<Option<Secret>, Failure> {
        match (&self.client.client_auth, &self.signer) {
            (ClientAuth::PrivateKeyJwt(p), Some(signer)) => signer
                .sign(&self.client.client_id, &p.audience)
                .map(Some)
                .map_err(|e| failure(FailureKind::Rejected, e)),
            // Re-read every time: Kubernetes rotates projected service-account tokens.
            (ClientAuth::AssertionFile(path), _) => match read_trimmed(path).await {
                Ok(t) if !t.is_empty() => Ok(Some(Secret::new(t))),
                Ok(_) => Err(failure(
                    FailureKind::Transient,
                    format!("the client assertion file {} is empty", path.display()),
                )),
                Err(e) => Err(failure(
                    FailureKind::Transient,
                    format!(
                        "cannot read the client assertion file {}: {}",
                        path.display(),
                        io_reason(&e)
                    ),
                )),
            },
            _ => Ok(None),
        }
    }
}

/// What one token request came back with, short of a failure.
enum Answer {
    Token(TokenResponse),
    /// A DPoP IdP refused the proof for want of a nonce and sent one (its refusal, for
    /// when asking again does not help).
    UseNonce(Failure),
}

/// `req` with a DPoP proof when the client has `dpop`, and the nonce the proof carries.
fn with_proof(
    req: reqwest::RequestBuilder,
    cfg: &OAuthClient,
) -> Result<(reqwest::RequestBuilder, Option<std::sync::Arc<String>>), Failure> {
    let Some(dpop) = &cfg.dpop else {
        return Ok((req, None));
    };
    let nonce = dpop.idp_nonce.get();
    let proof = token_request_proof(dpop, &cfg.token_url, nonce.as_deref())?;
    Ok((req.header("dpop", proof), nonce))
}

/// A DPoP proof for a token request: `POST` to the token URL without query and fragment,
/// with the IdP's latest nonce (RFC 9449 §4.2, §8).
fn token_request_proof(
    dpop: &Dpop,
    token_url: &reqwest::Url,
    nonce: Option<&String>,
) -> Result<http::HeaderValue, Failure> {
    let mut htu = token_url.clone();
    htu.set_query(None);
    htu.set_fragment(None);
    let claims = crate::sender::ProofClaims {
        htm: "POST",
        htu: htu.as_str(),
        access_token: None,
        nonce: nonce.map(String::as_str),
    };
    dpop.key.proof(&claims).map_err(|e| {
        failure(
            FailureKind::Transient,
            format!("cannot make the DPoP proof: {e}"),
        )
    })
}

impl Failure {
    /// What the callers of a fetch that ended in this failure get; `retry_after`: when
    /// the next fetch may start.
    pub(super) fn into_error(self, retry_after: Duration) -> TokenError {
        let detail = self.detail;
        match self.kind {
            FailureKind::Transient => TokenError::Unavailable {
                detail,
                retry_after,
            },
            FailureKind::Malformed => TokenError::InvalidResponse { detail },
            FailureKind::Rejected => TokenError::Rejected { detail },
        }
    }
}

/// A failure of `kind`: retryable unless the IdP refused the client.
pub(super) fn failure(kind: FailureKind, detail: String) -> Failure {
    Failure {
        kind,
        detail,
        retry_after: None,
        retryable: kind != FailureKind::Rejected,
        status: None,
        min_backoff: None,
    }
}

/// A non-2xx answer (SPEC §5): 5xx and 429 are transient; a redirect or another 4xx
/// means the IdP refused the client, which asking again does not change. The detail
/// carries the IdP's `error` and `error_description`, scrubbed.
fn refusal(status: http::StatusCode, body: &[u8], secrets: &Secrets) -> Failure {
    let what = oauth_error(body)
        .map(|e| format!(" {}", scrub(&e, secrets)))
        .unwrap_or_default();
    let mut detail = format!("token endpoint answered {}{what}", status.as_u16());
    let kind = if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
        FailureKind::Transient
    } else {
        if status.is_redirection() {
            detail.push_str(" (a redirect; token requests never follow redirects)");
        }
        FailureKind::Rejected
    };
    Failure {
        status: Some(status.as_u16()),
        ..failure(kind, detail)
    }
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

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date (a date already past
/// means now).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod retry_after_tests {
    use super::retry_after;
    use std::time::{Duration, SystemTime};

    #[test]
    fn seconds_and_http_dates() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let wait = retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}
