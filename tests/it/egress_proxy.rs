//! SPEC §11: token requests and upstream traffic through a corporate proxy (`CONNECT` for
//! TLS, absolute-form for plain http, Basic `Proxy-Authorization` from the first
//! request), `no_proxy` as the only bypass, route over provider over top level, and the
//! proxy's password in no answer and no log line.
//!
//! The fake proxy resolves every name to loopback and nothing else does: a request to
//! `api.corp.example` that succeeds went through it.

use crate::support::corp_proxy::CorpProxy;
use crate::support::sidecar::Binary;
use crate::support::tls::TestCa;
use crate::support::*;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod decisions;
mod speaks_first;

const USER: &str = "svc-sidecar";
/// Needs percent-encoding in a URL: checks the decoding.
const PASSWORD: &str = "p@ss:w0rd/%";

/// An HTTPS server for `name` (certificate from `ca`) that records each request's
/// `Authorization` and answers 200.
async fn https_api(ca: &TestCa, name: &str) -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let addr = serve_tls(
        move |req: Request<Incoming>| {
            let s = s.clone();
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                s.lock().unwrap().push(auth);
                Response::new(body("ok"))
            }
        },
        Some(ca.server_config(name)),
    )
    .await;
    (addr, seen)
}

fn provider(name: &str, token_url: &str, extra: &str) -> String {
    format!("  {name}:\n    token_url: {token_url}\n    client_id: svc\n    client_secret: {CLIENT_SECRET}\n{extra}")
}

async fn get(sc: &TestSidecar, path: &str) -> (u16, String) {
    let resp = direct_client().get(sc.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn tls_token_and_upstream_requests_go_through_connect_with_basic_auth() {
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let ca = TestCa::new("corp test ca");
    let idp = FakeIdp::builder()
        .tls(ca.server_config("idp.corp.example"))
        .run()
        .await;
    let (api, seen) = https_api(&ca, "api.corp.example").await;
    let ca_file = ca.cert_path().display().to_string();
    let yaml = format!(
        "egress_proxy: {}\nproviders:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, provider: crm, upstream: 'https://api.corp.example:{}', ca_file: {ca_file} }}\n",
        corp.url(),
        provider("crm", &format!("https://idp.corp.example:{}/oauth2/token", idp.addr.port()), &format!("    ca_file: {ca_file}\n")),
        api.port(),
    );
    let sc = TestSidecar::start(&yaml).await;
    for _ in 0..2 {
        let (status, text) = get(&sc, "/api/x").await;
        assert_eq!(status, 200, "{text}");
    }
    let token = idp.issued()[0].clone();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some(format!("Bearer {token}")); 2]
    );
    assert_eq!(
        corp.connects(),
        [
            format!("idp.corp.example:{}", idp.addr.port()),
            format!("api.corp.example:{}", api.port())
        ],
        "one tunnel to the IdP, one pooled tunnel to the API"
    );
    // Credentials on the first CONNECT already: no 407 round trip.
    assert!(
        corp.seen()
            .iter()
            .all(|s| s.accepted && s.auth.as_deref() == Some(corp.expected_auth().as_str())),
        "{:?}",
        corp.seen()
    );
    sc.stop().await;
}

