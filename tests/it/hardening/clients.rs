//! SPEC §4 Proxy clients: with top-level `clients`, every request proves one with
//! `Proxy-Authorization: Basic` (407 otherwise); a route's `clients` narrows who may use
//! it (403); the credentials are never forwarded and never logged, the client's name is.

use super::{assert_refused, connect, exchange, start, Conn, Resp};
use crate::support::{provider_yaml, FakeIdp, FakeUpstream};
use base64::Engine;
use std::net::SocketAddr;
use std::time::Duration;

const ALICE: (&str, &str) = ("alice", "alice-proxy-pass-4Qz9");
const BOB: (&str, &str) = ("bob", "bob-proxy-pass-7Wx2");
const WRONG: &str = "not-alices-pass-3Kv8";

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

async fn get(proxy: SocketAddr, path: &str, proxy_auth: Option<String>) -> Resp {
    let auth = proxy_auth
        .map(|v| format!("Proxy-Authorization: {v}\r\n"))
        .unwrap_or_default();
    exchange(
        proxy,
        format!("GET http://api.test{path} HTTP/1.1\r\nHost: api.test\r\n{auth}\r\n"),
    )
    .await
}

#[tokio::test]
async fn proxy_clients_authenticate_and_are_never_forwarded_or_logged() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let yaml = format!(
        "unmatched: deny\nclients:\n  {}: {{ password: {} }}\n  {}: {}\nproviders:\n{}routes:\n  - match: {{ host: api.test, path_prefix: /alice-only }}\n    provider: x\n    upstream: {u}\n    clients: [alice]\n  - match: {{ host: api.test }}\n    provider: x\n    upstream: {u}\n",
        ALICE.0,
        ALICE.1,
        BOB.0,
        BOB.1,
        provider_yaml("x", &idp, ""),
        u = up.url()
    );
    let bin = start(&yaml).await;

    // No credentials, wrong ones, someone else's password, another scheme: 407.
    for auth in [
        None,
        Some(format!("Basic {}", basic(ALICE.0, WRONG))),
        Some(format!("Basic {}", basic(BOB.0, ALICE.1))),
        Some(format!("Basic {}", basic("mallory", ALICE.1))),
        Some(format!("Bearer {}", ALICE.1)),
        Some("Basic not-base64!".to_string()),
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(ALICE.1)
        )),
    ] {
        let resp = get(bin.proxy, "/x", auth.clone()).await;
        assert_refused(&resp, 407, "proxy_auth_required");
        assert_eq!(
            resp.header("proxy-authenticate"),
            Some("Basic realm=\"token-sidecar\""),
            "{auth:?}"
        );
    }
    // CONNECT is a request to the proxy like any other.
    let resp = connect(bin.proxy, "api.test:443").await;
    assert_refused(&resp, 407, "proxy_auth_required");
    assert_eq!((up.count(), idp.requests()), (0, 0));

    // The right credentials: served, and the upstream never sees them.
    let alice = Some(format!("Basic {}", basic(ALICE.0, ALICE.1)));
    let bob = Some(format!("Basic {}", basic(BOB.0, BOB.1)));
    for (auth, path) in [(&alice, "/x"), (&bob, "/x"), (&alice, "/alice-only/y")] {
        let resp = get(bin.proxy, path, auth.clone()).await;
        assert_eq!(resp.status, 200, "{auth:?} {path}: {resp:?}");
    }
    // A route's own `clients`: bob may use the proxy, not this route.
    let resp = get(bin.proxy, "/alice-only/y", bob.clone()).await;
    assert_refused(&resp, 403, "client_forbidden");
    // Authenticated CONNECT gets past 407 (to routing: an unrouted name under deny).
    let mut c = Conn::open(bin.proxy).await;
    c.tunnel_expected = true;
    c.send(format!(
        "CONNECT elsewhere.invalid:443 HTTP/1.1\r\nHost: elsewhere.invalid:443\r\nProxy-Authorization: {}\r\n\r\n",
        bob.as_deref().unwrap()
    ))
    .await;
    assert_refused(&c.response().await, 403, "no_route");

    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.header("proxy-authorization"), None, "{s:?}");
        assert!(s.bearer().is_some(), "{s:?}");
    }

    // The log names the client and holds no credential, in any form.
    let log = wait_for_log(&bin, "client=\"alice\"").await;
    assert!(log.contains("client=\"bob\""), "{log}");
    let user_pass = |u: &str, p: &str| format!("{u}:{p}");
    for secret in [
        ALICE.1.to_string(),
        BOB.1.to_string(),
        WRONG.to_string(),
        basic(ALICE.0, ALICE.1),
        basic(BOB.0, BOB.1),
        basic(ALICE.0, WRONG),
        basic(BOB.0, ALICE.1),
        user_pass(ALICE.0, ALICE.1),
        base64::engine::general_purpose::STANDARD.encode(ALICE.1),
    ] {
        assert!(!log.contains(&secret), "{secret:?} is in the log:\n{log}");
    }
}

