use super::*;

fn parse(yaml: &str) -> (Parsed, Vec<Problem>) {
    split(read(yaml).unwrap(), &Locations::index(yaml))
}

fn summary(problems: &[Problem]) -> Vec<(String, String)> {
    problems
        .iter()
        .map(|p| (p.path.to_string(), p.message.clone()))
        .collect()
}

#[test]
fn reports_problems_of_every_entry() {
    let yaml = "bogus_top: 1\nlog: { formt: json }\nproviders:\n  a:\n    timeoutt: 1s\n    prefetch: hunter2\n  b:\n    retries: { tries: 3 }\nroutes:\n  - match: { hots: x }\n  - methods: GET\n  - provider: a\n";
    let (raw, problems) = parse(yaml);
    let paths: Vec<String> = problems.iter().map(|p| p.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "bogus_top",
            "log.formt",
            "providers.a.timeoutt",
            "providers.a.prefetch",
            "providers.b.retries.tries",
            "routes[0].match.hots",
            "routes[1].methods"
        ]
    );
    assert!(!problems.iter().any(|p| p.message.contains("hunter2")));
    assert_eq!(raw.routes.len(), 3, "route slots are kept");
    assert!(raw.routes[2].is_some());
    // A wrong type no longer hides the provider: the rest of it is still checked.
    assert!(raw.providers.contains_key("a") && raw.broken_providers.is_empty());
    let poisoned: Vec<String> = raw.poisoned.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        poisoned,
        [
            "log.format",
            "providers.a.timeout",
            "providers.a.prefetch",
            "routes[0].match.host"
        ]
    );
}

#[test]
fn unknown_keys_suggest_the_nearest_or_the_block_they_belong_to() {
    let yaml = "listn: x\nlimits: { idle: 1s, bogus: 1 }\nproviders:\n  a:\n    token-url: x\n    frobnicate: 1\n    host: x\nroutes:\n  - host: a\n    matc: { path_prefx: /a }\n";
    let (_, problems) = parse(yaml);
    assert_eq!(
        summary(&problems),
        [
            ("listn".into(), "unknown field `listn`; did you mean `listen`?".into()),
            ("limits.bogus".into(), "unknown field `bogus`, expected one of: header_read_timeout, body_read_timeout, idle_timeout, max_connections, max_buffered_bodies".into()),
            ("limits.idle".into(), "unknown field `idle`; did you mean `idle_timeout`?".into()),
            ("providers.a.frobnicate".into(), "unknown field `frobnicate`: not a key of providers.<name> (docs/config.md lists them all)".into()),
            ("providers.a.host".into(), "unknown field `host` here; it is a key of routes[].match".into()),
            ("providers.a.token-url".into(), "unknown field `token-url`; did you mean `token_url`?".into()),
            ("routes[0].host".into(), "unknown field `host` here; it is a key of routes[].match".into()),
            ("routes[0].matc".into(), "unknown field `matc`; did you mean `match`?".into()),
        ] as [(String, String); 8]
    );
    assert!(problems.iter().all(|p| p.place == Place::Key));
}

#[test]
fn the_blocks_of_sections_9_to_11_judge_their_own_keys() {
    assert!(super::super::schema::NOT_BUILT.is_empty());
    let yaml = "token_store: { redis: { urll: x } }\nno_proxy: [a]\nproviders:\n  a: { dpop: { alg: ES256, key: k } }\nroutes:\n  - { sign: { alg: ed25519, keyid: k }, egress_proxy: x }\n";
    let (_, problems) = parse(yaml);
    let got = summary(&problems);
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "token_store.redis.urll",
            "providers.a.dpop.key",
            "routes[0].sign.keyid"
        ]
    );
    assert_eq!(got[1].1, "unknown field `key`; did you mean `key_file`?");
    assert_eq!(got[2].1, "unknown field `keyid`; did you mean `key_id`?");
}

#[test]
fn every_wrong_type_in_a_block_is_reported() {
    let yaml = "tunnel_ports: [443, [1], x]\nworkers: [2]\nshutdown_grace: { s: 1 }\nlog: 12345\nproviders:\n  a:\n    prefetch: maybe\n    scopes: read\n    retries: 3\n    extra_params: { a: [1], b: ok }\n    timeout: 1s\nroutes:\n  - match: api.example.com\n    overwrite: nope\n    provider: a\n  - 7\n";
    let (raw, problems) = parse(yaml);
    assert_eq!(
        summary(&problems),
        [
            (
                "log".into(),
                "invalid type: integer, expected a mapping of keys".into()
            ),
            (
                "shutdown_grace".into(),
                "invalid type: map, expected a scalar value (string or number)".into()
            ),
            (
                "tunnel_ports[1]".into(),
                "invalid type: sequence, expected a scalar value (string or number)".into()
            ),
            (
                "workers".into(),
                "invalid type: sequence, expected a scalar value (string or number)".into()
            ),
            (
                "providers.a.extra_params.a".into(),
                "invalid type: sequence, expected a scalar value (string or number)".into()
            ),
            (
                "providers.a.prefetch".into(),
                "invalid type: string \"…\", expected true or false".into()
            ),
            (
                "providers.a.retries".into(),
                "invalid type: integer, expected a mapping of keys".into()
            ),
            (
                "providers.a.scopes".into(),
                "invalid type: string \"…\", expected a list ([a, b], or one `- item` per line)"
                    .into()
            ),
            (
                "routes[0].match".into(),
                "invalid type: string \"…\", expected a mapping of keys".into()
            ),
            (
                "routes[0].overwrite".into(),
                "invalid type: string \"…\", expected true or false".into()
            ),
            (
                "routes[1]".into(),
                "invalid type: integer, expected a mapping of keys".into()
            ),
        ] as [(String, String); 11]
    );
    let a = &raw.providers["a"];
    assert_eq!(a.timeout.as_ref().map(|t| t.0.as_str()), Some("1s"));
    assert_eq!(a.extra_params.as_ref().map(|p| p.len()), Some(1));
    assert_eq!(raw.top.tunnel_ports.as_ref().map(|p| p.len()), Some(3));
    assert!(raw.routes[0].as_ref().is_some_and(|r| r.provider.is_some()));
    assert!(raw.routes[1].is_none());
    assert!(!problems.iter().any(|p| p.message.contains("12345")));
}

#[test]
fn keys_written_twice_are_reported_at_the_second() {
    let yaml = "listen: \"hunter2\"\nproviders: {}\nlisten: x\n";
    let (raw, problems) = parse(yaml);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path.to_string(), "listen");
    assert_eq!(problems[0].message, "duplicate key `listen` (first at 1:1)");
    assert_eq!(problems[0].place, Place::At(3, 1));
    assert_eq!(raw.poisoned, [YamlPath::default().key("listen")]);
}

#[test]
fn a_client_name_written_twice_is_not_shown_when_it_may_hold_a_password() {
    let yaml = "clients: { app:s3cret: x, app:s3cret: y, ok: p, ok: q }\n";
    let (_, problems) = parse(yaml);
    let got: Vec<(String, &str, Place)> = problems
        .iter()
        .map(|p| (p.path.to_string(), p.message.as_str(), p.place))
        .collect();
    assert_eq!(
        got[..2],
        [
            (
                "clients".to_string(),
                "duplicate key (a client name, not shown) (first at 1:12)",
                Place::At(1, 27)
            ),
            (
                "clients.ok".to_string(),
                "duplicate key `ok` (first at 1:42)",
                Place::At(1, 49)
            ),
        ]
    );
    assert!(!problems.iter().any(|p| p.message.contains("s3cret")));
}
