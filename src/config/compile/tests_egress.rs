//! The keys for a shared network (SPEC §4, §7, §8): defaults, every error with its
//! location, the effective defaults for a loopback and a non-loopback `listen`.

use super::tests::load;
use super::*;

/// `top` goes first (a line each), then a provider and one warning-free route, then
/// `route_extra` (lines of the route, indented by four spaces). The route's `match` is on
/// line `top_lines + 7`.
fn cfg(top: &str, route_extra: &str) -> String {
    format!(
        "{top}providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\nroutes:\n  - match: {{ host: api.test }}\n    provider: p\n    upstream: https://api.test\n{route_extra}"
    )
}

fn problems(yaml: &str) -> String {
    load(yaml).expect_err(yaml).join("\n")
}

fn warnings(yaml: &str) -> Vec<String> {
    load(yaml).unwrap_or_else(|e| panic!("{e:#?}")).warnings
}

/// Each `(top, route_extra, message)`: the config fails with `message` among its problems.
fn assert_problems(cases: &[(&str, &str, &str)]) {
    for (top, route, want) in cases {
        let got = problems(&cfg(top, route));
        assert!(got.contains(want), "want {want:?} in:\n{got}");
    }
}

#[test]
fn defaults_on_a_loopback_listener() {
    let c = load(&cfg("", "")).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(!c.shared_egress());
    assert_eq!(c.unmatched, Unmatched::Forward);
    assert_eq!(c.tunnel_ports, TunnelPorts::Any);
    assert_eq!(
        c.limits,
        Limits {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_connections: 10_000,
            max_buffered_bodies: 64 << 20,
        }
    );
    assert!(c.clients.is_empty() && c.server_names.is_empty());
    assert!(c.admin_token.is_none() && c.admin_token_file.is_none());
    let r = &c.routes[0];
    assert_eq!(r.clients, None);
    assert!(r.allowed_origins.is_empty());
    assert!(!r.allow_http);
    for top in ["listen: localhost:4480\n", "listen: '[::1]:4480'\n", ""] {
        assert!(!load(&cfg(top, "")).unwrap().shared_egress(), "{top}");
    }
}

/// SPEC §4 Shared egress: a non-loopback `listen` tightens the defaults.
#[test]
fn defaults_tighten_on_a_shared_listener() {
    for listen in ["0.0.0.0:4480", "'[::]:4480'", "10.1.2.3:4480"] {
        let c = load(&cfg(&format!("listen: {listen}\n"), "")).unwrap();
        assert!(c.shared_egress(), "{listen}");
        assert_eq!(c.unmatched, Unmatched::Deny, "{listen}");
        assert_eq!(c.tunnel_ports, TunnelPorts::Only(vec![443]), "{listen}");
        assert!(c.warnings.is_empty(), "{listen}: {:?}", c.warnings);
    }
    let c = load(&cfg(
        "listen: 0.0.0.0:4480\ntunnel_ports: [8443, 443, 8443]\n",
        "",
    ))
    .unwrap();
    assert_eq!(c.tunnel_ports, TunnelPorts::Only(vec![443, 8443]));
    assert!(c.tunnel_ports.allows(8443) && !c.tunnel_ports.allows(22));
    let c = load(&cfg("tunnel_ports: [22]\n", "")).unwrap();
    assert_eq!(c.tunnel_ports, TunnelPorts::Only(vec![22]), "explicit wins");
    let c = load(&cfg("tunnel_ports: []\n", "")).unwrap();
    assert!(
        !c.tunnel_ports.allows(443),
        "an empty list: no blind tunnel"
    );
    let c = load(&cfg("listen: 0.0.0.0:4480\nunmatched: forward\n", "")).unwrap();
    assert_eq!(c.unmatched, Unmatched::Forward, "explicit forward is kept");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with(
            "proxy.yaml:2:12: unmatched: listen 0.0.0.0:4480 is not a loopback address"
        ) && c.warnings[0].contains("open proxy"),
        "{:?}",
        c.warnings
    );
    assert_problems(&[
        (
            "tunnel_ports: [0]\n",
            "",
            "proxy.yaml:1:16: tunnel_ports[0]: invalid port \"0\"",
        ),
        (
            "tunnel_ports: [443, https]\n",
            "",
            "proxy.yaml:1:21: tunnel_ports[1]: invalid port",
        ),
        ("tunnel_ports: 443\n", "", "proxy.yaml:1:15: tunnel_ports:"),
    ]);
}

