//! The wire format of token requests and responses: form bodies (RFC 6749 §4.4.2, §6;
//! RFC 8693 §2.1), client authentication encodings, token and error responses (RFC 6749
//! §5.1, §5.2), and what may be shown of them. Pure functions: no IO, no state.

use super::idp::{failure, Failure, FailureKind, TokenResponse};
use super::scrub::{scrub, Secrets};
use crate::config::{ClientAuth, Grant, OAuthClient};
use crate::secret::Secret;
use base64::Engine;
use std::time::Duration;

/// RFC 7521 §4.2 / RFC 7523 §2.2.
pub(super) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The form body of a token request (RFC 6749 §4.4.2, §6; RFC 8693 §2.1).
pub(super) fn token_form(
    cfg: &OAuthClient,
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

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and encoded.
pub(super) fn basic_auth(client_id: &str, secret: &Secret) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let pw: String = form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{pw}"))
    )
}

/// RFC 6749 §5.2 `error` and `error_description`, as the IdP sent them: outside text,
/// for [`scrub`] before it goes anywhere.
pub(super) fn oauth_error(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = v.get("error")?.as_str()?;
    match v.get("error_description").and_then(|d| d.as_str()) {
        Some(d) => Some(format!("{error}: {d}")),
        None => Some(error.to_string()),
    }
}

/// Grant parameters that carry credentials.
pub(super) const SECRET_PARAMS: &[&str] = &["refresh_token", "subject_token", "actor_token"];

/// Every credential a token request for `cfg` with `grant` and `assertion` carries, for
/// [`scrub`]: some IdPs echo what they were sent.
pub(super) fn request_secrets(
    cfg: &OAuthClient,
    grant: &[(&str, String)],
    assertion: Option<&Secret>,
) -> Secrets {
    let mut secrets = Secrets::default();
    if let Some(secret) = &cfg.client_secret {
        secrets.add_basic(&cfg.client_id, secret.expose());
    }
    if let Grant::RefreshToken {
        initial,
        configured,
        ..
    } = &cfg.grant
    {
        secrets.add(initial.expose());
        configured.iter().for_each(|c| secrets.add(c.expose()));
    }
    // Not all of them are credentials, but any may be (see `TokenKey`).
    for (_, value) in &cfg.extra_params {
        secrets.add(value);
    }
    let credentials = grant.iter().filter(|(k, _)| SECRET_PARAMS.contains(k));
    for value in assertion
        .map(Secret::expose)
        .into_iter()
        .chain(credentials.map(|(_, v)| v.as_str()))
    {
        secrets.add(value);
    }
    secrets
}

/// RFC 6749 §5.2 `error` alone (the code, e.g. `use_dpop_nonce`).
pub(super) fn oauth_error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.as_str().map(str::to_string)
}

/// A 2xx body as a Bearer token response, or why it is none (a malformed answer).
/// `secrets`: those of the request, for the IdP's text that a failure shows.
#[cfg(test)]
pub(super) fn parse_token(body: &[u8], secrets: &Secrets) -> Result<TokenResponse, Failure> {
    parse_token_for(body, secrets, false)
}

/// A 2xx body as a token response of the type the provider asks for (`dpop`: a DPoP-bound
/// token, else a Bearer token), or why it is none.
pub(super) fn parse_token_for(
    body: &[u8],
    secrets: &Secrets,
    dpop: bool,
) -> Result<TokenResponse, Failure> {
    let malformed = |detail: &str| failure(FailureKind::Malformed, detail.to_string());
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| malformed("token endpoint answered 2xx with a body that is not JSON"))?;
    let access_token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("token endpoint answered 2xx without an access_token"))?;
    if http::HeaderValue::from_str(access_token).is_err() {
        return Err(malformed(
            "token endpoint answered an access_token that cannot be sent in a header",
        ));
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
                    return Err(malformed(
                        "token endpoint answered an expires_in that is not a positive number",
                    ))
                }
            }
        }
    };
    check_token_type(v.get("token_type"), access_token, secrets, dpop)?;
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        token_type: if dpop { "DPoP" } else { "Bearer" }.to_string(),
        expires_in,
        scope: v.get("scope").and_then(|s| s.as_str()).map(str::to_string),
        refresh_token: v
            .get("refresh_token")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(Secret::new),
    })
}

