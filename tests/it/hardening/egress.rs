//! SPEC §4 Own listeners and Shared egress: the proxy is never a way into its own admin
//! (absolute-form or CONNECT, by address or by name), and a proxy that others share
//! refuses unmatched traffic by default and never reaches loopback or link-local
//! addresses for them.

use super::{assert_refused, connect, exchange, start, start_at, Conn};
use crate::support::sidecar::Binary;
use crate::support::{provider_yaml, FakeIdp, FakeUpstream};
use std::time::Duration;
use tokio::time::Instant;

/// Provider `x` exposes its token on the admin (so a relayed request could steal it),
/// and `api.test` is routed to `up`.
fn config(idp: &FakeIdp, up: &FakeUpstream, top: &str) -> String {
    format!(
        "{top}providers:\n{}routes:\n  - match: {{ host: api.test }}\n    provider: x\n    upstream: {}\n",
        provider_yaml("x", idp, "    expose_token: true\n"),
        up.url()
    )
}

/// Names and address forms that reach a listener on 127.0.0.1 (or 0.0.0.0) of this
/// machine: connecting to 0.0.0.0 reaches the local host, and the resolver reads
/// `127.1` and `2130706433` as 127.0.0.1.
const HOSTS: [&str; 5] = [
    "127.0.0.1",
    "localhost",
    "[::ffff:127.0.0.1]",
    "127.1",
    "2130706433",
];

/// Every way of asking the proxy for its own listeners is refused with 403
/// `destination_forbidden`, and nothing reaches the admin: no token fetched (the token
/// and refresh endpoints would ask the IdP), no reload.
async fn assert_no_relay_to_own_listeners(bin: &Binary, idp: &FakeIdp) {
    let (proxy, admin) = (bin.proxy.port(), bin.admin.port());
    for host in HOSTS {
        for (method, path) in [
            ("GET", "/providers/x/token"),
            ("POST", "/providers/x/refresh"),
            ("POST", "/reload"),
            ("GET", "/status"),
            ("GET", "/healthz"),
        ] {
            let resp = exchange(
                bin.proxy,
                format!("{method} http://{host}:{admin}{path} HTTP/1.1\r\nHost: {host}:{admin}\r\nContent-Length: 0\r\n\r\n"),
            )
            .await;
            assert_refused_to(&resp, &format!("{method} http://{host}:{admin}{path}"));
        }
        let resp = exchange(
            bin.proxy,
            format!("GET http://{host}:{proxy}/status HTTP/1.1\r\nHost: {host}:{proxy}\r\n\r\n"),
        )
        .await;
        assert_refused_to(&resp, &format!("GET http://{host}:{proxy}/status"));
        for port in [admin, proxy] {
            let resp = connect(bin.proxy, &format!("{host}:{port}")).await;
            assert_refused_to(&resp, &format!("CONNECT {host}:{port}"));
        }
    }
    assert_eq!(
        idp.requests(),
        0,
        "the admin fetched a token for a relayed request"
    );
    assert_eq!(reloads_run(bin).await, 0, "a relayed POST /reload ran");
    // The count is real: a POST /reload sent to the admin itself shows up in it.
    let direct = exchange(
        bin.admin,
        "POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(direct.status, 200, "{direct:?}");
    assert_eq!(reloads_run(bin).await, 1);
}

/// Reloads run so far, by `token_sidecar_config_reloads_total` (any outcome).
async fn reloads_run(bin: &Binary) -> u64 {
    let metrics = exchange(
        bin.admin,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    metrics
        .text()
        .lines()
        .filter(|l| l.starts_with("token_sidecar_config_reloads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[track_caller]
fn assert_refused_to(resp: &super::Resp, what: &str) {
    assert!(
        resp.status == 403 && resp.header("x-token-sidecar-error") == Some("destination_forbidden"),
        "{what} through the proxy: want 403 destination_forbidden, got {resp:?}"
    );
    assert_eq!(resp.json()["error"], "destination_forbidden", "{what}");
}

/// Issue 10, "Open proxy into the admin": with `unmatched: forward`, the release binary
/// handed out the raw access token to `GET http://127.0.0.1:<admin>/providers/x/token`
/// sent through its own proxy port, and let `/reload` and `/refresh` through the same way.
#[tokio::test]
async fn the_proxy_never_relays_to_its_own_listeners() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "unmatched: forward\n")).await;
    assert_no_relay_to_own_listeners(&bin, &idp).await;
    // Unmatched traffic to another loopback port still goes (a loopback listener trusts
    // its app), and so does a tunnel to it: only the proxy's own sockets are refused.
    let port = up.addr.port();
    let resp = exchange(
        bin.proxy,
        format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
    .await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(
        connect(bin.proxy, &format!("localhost:{port}"))
            .await
            .status,
        200
    );
}

/// With `unmatched: deny` (the default on a shared listener) the own listeners are still
/// refused as such (`destination_forbidden`), not as unrouted traffic.
#[tokio::test]
async fn own_listeners_are_destination_forbidden_under_unmatched_deny_too() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "unmatched: deny\n")).await;
    assert_no_relay_to_own_listeners(&bin, &idp).await;
    // Other unrouted traffic: no_route.
    let port = up.addr.port();
    let resp = exchange(
        bin.proxy,
        format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
    .await;
    assert_refused(&resp, 403, "no_route");
}

/// Connecting to 0.0.0.0 reaches the local host (Linux connects it to 127.0.0.1), so
/// `http://0.0.0.0:<admin>/…` is the admin on 127.0.0.1 by another name.
#[tokio::test]
async fn the_unspecified_address_is_not_a_way_into_the_admin() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start(&config(&idp, &up, "unmatched: forward\n")).await;
    let admin = bin.admin.port();
    for (method, path) in [("GET", "/providers/x/token"), ("POST", "/reload")] {
        let resp = exchange(
            bin.proxy,
            format!("{method} http://0.0.0.0:{admin}{path} HTTP/1.1\r\nHost: 0.0.0.0:{admin}\r\nContent-Length: 0\r\n\r\n"),
        )
        .await;
        assert_refused_to(&resp, &format!("{method} http://0.0.0.0:{admin}{path}"));
    }
    for port in [admin, bin.proxy.port()] {
        let resp = connect(bin.proxy, &format!("0.0.0.0:{port}")).await;
        assert_refused_to(&resp, &format!("CONNECT 0.0.0.0:{port}"));
    }
    assert_eq!(
        idp.requests(),
        0,
        "the admin fetched a token for a relayed request"
    );
}