#[tokio::test]
async fn plain_http_token_and_upstream_requests_go_in_absolute_form() {
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let yaml = format!(
        "egress_proxy: {}\nproviders:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, provider: crm, upstream: 'http://api.corp.example:{}', allow_http: true }}\n",
        corp.url(),
        provider("crm", &format!("http://idp.corp.example:{}/oauth2/token", idp.addr.port()), "    allow_http: true\n"),
        api.addr.port(),
    );
    let sc = TestSidecar::start(&yaml).await;
    for _ in 0..2 {
        let (status, text) = get(&sc, "/api/x?q=1").await;
        assert_eq!(status, 200, "{text}");
    }
    let api_uri = format!("http://api.corp.example:{}/api/x?q=1", api.addr.port());
    assert_eq!(
        corp.forwards(),
        [
            format!("http://idp.corp.example:{}/oauth2/token", idp.addr.port()),
            api_uri.clone(),
            api_uri
        ]
    );
    assert!(corp.connects().is_empty());
    assert!(corp
        .seen()
        .iter()
        .all(|s| s.accepted && s.auth.as_deref() == Some(corp.expected_auth().as_str())));
    let seen = api.seen();
    assert_eq!(seen[1].bearer(), Some(idp.issued()[0].as_str()));
    assert_eq!(
        seen[0].header("host"),
        Some(format!("api.corp.example:{}", api.addr.port()).as_str())
    );
    // The app's own Proxy-Authorization never leaves (hop-by-hop); ours goes to the proxy.
    let resp = direct_client()
        .get(sc.url("/api/y"))
        .header("proxy-authorization", "Basic YXBwOmFwcA==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        corp.seen().last().unwrap().auth.as_deref(),
        Some(corp.expected_auth().as_str())
    );
    sc.stop().await;
}

