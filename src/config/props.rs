//! Property tests of the config loader and host patterns: arbitrary input never panics,
//! every problem names where it is, and patterns match exactly what they say. 10,000
//! cases each.

use super::{parse_host_pattern, Config};
use proptest::prelude::*;
use std::path::Path;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        ..ProptestConfig::default()
    }
}

/// Every problem starts with the file's name, then `LINE:COL: ` or a space.
fn assert_located(text: &str) -> Result<(), TestCaseError> {
    let Err(e) = Config::from_text(Path::new("t.yaml"), text, &|_| None) else {
        return Ok(());
    };
    prop_assert!(!e.problems.is_empty());
    for p in &e.problems {
        let rest = p.strip_prefix("t.yaml:");
        prop_assert!(rest.is_some(), "{:?} for {:?}", p, text);
        let rest = rest.unwrap_or_default();
        let located = match rest.split_once(": ") {
            Some((at, _)) => match at.split_once(':') {
                Some((line, col)) => {
                    line.parse::<u32>().is_ok_and(|l| l >= 1)
                        && col.parse::<u32>().is_ok_and(|c| c >= 1)
                }
                None => false,
            },
            None => false,
        };
        prop_assert!(located || rest.starts_with(' '), "{:?} for {:?}", p, text);
    }
    Ok(())
}

const TOP_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "unmatched",
    "workers",
    "shutdown_grace",
    "log",
    "limits",
    "clients",
    "tunnel_ports",
    "server_names",
    "tls_intercept",
    "admin_token_file",
    "nope",
];

const PROVIDER_KEYS: &[&str] = &[
    "token_url",
    "client_id",
    "client_secret",
    "client_auth",
    "grant_type",
    "scopes",
    "audience",
    "resource",
    "extra_params",
    "refresh_before_expiry",
    "timeout",
    "retries",
    "prefetch",
    "idle_timeout",
    "allow_http",
    "ca_file",
    "expose_token",
    "kind",
    "refresh_token",
    "refresh_token_store",
    "subject_token_from",
    "subject_token_type",
    "authority",
    "tenant_id",
    "token_file",
    "private_key_file",
    "timeoutt",
];

const ROUTE_KEYS: &[&str] = &[
    "name",
    "match",
    "provider",
    "upstream",
    "strip_prefix",
    "preserve_host",
    "header",
    "value_prefix",
    "overwrite",
    "retry_on",
    "max_replay_body",
    "on_token_error",
    "intercept",
    "ca_file",
    "connect_timeout",
    "upstream_timeout",
    "allow_http",
    "allowed_origins",
    "clients",
    "methds",
];

/// One-line values of every type, plausible and not.
const VALUES: &[&str] = &[
    "",
    "127.0.0.1:4140",
    "0.0.0.0:0",
    "[::1]:80",
    "https://idp.test/token",
    "http://127.0.0.1:1/t",
    "http://idp.test/t",
    "ftp://x",
    "c",
    "s3cret",
    "basic",
    "post",
    "private_key_jwt",
    "client_credentials",
    "refresh_token",
    "token_exchange",
    "azure_ad",
    "static_file",
    "5s",
    "1h",
    "0ms",
    "soon",
    "-1",
    "0",
    "3",
    "99999999999999999999",
    "1.5",
    "true",
    "false",
    "maybe",
    "null",
    "~",
    "[read, write]",
    "[]",
    "[401, 503]",
    "[GET, POST]",
    "{ tenant: blue }",
    "{ max_attempts: 0 }",
    "{ max_attempts: 2, initial_backoff: 1s }",
    "{ header: Authorization }",
    "{ host: api.test, path_prefix: /v2 }",
    "{ path_prefix: v2 }",
    "{ host: '*.test:*' }",
    "{ app: pw }",
    "{}",
    "api.test",
    "api.test:99999",
    "/v2",
    "p",
    "forward",
    "deny",
    "reject",
    "\"Bearer \"",
    "'x'",
    "${NOT_SET}",
    "${file:/nonexistent}",
    "1MiB",
    "\"\\u00e9\"",
    "é中😀",
    "[443, 8443]",
];

/// Values that break the YAML around them (aliases, anchors, tags): now and then.
const BREAKING: &[&str] = &["*a", "&a x", "!!binary x", "{", "]", "a: b: c", "-"];

fn value(rng: &mut fastrand::Rng) -> &'static str {
    if rng.u8(..60) == 0 {
        BREAKING[rng.usize(..BREAKING.len())]
    } else {
        VALUES[rng.usize(..VALUES.len())]
    }
}

/// Random `key: value` lines at `indent`, distinct keys from `keys` but `taken`.
fn entries(rng: &mut fastrand::Rng, keys: &[&str], taken: &[&str], indent: &str) -> String {
    let mut keys: Vec<&str> = keys
        .iter()
        .filter(|k| !taken.contains(k))
        .copied()
        .collect();
    rng.shuffle(&mut keys);
    let n = rng.usize(..=4);
    keys.into_iter()
        .take(n)
        .map(|key| format!("{indent}{key}: {}\n", value(rng)))
        .collect()
}

