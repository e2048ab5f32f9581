//! Host patterns, server names and origins: parsing, matching, covering.

use super::*;

fn p(text: &str) -> HostPattern {
    parse_host_pattern(text).unwrap()
}

/// (pattern, host, port, default port, selected?)
#[test]
fn matching_table() {
    let cases: &[(&str, &str, Option<u16>, u16, bool)] = &[
        // No port in the pattern: only the scheme's default port.
        ("api.test", "api.test", Some(80), 80, true),
        ("api.test", "API.Test", Some(443), 443, true),
        ("api.test", "api.test", None, 443, true),
        ("api.test", "api.test", Some(8080), 80, false),
        ("api.test", "api.test", Some(443), 80, false),
        ("api.test", "api.test", Some(80), 443, false),
        ("api.test", "other.test", Some(80), 80, false),
        // An explicit port: that port only, whatever the scheme.
        ("api.test:8443", "api.test", Some(8443), 443, true),
        ("api.test:8443", "api.test", Some(8443), 80, true),
        ("api.test:8443", "api.test", Some(443), 443, false),
        ("api.test:443", "api.test", None, 443, true),
        ("api.test:443", "api.test", None, 80, false),
        // `:*`: any port.
        ("api.test:*", "api.test", Some(1), 80, true),
        ("api.test:*", "api.test", None, 443, true),
        ("api.test:*", "api.testx", Some(80), 80, false),
        // Wildcards, with and without a port.
        ("*.example.com", "a.example.com", Some(443), 443, true),
        ("*.example.com", "a.b.example.com", None, 80, true),
        ("*.example.com", "example.com", Some(443), 443, false),
        ("*.example.com", "badexample.com", Some(443), 443, false),
        ("*.example.com", "a.example.com", Some(8443), 443, false),
        ("*.example.com:8443", "a.example.com", Some(8443), 443, true),
        ("*.example.com:8443", "a.example.com", Some(443), 443, false),
        ("*.example.com:*", "a.example.com", Some(9), 80, true),
        ("*.example.com:*", "example.com", Some(9), 80, false),
        // IPv6, written in any form.
        ("[::1]:8080", "[::1]", Some(8080), 80, true),
        ("[::1]:8080", "[0:0::1]", Some(8080), 80, true),
        ("[::1]:8080", "[::1]", Some(8081), 80, false),
        ("[::1]", "[::1]", Some(80), 80, true),
        ("[::1]", "[::1]", Some(8080), 80, false),
        ("[0::1]:*", "[::1]", Some(1), 443, true),
        ("[::1]", "[::2]", Some(80), 80, false),
        ("127.0.0.1:4480", "127.0.0.1", Some(4480), 80, true),
    ];
    for (pattern, host, port, default_port, want) in cases {
        assert_eq!(
            p(pattern).matches(host, *port, *default_port),
            *want,
            "{pattern} vs {host}:{port:?} (default {default_port})"
        );
    }
}

#[test]
fn parses_and_displays_patterns() {
    for (text, shown) in [
        ("API.example.com", "api.example.com"),
        ("api.example.com:8443", "api.example.com:8443"),
        ("api.example.com:*", "api.example.com:*"),
        ("*.Example.com", "*.example.com"),
        ("*.example.com:*", "*.example.com:*"),
        ("*.example.com:8443", "*.example.com:8443"),
        ("[0:0::1]:8080", "[::1]:8080"),
        ("[::1]", "[::1]"),
        ("[::1]:*", "[::1]:*"),
    ] {
        assert_eq!(p(text).to_string(), shown, "{text}");
    }
    for bad in [
        "",
        "*",
        "*:*",
        "api.test:",
        "api.test:0",
        "api.test:65536",
        "api.test:**",
        "api.test:x",
        "::1",
        "[::1",
        "[::1]x",
        "[nope]",
        "a..b",
        "*.",
        "*.*.x",
        "a b",
        "http://api.test",
    ] {
        assert!(
            parse_host_pattern(bad).is_err(),
            "{bad:?} should be refused"
        );
    }
}

#[test]
fn covers_table() {
    let cases = [
        ("x.test", "x.test", true),
        ("x.test", "x.test:8443", false),
        ("x.test", "x.test:443", false),
        ("x.test:443", "x.test", false),
        ("x.test:8443", "x.test:8443", true),
        ("x.test:*", "x.test", true),
        ("x.test:*", "x.test:8443", true),
        ("x.test:*", "x.test:*", true),
        ("x.test", "x.test:*", false),
        ("x.test:8443", "x.test:*", false),
        ("*.x.test", "a.x.test", true),
        ("*.x.test", "a.x.test:8443", false),
        ("*.x.test:*", "a.x.test:8443", true),
        ("*.x.test:8443", "a.x.test:8443", true),
        ("*.x.test:8443", "*.a.x.test:8443", true),
        ("*.x.test:8443", "*.a.x.test", false),
        ("*.x.test", "x.test", false),
        ("a.x.test:*", "*.x.test", false),
        ("[::1]:*", "[::1]:8080", true),
    ];
    for (a, b, want) in cases {
        assert_eq!(p(a).covers(&p(b)), want, "{a} covers {b}");
    }
}

#[test]
fn server_names() {
    for (text, want) in [
        ("Sidecar.NS.svc", "sidecar.ns.svc"),
        ("10.0.0.1", "10.0.0.1"),
        ("fd00::1", "[fd00::1]"),
        ("[FD00:0::1]", "[fd00::1]"),
    ] {
        assert_eq!(parse_server_name(text).as_deref(), Ok(want), "{text}");
    }
    assert!(parse_server_name("sidecar.ns.svc:4480")
        .unwrap_err()
        .contains("has a port"));
    for bad in ["", "*.ns.svc", "a b", "http://x"] {
        assert!(parse_server_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn origins_are_normalised() {
    for (text, want) in [
        ("https://App.Example.com", "https://app.example.com"),
        ("HTTPS://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        (
            "https://app.example.com:8443",
            "https://app.example.com:8443",
        ),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("http://localhost:3000", "http://localhost:3000"),
    ] {
        assert_eq!(normalize_origin(text).as_deref(), Ok(want), "{text}");
    }
    for bad in [
        "null",
        "*",
        "app.example.com",
        "https://*.example.com",
        "ftp://app.example.com",
        "https://app.example.com/path",
        "https://app.example.com/?q",
        "https://user:pw@app.example.com",
        "file:///etc/passwd",
    ] {
        assert!(normalize_origin(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn loopback_hosts() {
    for h in [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ] {
        assert!(is_loopback_host(h), "{h}");
    }
    for h in [
        "10.0.0.1",
        "example.com",
        "[::2]",
        "0.0.0.0",
        "localhost.example.com",
    ] {
        assert!(!is_loopback_host(h), "{h}");
    }
}