/// The chart's standalone mode: both listeners on 0.0.0.0 (reached here over 127.0.0.1),
/// `unmatched: forward` set explicitly, and `tunnel_ports` naming the listeners' ports so
/// that it is the own-listener rule that refuses.
#[tokio::test]
async fn the_proxy_never_relays_to_its_own_listeners_on_a_shared_listener() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let top = "unmatched: forward\ntunnel_ports: [443, @PROXY_PORT@, @ADMIN_PORT@]\n";
    let bin = start_at("0.0.0.0", "0.0.0.0", &config(&idp, &up, top)).await;
    assert_no_relay_to_own_listeners(&bin, &idp).await;
    // The pod IP: the listeners on 0.0.0.0 answer on it too. (Refused before any
    // connection: this address is never connected to.)
    if let Some(ip) = super::outside_ip() {
        for port in [bin.admin.port(), bin.proxy.port()] {
            let authority = std::net::SocketAddr::new(ip, port);
            let resp = exchange(
                bin.proxy,
                format!("GET http://{authority}/providers/x/token HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
            )
            .await;
            assert_refused_to(&resp, &format!("GET http://{authority}/providers/x/token"));
            let resp = connect(bin.proxy, &authority.to_string()).await;
            assert_refused_to(&resp, &format!("CONNECT {authority}"));
        }
    }
    assert_eq!(idp.requests(), 0);
    assert_eq!(up.count(), 0);
}

