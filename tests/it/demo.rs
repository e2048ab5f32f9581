//! `token-sidecar demo` as a new user meets it (issue 13): the real binary prints a tour,
//! and every command it prints runs, as printed, in `sh -c` and does what the tour says.
//! Loopback only: the demo's IdP, API, proxy and admin all listen on 127.0.0.1.

use crate::support::direct_client;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a printed section promises, keyed by its number (`# 1.`, `# 2.`, ...).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// "the API alone refuses you": HTTP 401 from the demo API.
    Refused,
    /// Forward or reverse proxy: the demo API's greeting, with the demo IdP's claims.
    Greeting,
    /// "what the sidecar knows (never the token itself)": JSON, no error, no token.
    AdminJson,
}

fn expectation(section: u32) -> Expect {
    match section {
        1 => Expect::Refused,
        2 | 3 => Expect::Greeting,
        4 => Expect::AdminJson,
        n => panic!("the demo printed a section {n} this test does not know: add it here"),
    }
}

/// The demo as a child process, stdout and stderr in files; killed on drop.
struct Demo {
    child: Child,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
            .arg("demo")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env_remove("RUST_LOG")
            .spawn()
            .unwrap();
        Demo { child, dir }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The address the tour gives for `label` (`proxy`, `admin`, ...), once printed.
    async fn address(&mut self, label: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.stdout().lines().find_map(|l| {
                let rest = l.trim_start().strip_prefix(label)?;
                let url = rest.split_whitespace().next()?;
                url.strip_prefix("http://")?.split('/').next()?.parse().ok()
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the demo exited with {status}: {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no `{label}` address in the demo's output:\n{}{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The commands after "Try it:", each with the number of the section it is printed in.
fn printed_commands(stdout: &str) -> Vec<(u32, String)> {
    let mut section = 0;
    let mut commands = Vec::new();
    for line in stdout.lines().skip_while(|l| l.trim() != "Try it:").skip(1) {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if let Some((n, _)) = comment.trim_start().split_once('.') {
                if let Ok(n) = n.parse() {
                    section = n;
                }
            }
        } else if !line.is_empty() {
            assert!(section > 0, "a command before the first section: {line}");
            commands.push((section, line.to_string()));
        }
    }
    commands
}

/// Runs `command` with `sh -c`, in an environment without proxy variables (as a new
/// user's shell would be), and returns its stdout.
fn run_as_printed(command: &str) -> String {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(command).stdin(Stdio::null());
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        sh.env_remove(var);
    }
    let out = sh.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "`{command}` failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn check(expect: Expect, command: &str, stdout: &str) {
    match expect {
        Expect::Refused => {
            let status = stdout.lines().next().unwrap_or_default();
            assert!(
                status.starts_with("HTTP/") && status.contains(" 401"),
                "`{command}` should show the API's 401:\n{stdout}"
            );
        }
        Expect::Greeting => {
            let body: serde_json::Value = serde_json::from_str(stdout)
                .unwrap_or_else(|e| panic!("`{command}` printed no JSON ({e}):\n{stdout}"));
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("valid bearer token")),
                "`{command}`: {body:#}"
            );
            assert_eq!(
                body["token_claims"]["iss"], "token-sidecar-demo-idp",
                "`{command}`: {body:#}"
            );
            assert_eq!(body["token_claims"]["scope"], "echo.read", "{body:#}");
        }
        Expect::AdminJson => {
            let body: serde_json::Value = serde_json::from_str(stdout)
                .unwrap_or_else(|e| panic!("`{command}` printed no JSON ({e}):\n{stdout}"));
            assert!(body.get("error").is_none(), "`{command}`: {body:#}");
            // Demo tokens end in `.demo-signature`; their header starts `eyJ` ('{"').
            assert!(
                !stdout.contains("demo-signature") && !stdout.contains("eyJ"),
                "`{command}` shows a token: {stdout}"
            );
        }
    }
}

#[tokio::test]
async fn every_command_the_demo_prints_runs_as_printed_and_does_what_it_says() {
    // Take the demo's preferred ports when they are free, so it must fall back (and a
    // developer's own demo or Linkerd on 4480/4481 cannot break this test either).
    let held: Vec<_> = [4480, 4481]
        .iter()
        .filter_map(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).ok())
        .collect();
    let mut demo = Demo::start();
    let proxy = demo.address("proxy").await;
    let admin = demo.address("admin").await;
    for l in &held {
        let port = l.local_addr().unwrap().port();
        assert!(
            proxy.port() != port && admin.port() != port,
            "the demo fell back from the taken port {port}: proxy {proxy}, admin {admin}"
        );
    }
    assert!(proxy.ip().is_loopback() && admin.ip().is_loopback());

    // The tour is printed before the proxy starts: once /readyz answers 200 (the demo
    // provider prefetches), stdout holds all of it.
    let client = direct_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo never became ready: {}",
            demo.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let commands = printed_commands(&demo.stdout());
    let sections: Vec<u32> = commands.iter().map(|(s, _)| *s).collect();
    for s in 1..=4 {
        assert!(
            sections.contains(&s),
            "section {s} has no command:\n{}",
            demo.stdout()
        );
    }
    for (section, command) in &commands {
        let out = tokio::task::spawn_blocking({
            let command = command.clone();
            move || run_as_printed(&command)
        })
        .await
        .unwrap();
        check(expectation(*section), command, &out);
    }
    // The forward proxy both ways a user may know (`-x`, and curl's lowercase variable).
    assert!(commands
        .iter()
        .any(|(_, c)| c.starts_with(&format!("http_proxy=http://{proxy} curl "))));
    assert!(commands
        .iter()
        .any(|(_, c)| c.contains(&format!("-x http://{proxy} "))));

    // Ctrl-C (SIGINT) stops it cleanly.
    let ok = Command::new("kill")
        .arg("-INT")
        .arg(demo.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo ignored Ctrl-C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}: {}", demo.stderr());
}

#[test]
fn the_command_parser_keeps_sections_and_skips_comments() {
    let out = "banner\n  proxy http://127.0.0.1:1\n\nTry it:\n\n  # 1. a:\n  curl -i http://x/\n\n  # 2. b\n  #    more of b\n  curl -x http://p http://h/\n  http_proxy=http://p curl http://h/\n";
    assert_eq!(
        printed_commands(out),
        [
            (1, "curl -i http://x/".to_string()),
            (2, "curl -x http://p http://h/".to_string()),
            (2, "http_proxy=http://p curl http://h/".to_string()),
        ]
    );
}