/// SPEC §5 and §10: the `token_type` must be `Bearer` (any case; a missing one means
/// Bearer), or, for a provider with `dpop`, `DPoP` (any case) and nothing else: a Bearer
/// token from a DPoP request means the IdP did not bind it to the key (RFC 9449 §5 says
/// it MUST answer `DPoP`), and a DPoP token without `dpop` cannot be sent as a Bearer
/// token. Asking again gives the same answer: not retried in the fetch.
fn check_token_type(
    token_type: Option<&serde_json::Value>,
    access_token: &str,
    secrets: &Secrets,
    dpop: bool,
) -> Result<(), Failure> {
    let want = if dpop { "DPoP" } else { "Bearer" };
    let shown = match token_type {
        None | Some(serde_json::Value::Null) if !dpop => return Ok(()),
        None | Some(serde_json::Value::Null) => "none (which means Bearer)".to_string(),
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case(want) => return Ok(()),
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(other) => other.to_string(),
    };
    // The IdP's text, which might even be the token it just sent.
    let mut secrets = secrets.clone();
    secrets.add(access_token);
    let why = if dpop {
        " (the provider has dpop: the IdP must bind the token to the key)"
    } else {
        ""
    };
    Err(Failure {
        retryable: false,
        ..failure(
            FailureKind::Malformed,
            format!(
                "token endpoint answered token_type {}, not {want}{why}",
                scrub(&shown, &secrets)
            ),
        )
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

    fn parse(body: &[u8]) -> Result<TokenResponse, Failure> {
        parse_token(body, &Secrets::default())
    }

    #[test]
    fn parses_token_responses() {
        let t = parse(
            br#"{"access_token":"abc","token_type":"bearer","expires_in":"3600","scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "abc");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(t.scope.as_deref(), Some("a b"));
        assert_eq!(t.token_type, "Bearer");
        assert!(parse(br#"{"access_token":"abc"}"#)
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
            let err = parse(bad).err().unwrap();
            assert_eq!(err.kind, FailureKind::Malformed);
            assert!(err.retryable, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_bearer_tokens_are_accepted() {
        for ok in [
            r#""Bearer""#,
            r#""bearer""#,
            r#""BEARER""#,
            r#""BeArEr""#,
            "null",
        ] {
            let body = format!(r#"{{"access_token":"abc","token_type":{ok}}}"#);
            let t = parse(body.as_bytes()).unwrap();
            assert_eq!(t.token_type, "Bearer", "{ok}");
        }
        // DPoP: only for providers with `dpop` (SPEC §10).
        for bad in [r#""mac""#, r#""DPoP""#, r#""Bearer ""#, r#""""#, "1", "[]"] {
            let body = format!(r#"{{"access_token":"abc","token_type":{bad}}}"#);
            let err = parse(body.as_bytes()).err().unwrap();
            assert_eq!(err.kind, FailureKind::Malformed, "{bad}");
            assert!(!err.retryable, "{bad}");
            assert!(err
                .detail
                .starts_with("token endpoint answered token_type "));
        }
        let err = parse(br#"{"access_token":"at-0123456789","token_type":"mac"}"#)
            .err()
            .unwrap();
        assert_eq!(
            err.detail,
            "token endpoint answered token_type mac, not Bearer"
        );
        // The type is the IdP's text: the token it just sent is cut out of it.
        let err = parse(br#"{"access_token":"at-0123456789","token_type":"x at-0123456789"}"#)
            .err()
            .unwrap();
        assert_eq!(
            err.detail,
            "token endpoint answered token_type x [redacted], not Bearer"
        );
    }

    /// SPEC §10: with `dpop`, the token must come back as `DPoP` (any case); Bearer, or
    /// no type at all (which means Bearer), is refused and not retried.
    #[test]
    fn dpop_providers_take_only_dpop_tokens() {
        let dpop = |body: &str| parse_token_for(body.as_bytes(), &Secrets::default(), true);
        for ok in [r#""DPoP""#, r#""dpop""#, r#""DPOP""#] {
            let body = format!(r#"{{"access_token":"abc","token_type":{ok}}}"#);
            assert_eq!(dpop(&body).unwrap().token_type, "DPoP", "{ok}");
        }
        for (bad, shown) in [
            (r#","token_type":"Bearer""#, "Bearer"),
            ("", "none (which means Bearer)"),
            (r#","token_type":"mac""#, "mac"),
        ] {
            let err = dpop(&format!(r#"{{"access_token":"abc"{bad}}}"#))
                .err()
                .unwrap();
            assert_eq!(err.kind, FailureKind::Malformed);
            assert!(!err.retryable);
            assert_eq!(
                err.detail,
                format!("token endpoint answered token_type {shown}, not DPoP (the provider has dpop: the IdP must bind the token to the key)")
            );
        }
        assert_eq!(
            oauth_error_code(br#"{"error":"use_dpop_nonce","error_description":"x"}"#).as_deref(),
            Some("use_dpop_nonce")
        );
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
