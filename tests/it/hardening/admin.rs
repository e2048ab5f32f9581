//! SPEC §7: probes answer anyone, control endpoints only loopback peers or the bearer of
//! `admin_token_file`'s token; HEAD wherever GET; 405 with `Allow`; manual refresh at
//! most once a second per provider.
//!
//! A peer that is not loopback is a socket bound to one of this machine's other
//! addresses, connecting to 127.0.0.1: nothing leaves the machine. Without such an
//! address that part is skipped, and says so.

use super::{outside_ip, start, start_at, Conn, Resp};
use crate::support::sidecar::Binary;
use crate::support::{direct_client, provider_yaml, FakeIdp};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Providers `x` (which exposes its token) and `y`, and one route.
fn config(idp: &FakeIdp, top: &str) -> String {
    format!(
        "{top}providers:\n{}{}routes:\n  - match: {{ host: api.test }}\n    provider: x\n    upstream: http://127.0.0.1:9\n",
        provider_yaml("x", idp, "    expose_token: true\n"),
        provider_yaml("y", idp, "")
    )
}

/// A connection to `admin` (on 127.0.0.1) whose source address is `from`.
async fn connect_from(from: IpAddr, admin: SocketAddr) -> Option<Conn> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(from, 0)).ok()?;
    socket.connect(admin).await.ok().map(Conn::over)
}

/// `method path` with `headers` from `from`, on a fresh connection.
async fn ask_from(
    from: IpAddr,
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> Resp {
    let mut c = connect_from(from, admin)
        .await
        .expect("connecting from the outside address worked a moment ago");
    c.send(format!(
        "{method} {path} HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 0\r\n{headers}\r\n"
    ))
    .await;
    c.response().await
}

/// The outside address, if this machine has one and may connect from it to loopback.
async fn outside_peer(bin: &Binary, test: &str) -> Option<IpAddr> {
    let Some(ip) = outside_ip() else {
        eprintln!("SKIPPED part of {test}: this machine has no non-loopback address to be an outside peer from");
        return None;
    };
    if connect_from(ip, bin.admin).await.is_none() {
        eprintln!(
            "SKIPPED part of {test}: cannot connect from {ip} to {}",
            bin.admin
        );
        return None;
    }
    Some(ip)
}

const CONTROL: [(&str, &str); 4] = [
    ("GET", "/status"),
    ("POST", "/reload"),
    ("POST", "/providers/x/refresh"),
    ("GET", "/providers/x/token"),
];

fn assert_forbidden(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 403, "{what}: {resp:?}");
    assert_eq!(resp.json()["error"], "forbidden", "{what}: {resp:?}");
    assert!(!resp.text().contains("access_token"), "{what}: {resp:?}");
}

/// Issue 10: with the admin on 0.0.0.0, any pod could read `/status`, reload, refresh
/// and read an exposed token. Now only probes answer a non-loopback peer.
#[tokio::test]
async fn control_endpoints_answer_only_loopback_peers() {
    let idp = FakeIdp::builder().run().await;
    let bin = start_at("127.0.0.1", "0.0.0.0", &config(&idp, "")).await;
    if let Some(ip) = outside_peer(&bin, "control_endpoints_answer_only_loopback_peers").await {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let resp = ask_from(ip, bin.admin, "GET", path, "").await;
            assert_eq!(resp.status, 200, "{path} from {ip}: {resp:?}");
        }
        for (method, path) in CONTROL {
            let resp = ask_from(ip, bin.admin, method, path, "").await;
            assert_forbidden(&resp, &format!("{method} {path} from {ip}"));
        }
        assert_eq!(
            idp.requests(),
            0,
            "a refused control request reached the IdP"
        );
    }
    // The same endpoints from loopback.
    for (method, path) in CONTROL {
        let mut c = Conn::open(bin.admin).await;
        c.send(format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
        let resp = c.response().await;
        assert_eq!(resp.status, 200, "{method} {path} from loopback: {resp:?}");
    }
}

/// With `admin_token_file`, a non-loopback peer presenting that token as a Bearer may
/// use the control endpoints; a missing or wrong one gets 403. The token is never logged.
#[tokio::test]
async fn the_admin_token_opens_control_endpoints_to_other_peers() {
    let idp = FakeIdp::builder().run().await;
    let dir = tempfile::tempdir().unwrap();
    let token = "adm1n-t0ken-7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b";
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let top = format!("admin_token_file: {}\n", file.display());
    let bin = start_at("127.0.0.1", "0.0.0.0", &config(&idp, &top)).await;
    let test = "the_admin_token_opens_control_endpoints_to_other_peers";
    let Some(ip) = outside_peer(&bin, test).await else {
        return;
    };
    for (method, path) in CONTROL {
        for wrong in [
            String::new(),
            "Authorization: Bearer wrong-token\r\n".to_string(),
            format!("Authorization: Bearer {}\r\n", &token[..token.len() - 1]),
            format!("Authorization: Basic {token}\r\n"),
        ] {
            let resp = ask_from(ip, bin.admin, method, path, &wrong).await;
            assert_forbidden(&resp, &format!("{method} {path} with {wrong:?}"));
        }
    }
    assert_eq!(idp.requests(), 0);
    let right = format!("Authorization: Bearer {token}\r\n");
    for (method, path) in CONTROL {
        let resp = ask_from(ip, bin.admin, method, path, &right).await;
        assert_eq!(
            resp.status, 200,
            "{method} {path} with the admin token: {resp:?}"
        );
    }
    assert!(!bin.stderr().contains(token), "the admin token was logged");
}

