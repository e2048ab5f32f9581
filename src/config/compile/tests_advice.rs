//! `validate` warnings (SPEC §8, §4 Plaintext): each one, at its file:line, and the
//! configs that must not get it.

use super::tests::load;

/// A config with `top` lines first, a provider whose `extra` lines follow its secret,
/// and one route of `route` lines (the route starts on line `top + extra + 7`).
fn cfg(top: &str, provider_extra: &str, route: &str) -> String {
    format!(
        "{top}providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\n{provider_extra}routes:\n{route}"
    )
}

const ROUTE: &str =
    "  - match: { host: api.test }\n    provider: p\n    upstream: https://api.test\n";

fn warnings(yaml: &str) -> Vec<String> {
    load(yaml).unwrap_or_else(|e| panic!("{e:#?}")).warnings
}

/// Each case: the config warns exactly once, with a warning starting with `want`.
fn assert_one_warning(cases: &[(String, &str)]) {
    for (yaml, want) in cases {
        let w = warnings(yaml);
        assert!(
            w.len() == 1 && w[0].starts_with(want),
            "want one warning {want:?}, got {w:#?}\nin\n{yaml}"
        );
    }
}

fn assert_no_warning(cases: &[String]) {
    for yaml in cases {
        let w = warnings(yaml);
        assert!(w.is_empty(), "{w:#?}\nin\n{yaml}");
    }
}

#[test]
fn non_loopback_admin_without_token_while_tokens_are_exposed() {
    let exposed = "    expose_token: true\n";
    assert_one_warning(&[(
        cfg("admin_listen: 0.0.0.0:4481\n", exposed, ROUTE),
        "proxy.yaml:1:15: admin_listen: 0.0.0.0:4481 is not a loopback address and admin_token_file is not set, while expose_token is on for p",
    )]);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("t");
    std::fs::write(&token, "admin-token-0123456789abcdef").unwrap();
    assert_no_warning(&[
        cfg("admin_listen: 0.0.0.0:4481\n", "", ROUTE),
        cfg("admin_listen: 127.0.0.1:4481\n", exposed, ROUTE),
        cfg(
            &format!(
                "admin_listen: 0.0.0.0:4481\nadmin_token_file: {}\n",
                token.display()
            ),
            exposed,
            ROUTE,
        ),
    ]);
}

#[test]
fn value_prefix_without_a_trailing_space() {
    assert_one_warning(&[
        (
            cfg("", "", &format!("{ROUTE}    value_prefix: Bearer\n")),
            "proxy.yaml:10:19: routes[0].value_prefix: \"Bearer\" does not end in a space, so the header is sent as \"Bearer<token>\"",
        ),
        (
            cfg("", "", &format!("{ROUTE}    value_prefix: 'Token='\n")),
            "proxy.yaml:10:19: routes[0].value_prefix: \"Token=\" does not end in a space",
        ),
    ]);
    assert_no_warning(&[
        cfg("", "", &format!("{ROUTE}    value_prefix: ''\n")),
        cfg("", "", &format!("{ROUTE}    value_prefix: 'Bearer '\n")),
        cfg("", "", &format!("{ROUTE}    value_prefix: 'Token '\n")),
    ]);
}