#[test]
fn limits_are_parsed_and_bounded() {
    let c = load(&cfg(
        "limits:\n  header_read_timeout: 5s\n  body_read_timeout: 250ms\n  idle_timeout: 2m\n  max_connections: 50\n  max_buffered_bodies: 8MiB\n",
        "",
    ))
    .unwrap();
    assert_eq!(
        c.limits,
        Limits {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(120),
            max_connections: 50,
            max_buffered_bodies: 8 << 20,
        }
    );
    let c = load(&cfg("limits: { idle_timeout: 10m }\n", "")).unwrap();
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(600));
    assert_eq!(
        c.limits.max_connections, 10_000,
        "the others keep their defaults"
    );
    assert_problems(&[
        ("limits:\n  header_read_timeout: 0\n", "", "proxy.yaml:2:24: limits.header_read_timeout: must be greater than zero"),
        ("limits:\n  body_read_timeout: 2h\n", "", "proxy.yaml:2:22: limits.body_read_timeout: must be at most 1h"),
        ("limits:\n  idle_timeout: 2d\n", "", "proxy.yaml:2:17: limits.idle_timeout: must be at most 24h"),
        ("limits:\n  idle_timeout: soon\n", "", "proxy.yaml:2:17: limits.idle_timeout: invalid duration \"soon\""),
        ("limits:\n  max_connections: 0\n", "", "proxy.yaml:2:20: limits.max_connections: invalid connection count \"0\": expected a whole number from 1 to 1000000"),
        ("limits:\n  max_connections: many\n", "", "proxy.yaml:2:20: limits.max_connections: invalid connection count"),
        ("limits:\n  max_buffered_bodies: 0\n", "", "proxy.yaml:2:24: limits.max_buffered_bodies: must be greater than zero"),
        ("limits:\n  max_buffered_bodies: 17GiB\n", "", "proxy.yaml:2:24: limits.max_buffered_bodies: must be at most 16GiB"),
        ("limits:\n  max_buffered_bodies: lots\n", "", "proxy.yaml:2:24: limits.max_buffered_bodies: invalid size"),
        ("limits:\n  idle: 1s\n", "", "proxy.yaml:2:3: limits.idle: unknown field `idle`; did you mean `idle_timeout`?"),
        ("limits:\n  slow: 1s\n", "", "proxy.yaml:2:3: limits.slow: unknown field `slow`, expected one of: header_read_timeout"),
    ]);
}