/// A config with a working provider and route, then random keys with random values at
/// every level: most of it parses as YAML, so the compiler's checks are what is tested.
fn structured(seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut text = String::from("providers:\n");
    for name in ["p", "q"].into_iter().take(rng.usize(1..=2)) {
        text.push_str(&format!(
            "  {name}:\n    token_url: https://idp.test/t\n    client_id: c\n    client_secret: s\n"
        ));
        let taken = ["token_url", "client_id", "client_secret"];
        text.push_str(&entries(&mut rng, PROVIDER_KEYS, &taken, "    "));
    }
    text.push_str("routes:\n");
    for _ in 0..rng.usize(..=2) {
        text.push_str("  - match: { path_prefix: /api }\n    provider: p\n");
        text.push_str(&entries(
            &mut rng,
            ROUTE_KEYS,
            &["match", "provider"],
            "    ",
        ));
    }
    text.push_str(&entries(&mut rng, TOP_KEYS, &[], ""));
    text
}

/// Lines of any keys at random depths with random values, list items and noise: mostly
/// not YAML at all.
fn lines(seeds: Vec<u64>) -> String {
    let keys = [TOP_KEYS, PROVIDER_KEYS, ROUTE_KEYS].concat();
    let lines: Vec<String> = seeds
        .into_iter()
        .map(|seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            let indent = "  ".repeat(rng.usize(..4));
            let dash = if rng.bool() { "- " } else { "" };
            let key = keys[rng.usize(..keys.len())];
            let value = value(&mut rng);
            let noise: String = (0..rng.usize(..=6)).map(|_| rng.char(' '..='~')).collect();
            match rng.u8(..10) {
                0 => format!("{indent}{dash}{key}: {noise}"),
                1 => format!("{indent}{noise}"),
                2 => format!("{indent}{dash}{key}:"),
                _ => format!("{indent}{dash}{key}: {value}"),
            }
        })
        .collect();
    lines.join("\n")
}

/// YAML-ish text, drawn from seeds (a failing case shrinks by lines).
fn yamlish() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u64>(), 0..24).prop_map(lines),
        3 => any::<u64>().prop_map(structured),
    ]
}

/// Any characters, half of them from the alphabet of host patterns.
fn hostish() -> impl Strategy<Value = String> {
    (0usize..=40, any::<u64>()).prop_map(|(len, seed)| {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len)
            .map(|_| match rng.u8(..4) {
                0 => rng.char(..),
                1 => rng.char(' '..='~'),
                _ => ['a', 'Z', '0', '9', '.', ':', '*', '[', ']', '-', '_', '%'][rng.usize(..12)],
            })
            .collect()
    })
}

/// A host name: 1–4 labels of letters, digits, `-` and `_`.
fn hostname() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9_][a-z0-9_-]{0,9}", 1..=4).prop_map(|l| l.join("."))
}

/// `s` with each ASCII letter's case chosen by `mask`.
fn recase(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_loader(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        assert_located(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yamlish_text_never_panics_the_loader(text in yamlish()) {
        assert_located(&text)?;
    }

    #[test]
    fn arbitrary_host_patterns_and_hosts_never_panic(
        pattern in hostish(),
        host in hostish(),
        port in proptest::option::of(any::<u16>()),
        https in any::<bool>(),
    ) {
        if let Ok(p) = parse_host_pattern(&pattern) {
            let _ = p.matches(&host, port, if https { 443 } else { 80 });
        }
    }

    #[test]
    fn an_exact_pattern_matches_its_host_in_any_case_on_the_default_port_only(
        host in hostname(),
        mask in any::<u64>(),
        port in 1u16..,
        https in any::<bool>(),
    ) {
        let default = if https { 443 } else { 80 };
        let p = parse_host_pattern(&recase(&host, mask)).unwrap();
        let asked = recase(&host, !mask);
        prop_assert!(p.matches(&asked, None, default));
        prop_assert!(p.matches(&asked, Some(default), default));
        prop_assert_eq!(p.matches(&asked, Some(port), default), port == default);
        let (longer, sub) = (format!("x{host}"), format!("a.{host}"));
        prop_assert!(!p.matches(&longer, None, default));
        prop_assert!(!p.matches(&sub, None, default));
        // `:*` on any port; `:N` on N only, whatever the scheme.
        let any = parse_host_pattern(&format!("{host}:*")).unwrap();
        prop_assert!(any.matches(&asked, Some(port), default));
        prop_assert!(any.matches(&asked, None, default));
        let only = parse_host_pattern(&format!("{host}:{port}")).unwrap();
        prop_assert!(only.matches(&asked, Some(port), default));
        prop_assert_eq!(only.matches(&asked, None, default), port == default);
        prop_assert_eq!(only.matches(&asked, Some(port ^ 1), default), false);
    }
}