/// The binary's log once it contains `needle` (log lines are written as requests end).
async fn wait_for_log(bin: &crate::support::sidecar::Binary, needle: &str) -> String {
    for _ in 0..50 {
        let log = bin.stderr();
        if log.contains(needle) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{needle:?} never appeared in the log:\n{}", bin.stderr());
}

/// Requests inside an intercepted CONNECT tunnel belong to the client that opened it:
/// the route's `clients` applies to them, and so do the browser and path rules.
#[tokio::test]
async fn requests_inside_an_intercepted_tunnel_belong_to_its_client() {
    use crate::support::tls::TestCa;
    let (sidecar_ca, upstream_ca) = (TestCa::new("sidecar CA"), TestCa::new("upstream CA"));
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::tls(&upstream_ca, |_, _| (200, vec![], "secure ok".into())).await;
    let yaml = format!(
        "{}clients:\n  {}: {}\n  {}: {}\nproviders:\n{}routes:\n  - match: {{ host: '{}' }}\n    provider: x\n    ca_file: {}\n    clients: [alice]\n",
        sidecar_ca.intercept_yaml(),
        ALICE.0,
        ALICE.1,
        BOB.0,
        BOB.1,
        provider_yaml("x", &idp, ""),
        api.addr,
        upstream_ca.cert_path().display()
    );
    let bin = start(&yaml).await;
    let via = |user: Option<(&str, &str)>| {
        let proxy = match user {
            Some((u, p)) => format!("http://{u}:{p}@{}", bin.proxy),
            None => format!("http://{}", bin.proxy),
        };
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::https(proxy).unwrap())
            .tls_backend_preconfigured(sidecar_ca.client_config(&[b"http/1.1"]))
            .build()
            .unwrap()
    };
    let url = |path: &str| format!("{}{path}", api.url());
    // Without credentials the tunnel is not opened.
    assert!(via(None).get(url("/v1/x")).send().await.is_err());
    let alice = via(Some(ALICE));
    let resp = alice.get(url("/v1/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let refused = |resp: reqwest::Response, code: &str| {
        assert_eq!(
            resp.headers()
                .get("x-token-sidecar-error")
                .map(|v| v.to_str().unwrap()),
            Some(code),
            "{resp:?}"
        );
        resp.status().as_u16()
    };
    let resp = via(Some(BOB)).get(url("/v1/x")).send().await.unwrap();
    assert_eq!(refused(resp, "client_forbidden"), 403);
    let resp = alice
        .get(url("/v1/x"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(refused(resp, "browser_request_forbidden"), 403);
    let resp = alice.get(url("/v1/..%2fadmin")).send().await.unwrap();
    assert_eq!(refused(resp, "bad_request"), 400);
    let seen = api.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("proxy-authorization"), None);
    assert!(seen[0].bearer().is_some());
    let log = bin.stderr();
    for secret in [
        ALICE.1.to_string(),
        BOB.1.to_string(),
        basic(ALICE.0, ALICE.1),
    ] {
        assert!(!log.contains(&secret), "{secret:?} is in the log:\n{log}");
    }
}

/// Unmatched traffic and blind tunnels need a client too, and the credentials never go
/// on with them.
#[tokio::test]
async fn unmatched_traffic_needs_a_client_and_never_carries_its_credentials() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let yaml = format!(
        "unmatched: forward\nclients:\n  {}: {}\nproviders:\n{}routes:\n  - match: {{ host: api.test }}\n    provider: x\n    upstream: {}\n",
        ALICE.0,
        ALICE.1,
        provider_yaml("x", &idp, ""),
        up.url()
    );
    let bin = start(&yaml).await;
    let target = format!("http://{}/elsewhere", up.addr);
    let ask = |auth: &str| {
        exchange(
            bin.proxy,
            format!("GET {target} HTTP/1.1\r\nHost: {}\r\n{auth}\r\n", up.addr),
        )
    };
    assert_refused(&ask("").await, 407, "proxy_auth_required");
    assert_refused(
        &connect(bin.proxy, &up.addr.to_string()).await,
        407,
        "proxy_auth_required",
    );
    assert_eq!(up.count(), 0);
    let auth = format!("Proxy-Authorization: Basic {}\r\n", basic(ALICE.0, ALICE.1));
    let resp = ask(&auth).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("proxy-authorization"), None, "{:?}", seen[0]);
    assert_eq!(seen[0].bearer(), None, "unmatched traffic got a token");
}