#[test]
fn clients_in_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "file-password\n").unwrap();
    let c = load(&cfg(
        &format!("clients:\n  app: s3cret-short\n  batch: {{ password: '${{file:{}}}' }}\n  num: 12345\n", file.display()),
        "",
    ))
    .unwrap();
    let names: Vec<&str> = c.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "batch", "num"], "sorted by name");
    assert_eq!(c.client("app").unwrap().password.expose(), "s3cret-short");
    assert_eq!(
        c.client("batch").unwrap().password.expose(),
        "file-password"
    );
    assert_eq!(c.client("num").unwrap().password.expose(), "12345");
    assert!(c.client("nobody").is_none());
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret-short") && !shown.contains("file-password"),
        "{shown}"
    );
    assert_problems(&[
        ("clients:\n  app: ''\n", "", "proxy.yaml:2:8: clients.app: the client's password must not be empty"),
        ("clients:\n  app: { password: '' }\n", "", "proxy.yaml:2:20: clients.app.password: the client's password must not be empty"),
        ("clients:\n  app: {}\n", "", "clients.app.password: missing required field (the client's password)"),
        ("clients:\n  app:\n", "", "clients.app: missing required field (the client's password)"),
        ("clients:\n  'a:b': pw\n", "", "proxy.yaml:2:3: clients: a client name is not a valid Basic-auth user name"),
        ("clients:\n  'a b': pw\n", "", "proxy.yaml:2:3: clients: a client name is not"),
        ("clients:\n  app: pw\n  'a b': pw\n", "", "proxy.yaml:3:3: clients: a client name is not"),
        ("clients:\n  app: { pasword: x }\n", "", "proxy.yaml:2:10: clients.app.pasword: unknown field `pasword`; did you mean `password`?"),
        ("clients:\n  app: [pw-in-a-list]\n", "", "proxy.yaml:2:8: clients.app: expected a password, or a mapping with `password`"),
        ("clients: [app]\n", "", "proxy.yaml:1:10: clients: expected a mapping of client names to passwords"),
        ("clients: {}\n", "", "proxy.yaml:1:10: clients: no clients are defined"),
        ("clients:\n  app: ${file:/nonexistent/pw}\n", "", "proxy.yaml:2:8: clients.app: cannot read file /nonexistent/pw"),
    ]);
    for yaml in [
        cfg("clients:\n  'a:b': hunter2-pw\n", ""),
        cfg("clients: { app:hunter2-pw }\n", ""),
        cfg("clients: { app:hunter2-pw, b: [x] }\n", ""),
        cfg("clients:\n  app: [hunter2-pw]\n", ""),
        cfg("clients:\n  app: { password: hunter2-pw, x: 1 }\n", ""),
    ] {
        let got = problems(&yaml);
        assert!(!got.contains("hunter2-pw"), "{got}");
    }
}

#[test]
fn route_clients_name_defined_clients() {
    let top = "clients:\n  a: pw-a\n  b: { password: pw-b }\n";
    let c = load(&cfg(top, "    clients: [b, a, b]\n")).unwrap();
    assert_eq!(
        c.routes[0].clients.as_deref(),
        Some(&["b".to_string(), "a".to_string()][..])
    );
    // The route's lines start at line 7 + 3 (the clients block).
    assert_problems(&[
        (
            top,
            "    clients: [a, c]\n",
            "proxy.yaml:13:18: routes[0].clients[1]: unknown client \"c\" (defined: a, b)",
        ),
        (
            top,
            "    clients: []\n",
            "proxy.yaml:13:14: routes[0].clients: an empty list serves no client",
        ),
        (
            "",
            "    clients: [a]\n",
            "proxy.yaml:10:14: routes[0].clients: there are no top-level `clients`",
        ),
        // A client that does not parse is still defined: only its own problem is reported.
        (
            "clients:\n  a: [x]\n",
            "    clients: [a]\n",
            "clients.a: expected a password",
        ),
    ]);
    let got = problems(&cfg("clients:\n  a: [x]\n", "    clients: [a]\n"));
    assert!(!got.contains("unknown client"), "{got}");
}

#[test]
fn allowed_origins_are_normalised() {
    let c = load(&cfg(
        "",
        "    allowed_origins: ['HTTPS://App.Example.com:443', 'http://localhost:3000/', https://app.example.com]\n",
    ))
    .unwrap();
    assert_eq!(
        c.routes[0].allowed_origins,
        ["https://app.example.com", "http://localhost:3000"]
    );
    assert_problems(&[
        ("", "    allowed_origins: ['null']\n", "proxy.yaml:10:23: routes[0].allowed_origins[0]: invalid origin \"null\""),
        ("", "    allowed_origins: [https://a.test, https://a.test/app]\n", "proxy.yaml:10:39: routes[0].allowed_origins[1]: invalid origin \"https://a.test/app\": an origin has no path"),
        ("", "    allowed_origins: ['*']\n", "routes[0].allowed_origins[0]: invalid origin"),
        ("", "    allowed_origins: https://a.test\n", "proxy.yaml:10:22: routes[0].allowed_origins:"),
    ]);
}

