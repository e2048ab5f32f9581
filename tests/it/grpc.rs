//! A real gRPC client and server (Python `grpcio`, scripts in `tests/it/grpc/`) through
//! the sidecar: with `http_proxy` (grpcio sends CONNECT and speaks h2c inside: SPEC §4
//! Plaintext HTTP inside CONNECT), and with the sidecar as the target address (h2c to a
//! reverse-proxy route). Unary and server-streaming calls carry the injected token; an
//! `UNAUTHENTICATED` answer comes back to the client as it is, not replayed.

use crate::support::*;
use serde_json::Value;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/grpc")
        .join(name)
}

/// Proxy settings a child could inherit from the test's environment; each child gets
/// only what the test gives it.
const PROXY_VARS: [&str; 10] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "grpc_proxy",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "no_grpc_proxy",
];

fn python(script_name: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(script(script_name));
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// The gRPC server, killed (by its PID) when dropped.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    async fn start() -> GrpcServer {
        let mut child = python("server.py")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        // The first line is the port; an empty read means the script died (no grpcio?).
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            line
        });
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), line)
            .await
            .expect("the gRPC server starts within 30 s")
            .unwrap();
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the gRPC server did not start (is grpcio installed? ./test.sh installs it): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        GrpcServer {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the client against `target`, with `env` (and no other proxy setting), and
/// returns its JSON report. The client bounds every call (20 s); the wait is bounded too.
async fn run_client(target: String, env: Vec<(&'static str, String)>) -> Value {
    let mut cmd = python("client.py");
    cmd.arg(&target)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("python3 runs");
    let pid = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let out = match tokio::time::timeout(std::time::Duration::from_secs(90), waiting).await {
        Ok(out) => out.unwrap().unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the gRPC client did not finish within 90 s");
        }
    };
    assert!(
        out.status.success(),
        "client: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// What every test expects of the client's report: the token on the unary call and on
/// every streamed message, and `UNAUTHENTICATED` passed back once, not replayed.
fn assert_report(report: &Value, token: &str) {
    let bearer = format!("Bearer {token}");
    let unary = &report["unary"];
    assert_eq!(unary["ok"], true, "{report}");
    assert_eq!(unary["value"]["auth"], bearer.as_str(), "{report}");
    assert_eq!(unary["value"]["req"], "hello");
    let stream = report["stream"]["value"]
        .as_array()
        .expect("streamed messages");
    assert_eq!(stream.len(), 3, "{report}");
    for (i, m) in stream.iter().enumerate() {
        assert_eq!(m["i"], i as u64);
        assert_eq!(m["auth"], bearer.as_str(), "{report}");
    }
    assert_eq!(report["deny"]["ok"], false, "{report}");
    assert_eq!(report["deny"]["code"], "UNAUTHENTICATED", "{report}");
    assert_eq!(report["deny"]["details"], "token rejected", "{report}");
    assert_eq!(report["denied"]["value"], 1, "no replay: {report}");
}

async fn metrics(sc: &TestSidecar) -> String {
    direct_client()
        .get(sc.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn grpc_through_http_proxy_gets_the_token() {
    let idp = FakeIdp::builder().run().await;
    let server = GrpcServer::start().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - name: grpc\n    match: {{ host: '{}' }}\n    provider: crm\n",
        provider_yaml("crm", &idp, ""),
        server.addr
    ))
    .await;
    let report = run_client(
        server.addr.to_string(),
        vec![("http_proxy", format!("http://{}", sc.proxy))],
    )
    .await;
    assert_report(&report, &idp.issued()[0]);
    let m = metrics(&sc).await;
    assert!(
        m.contains("token_sidecar_tunnels_total{kind=\"plaintext\"} 1"),
        "grpcio went through a CONNECT tunnel: {m}"
    );
    assert!(
        m.contains("token_sidecar_requests_total{route=\"grpc\",status=\"200\"} 4"),
        "{m}"
    );
    assert_eq!(
        idp.requests(),
        1,
        "one token, no renewal for UNAUTHENTICATED"
    );
    sc.stop().await;
}

#[tokio::test]
async fn grpc_with_the_sidecar_as_target_gets_the_token() {
    let idp = FakeIdp::builder().run().await;
    let server = GrpcServer::start().await;
    let sc = TestSidecar::start(&format!(
        "providers:\n{}routes:\n  - name: grpc\n    match: {{ path_prefix: /test.Echo }}\n    provider: crm\n    upstream: http://{}\n",
        provider_yaml("crm", &idp, ""),
        server.addr
    ))
    .await;
    let report = run_client(sc.proxy.to_string(), vec![]).await;
    assert_report(&report, &idp.issued()[0]);
    let m = metrics(&sc).await;
    assert!(
        m.contains("token_sidecar_requests_total{route=\"grpc\",status=\"200\"} 4"),
        "{m}"
    );
    assert!(
        m.contains("token_sidecar_tunnels_total{kind=\"plaintext\"} 0"),
        "{m}"
    );
    sc.stop().await;
}
