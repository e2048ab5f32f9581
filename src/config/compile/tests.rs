use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "CRM_ID" => Some("crm-client".into()),
        "CRM_SECRET" => Some("top-secret-value".into()),
        _ => None,
    }
}

pub(super) fn load(yaml: &str) -> Result<Config, Vec<String>> {
    Config::from_text(Path::new("proxy.yaml"), yaml, &env).map_err(|e| e.problems)
}

pub(super) const GOOD: &str = "\
listen: 127.0.0.1:4480
admin_listen: 127.0.0.1:4481
providers:
  crm:
    token_url: https://idp.example.com/oauth2/token
    client_id: ${CRM_ID}
    client_secret: ${CRM_SECRET}
    scopes: [read, write]
routes:
  - match: { host: api.crm.example.com, path_prefix: /v2 }
    provider: crm
";

#[test]
fn compiles_a_good_config_with_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:4480");
    let p = &c.providers[0];
    let client = p.origin.oauth().unwrap();
    assert_eq!(client.client_id, "crm-client");
    assert_eq!(
        client.client_secret.as_ref().unwrap().expose(),
        "top-secret-value"
    );
    assert_eq!(client.client_auth, ClientAuth::Basic);
    assert_eq!(p.timeout, Duration::from_secs(10));
    assert_eq!(p.retries.max_attempts, 3);
    let r = &c.routes[0];
    assert_eq!(r.name, "api.crm.example.com/v2");
    assert_eq!(r.header, http::header::AUTHORIZATION);
    assert_eq!(r.value_prefix, "Bearer ");
    assert_eq!(r.retry_on, vec![StatusCode::UNAUTHORIZED]);
    assert_eq!(r.max_replay_body, 1 << 20);
    assert!(r.overwrite);
    // The one warning: this route has no upstream and no tls_intercept, so under SPEC §4
    // Plaintext its requests (plain http:// to a non-loopback host) are refused.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("proxy.yaml:10:20: routes[0].match.host: ")
            && c.warnings[0].contains("403 insecure_destination"),
        "{:?}",
        c.warnings
    );
}

/// Each broken config → the message must name the line and the field.
#[test]
fn every_error_names_line_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "client_id: ${CRM_ID}",
            "client_id: ${MISSING_VAR}",
            "proxy.yaml:6:16: providers.crm.client_id: environment variable MISSING_VAR is not set",
        ),
        (
            "client_secret: ${CRM_SECRET}",
            "client_secret: ${file:/nonexistent/s}",
            "proxy.yaml:7:20: providers.crm.client_secret: cannot read file /nonexistent/s",
        ),
        (
            "scopes: [read, write]",
            "scopes: [read, write]\n    timeout: 10 seconds",
            "proxy.yaml:9:14: providers.crm.timeout: invalid duration",
        ),
        (
            "https://idp.example.com/oauth2/token",
            "not a url",
            "proxy.yaml:5:16: providers.crm.token_url: invalid URL",
        ),
        (
            "https://idp.example.com/oauth2/token",
            "http://idp.example.com/token",
            "providers.crm.token_url: plain http://",
        ),
        (
            "    provider: crm",
            "    provider: nope",
            "proxy.yaml:11:15: routes[0].provider: unknown provider \"nope\" (defined: crm)",
        ),
        (
            "path_prefix: /v2",
            "path_prefix: v2",
            "proxy.yaml:10:54: routes[0].match.path_prefix: invalid path prefix",
        ),
        (
            "listen: 127.0.0.1:4480",
            "listen: nowhere",
            "proxy.yaml:1:9: listen: invalid address",
        ),
    ];
    for (from, to, want) in cases {
        let yaml = GOOD.replace(from, to);
        let problems = load(&yaml).expect_err(to);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(want) || p.contains(want)),
            "want {want:?} in {problems:#?}"
        );
    }
}

#[test]
fn unknown_fields_are_errors_with_location() {
    let yaml = GOOD.replace(
        "    scopes: [read, write]",
        "    scopes: [read, write]\n    client_secert: oops",
    );
    let problems = load(&yaml).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("proxy.yaml:9:5: "), "{problems:?}");
    assert!(problems[0].contains("client_secert"), "{problems:?}");
}

