//! The real binary with real clients: the CLI, curl, Python requests, signals, and what
//! reaches the logs.

use crate::support::fake_idp::Reply;
use crate::support::sidecar::Binary;
use crate::support::*;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_token-sidecar");

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("TOKEN_SIDECAR_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_example_config_validates() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, "example-secret\n").unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.yaml.example"))
        .unwrap()
        .replace(
            "/var/run/secrets/crm/client_secret",
            secret.to_str().unwrap(),
        );
    let cfg = dir.path().join("proxy.yaml");
    std::fs::write(&cfg, text).unwrap();
    let (code, stdout, stderr) = run_cli(
        &["validate", "-c", cfg.to_str().unwrap()],
        &[("CRM_CLIENT_ID", "crm")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid (1 providers, 2 routes)"), "{stdout}");
}

#[test]
fn validate_reports_every_problem_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "providers:\n  crm:\n    token_url: ftp://idp\n    client_id: ${NOT_SET_ANYWHERE}\n    client_secret: ${file:/nonexistent/secret}\n    timeout: soon\nroutes:\n  - match: { host: api.test }\n    provider: crm2\n",
    )
    .unwrap();
    let path = cfg.to_str().unwrap();
    let (code, _, stderr) = run_cli(&["validate", "-c", path], &[]);
    assert_eq!(code, 1);
    for want in [
        format!("{path}:3:16: providers.crm.token_url: unsupported URL scheme"),
        format!("{path}:4:16: providers.crm.client_id: environment variable NOT_SET_ANYWHERE is not set"),
        format!("{path}:5:20: providers.crm.client_secret: cannot read file /nonexistent/secret"),
        format!("{path}:6:14: providers.crm.timeout: invalid duration"),
        format!("{path}:9:15: routes[0].provider: unknown provider \"crm2\""),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    // Unknown fields and wrong types, all at once, found through $TOKEN_SIDECAR_CONFIG.
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:1\nlisten_adress: x\nproviders:\n  a:\n    token_url: https://idp.test/t\n    client_id: c\n    client_secret: s\n    timeoutt: 1s\n    prefetch: maybe\nroutes:\n  - match: { host: x.test, methds: [GET] }\n    provider: a\n    connect_timeout: fast\n",
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["validate"], &[("TOKEN_SIDECAR_CONFIG", path)]);
    assert_eq!(code, 1);
    for want in [
        format!("{path}:2:1: listen_adress: unknown field `listen_adress`"),
        format!("{path}:8:5: providers.a.timeoutt: unknown field `timeoutt`"),
        format!("{path}:9:15: providers.a.prefetch: invalid type"),
        format!("{path}:11:28: routes[0].match.methds: unknown field `methds`"),
        format!("{path}:13:22: routes[0].connect_timeout: invalid duration"),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    // `run` refuses the same file and starts nothing.
    let (code, _, _) = run_cli(&["run", "-c", path], &[]);
    assert_eq!(code, 1);
    let (code, _, stderr) = run_cli(&["validate", "-c", "/nonexistent/proxy.yaml"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/proxy.yaml: cannot read config file: no such file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn token_command_prints_metadata_and_the_token_only_when_asked() {
    let idp = FakeIdp::builder().ttl(900).run().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "providers:\n{}",
            provider_yaml("crm", &idp, "    scopes: [read]\n")
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || run_cli(&["token", "crm", "-c", &cfg], &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["provider"], "crm");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 900);
    assert_eq!(v["scope"], "read");
    assert!(v.get("access_token").is_none());
    assert!(!stdout.contains(&idp.issued()[0]) && !stderr.contains(&idp.issued()[0]));
    let (code, stdout, _) = tokio::task::spawn_blocking(move || {
        run_cli(&["token", "crm", "-c", &cfg, "--print-token"], &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["access_token"], idp.issued()[1].as_str());
}

fn routes_yaml(idp: &FakeIdp, api: &FakeUpstream) -> String {
    format!(
        "workers: 1\nproviders:\n{}routes:\n  - name: forward\n    match: {{ host: api.crm.test }}\n    provider: crm\n    upstream: {api}\n  - name: reverse\n    match: {{ path_prefix: /crm }}\n    provider: crm\n    upstream: {api}\n    strip_prefix: true\n",
        provider_yaml("crm", idp, "    prefetch: true\n"),
        api = api.url()
    )
}

#[tokio::test]
async fn curl_and_python_requests_through_the_real_binary() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let mut bin = Binary::start(&routes_yaml(&idp, &api), &[], &[]);
    bin.wait_healthy().await;
    let proxy = bin.proxy;
    let curl = |args: Vec<String>| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-S",
                "--noproxy",
                "",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let forward = tokio::task::spawn_blocking(move || {
        curl(vec![
            "-x".into(),
            format!("http://{proxy}"),
            "http://api.crm.test/v1/a".into(),
        ])
    })
    .await
    .unwrap();
    assert!(forward.ends_with("\n200"), "{forward}");
    let reverse = tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{proxy}/crm/v1/b"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    })
    .await
    .unwrap();
    assert_eq!(reverse, "200");

    let script = "import requests, sys\nr = requests.get('http://api.crm.test/v1/py', timeout=10)\nprint(r.status_code)\nsys.exit(0 if r.status_code == 200 else 1)\n";
    let py = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("HTTP_PROXY", format!("http://{proxy}"))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        py.status.success(),
        "python requests failed: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );

    let seen = api.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].uri, "/v1/a");
    assert_eq!(seen[1].uri, "/v1/b");
    assert_eq!(seen[2].uri, "/v1/py");
    assert!(seen
        .iter()
        .all(|s| s.bearer() == Some(idp.issued()[0].as_str())));

    let ready = direct_client()
        .get(format!("http://{}/readyz", bin.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let status: serde_json::Value = serde_json::from_slice(
        &direct_client()
            .get(format!("http://{}/status", bin.admin))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["providers"]["crm"]["has_token"], true);
    assert_eq!(status["routes"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn sigterm_lets_the_slow_request_finish_and_exits_zero() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::slow(Duration::from_millis(1500)).await;
    let mut bin = Binary::start(&routes_yaml(&idp, &api), &[], &[]);
    bin.wait_healthy().await;
    let url = format!("http://{}/crm/slow", bin.proxy);
    let inflight = tokio::spawn(async move {
        direct_client()
            .get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert_eq!(
        api.wait_count(1).await,
        1,
        "the slow request reached the upstream"
    );
    bin.signal("TERM");
    assert_eq!(
        inflight.await.unwrap().unwrap(),
        200,
        "the in-flight request completes"
    );
    bin.assert_exited_cleanly().await;
}

#[tokio::test]
async fn logs_at_trace_never_contain_the_secret_or_a_token() {
    let idp = FakeIdp::builder()
        .then(1, Reply::Status(500, r#"{"error":"server_error"}"#))
        .run()
        .await;
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let api = FakeUpstream::rejecting(rejected.clone()).await;
    for (format, env) in [("text", vec![("RUST_LOG", "trace")]), ("json", vec![])] {
        let mut bin = Binary::start(
            &routes_yaml(&idp, &api),
            &["--log-level", "trace", "--log-format", format],
            &env,
        );
        bin.wait_healthy().await;
        let client = proxied_client(bin.proxy);
        assert_eq!(
            client
                .get("http://api.crm.test/a")
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        // Revoke the current token: the next request is answered 401, renewed and replayed.
        rejected.lock().unwrap().extend(idp.issued());
        assert_eq!(
            client
                .post("http://api.crm.test/b")
                .body("payload")
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let h2 = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        assert_eq!(
            h2.get(format!("http://{}/crm/h2", bin.proxy))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        direct_client()
            .get(format!("http://{}/status", bin.admin))
            .send()
            .await
            .unwrap();
        bin.signal("TERM");
        assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
        let logs = bin.stderr();
        assert!(
            logs.contains("token fetched"),
            "trace logs were captured:\n{logs}"
        );
        assert!(
            logs.contains("replayed=true") || logs.contains("\"replayed\":true"),
            "{logs}"
        );
        assert!(
            !logs.contains(CLIENT_SECRET),
            "the client secret leaked into the {format} logs"
        );
        for token in idp.issued() {
            assert!(
                !logs.contains(&token),
                "a token leaked into the {format} logs"
            );
        }
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("svc:{CLIENT_SECRET}"),
        );
        assert!(
            !logs.contains(&basic),
            "the Basic credentials leaked into the {format} logs"
        );
    }
}
