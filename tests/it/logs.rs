//! What the real binary logs (issue 13): a request line with every field an operator
//! needs, JSON lines that parse with typed numbers, logfmt-clean text, and a refused bad
//! `--log-level`.

use crate::support::sidecar::Binary;
use crate::support::*;
use std::time::Duration;

fn yaml(idp: &FakeIdp, api: &FakeUpstream) -> String {
    format!(
        "providers:\n{}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n",
        provider_yaml("crm", idp, ""),
        api.url()
    )
}

/// The request lines of a JSON log, parsed.
fn request_lines(logs: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect()
}

#[tokio::test]
async fn the_request_line_has_every_field_and_json_numbers() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let mut bin = Binary::start(&yaml(&idp, &api), &["--log-format", "json"], &[]);
    bin.wait_healthy().await;
    let client = direct_client();
    let ok = client
        .post(format!("http://{}/api/x?secret=q", bin.proxy))
        .header("x-request-id", "app-req-7")
        .body("12345")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = client
        .get(format!("http://{}/nothing", bin.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        api.seen()[0].header("x-request-id"),
        Some("app-req-7"),
        "the app's request id goes upstream"
    );
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
    let logs = bin.stderr();
    let lines = request_lines(&logs);
    assert_eq!(lines.len(), 2, "{logs}");
    let ok = &lines[0];
    assert_eq!(ok["request_id"], "app-req-7", "{ok}");
    assert_eq!(ok["route"], "api");
    assert_eq!(ok["provider"], "crm");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["path"], "/api/x", "no query string in the log");
    assert_eq!(ok["status"], 200, "a number, not a string");
    assert_eq!(ok["error"], "-");
    assert_eq!(ok["bytes_in"], "5");
    assert_eq!(ok["upstream"], api.url().trim_start_matches("http://"));
    assert!(ok["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(ok["client"], "-");
    assert_eq!(ok["token"], true);
    assert_eq!(ok["replayed"], false);
    let latency = ok["latency_ms"].as_f64().expect("latency_ms is a number");
    let text = ok["latency_ms"].to_string();
    assert!(
        text.split('.').nth(1).is_none_or(|d| d.len() <= 3),
        "at most 3 decimals: {text} ({latency})"
    );
    let refused = &lines[1];
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["error"], "bad_request");
    let generated = refused["request_id"].as_str().unwrap();
    assert_eq!(generated.len(), 16, "a generated id: {generated}");
    assert!(!logs.contains("secret=q"));
    assert!(
        !logs.contains("Some("),
        "no Rust Debug text in JSON logs:\n{logs}"
    );
}

#[tokio::test]
async fn text_logs_are_logfmt_clean() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let mut bin = Binary::start(&yaml(&idp, &api), &["--log-format", "text"], &[]);
    bin.wait_healthy().await;
    let resp = direct_client()
        .get(format!("http://{}/api/with%20space", bin.proxy))
        .header("host", "odd host")
        .send()
        .await
        .unwrap();
    let _ = resp.status();
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
    let logs = bin.stderr();
    let line = logs
        .lines()
        .find(|l| l.contains(" request ") || l.ends_with(" request"))
        .unwrap_or_else(|| panic!("no request line:\n{logs}"));
    // Every field is key=value with the value either bare (no space, no quote) or quoted.
    let fields = line
        .split_once(": request ")
        .map(|(_, f)| f)
        .unwrap_or(line);
    let mut rest = fields.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {rest}\nline: {line}"));
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "key {key:?} in {line}"
        );
        rest = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .char_indices()
                .scan(false, |esc, (i, c)| {
                    let done = !*esc && c == '"';
                    *esc = !*esc && c == '\\';
                    Some((i, done))
                })
                .find(|(_, done)| *done)
                .map(|(i, _)| i)
                .unwrap_or_else(|| panic!("unterminated quote in {line}"));
            quoted[end + 1..].trim_start()
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            assert!(
                !after[..end].contains('"'),
                "bare value with a quote in {line}"
            );
            after[end..].trim_start()
        };
    }
}

#[test]
fn a_bad_log_level_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args([
            "--log-level",
            "bogus",
            "validate",
            "-c",
            "/nonexistent.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'bogus'"), "{err}");
    assert!(
        err.contains("trace, debug, info, warn, error, off"),
        "{err}"
    );
}