fn allow_set(resp: &Resp) -> Vec<String> {
    let mut methods: Vec<String> = resp
        .header("allow")
        .unwrap_or_else(|| panic!("405 without Allow: {resp:?}"))
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    methods.sort();
    methods
}

/// HEAD works wherever GET does (a head, no body); a known path with the wrong method
/// gets 405 and `Allow`.
#[tokio::test]
async fn head_works_where_get_does_and_wrong_methods_get_405() {
    let idp = FakeIdp::builder().run().await;
    let bin = start(&config(&idp, "")).await;
    for path in ["/healthz", "/readyz", "/metrics", "/status"] {
        let mut c = Conn::open(bin.admin).await;
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
            .await;
        let head = c.head_response().await;
        assert_eq!(head.status, 200, "HEAD {path}: {head:?}");
        // The connection stays usable: the HEAD answer had no body on the wire.
        c.send(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
            .await;
        let get = c.response().await;
        assert_eq!(get.status, 200, "GET {path} after HEAD: {get:?}");
        assert!(!get.body.is_empty());
    }
    for (method, path, allow) in [
        ("POST", "/healthz", &["GET", "HEAD"][..]),
        ("DELETE", "/status", &["GET", "HEAD"]),
        ("PUT", "/metrics", &["GET", "HEAD"]),
        ("POST", "/providers/x/token", &["GET", "HEAD"]),
        ("GET", "/reload", &["POST"]),
        ("HEAD", "/reload", &["POST"]),
        ("GET", "/providers/x/refresh", &["POST"]),
    ] {
        let mut c = Conn::open(bin.admin).await;
        c.send(format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
        let resp = match method {
            "HEAD" => c.head_response().await,
            _ => c.response().await,
        };
        assert_eq!(resp.status, 405, "{method} {path}: {resp:?}");
        assert_eq!(allow_set(&resp), allow, "{method} {path}");
    }
    assert_eq!(idp.requests(), 0, "a refused method still fetched a token");
}

/// Issue 10, "Unthrottled refresh": 50 `POST /providers/x/refresh` made 50 IdP requests.
/// Now one fetch per provider per second; the rest get 429 with `Retry-After`.
#[tokio::test]
async fn manual_refresh_is_throttled_per_provider() {
    let idp = FakeIdp::builder().run().await;
    let bin = start(&config(&idp, "")).await;
    let client = direct_client();
    let url = format!("http://{}/providers/x/refresh", bin.admin);
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..50).map(|_| async {
        let r = client.post(&url).send().await.unwrap();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), retry_after)
    }))
    .await;
    // One refresh may start per second: within the time the 50 took, at most this many.
    let allowed = 1 + started.elapsed().as_secs() as usize;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let throttled: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(ok >= 1 && ok <= allowed.min(2), "{answers:?}");
    assert_eq!(ok + throttled.len(), 50, "{answers:?}");
    for (_, retry_after) in &throttled {
        let secs: u64 = retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("429 without a Retry-After in seconds: {answers:?}"));
        assert!((1..=2).contains(&secs), "{answers:?}");
    }
    assert!(
        idp.requests() == ok,
        "{} IdP requests for 50 refreshes, {ok} of them allowed",
        idp.requests()
    );
    // Per provider: y is not held back by x, and x may refresh again a second later.
    assert_eq!(
        client
            .post(format!("http://{}/providers/y/refresh", bin.admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(client.post(&url).send().await.unwrap().status(), 200);
}

/// A web page can reach the admin too: through DNS rebinding (its own name now resolves to
/// 127.0.0.1, so the request arrives from a loopback peer with `Host: evil.test`, and the
/// page may read the answer) or as a cross-site "simple" POST (CSRF). SPEC §4's browser
/// rules are written for routes; the control endpoints need them as much (an exposed
/// token would be handed to the page).
#[tokio::test]
async fn web_pages_cannot_use_the_admin_control_endpoints() {
    let idp = FakeIdp::builder().run().await;
    let bin = start(&config(&idp, "")).await;
    let port = bin.admin.port();
    for (method, path) in CONTROL {
        for headers in [
            format!("Host: evil.test:{port}\r\n"),
            format!("Host: 127.0.0.1:{port}\r\nSec-Fetch-Site: cross-site\r\n"),
            format!("Host: 127.0.0.1:{port}\r\nOrigin: https://evil.test\r\n"),
        ] {
            let mut c = Conn::open(bin.admin).await;
            c.send(format!(
                "{method} {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\n\r\n"
            ))
            .await;
            let resp = c.response().await;
            assert_eq!(
                resp.status, 403,
                "{method} {path} with {headers:?}: {resp:?}"
            );
            assert!(!resp.text().contains("access_token"));
        }
    }
    assert_eq!(idp.requests(), 0);
}
