//! SPEC §8 scrubbing, end to end: an IdP that echoes every credential of the request, in
//! every form, at the point where a 200-character cut would fall. The real binary at
//! trace level; the 502 body, `/status` and the text and JSON logs (audit events
//! included) must hold no form of any of them, nor the start of one.

use crate::support::sidecar::Binary;
use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Duration;

const SECRET: &str = "s3cr3t+/=%&: é-0123456789";
const REFRESH: &str = "rt-0123456789+/=%&é";
const SUBJECT: &str = "subj-0123456789+/=%&";
/// Forms of the client secret, one per Basic provider `svc-K`.
const FORMS: usize = 6;
/// `invalid_client: ` plus this many characters ends 15 characters into the echo.
const PAD: usize = 200 - "invalid_client: ".len() - 15;

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn percent_lower(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02x}")).collect()
}

/// What the IdP echoes for a request with `authorization` and `body`: the secret in the
/// form its client id asks for, or the credential of the grant and the whole body.
fn echo(authorization: Option<&str>, body: &str) -> String {
    let param = |name: &str| {
        body.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    if body.contains("grant_type=refresh_token") {
        return format!("{} {body}", param("refresh_token"));
    }
    if body.contains("token-exchange") {
        return format!(
            "{} {body} {}",
            param("subject_token"),
            authorization.unwrap_or("")
        );
    }
    let authorization = authorization.unwrap_or_default();
    let basic = STANDARD
        .decode(authorization.trim_start_matches("Basic "))
        .unwrap_or_default();
    let k: usize = String::from_utf8_lossy(&basic)
        .split(':')
        .next()
        .and_then(|id| id.strip_prefix("svc-")?.parse().ok())
        .unwrap_or(0);
    match k {
        0 => authorization.to_string(),
        1 => SECRET.to_string(),
        2 => form(SECRET),
        3 => percent_lower(SECRET),
        4 => STANDARD.encode(format!("svc-4:{SECRET}")),
        _ => STANDARD.encode(SECRET),
    }
}

/// An IdP that refuses every client, echoing what it was sent after `PAD` characters.
async fn echoing_idp() -> std::net::SocketAddr {
    serve(|req: http::Request<hyper::body::Incoming>| async move {
        let authorization = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        let echoed = echo(
            authorization.as_deref(),
            std::str::from_utf8(&sent).unwrap(),
        );
        let description = format!("{}{echoed}", "x".repeat(PAD));
        let json = serde_json::json!({"error": "invalid_client", "error_description": description});
        let mut resp = http::Response::new(body(Bytes::from(json.to_string())));
        *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
        resp
    })
    .await
}

fn config(idp: std::net::SocketAddr, api: &FakeUpstream) -> String {
    let mut yaml = String::from("providers:\n");
    let url = format!("http://{idp}/token");
    for k in 0..FORMS {
        yaml += &format!("  p{k}:\n    token_url: {url}\n    client_id: svc-{k}\n    client_secret: '{SECRET}'\n");
    }
    yaml += &format!("  rt:\n    token_url: {url}\n    client_id: svc-rt\n    client_secret: '{SECRET}'\n    client_auth: post\n    grant_type: refresh_token\n    refresh_token: '{REFRESH}'\n");
    yaml += &format!("  tx:\n    token_url: {url}\n    client_id: svc-tx\n    client_secret: '{SECRET}'\n    grant_type: token_exchange\n    subject_token_from: {{ header: X-Subject }}\n");
    yaml += "routes:\n";
    for name in (0..FORMS)
        .map(|k| format!("p{k}"))
        .chain(["rt".into(), "tx".into()])
    {
        yaml += &format!(
            "  - match: {{ path_prefix: /{name} }}\n    provider: {name}\n    upstream: {}\n",
            api.url()
        );
    }
    yaml
}

/// Every form of every credential, and the start of each.
fn leaks() -> Vec<String> {
    let mut leaks = Vec::new();
    for s in [SECRET, REFRESH, SUBJECT] {
        for f in [
            s.to_string(),
            form(s),
            form(s).replace('+', "%20"),
            percent_lower(s),
            STANDARD.encode(s),
        ] {
            leaks.push(f.chars().take(8).collect());
            leaks.push(f);
        }
    }
    for id in (0..FORMS)
        .map(|k| format!("svc-{k}"))
        .chain(["svc-rt".into(), "svc-tx".into()])
    {
        leaks.push(STANDARD.encode(format!("{id}:{SECRET}")));
        leaks.push(STANDARD.encode(format!("{}:{}", form(&id), form(SECRET))));
    }
    leaks
}

fn assert_clean(sink: &str, text: &str) {
    for leak in leaks() {
        assert!(
            !text.contains(&leak),
            "{leak:?} leaked into {sink}:\n{text}"
        );
    }
}

#[tokio::test]
async fn echoed_credentials_reach_no_body_status_or_log_in_any_form() {
    let idp = echoing_idp().await;
    let api = FakeUpstream::ok().await;
    for (format, env) in [("text", vec![("RUST_LOG", "trace")]), ("json", vec![])] {
        let mut bin = Binary::start(
            &config(idp, &api),
            &["--log-level", "trace", "--log-format", format],
            &env,
        );
        bin.wait_healthy().await;
        let client = direct_client();
        for name in (0..FORMS)
            .map(|k| format!("p{k}"))
            .chain(["rt".into(), "tx".into()])
        {
            let resp = client
                .get(format!("http://{}/{name}/x", bin.proxy))
                .header("x-subject", SUBJECT)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 502, "{name}");
            assert_eq!(resp.headers()["x-token-sidecar-error"], "token_rejected");
            let body = resp.text().await.unwrap();
            // Cut at 200 characters, the marker itself may end early ("[redac").
            assert!(body.contains("invalid_client: xxx"), "{body}");
            assert!(body.contains("[re"), "{name}: {body}");
            assert_clean(&format!("the 502 body of {name}"), &body);
        }
        let status = client
            .get(format!("http://{}/status", bin.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            status.matches("invalid_client: xxx").count(),
            FORMS + 2,
            "{status}"
        );
        assert_clean("/status", &status);
        bin.signal("TERM");
        assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
        let logs = bin.stderr();
        assert!(
            logs.contains("token_fetch_failed"),
            "audit events were captured"
        );
        assert!(logs.contains("refused the client"), "{logs}");
        assert_clean(&format!("the {format} logs"), &logs);
    }
    assert_eq!(api.count(), 0);
}