#[test]
fn server_names_are_lowercase_names_without_ports() {
    let c = load(&cfg(
        "server_names: [Sidecar.NS.svc, 10.0.0.7, 'fd00::7', sidecar.ns.svc]\n",
        "",
    ))
    .unwrap();
    assert_eq!(c.server_names, ["sidecar.ns.svc", "10.0.0.7", "[fd00::7]"]);
    assert_problems(&[
        (
            "server_names: [sidecar.ns.svc:4480]\n",
            "",
            "proxy.yaml:1:16: server_names[0]: server name \"sidecar.ns.svc:4480\" has a port",
        ),
        (
            "server_names: [a, '*.ns.svc']\n",
            "",
            "proxy.yaml:1:19: server_names[1]: invalid server name",
        ),
    ]);
}

/// `Config::is_own_name`: what a route without `match.host` accepts as `Host`.
#[test]
fn own_names() {
    let c = load(&cfg(
        "listen: 10.0.0.5:4480\nserver_names: [sidecar.ns.svc, 'fd00::7']\n",
        "",
    ))
    .unwrap();
    for own in [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "10.0.0.5",
        "Sidecar.NS.svc",
        "[fd00:0::7]",
    ] {
        assert!(c.is_own_name(own), "{own}");
    }
    for other in [
        "evil.example",
        "10.0.0.6",
        "sidecar.ns.svc.evil.example",
        "[fd00::8]",
        "",
    ] {
        assert!(!c.is_own_name(other), "{other}");
    }
}

#[test]
fn admin_token_file_is_read_at_every_compile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, "  first-admin-token-0123456789\n").unwrap();
    let yaml = cfg(
        &format!(
            "admin_listen: 127.0.0.1:4481\nadmin_token_file: {}\n",
            file.display()
        ),
        "",
    );
    let c = load(&yaml).unwrap();
    assert_eq!(
        c.admin_token.as_ref().unwrap().expose(),
        "first-admin-token-0123456789"
    );
    assert_eq!(c.admin_token_file.as_deref(), Some(file.as_path()));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(!format!("{c:?}").contains("first-admin-token"));
    std::fs::write(&file, "second-admin-token-0123456789").unwrap();
    assert_eq!(
        load(&yaml).unwrap().admin_token.unwrap().expose(),
        "second-admin-token-0123456789",
        "a reload reads the file again"
    );
    std::fs::write(&file, "short").unwrap();
    let w = warnings(&yaml);
    assert!(
        w.len() == 1
            && w[0].contains("admin_token_file: the admin token in")
            && w[0].contains("shorter than 16"),
        "{w:?}"
    );
    let at = format!(
        "proxy.yaml:2:19: admin_token_file: the admin token file {}",
        file.display()
    );
    std::fs::write(&file, " \n").unwrap();
    assert!(
        problems(&yaml).contains(&format!("{at} is empty")),
        "{}",
        problems(&yaml)
    );
    std::fs::write(&file, "has a-secret-space-inside").unwrap();
    let got = problems(&yaml);
    assert!(
        got.contains("holds spaces") && !got.contains("a-secret-space"),
        "{got}"
    );
    std::fs::remove_file(&file).unwrap();
    assert!(problems(&yaml).contains(&format!(
        "cannot read the admin token file {}: no such file",
        file.display()
    )));
    let no_admin = cfg(
        &format!("admin_token_file: {}\n", dir.path().join("x").display()),
        "",
    );
    std::fs::write(dir.path().join("x"), "x-admin-token-0123456789").unwrap();
    let w = warnings(&no_admin);
    assert!(
        w.len() == 1
            && w[0].starts_with(
                "proxy.yaml:1:19: admin_token_file: has no effect without admin_listen"
            ),
        "{w:?}"
    );
}
