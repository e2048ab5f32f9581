//! `validate` as helpful as a compiler: every problem of a file, in file order, each at
//! its line and column, with "did you mean" for misspelt keys and values, no follow-up
//! noise after a problem, and no library text.

use super::tests::load;

/// `top` lines, then a working provider `p` and its `provider` lines, then a working
/// route and its `route` lines. With one `top` line: `providers:` is line 2, the
/// provider's lines start at 7, the route (`- match`) is on line 9 when `provider` is
/// one line.
fn cfg(top: &str, provider: &str, route: &str) -> String {
    format!(
        "{top}providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\n{provider}routes:\n  - match: {{ host: api.test }}\n    provider: p\n    upstream: https://api.test\n{route}"
    )
}

fn problems(yaml: &str) -> Vec<String> {
    load(yaml).expect_err(yaml)
}

/// Each case: the file fails with exactly these problems, in this order.
fn assert_problems(cases: &[(String, &[&str])]) {
    for (yaml, want) in cases {
        assert_eq!(problems(yaml), *want, "in\n{yaml}");
    }
}

#[test]
fn misspelt_keys_get_the_nearest_key_or_the_block_they_belong_in() {
    assert_problems(&[
        (
            cfg("listn: 127.0.0.1:1\n", "    timout: 5s\n", "    value_prefx: x\n"),
            &[
                "proxy.yaml:1:1: listn: unknown field `listn`; did you mean `listen`?",
                "proxy.yaml:7:5: providers.p.timout: unknown field `timout`; did you mean `timeout`?",
                "proxy.yaml:12:5: routes[0].value_prefx: unknown field `value_prefx`; did you mean `value_prefix`?",
            ],
        ),
        (
            cfg("", "    path_prefix: /a\n", "    methods: [GET]\n"),
            &[
                "proxy.yaml:6:5: providers.p.path_prefix: unknown field `path_prefix` here; it is a key of routes[].match",
                "proxy.yaml:11:5: routes[0].methods: unknown field `methods` here; it is a key of routes[].match",
            ],
        ),
        (
            cfg("", "    frobnicate: 1\n", ""),
            &["proxy.yaml:6:5: providers.p.frobnicate: unknown field `frobnicate`: not a key of providers.<name> (docs/config.md lists them all)"],
        ),
        (
            // The key it most likely meant is not also reported missing.
            "providers:\n  p:\n    tokn_url: https://idp.test/t\n    client_id: c\n    client_secret: s\n".into(),
            &["proxy.yaml:3:5: providers.p.tokn_url: unknown field `tokn_url`; did you mean `token_url`?"],
        ),
    ]);
}

#[test]
fn misspelt_values_get_the_nearest_value() {
    let yaml = cfg(
        "unmatched: forwrd\nreadiness: listen\nlog: { format: jsn, level: INFO }\n",
        "    grant_type: client_credential\n    client_auth: basik\n",
        "    on_token_error: rejct\n",
    );
    let want = [
        "proxy.yaml:1:12: unmatched: unknown value: expected `forward` or `deny`; did you mean `forward`?",
        "proxy.yaml:2:12: readiness: unknown value: expected `tokens` or `listening`; did you mean `listening`?",
        "proxy.yaml:3:16: log.format: unknown value: expected `text` or `json`; did you mean `json`?",
        "proxy.yaml:3:28: log.level: unknown value: expected `trace`, `debug`, `info`, `warn` or `error`; did you mean `info`?",
        "proxy.yaml:9:17: providers.p.grant_type: unknown value: expected `client_credentials`, `refresh_token` or `token_exchange`; did you mean `client_credentials`?",
        "proxy.yaml:10:18: providers.p.client_auth: unknown value: expected `basic`, `post`, `private_key_jwt`, `client_assertion_file` or `tls_client_auth`; did you mean `basic`?",
        "proxy.yaml:15:21: routes[0].on_token_error: unknown value: expected `reject` or `forward`; did you mean `reject`?",
    ];
    assert_eq!(problems(&yaml), want);
    assert_problems(&[
        (
            "providers:\n  f:\n    kind: static\n    token_file: /t\n".into(),
            &["proxy.yaml:3:11: providers.f.kind: unknown value: expected `oauth2`, `azure_ad` or `static_file`; did you mean `static_file`?"],
        ),
        (
            cfg("", "    client_auth: private_key_jwt\n    private_key_file: /k.pem\n    signing_alg: rs256\n", ""),
            &[
                "proxy.yaml:5:20: providers.p.client_secret: not used with this client_auth: remove it",
                "proxy.yaml:8:18: providers.p.signing_alg: unknown value: expected `RS256`, `ES256` or `PS256`; did you mean `RS256`?",
            ],
        ),
    ]);
}