#[test]
fn collects_all_errors_at_once() {
    let yaml = GOOD
        .replace("${CRM_ID}", "${NOPE1}")
        .replace(
            "scopes: [read, write]",
            "scopes: [read, write]\n    timeout: forever",
        )
        .replace("provider: crm", "provider: ghost");
    let problems = load(&yaml).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn errors_never_echo_secret_values() {
    // A secret pasted where a number belongs, and a secret-bearing bad duration.
    let yaml = GOOD.replace(
        "scopes: [read, write]",
        "scopes: [read, write]\n    retries: { max_attempts: [top-secret-value] }",
    );
    let problems = load(&yaml).unwrap_err().join("\n");
    assert!(!problems.contains("top-secret-value"), "{problems}");
    let yaml = GOOD.replace(
        "    provider: crm",
        "    provider: crm\n    upstream_timeout: ${CRM_SECRET}",
    );
    let problems = load(&yaml).unwrap_err().join("\n");
    assert!(
        problems.contains("routes[0].upstream_timeout"),
        "{problems}"
    );
    let yaml = GOOD.replace(
        "listen: 127.0.0.1:4480",
        "listen: \"hunter2-secret\"\nlisten: x",
    );
    let problems = load(&yaml).unwrap_err().join("\n");
    assert!(!problems.contains("hunter2-secret"), "{problems}");
}

#[test]
fn combinations_that_make_no_sense_are_errors() {
    for (from, to, want) in [
        (
            "client_id: ${CRM_ID}",
            "client_id: x\n    client_auth: private_key_jwt",
            "providers.crm.private_key_file: missing required field",
        ),
        (
            "client_id: ${CRM_ID}",
            "client_id: x\n    client_cert_file: /c.pem",
            "providers.crm.client_cert_file: only with client_auth: tls_client_auth",
        ),
        (
            "client_id: ${CRM_ID}",
            "client_id: x\n    kind: static_file\n    token_file: /t",
            "providers.crm.token_url: not used with kind: static_file",
        ),
        (
            "client_id: ${CRM_ID}",
            "client_id: x\n    grant_type: token_exchange",
            "providers.crm.subject_token_from.header: missing required field",
        ),
        (
            "client_id: ${CRM_ID}",
            "client_id: x\n    tenant_id: t",
            "providers.crm.tenant_id: only for kind: azure_ad",
        ),
        (
            "listen: 127.0.0.1:4480",
            "listen: 127.0.0.1:4480\ntls_intercept: { ca_cert_file: a, ca_key_file: b }",
            "proxy.yaml:2:32: tls_intercept.ca_cert_file: cannot read the CA certificate a: no such file",
        ),
    ] {
        let problems = load(&GOOD.replace(from, to)).unwrap_err().join("\n");
        assert!(problems.contains(want), "want {want:?} in {problems}");
    }
}

#[test]
fn route_rules() {
    let no_host_no_upstream = GOOD.replace(
        "match: { host: api.crm.example.com, path_prefix: /v2 }",
        "match: { path_prefix: /v2 }",
    );
    assert!(load(&no_host_no_upstream)
        .unwrap_err()
        .join("\n")
        .contains("needs an upstream"));
    let shadowed = format!("{GOOD}  - match: {{ host: api.crm.example.com, path_prefix: /v2/users }}\n    provider: crm\n");
    let c = load(&shadowed).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("can never match")),
        "{:?}",
        c.warnings
    );
    let dup = format!("{GOOD}  - match: {{ host: b.example.com }}\n    name: api.crm.example.com/v2\n    provider: crm\n");
    assert!(load(&dup)
        .unwrap_err()
        .join("\n")
        .contains("duplicate route name"));
    let loopback_http = GOOD.replace(
        "https://idp.example.com/oauth2/token",
        "http://127.0.0.1:9/token",
    );
    assert!(load(&loopback_http).is_ok());
    let allowed = GOOD.replace(
        "https://idp.example.com/oauth2/token",
        "http://idp.example.com/token\n    allow_http: true",
    );
    assert!(load(&allowed)
        .unwrap()
        .warnings
        .iter()
        .any(|w| w.contains("unencrypted")));
}

#[test]
fn empty_file_is_valid_with_defaults() {
    let c = load("").unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.unmatched, Unmatched::Forward);
}

#[test]
fn azure_ad_builds_the_token_url() {
    let yaml = "providers:\n  az:\n    kind: azure_ad\n    tenant_id: 11111111-2222-3333-4444-555555555555\n    client_id: app\n    client_secret: s\n    scopes: [https://management.azure.com/.default]\n";
    let c = load(yaml).unwrap();
    assert_eq!(
        c.providers[0].origin.oauth().unwrap().token_url.as_str(),
        "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token"
    );
    let sovereign = yaml.replace(
        "    client_id: app",
        "    authority: https://login.microsoftonline.us/\n    client_id: app",
    );
    assert!(load(&sovereign).unwrap().providers[0]
        .origin
        .oauth()
        .unwrap()
        .token_url
        .as_str()
        .starts_with("https://login.microsoftonline.us/1111"));
    let no_scopes = yaml.replace("    scopes: [https://management.azure.com/.default]\n", "");
    assert!(load(&no_scopes)
        .unwrap_err()
        .join("\n")
        .contains("providers.az.scopes: kind: azure_ad needs scopes"));
    let with_url = yaml.replace(
        "    client_id: app",
        "    token_url: https://x.test/t\n    client_id: app",
    );
    assert!(load(&with_url)
        .unwrap_err()
        .join("\n")
        .contains("remove token_url"));
}