#[tokio::test]
async fn no_proxy_is_the_only_bypass() {
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let port = api.addr.port();
    let route = |name: &str, upstream: String, extra: &str| {
        format!("  - {{ name: {name}, match: {{ path_prefix: /{name} }}, provider: crm, upstream: '{upstream}', allow_http: true{extra} }}\n")
    };
    let yaml = format!(
        "egress_proxy: {}\nno_proxy: [.internal.example, localhost, '127.0.0.0/8', '[::1]']\nproviders:\n{}routes:\n{}{}{}{}{}{}{}",
        corp.url(),
        provider("crm", &idp.token_url(), ""),
        route("cidr", format!("http://127.0.0.1:{port}"), ""),
        route("name", format!("http://localhost:{port}"), ""),
        route("suffix", format!("http://api.internal.example:{port}"), ""),
        route("apex", format!("http://internal.example:{port}"), ""),
        route("star", format!("http://internal.example:{port}"), ", no_proxy: ['*.internal.example']"),
        route("exact", format!("http://127.0.0.1:{port}"), ", no_proxy: ['127.0.0.1']"),
        route("loopback", format!("http://127.0.0.1:{port}"), ", no_proxy: []"),
    );
    let sc = TestSidecar::start(&yaml).await;
    // The IdP (127.0.0.1) is listed, so its token request went directly.
    for path in ["/cidr/a", "/name/a", "/exact/a"] {
        let (status, text) = get(&sc, path).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    assert!(corp.seen().is_empty(), "{:?}", corp.seen());
    // A listed suffix is reached directly, so the sidecar looks the name up itself: it
    // does not exist outside the fake proxy. `.internal.example` lists the name itself
    // too (as curl and Python read it).
    for path in ["/suffix/a", "/apex/a"] {
        let (status, text) = get(&sc, path).await;
        assert_eq!(status, 502, "{path}: {text}");
    }
    assert!(corp.seen().is_empty(), "{:?}", corp.seen());
    // `*.internal.example` is only the names below it; and loopback is not special once
    // a route's own list leaves it out.
    for path in ["/star/a", "/loopback/a"] {
        let (status, text) = get(&sc, path).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    assert_eq!(
        corp.forwards(),
        [
            format!("http://internal.example:{port}/star/a"),
            format!("http://127.0.0.1:{port}/loopback/a")
        ]
    );
    assert_eq!(idp.requests(), 1);
    sc.stop().await;
}

#[tokio::test]
async fn route_over_provider_over_top_level() {
    let (top, prov, route) = (
        CorpProxy::start(USER, "top").await,
        CorpProxy::start(USER, "provider").await,
        CorpProxy::start(USER, "route").await,
    );
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let (ip, ap) = (idp.addr.port(), api.addr.port());
    let token_url = format!("http://idp.corp.example:{ip}/oauth2/token");
    let yaml = format!(
        "egress_proxy: {}\nproviders:\n{}{}routes:\n  - {{ name: one, match: {{ path_prefix: /one }}, provider: p1, upstream: 'http://one.example:{ap}', allow_http: true }}\n  - {{ name: two, match: {{ path_prefix: /two }}, provider: p2, upstream: 'http://two.example:{ap}', allow_http: true }}\n  - {{ name: three, match: {{ path_prefix: /three }}, provider: p2, upstream: 'http://three.example:{ap}', allow_http: true, egress_proxy: '{}' }}\n",
        top.url(),
        provider("p1", &token_url, "    allow_http: true\n"),
        provider("p2", &token_url, &format!("    allow_http: true\n    egress_proxy: {}\n    scopes: [two]\n", prov.url())),
        route.url(),
    );
    let sc = TestSidecar::start(&yaml).await;
    for path in ["/one/x", "/two/x", "/three/x"] {
        let (status, text) = get(&sc, path).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    assert_eq!(
        top.forwards(),
        [token_url.clone(), format!("http://one.example:{ap}/one/x")]
    );
    assert_eq!(
        prov.forwards(),
        [token_url, format!("http://two.example:{ap}/two/x")]
    );
    assert_eq!(
        route.forwards(),
        [format!("http://three.example:{ap}/three/x")]
    );
    sc.stop().await;
}

#[tokio::test]
async fn unmatched_traffic_leaves_by_the_top_level_proxy() {
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!("egress_proxy: {}\n", corp.url())).await;
    let target = format!("http://unrouted.example:{}/x", api.addr.port());
    let resp = proxied_client(sc.proxy).get(&target).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(corp.forwards(), [target]);
    assert_eq!(api.seen()[0].header("authorization"), None);
    sc.stop().await;
}

#[tokio::test]
async fn unmatched_connect_tunnels_leave_by_the_top_level_proxy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let api = FakeUpstream::ok().await;
    let sc = TestSidecar::start(&format!("egress_proxy: {}\n", corp.url())).await;
    let authority = format!("unrouted.example:{}", api.addr.port());
    let mut tcp = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(connect.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The tunnel is blind: the bytes reach the API through the corporate proxy as sent.
    tcp.write_all(b"GET /blind HTTP/1.1\r\nHost: unrouted.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert_eq!(corp.connects(), [authority]);
    assert_eq!(api.seen()[0].header("authorization"), None);
    sc.stop().await;
}

#[tokio::test]
async fn upgrades_go_through_a_tunnel_also_to_plain_http() {
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let idp = FakeIdp::builder().run().await;
    let auth = Arc::new(Mutex::new(None));
    let ws = serve(upgrade_echo(auth.clone())).await;
    let yaml = format!(
        "egress_proxy: {}\nno_proxy: ['127.0.0.1']\nproviders:\n{}routes:\n  - {{ name: ws, match: {{ path_prefix: /ws }}, provider: crm, upstream: 'http://ws.corp.example:{}', allow_http: true }}\n",
        corp.url(),
        provider("crm", &idp.token_url(), ""),
        ws.port(),
    );
    let sc = TestSidecar::start(&yaml).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!(corp.connects(), [format!("ws.corp.example:{}", ws.port())]);
    assert_eq!(
        auth.lock().unwrap().clone(),
        Some(format!("Bearer {}", idp.issued()[0]))
    );
    sc.stop().await;
}

#[tokio::test]
async fn a_changed_egress_proxy_applies_on_reload() {
    let (first, second) = (
        CorpProxy::start(USER, "one").await,
        CorpProxy::start(USER, "two").await,
    );
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let token_url = format!("http://idp.corp.example:{}/oauth2/token", idp.addr.port());
    let yaml = |proxy: &CorpProxy| {
        format!(
            "egress_proxy: {}\nproviders:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, provider: crm, upstream: 'http://api.corp.example:{}', allow_http: true }}\n",
            proxy.url(),
            provider("crm", &token_url, "    allow_http: true\n"),
            api.addr.port()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, yaml(&first)).unwrap();
    let sc = TestSidecar::start_file(&path).await;
    assert_eq!(get(&sc, "/api/x").await.0, 200);
    std::fs::write(&path, yaml(&second)).unwrap();
    let resp = direct_client()
        .post(sc.admin_url("/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(get(&sc, "/api/y").await.0, 200);
    assert_eq!(first.forwards().len(), 2, "{:?}", first.forwards());
    // The provider's IdP client was rebuilt with the new proxy (a new token source), and
    // the route's pool too.
    assert_eq!(
        second.forwards(),
        [
            token_url.clone(),
            format!("http://api.corp.example:{}/api/y", api.addr.port())
        ]
    );
    assert_eq!(idp.requests(), 2);
    sc.stop().await;
}

/// Wrong credentials: 502 `upstream_unavailable` naming the proxy (tunnel and
/// absolute-form alike), a token error for the IdP, and the password in no answer, no
/// `/status` and no log line, at trace level.
#[tokio::test]
async fn wrong_credentials_fail_clearly_and_the_password_never_leaks() {
    const WRONG: &str = "wr0ng-hunter2-pass";
    let corp = CorpProxy::start(USER, PASSWORD).await;
    let ca = TestCa::new("corp test ca");
    let idp = FakeIdp::builder()
        .tls(ca.server_config("idp.corp.example"))
        .run()
        .await;
    let ok_idp = FakeIdp::builder().run().await;
    let (tls_api, _) = https_api(&ca, "api.corp.example").await;
    let api = FakeUpstream::ok().await;
    let ca_file = ca.cert_path().display().to_string();
    let yaml = format!(
        "egress_proxy: {}\nproviders:\n{}{}routes:\n  - {{ name: tls, match: {{ path_prefix: /tls }}, provider: direct, upstream: 'https://api.corp.example:{}', ca_file: {ca_file} }}\n  - {{ name: plain, match: {{ path_prefix: /plain }}, provider: direct, upstream: 'http://api.corp.example:{}', allow_http: true }}\n  - {{ name: token, match: {{ path_prefix: /token }}, provider: corp, upstream: '{}', egress_proxy: '' }}\n",
        corp.url_with(USER, WRONG),
        provider("corp", &format!("https://idp.corp.example:{}/oauth2/token", idp.addr.port()), &format!("    ca_file: {ca_file}\n    retries: {{ max_attempts: 1 }}\n")),
        provider("direct", &ok_idp.token_url(), "    no_proxy: ['127.0.0.1']\n"),
        tls_api.port(),
        api.addr.port(),
        api.url(),
    );
    let mut bin = Binary::start(&yaml, &["--log-level", "trace"], &[]);
    bin.wait_healthy().await;
    let client = direct_client();
    let mut bodies = Vec::new();
    for (path, status, code) in [
        ("/tls/x", 502, "upstream_unavailable"),
        ("/plain/x", 502, "upstream_unavailable"),
        ("/token/x", 503, "token_unavailable"),
    ] {
        let resp = client
            .get(format!("http://{}{path}", bin.proxy))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(v["error"], code, "{path}: {v}");
        bodies.push(v.to_string());
    }
    let proxy_name = format!("egress proxy 127.0.0.1:{}", corp.addr.port());
    assert!(
        bodies[0].contains(&proxy_name) && bodies[0].contains("407"),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[1].contains(&proxy_name) && bodies[1].contains("407"),
        "{}",
        bodies[1]
    );
    assert!(
        bodies[2].contains(&format!("{proxy_name} answered 407 (proxy authentication required) to the CONNECT for idp.corp.example:{}", idp.addr.port())),
        "{}",
        bodies[2]
    );
    assert!(api.seen().is_empty() && idp.requests() == 0);
    // The wrong password was sent (pre-emptively) and refused.
    assert!(
        corp.seen().iter().all(|s| !s.accepted && s.auth.is_some()),
        "{:?}",
        corp.seen()
    );
    let status = client
        .get(format!("http://{}/status", bin.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
    let logs = bin.stderr();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace logs were captured"
    );
    let basic = corp.seen()[0].auth.clone().unwrap();
    let b64 = basic.trim_start_matches("Basic ");
    for text in bodies.iter().chain([&status, &logs]) {
        for secret in [WRONG, "wr0ng-hunter2", b64] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}