#[test]
fn a_misspelt_choice_is_checked_as_the_nearest_one() {
    // `kind: oauth` is checked as `oauth2`, so the grant's typo shows too; `grant_type:
    // refresh_tokn` as `refresh_token`, so its keys are not "only with" errors.
    assert_problems(&[
        (
            cfg("", "    kind: oauth\n    grant_type: refresh_tokn\n    refresh_token: r\n", ""),
            &[
                "proxy.yaml:6:11: providers.p.kind: unknown value: expected `oauth2`, `azure_ad` or `static_file`; did you mean `oauth2`?",
                "proxy.yaml:7:17: providers.p.grant_type: unknown value: expected `client_credentials`, `refresh_token` or `token_exchange`; did you mean `refresh_token`?",
            ],
        ),
    ]);
}

#[test]
fn methods_are_standard_known_or_deliberate_extensions() {
    for ok in [
        "[GET, get, Post]",
        "[PURGE, PROPFIND, MKCOL]",
        "[BREW, X-CUSTOM]",
    ] {
        let yaml = cfg("", "", "").replace(
            "{ host: api.test }",
            &format!("{{ host: api.test, methods: {ok} }}"),
        );
        assert!(load(&yaml).is_ok(), "{ok}: {:?}", load(&yaml).err());
    }
    let yaml = cfg("", "", "").replace(
        "{ host: api.test }",
        "{ host: api.test, methods: [GETT, POTS, purge, brew, 'GET /'] }",
    );
    assert_eq!(
        problems(&yaml),
        [
            "proxy.yaml:7:40: routes[0].match.methods[0]: not an HTTP method this proxy knows; did you mean `GET`?",
            "proxy.yaml:7:46: routes[0].match.methods[1]: not an HTTP method this proxy knows; did you mean `POST`?",
            "proxy.yaml:7:52: routes[0].match.methods[2]: not an HTTP method this proxy knows; did you mean `PURGE`?",
            "proxy.yaml:7:59: routes[0].match.methods[3]: not a standard HTTP method; an extension method is case-sensitive: write it in capitals as it is sent (A-Z, 0-9, '-', '_')",
            "proxy.yaml:7:65: routes[0].match.methods[4]: not a standard HTTP method; an extension method is case-sensitive: write it in capitals as it is sent (A-Z, 0-9, '-', '_')",
        ]
    );
}

#[test]
fn a_wrong_type_does_not_hide_the_rest_of_the_block() {
    let yaml = cfg(
        "workers: [2]\n",
        "    prefetch: maybe\n    timeout: soon\n    grant_type: client_credentails\n",
        "  - match: api.test\n    provider: p\n    overwrite: nope\n    retry_on: [abc]\n",
    );
    assert_eq!(
        problems(&yaml),
        [
            "proxy.yaml:1:10: workers: invalid type: sequence, expected a scalar value (string or number)",
            "proxy.yaml:7:15: providers.p.prefetch: invalid type: string \"…\", expected true or false",
            "proxy.yaml:8:14: providers.p.timeout: invalid duration \"soon\": expected a number with a unit, e.g. 250ms, 10s, 5m, 1h",
            "proxy.yaml:9:17: providers.p.grant_type: unknown value: expected `client_credentials`, `refresh_token` or `token_exchange`; did you mean `client_credentials`?",
            // Not also "a route without match.host needs an upstream": `match` is unreadable.
            "proxy.yaml:14:12: routes[1].match: invalid type: string \"…\", expected a mapping of keys",
            "proxy.yaml:16:16: routes[1].overwrite: invalid type: string \"…\", expected true or false",
            "proxy.yaml:17:16: routes[1].retry_on[0]: invalid status \"abc\": expected a 4xx or 5xx code",
        ]
    );
}

#[test]
fn keys_written_twice_name_both_places_without_library_text() {
    let yaml = cfg(
        "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
        "    timeout: 1s\n    timeout: x\n",
        "    name: a\n    name: b\n",
    );
    assert_eq!(
        problems(&yaml),
        [
            "proxy.yaml:2:1: listen: duplicate key `listen` (first at 1:1)",
            "proxy.yaml:9:5: providers.p.timeout: duplicate key `timeout` (first at 8:5)",
            "proxy.yaml:15:5: routes[0].name: duplicate key `name` (first at 14:5)",
        ]
    );
    // Two providers of one name: one problem, and the route naming it is not flagged.
    let yaml = cfg("", "  p:\n    token_url: x\n", "");
    assert_eq!(
        problems(&yaml),
        ["proxy.yaml:6:3: providers.p: duplicate key `p` (first at 2:3)"]
    );
}