/// SPEC §4 Plaintext, where `validate` can see it: the token would cross the network
/// unencrypted, so the runtime refuses these requests with 403 `insecure_destination`.
#[test]
fn plaintext_to_a_non_loopback_host() {
    let http_upstream = ROUTE.replace("https://api.test", "http://api.test:8080/v1");
    assert_one_warning(&[
        (
            cfg("", "", &http_upstream),
            "proxy.yaml:9:15: routes[0].upstream: plain http:// to api.test: requests on this route will be refused with 403 insecure_destination",
        ),
        (
            cfg("", "", "  - match: { host: '*.api.test' }\n    provider: p\n"),
            "proxy.yaml:7:20: routes[0].match.host: without upstream or tls_intercept, this route only sees plain http:// requests to *.api.test: requests on this route will be refused with 403 insecure_destination",
        ),
    ]);
    let (cert, key) = crate::intercept::generate_ca("test CA", 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), cert).unwrap();
    std::fs::write(dir.path().join("ca.key"), key).unwrap();
    let intercept = format!(
        "tls_intercept: {{ ca_cert_file: {0}/ca.crt, ca_key_file: {0}/ca.key }}\n",
        dir.path().display()
    );
    let host_only = "  - match: { host: api.test }\n    provider: p\n";
    assert_no_warning(&[
        cfg("", "", &format!("{http_upstream}    allow_http: true\n")),
        cfg("", "", &format!("{host_only}    allow_http: true\n")),
        cfg(
            "",
            "",
            &ROUTE.replace("https://api.test", "http://127.0.0.1:8080"),
        ),
        cfg(
            "",
            "",
            &ROUTE.replace("https://api.test", "http://localhost:8080"),
        ),
        cfg(
            "",
            "",
            &ROUTE.replace("https://api.test", "http://[::1]:8080"),
        ),
        cfg(
            "",
            "",
            "  - match: { host: '127.0.0.1:9000' }\n    provider: p\n",
        ),
        cfg(
            "",
            "",
            "  - match: { host: 'localhost:*' }\n    provider: p\n",
        ),
        cfg(&intercept, "", host_only),
    ]);
    assert_one_warning(&[(
        cfg(
            &intercept,
            "",
            &format!("{host_only}    intercept: false\n"),
        ),
        "proxy.yaml:8:20: routes[0].match.host: without upstream or tls_intercept",
    )]);
}

#[test]
fn replay_bodies_larger_than_the_budget() {
    let top = "limits: { max_buffered_bodies: 1MiB }\n";
    assert_one_warning(&[(
        cfg(top, "", &format!("{ROUTE}    max_replay_body: 2MiB\n")),
        "proxy.yaml:11:22: routes[0].max_replay_body: is larger than limits.max_buffered_bodies",
    )]);
    assert_no_warning(&[
        cfg(top, "", &format!("{ROUTE}    max_replay_body: 1MiB\n")),
        cfg(
            top,
            "",
            &format!("{ROUTE}    max_replay_body: 2MiB\n    retry_on: []\n"),
        ),
    ]);
}

/// The warnings that existed before SPEC §8 now carry file:line too.
#[test]
fn older_warnings_are_located_too() {
    let shadowed = format!("{ROUTE}  - match: {{ host: api.test, path_prefix: /v2 }}\n    provider: p\n    upstream: https://api.test\n");
    assert_one_warning(&[
        (
            cfg("", "", &shadowed),
            "proxy.yaml:10:5: routes[1]: route \"api.test/v2\" can never match: route \"api.test\" comes first",
        ),
        (
            cfg("", "", &format!("{ROUTE}    preserve_host: true\n").replace("    upstream: https://api.test\n", "    allow_http: true\n")),
            "proxy.yaml:10:20: routes[0].preserve_host: has no effect without upstream",
        ),
        (
            cfg("", "    allow_http: true\n", ROUTE).replace("http://127.0.0.1:1/t", "http://idp.test/t"),
            "proxy.yaml:3:16: providers.p.token_url: plain http to idp.test: the client secret and tokens cross the network unencrypted",
        ),
        (
            "listen: 127.0.0.1:4480\n".to_string(),
            "proxy.yaml: no routes: every request is handled by `unmatched`",
        ),
    ]);
}

#[test]
fn a_refresh_token_grant_with_a_token_store_is_told_about_store_outages() {
    let store = "token_store:\n  redis: { url: redis://127.0.0.1:6379 }\n  encryption_key: \"0123456789abcdef0123456789abcdef\"\n";
    let refresh = "    grant_type: refresh_token\n    refresh_token: rt-1\n";
    let w = warnings(&cfg(store, refresh, ROUTE));
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with("proxy.yaml:9:17: providers.p.grant_type: refresh_token with token_store"),
        "{w:#?}"
    );
    assert!(w[0].contains("not refreshed"), "{w:#?}");
    assert!(!w[0].contains("rt-1"), "never the token: {w:#?}");
    // No store, or another grant: no warning.
    assert_no_warning(&[cfg("", refresh, ROUTE), cfg(store, "", ROUTE)]);
}
