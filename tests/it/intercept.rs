//! HTTPS through HTTPS_PROXY: TLS interception of CONNECT to routed hosts, blind tunnels
//! for the rest, WebSocket upgrades; with reqwest in-process and curl / Python requests
//! against the real binary.

use crate::support::sidecar::Binary;
use crate::support::tls::TestCa;
use crate::support::*;
use bytes::Bytes;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A sidecar intercepting `api` (an HTTPS upstream on 127.0.0.1 trusted via `upstream_ca`).
fn config(
    sidecar_ca: &TestCa,
    upstream_ca: &TestCa,
    idp: &FakeIdp,
    api: &FakeUpstream,
    route_extra: &str,
) -> String {
    format!(
        "{}providers:\n{}routes:\n  - name: api\n    match: {{ host: '{}' }}\n    provider: crm\n    ca_file: {}\n{route_extra}",
        sidecar_ca.intercept_yaml(),
        provider_yaml("crm", idp, ""),
        api.addr,
        upstream_ca.cert_path().display()
    )
}

#[tokio::test]
async fn intercepted_https_gets_the_token_over_http1_and_h2() {
    let (sidecar_ca, upstream_ca) = (TestCa::new("sidecar CA"), TestCa::new("upstream CA"));
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::tls(&upstream_ca, |_, _| {
        (200, vec![], Bytes::from_static(b"secure ok"))
    })
    .await;
    let sc = TestSidecar::start(&config(&sidecar_ca, &upstream_ca, &idp, &api, "")).await;
    for (alpn, version) in [
        (&[&b"http/1.1"[..]][..], http::Version::HTTP_11),
        (&[&b"h2"[..]][..], http::Version::HTTP_2),
    ] {
        let client = sidecar_ca.https_client_via(sc.proxy, alpn);
        let resp = client
            .get(format!("{}/v1/secret?x=1", api.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version, "inside the tunnel");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "secure ok");
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(
            s.bearer(),
            Some(idp.issued()[0].as_str()),
            "the upstream saw the token"
        );
        assert!(s.uri.ends_with("/v1/secret?x=1"), "{}", s.uri);
    }
    let metrics = direct_client()
        .get(sc.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("token_sidecar_tunnels_total{kind=\"intercepted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("token_sidecar_requests_total{route=\"api\",status=\"200\"} 2"),
        "{metrics}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn a_401_inside_the_tunnel_is_renewed_and_replayed() {
    let (sidecar_ca, upstream_ca) = (TestCa::new("sidecar CA"), TestCa::new("upstream CA"));
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::tls(&upstream_ca, |_, i| {
        if i == 0 {
            (401, vec![], Bytes::new())
        } else {
            (200, vec![], Bytes::new())
        }
    })
    .await;
    let sc = TestSidecar::start(&config(&sidecar_ca, &upstream_ca, &idp, &api, "")).await;
    let client = sidecar_ca.https_client_via(sc.proxy, &[b"http/1.1"]);
    let resp = client
        .post(format!("{}/orders", api.url()))
        .body("order-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].bearer(), seen[1].bearer());
    assert_eq!(seen[1].body, Bytes::from_static(b"order-1"));
    sc.stop().await;
}

#[tokio::test]
async fn routes_with_intercept_false_and_unrouted_hosts_are_tunnelled_untouched() {
    let (sidecar_ca, upstream_ca) = (TestCa::new("sidecar CA"), TestCa::new("upstream CA"));
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::tls(&upstream_ca, |_, _| {
        (200, vec![], Bytes::from_static(b"direct"))
    })
    .await;
    let sc = TestSidecar::start(&config(
        &sidecar_ca,
        &upstream_ca,
        &idp,
        &api,
        "    intercept: false\n",
    ))
    .await;
    // The client must trust the upstream's own CA: the sidecar did not terminate TLS.
    let client = upstream_ca.https_client_via(sc.proxy, &[b"http/1.1"]);
    let resp = client.get(format!("{}/x", api.url())).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "direct");
    assert!(api.seen()[0].header("authorization").is_none());
    assert_eq!(idp.requests(), 0);
    sc.stop().await;
}

#[tokio::test]
async fn websocket_upgrades_carry_the_token_and_splice_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = FakeIdp::builder().run().await;
    let seen_auth = Arc::new(Mutex::new(None::<String>));
    let echo = serve(upgrade_echo(seen_auth.clone())).await;
    let sc = TestSidecar::start(&format!(
        // The app addresses the sidecar as `app` (a host-less route answers only names
        // the proxy knows as its own: SPEC §4 Browsers).
        "server_names: [app]\nproviders:\n{}routes:\n  - match: {{ path_prefix: /ws }}\n    provider: crm\n    upstream: http://{echo}\n",
        provider_yaml("crm", &idp, "")
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"ping"[..], b"more bytes"] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    assert_eq!(
        seen_auth.lock().unwrap().as_deref(),
        Some(format!("Bearer {}", idp.issued()[0]).as_str())
    );
    sc.stop().await;
}

#[tokio::test]
async fn curl_and_python_requests_through_https_proxy_with_the_real_binary() {
    let upstream_ca = TestCa::new("upstream CA");
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::tls(&upstream_ca, |_, _| {
        (200, vec![], Bytes::from_static(b"hello over tls"))
    })
    .await;
    // The CA comes from the CLI, as an operator would make it.
    let ca_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["ca", "init", "--out"])
        .arg(ca_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for hint in [
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "update-ca-certificates",
        "Secret",
    ] {
        assert!(stdout.contains(hint), "ca init explains {hint}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(ca_dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let again = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["ca", "init", "--out"])
        .arg(ca_dir.path())
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "ca init refuses to overwrite without --force"
    );
    let ca_crt = ca_dir.path().join("ca.crt");
    let yaml = format!(
        "tls_intercept:\n  ca_cert_file: {}\n  ca_key_file: {}\nproviders:\n{}routes:\n  - match: {{ host: '{}' }}\n    provider: crm\n    ca_file: {}\n",
        ca_crt.display(),
        ca_dir.path().join("ca.key").display(),
        provider_yaml("crm", &idp, ""),
        api.addr,
        upstream_ca.cert_path().display()
    );
    let mut bin = Binary::start(&yaml, &[], &[]);
    bin.wait_healthy().await;
    let (proxy, url, ca) = (bin.proxy, format!("{}/curl", api.url()), ca_crt.clone());
    let curl = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "",
                "-x",
                &format!("http://{proxy}"),
                "--cacert",
            ])
            .arg(&ca)
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        curl.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "hello over tls");

    let url = format!("{}/python", api.url());
    let script = format!("import requests\nr = requests.get('{url}', timeout=10)\nprint(r.status_code, r.text)\nassert r.status_code == 200\n");
    let ca = ca_crt.clone();
    let py = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("HTTPS_PROXY", format!("http://{proxy}"))
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        py.status.success(),
        "python: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.bearer() == Some(idp.issued()[0].as_str())),
        "curl and requests both reached the API with the token"
    );
}

