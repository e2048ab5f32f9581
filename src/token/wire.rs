//! The wire format of token requests and responses: form bodies (RFC 6749 §4.4.2, §6;
//! RFC 8693 §2.1), client authentication encodings, token and error responses (RFC 6749
//! §5.1, §5.2), and what may be shown of them. Pure functions: no IO, no state.

use super::idp::TokenResponse;
use crate::config::{ClientAuth, OAuthClient};
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

/// RFC 6749 §5.2 `error` and `error_description`, cleaned for use in a message.
pub(super) fn oauth_error(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = clean(v.get("error")?.as_str()?);
    match v.get("error_description").and_then(|d| d.as_str()) {
        Some(d) => Some(format!("{error}: {}", clean(d))),
        None => Some(error),
    }
}

/// Grant parameters that carry credentials.
pub(super) const SECRET_PARAMS: &[&str] = &["refresh_token", "subject_token", "actor_token"];

/// The IdP's own text goes into errors, logs and `/status`; some IdPs echo what they were
/// sent, so every credential of the request is cut out of it (those long enough to be
/// credentials: a one-letter test secret must not blank out every such letter).
pub(super) fn scrub(
    text: &str,
    cfg: &OAuthClient,
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

pub(super) fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

pub(super) fn parse_token(body: &[u8]) -> Result<TokenResponse, String> {
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