#[test]
fn routes_with_the_same_name_say_where_the_name_comes_from() {
    let route = |extra: &str| {
        format!("  - match: {{ host: api.test }}\n    provider: p\n    upstream: https://api.test\n{extra}")
    };
    let base = cfg("", "", "");
    assert_problems(&[

        (
            format!("{base}    name: x\n{}", route("    name: x\n")),
            &["proxy.yaml:14:11: routes[1].name: duplicate route name \"x\" (also routes[0])"],
        ),
        (
            format!("{base}{}", route("    name: api.test\n")),
            &["proxy.yaml:13:11: routes[1].name: duplicate route name \"api.test\": it is the default name of routes[0] (host and path prefix); choose another, or give routes[0] a `name:`"],
        ),
    ]);
}

/// Routes may share a host and prefix (one per method, say): a default name that is
/// taken gets the route's index.
#[test]
fn default_route_names_are_made_unique() {
    let text = format!(
        "{}  - match: {{ host: api.test, methods: [GET] }}\n    provider: p\n    upstream: https://api.test\n  - match: {{ host: api.test, methods: [POST] }}\n    provider: p\n    upstream: https://api.test\n",
        cfg("", "", "")
    );
    let config =
        crate::config::Config::from_text(std::path::Path::new("proxy.yaml"), &text, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api.test", "api.test#1", "api.test#2"]);
}

#[test]
fn file_references_are_located_at_their_value_in_every_yaml_shape() {
    let f = "${file:/nonexistent/s}";
    let shapes = [
        (format!("    client_secret: {f}\n"), "5:20"),
        (
            format!("    client_secret: \"{f}\"   # a comment\n"),
            "5:20",
        ),
        (format!("    # comment\n    client_secret: {f}\n"), "6:20"),
        (format!("    client_secret:\n      {f}\n"), "6:7"),
        (format!("    client_secret: |\n      {f}\n"), "6:7"),
        (format!("    client_secret: >-\n      {f}\n"), "6:7"),
        (
            format!("    extra_params:\n      a: {f}\n    client_secret: s\n"),
            "6:10",
        ),
        (
            format!("    scopes:\n      - a\n      - {f}\n    client_secret: s\n"),
            "7:9",
        ),
        (
            format!("    scopes: [a,\n      \"{f}\"]\n    client_secret: s\n"),
            "6:7",
        ),
    ];
    for (lines, at) in shapes {
        let yaml = format!(
            "providers:\n  p:\n    token_url: https://idp.test/t\n    client_id: c\n{lines}"
        );
        let got = problems(&yaml);
        let want = format!("proxy.yaml:{at}: providers.p.");
        assert!(
            got.len() == 1
                && got[0].starts_with(&want)
                && got[0].ends_with("cannot read file /nonexistent/s: no such file"),
            "want {want}… in {got:#?} for\n{yaml}"
        );
    }
    // CRLF line ends and a byte-order mark do not shift lines.
    let yaml = format!("\u{feff}providers:\r\n  p:\r\n    token_url: https://idp.test/t\r\n    client_id: c\r\n    client_secret: {f}\r\n");
    assert_eq!(problems(&yaml), ["proxy.yaml:5:20: providers.p.client_secret: cannot read file /nonexistent/s: no such file"]);
    // A failed `${file:}` is one problem, not also a missing refresh token.
    let yaml = cfg(
        "",
        &format!("    grant_type: refresh_token\n    refresh_token: {f}\n"),
        "",
    );
    assert_eq!(problems(&yaml), ["proxy.yaml:7:20: providers.p.refresh_token: cannot read file /nonexistent/s: no such file"]);
}

#[test]
fn an_unquoted_reference_in_flow_syntax_gets_a_hint() {
    let yaml = "clients: { app: ${file:/secrets/app} }\n";
    let got = problems(yaml);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("proxy.yaml:1:"), "{got:#?}");
    assert!(
        got[0].ends_with("(inside { } or [ ], quote a value that holds ${…}: \"${file:/path}\")"),
        "{got:#?}"
    );
}

#[test]
fn a_missing_key_is_located_at_its_block_and_adds_no_follow_up_noise() {
    assert_problems(&[
        (
            "providers:\n  p:\n    token_url: https://idp.test/t\n    client_id: c\n".into(),
            &["proxy.yaml:2:3: providers.p.client_secret: missing required field (the client secret)"],
        ),
        (
            // An unreadable key file is the only problem: the method is known, so no
            // client_secret is asked for.
            cfg("", "    client_auth: private_key_jwt\n    private_key_file: /nonexistent/k\n", "").replace("    client_secret: s\n", ""),
            &["proxy.yaml:6:23: providers.p.private_key_file: cannot read the private key /nonexistent/k: no such file"],
        ),
    ]);
}

#[test]
fn readiness_defaults_to_tokens() {
    use super::Readiness;
    assert_eq!(load(&cfg("", "", "")).unwrap().readiness, Readiness::Tokens);
    let c = load(&cfg("readiness: listening\n", "", "")).unwrap();
    assert_eq!(c.readiness, Readiness::Listening);
}