/// Reads an HTTP response head from a raw stream.
async fn read_head(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn websockets_reach_tls_upstreams_that_offer_h2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream_ca = TestCa::new("upstream CA");
    let idp = FakeIdp::builder().run().await;
    let seen_auth = Arc::new(Mutex::new(None::<String>));
    // A TLS echo server offering h2 and http/1.1 (like most wss:// servers).
    let echo = serve_tls(
        upgrade_echo(seen_auth.clone()),
        Some(upstream_ca.server_config("127.0.0.1")),
    )
    .await;
    let sc = TestSidecar::start(&format!(
        "server_names: [app]\nproviders:\n{}routes:\n  - match: {{ path_prefix: /ws }}\n    provider: crm\n    upstream: https://{echo}\n    ca_file: {}\n",
        provider_yaml("crm", &idp, ""),
        upstream_ca.cert_path().display()
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    s.write_all(b"over tls").await.unwrap();
    let mut back = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"over tls");
    assert_eq!(
        seen_auth.lock().unwrap().as_deref(),
        Some(format!("Bearer {}", idp.issued()[0]).as_str())
    );
    let metrics = direct_client()
        .get(sc.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("token_sidecar_tunnels_total{kind=\"upgrade\"} 1"),
        "{metrics}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn unrouted_connect_is_refused_under_deny() {
    use tokio::io::AsyncWriteExt;
    let sidecar_ca = TestCa::new("sidecar CA");
    let idp = FakeIdp::builder().run().await;
    let sc = TestSidecar::start(&format!(
        "unmatched: deny\n{}providers:\n{}routes:\n  - match: {{ host: api.example.com }}\n    provider: crm\n",
        sidecar_ca.intercept_yaml(),
        provider_yaml("crm", &idp, "")
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(
        b"CONNECT elsewhere.example.com:443 HTTP/1.1\r\nHost: elsewhere.example.com:443\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(head.contains("x-token-sidecar-error: no_route"), "{head}");
    sc.stop().await;
}

#[test]
fn ca_init_force_replaces_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |force: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_token-sidecar"));
        cmd.args(["ca", "init", "--out"]).arg(dir.path());
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    assert!(run(false).status.success());
    let first = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    assert!(!run(false).status.success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        first,
        "untouched without --force"
    );
    assert!(run(true).status.success());
    assert_ne!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        first,
        "replaced with --force"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temp files left: {names:?}");
}