#[test]
fn grants_and_their_keys() {
    let rt = GOOD.replace(
        "client_id: ${CRM_ID}",
        "client_id: x\n    grant_type: refresh_token\n    refresh_token: rt-1",
    );
    assert!(matches!(
        load(&rt).unwrap().providers[0].origin.grant(),
        Some(Grant::RefreshToken { .. })
    ));
    let missing = GOOD.replace(
        "client_id: ${CRM_ID}",
        "client_id: x\n    grant_type: refresh_token",
    );
    assert!(load(&missing)
        .unwrap_err()
        .join("\n")
        .contains("providers.crm.refresh_token: missing required field"));
    let wrong = GOOD.replace(
        "client_id: ${CRM_ID}",
        "client_id: x\n    refresh_token: rt",
    );
    assert!(load(&wrong)
        .unwrap_err()
        .join("\n")
        .contains("providers.crm.refresh_token: only with grant_type: refresh_token"));
    let x = GOOD.replace("client_id: ${CRM_ID}", "client_id: x\n    grant_type: token_exchange\n    subject_token_from: { header: X-Subject-Token }\n    prefetch: true");
    assert!(load(&x)
        .unwrap_err()
        .join("\n")
        .contains("providers.crm.prefetch: not possible with grant_type: token_exchange"));
}

/// `extra_params` cannot send a parameter the client or the grant sets itself: it would go
/// out twice, and an IdP that takes the last one would use the configured value.
#[test]
fn extra_params_cannot_repeat_what_the_grant_sends() {
    for k in [
        "subject_token",
        "subject_token_type",
        "actor_token",
        "requested_token_type",
        "refresh_token",
        "scope",
        "client_secret",
    ] {
        let yaml = GOOD.replace(
            "    scopes: [read, write]",
            &format!("    scopes: [read, write]\n    extra_params: {{ {k}: evil }}"),
        );
        let problems = load(&yaml).unwrap_err().join("\n");
        assert!(
            problems.contains(&format!(
                "providers.crm.extra_params.{k}: {k} is set by token-sidecar itself"
            )),
            "{k}: {problems}"
        );
    }
    let ok = GOOD.replace(
        "    scopes: [read, write]",
        "    scopes: [read, write]\n    extra_params: { tenant_hint: x }",
    );
    assert!(load(&ok).is_ok());
}

/// `covers`: does the earlier route select every request the later one would?
#[test]
fn shadowed_routes_are_detected() {
    let cases: &[(&str, &str, bool)] = &[
        (
            "match: { host: x.test }",
            "match: { host: x.test, path_prefix: /v1 }",
            true,
        ),
        (
            "match: { host: x.test, path_prefix: /v1 }",
            "match: { host: x.test }",
            false,
        ),
        (
            "match: { host: '*.x.test' }",
            "match: { host: api.x.test }",
            true,
        ),
        (
            "match: { host: '*.x.test' }",
            "match: { host: '*.api.x.test' }",
            true,
        ),
        // *.x.test does not match the apex x.test.
        (
            "match: { host: '*.x.test' }",
            "match: { host: x.test }",
            false,
        ),
        // SPEC §4 Ports: a host without a port selects only the scheme's default port.
        (
            "match: { host: x.test }",
            "match: { host: 'x.test:8443' }",
            false,
        ),
        (
            "match: { host: 'x.test:*' }",
            "match: { host: 'x.test:8443' }",
            true,
        ),
        (
            "match: { host: 'x.test:*' }",
            "match: { host: x.test, path_prefix: /a }",
            true,
        ),
        (
            "match: { host: x.test }",
            "match: { host: 'x.test:*' }",
            false,
        ),
        (
            "match: { host: '*.x.test:*' }",
            "match: { host: 'api.x.test:8443' }",
            true,
        ),
        (
            "match: { host: '*.x.test:8443' }",
            "match: { host: 'api.x.test' }",
            false,
        ),
        (
            "match: { host: 'x.test:8443' }",
            "match: { host: x.test }",
            false,
        ),
        (
            "match: { host: 'x.test:8443' }",
            "match: { host: 'x.test:8443' }",
            true,
        ),
        (
            "match: { host: x.test, methods: [GET, POST] }",
            "match: { host: x.test, methods: [get] }",
            true,
        ),
        (
            "match: { host: x.test, methods: [GET] }",
            "match: { host: x.test }",
            false,
        ),
        (
            "match: { host: x.test, path_prefix: /a }",
            "match: { host: x.test, path_prefix: /ab }",
            false,
        ),
        (
            "match: { path_prefix: /a }, upstream: 'http://127.0.0.1:9'",
            "match: { host: y.test, path_prefix: /a/b }",
            true,
        ),
        (
            "match: { host: y.test }",
            "match: { path_prefix: /a }, upstream: 'http://127.0.0.1:9'",
            false,
        ),
    ];
    for (earlier, later, want) in cases {
        let yaml = format!(
            "providers:\n  p:\n    token_url: http://127.0.0.1:1/t\n    client_id: c\n    client_secret: s\nroutes:\n  - {{ name: a, {earlier}, provider: p }}\n  - {{ name: b, {later}, provider: p }}\n"
        );
        let c = load(&yaml).unwrap();
        assert_eq!(
            c.routes[0].covers(&c.routes[1]),
            *want,
            "{earlier} / {later}"
        );
        assert_eq!(
            c.warnings.iter().any(|w| w.contains("can never match")),
            *want,
            "{earlier} / {later}: {:?}",
            c.warnings
        );
    }
}