/// Routes obey the same rule: a route whose target, or whose configured `upstream`, is
/// one of the proxy's listeners is refused before its token is sent there.
#[tokio::test]
async fn a_route_never_leads_to_the_proxys_own_listeners() {
    let idp = FakeIdp::builder().run().await;
    let yaml = format!(
        "unmatched: deny\nproviders:\n{}routes:\n  - match: {{ path_prefix: /admin }}\n    provider: x\n    upstream: http://127.0.0.1:@ADMIN_PORT@\n    strip_prefix: true\n  - match: {{ host: 'localhost:*' }}\n    provider: x\n  - match: {{ host: '127.0.0.1:*' }}\n    provider: x\n",
        provider_yaml("x", &idp, "    expose_token: true\n"),
    );
    let bin = start(&yaml).await;
    let admin = bin.admin.port();
    for host in ["localhost", "127.0.0.1"] {
        for port in [admin, bin.proxy.port()] {
            let resp = exchange(
                bin.proxy,
                format!("GET http://{host}:{port}/providers/x/token HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"),
            )
            .await;
            assert_refused_to(
                &resp,
                &format!("routed GET http://{host}:{port}/providers/x/token"),
            );
        }
    }
    let resp = exchange(
        bin.proxy,
        "GET /admin/providers/x/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert_refused_to(&resp, "GET /admin/providers/x/token (upstream: the admin)");
    // The token was fetched for the route, and the admin never handed it out.
    assert_eq!(idp.requests(), 1);
}

/// SPEC §4 Shared egress: with `listen` on 0.0.0.0, `unmatched` defaults to `deny`, for
/// plain requests and CONNECT alike; routed traffic is served as before.
#[tokio::test]
async fn a_shared_listener_denies_unmatched_traffic_by_default() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start_at("0.0.0.0", "127.0.0.1", &config(&idp, &up, "")).await;
    let port = up.addr.port();
    for target in [
        format!("http://127.0.0.1:{port}/x"),
        "http://unrouted.example.invalid/x".to_string(),
    ] {
        let resp = exchange(
            bin.proxy,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert_refused(&resp, 403, "no_route");
    }
    assert_refused(
        &connect(bin.proxy, "unrouted.example.invalid:443").await,
        403,
        "no_route",
    );
    assert_eq!(up.count(), 0, "unmatched traffic reached the upstream");
    let resp = exchange(
        bin.proxy,
        "GET http://api.test/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(up.seen()[0].bearer().is_some());
}

/// SPEC §4 Shared egress with `unmatched: forward`: loopback and link-local destinations
/// are refused whatever name or address form is used, before any connection is tried.
#[tokio::test]
async fn a_shared_listener_never_forwards_to_loopback_or_link_local() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let bin = start_at(
        "0.0.0.0",
        "127.0.0.1",
        &config(&idp, &up, "unmatched: forward\n"),
    )
    .await;
    let port = up.addr.port();
    for authority in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::1]:{port}"),
        "169.254.169.254".to_string(),
        "[fe80::1]".to_string(),
    ] {
        let started = Instant::now();
        let resp = exchange(
            bin.proxy,
            format!(
                "GET http://{authority}/latest/meta-data/ HTTP/1.1\r\nHost: {authority}\r\n\r\n"
            ),
        )
        .await;
        assert_refused(&resp, 403, "destination_forbidden");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{authority}: refused only after {:?} (was a connection tried?)",
            started.elapsed()
        );
    }
    // A blind tunnel to 443 (an allowed tunnel port) on a loopback or link-local address.
    for authority in ["localhost:443", "127.0.0.1:443", "169.254.169.254:443"] {
        assert_refused(
            &connect(bin.proxy, authority).await,
            403,
            "destination_forbidden",
        );
    }
    assert_eq!(up.count(), 0);
}

/// SPEC §4 Shared egress: blind tunnels go only to `tunnel_ports`, `[443]` by default; a
/// loopback listener tunnels to any port.
#[tokio::test]
async fn blind_tunnels_from_a_shared_listener_go_only_to_tunnel_ports() {
    let idp = FakeIdp::builder().run().await;
    let up = FakeUpstream::ok().await;
    let shared = start_at(
        "0.0.0.0",
        "127.0.0.1",
        &config(&idp, &up, "unmatched: forward\n"),
    )
    .await;
    for authority in ["127.0.0.1:22", "ssh.example.invalid:22"] {
        let resp = connect(shared.proxy, authority).await;
        assert_refused(&resp, 403, "destination_forbidden");
        let detail = resp.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(detail.contains("tunnel_ports"), "{authority}: {detail}");
    }
    drop(shared);
    // The contrast: on a loopback listener a tunnel goes to any port, and works.
    let local = start(&config(&idp, &up, "unmatched: forward\n")).await;
    let mut c = Conn::open(local.proxy).await;
    c.tunnel_expected = true;
    let authority = format!("127.0.0.1:{}", up.addr.port());
    c.send(format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    ))
    .await;
    assert_eq!(c.response().await.status, 200);
    c.tunnel_expected = false;
    c.send(format!(
        "GET /through HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    ))
    .await;
    let resp = c.response().await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(up.seen()[0].uri, "/through");
}
