//! The token-sidecar chart as Helm renders it (Helm's Go SDK through Python's
//! `helm_python`, no cluster): the config in the ConfigMap goes through the real
//! binary's `validate`, and the manifests are checked for what keeps a shared egress
//! proxy safe (SPEC 4 "Shared egress", 7): `unmatched: deny`, `server_names`, the admin
//! port kept out of the proxy Service, the NetworkPolicy, proxy clients and the admin
//! token from Secrets; and, in sidecar mode, a proxy on loopback only.

use super::render::{render, validate};
use serde_json::{json, Value};
use std::path::Path;

/// The files the Secrets would hold, at the mount paths `hardened_values(dir)` names.
pub fn secret_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (file, content) in [
        ("creds/client_id", "crm-client\n"),
        ("creds/client_secret", "crm-secret\n"),
        ("clients/billing", "billing-password\n"),
        ("clients/crm", "crm-password\n"),
        ("admin/token", "admin-token-0123456789abcdef\n"),
    ] {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// Standalone mode as the README recommends it for a shared network: a provider that
/// also exposes its token, a host route restricted to one client, a host-less
/// (reverse-proxy) route, proxy clients and an admin token from Secrets, a
/// NetworkPolicy, one extra server name. Mount paths point into `dir`.
pub fn hardened_values(dir: &Path) -> Value {
    let at = |sub: &str| dir.join(sub).display().to_string();
    json!({
        "mode": "standalone",
        "secret": { "name": "crm-credentials", "mountPath": at("creds") },
        "clients": { "secretName": "egress-clients", "names": ["billing", "crm"], "mountPath": at("clients") },
        "adminToken": { "enabled": true, "secretName": "egress-admin", "mountPath": at("admin") },
        "serverNames": ["egress.example.com"],
        "networkPolicy": {
            "enabled": true,
            "proxyFrom": [
                { "podSelector": { "matchLabels": { "egress-token-sidecar": "allowed" } } },
                { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "team-b" } } }
            ],
            "adminFrom": [
                { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "monitoring" } } }
            ]
        },
        "metrics": { "serviceMonitor": { "enabled": true } },
        "config": {
            "providers": {
                "crm": {
                    "token_url": "https://idp.example.com/oauth2/token",
                    "client_id": format!("${{file:{}}}", at("creds/client_id")),
                    "client_secret": format!("${{file:{}}}", at("creds/client_secret")),
                    "scopes": ["crm.read"],
                    "expose_token": true
                }
            },
            "routes": [
                {
                    "name": "crm-api",
                    "match": { "host": "crm.example.com" },
                    "provider": "crm",
                    "upstream": "https://crm.example.com",
                    "clients": ["crm"]
                },
                {
                    "name": "crm-reverse",
                    "match": { "path_prefix": "/crm" },
                    "provider": "crm",
                    "upstream": "https://crm.example.com",
                    "strip_prefix": true
                }
            ]
        }
    })
}

/// `values` with `patch` merged in, mappings key by key (as Helm merges values).
pub fn merged(values: &Value, patch: &Value) -> Value {
    match (values, patch) {
        (Value::Object(v), Value::Object(p)) => {
            let mut out = v.clone();
            for (k, pv) in p {
                let m = match v.get(k) {
                    Some(vv) => merged(vv, pv),
                    None => pv.clone(),
                };
                out.insert(k.clone(), m);
            }
            Value::Object(out)
        }
        (_, p) => p.clone(),
    }
}

/// The one warning the chart's defaults (no providers, no routes) may draw.
pub const NO_ROUTES: &str = "no routes";

const SERVICE_NAMES: [&str; 4] = [
    "egress-token-sidecar",
    "egress-token-sidecar.team-a",
    "egress-token-sidecar.team-a.svc",
    "egress-token-sidecar.team-a.svc.cluster.local",
];

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The token-sidecar container of a rendered pod spec (containers or initContainers).
pub fn sidecar_container(pod: &Value) -> &Value {
    pod["containers"]
        .as_array()
        .into_iter()
        .chain(pod["initContainers"].as_array())
        .flatten()
        .find(|c| c["name"] == "token-sidecar")
        .unwrap_or_else(|| panic!("no token-sidecar container in {pod:#}"))
}

#[test]
fn standalone_defaults_deny_unmatched_list_the_service_names_and_validate_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let r = render("helm/token-sidecar", &json!({})).unwrap();
    let (text, cfg) = r.proxy_yaml();
    assert_eq!(cfg["listen"], "0.0.0.0:4480");
    assert_eq!(
        cfg["unmatched"], "deny",
        "explicit, not left to the binary:\n{text}"
    );
    assert_eq!(strings(&cfg["server_names"]), SERVICE_NAMES);
    assert!(
        cfg.get("admin_token_file").is_none(),
        "control stays loopback-only:\n{text}"
    );
    assert!(cfg.get("clients").is_none(), "{text}");
    validate(&text, dir.path()).assert_clean_but(NO_ROUTES);
}

#[test]
fn standalone_hardened_values_render_a_config_the_binary_accepts_without_warnings() {
    let secrets = secret_files();
    let r = render("helm/token-sidecar", &hardened_values(secrets.path())).unwrap();
    let (text, cfg) = r.proxy_yaml();
    let out = validate(&text, secrets.path());
    out.assert_clean();
    assert!(
        out.stdout.contains("valid (1 providers, 2 routes)"),
        "{out:#?}"
    );
    assert_eq!(cfg["unmatched"], "deny");
    let mut names = SERVICE_NAMES.map(String::from).to_vec();
    names.push("egress.example.com".into());
    assert_eq!(strings(&cfg["server_names"]), names);
    // The admin token file is where the Secret is mounted.
    let admin = secrets.path().join("admin");
    assert_eq!(
        cfg["admin_token_file"],
        admin.join("token").display().to_string()
    );
    let pod = &r.get("Deployment", "egress-token-sidecar")["spec"]["template"]["spec"];
    let mounts = &sidecar_container(pod)["volumeMounts"];
    let mount = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "token-sidecar-admin-token");
    assert_eq!(mount.unwrap()["mountPath"], admin.display().to_string());
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "token-sidecar-admin-token");
    assert_eq!(volume.unwrap()["secret"]["secretName"], "egress-admin");
    // And the NOTES tell the operator who can use the proxy.
    assert!(r.notes.contains("billing, crm"), "{}", r.notes);
}

#[test]
fn the_proxy_service_never_exposes_the_admin_port_and_prometheus_gets_its_own() {
    let secrets = secret_files();
    for values in [json!({}), hardened_values(secrets.path())] {
        let r = render("helm/token-sidecar", &values).unwrap();
        let proxy = r.get("Service", "egress-token-sidecar");
        let ports = proxy["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1, "{proxy:#}");
        assert_eq!(ports[0]["name"], "proxy");
        assert_eq!(ports[0]["targetPort"], "proxy");
        assert_eq!(ports[0]["port"], 4480);
        let metrics = r.get("Service", "egress-token-sidecar-metrics");
        let ports = metrics["spec"]["ports"].as_array().unwrap();
        assert_eq!(
            (ports.len(), &ports[0]["targetPort"]),
            (1, &json!("admin")),
            "{metrics:#}"
        );
        // Probes reach admin on the pod IP, so it listens there; control endpoints are
        // then guarded by the loopback-or-token rule (SPEC 7).
        let (_, cfg) = r.proxy_yaml();
        assert_eq!(cfg["admin_listen"], "0.0.0.0:4481");
        let pod = &r.get("Deployment", "egress-token-sidecar")["spec"]["template"]["spec"];
        assert_eq!(
            sidecar_container(pod)["readinessProbe"]["httpGet"]["port"],
            "admin"
        );
    }
    // The ServiceMonitor selects the metrics Service, never the proxy Service.
    let r = render("helm/token-sidecar", &hardened_values(secrets.path())).unwrap();
    let selector = r.get("ServiceMonitor", "egress-token-sidecar")["spec"]["selector"]
        ["matchLabels"]
        .as_object()
        .unwrap()
        .clone();
    let selects = |svc: &Value| {
        selector
            .iter()
            .all(|(k, v)| &svc["metadata"]["labels"][k] == v)
    };
    assert!(selects(r.get("Service", "egress-token-sidecar-metrics")));
    assert!(!selects(r.get("Service", "egress-token-sidecar")));
}

#[test]
fn a_loopback_admin_listen_renders_no_probes_scraping_or_metrics_service() {
    let r = render(
        "helm/token-sidecar",
        &json!({ "listenAddress": { "admin": "127.0.0.1" }, "metrics": { "serviceMonitor": { "enabled": true } } }),
    )
    .unwrap();
    assert_eq!(r.proxy_yaml().1["admin_listen"], "127.0.0.1:4481");
    assert!(r.notes.contains("no probes"), "{}", r.notes);
    let deployment = r.get("Deployment", "egress-token-sidecar");
    let pod = &deployment["spec"]["template"]["spec"];
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert!(
            sidecar_container(pod).get(probe).is_none(),
            "{probe} cannot reach loopback"
        );
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations.get("prometheus.io/scrape").is_none(),
        "{annotations}"
    );
    assert!(r.find("Service", "egress-token-sidecar-metrics").is_none());
    assert!(r.of_kind("ServiceMonitor").is_empty());
}

#[test]
fn the_network_policy_renders_only_when_enabled_and_restricts_ingress_only() {
    let secrets = secret_files();
    let r = render("helm/token-sidecar", &json!({})).unwrap();
    assert!(r.of_kind("NetworkPolicy").is_empty(), "off by default");

    let values = hardened_values(secrets.path());
    let r = render("helm/token-sidecar", &values).unwrap();
    let np = r.get("NetworkPolicy", "egress-token-sidecar");
    assert_eq!(
        np["spec"]["policyTypes"],
        json!(["Ingress"]),
        "egress stays open"
    );
    let pods =
        &r.get("Deployment", "egress-token-sidecar")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in np["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pods[k], v, "the policy selects the proxy's pods");
    }
    let rules = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{np:#}");
    assert_eq!(
        rules[0]["ports"],
        json!([{ "port": "proxy", "protocol": "TCP" }])
    );
    assert_eq!(rules[0]["from"], values["networkPolicy"]["proxyFrom"]);
    assert_eq!(
        rules[1]["ports"],
        json!([{ "port": "admin", "protocol": "TCP" }])
    );
    assert_eq!(rules[1]["from"], values["networkPolicy"]["adminFrom"]);

    // No admin peers: no admin rule at all (a rule without `from` would admit everyone).
    let values = merged(&values, &json!({ "networkPolicy": { "adminFrom": [] } }));
    let r = render("helm/token-sidecar", &values).unwrap();
    let rules = r.get("NetworkPolicy", "egress-token-sidecar")["spec"]["ingress"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules:#}");
    assert!(rules[0]["from"].as_array().is_some_and(|f| !f.is_empty()));
}

#[test]
fn proxy_clients_render_from_the_secret_as_mounted_password_files() {
    let secrets = secret_files();
    let r = render("helm/token-sidecar", &hardened_values(secrets.path())).unwrap();
    let (_, cfg) = r.proxy_yaml();
    let clients = secrets.path().join("clients");
    for name in ["billing", "crm"] {
        assert_eq!(
            cfg["clients"][name]["password"],
            format!("${{file:{}}}", clients.join(name).display()),
            "{cfg:#}"
        );
    }
    assert_eq!(cfg["clients"].as_object().unwrap().len(), 2);
    let pod = &r.get("Deployment", "egress-token-sidecar")["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "token-sidecar-clients")
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "egress-clients");
    assert_eq!(
        volume["secret"]["items"],
        json!([{ "key": "billing", "path": "billing" }, { "key": "crm", "path": "crm" }])
    );
    let mount = sidecar_container(pod)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "token-sidecar-clients")
        .cloned();
    assert_eq!(mount.unwrap()["mountPath"], clients.display().to_string());

    // A Secret without the names of its keys cannot be rendered: Helm cannot read it.
    let err = render(
        "helm/token-sidecar",
        &json!({ "clients": { "secretName": "egress-clients" } }),
    )
    .err()
    .expect("clients.secretName without names must fail");
    assert!(err.contains("clients.names"), "{err}");
    let err = render(
        "helm/token-sidecar",
        &json!({ "adminToken": { "enabled": true } }),
    )
    .err()
    .expect("adminToken without a Secret must fail");
    assert!(err.contains("adminToken.secretName"), "{err}");
}

#[test]
fn loosening_standalone_mode_makes_validate_warn() {
    // The "no warnings" checks above mean something only if the binary does warn about
    // the unsafe variants (SPEC 8).
    let secrets = secret_files();
    let hardened = hardened_values(secrets.path());
    let open = merged(&hardened, &json!({ "config": { "unmatched": "forward" } }));
    let (text, cfg) = render("helm/token-sidecar", &open).unwrap().proxy_yaml();
    assert_eq!(cfg["unmatched"], "forward", "overridable");
    let out = validate(&text, secrets.path());
    assert!(out.ok && out.stderr.contains("unmatched"), "{out:#?}");

    let exposed = merged(&hardened, &json!({ "adminToken": { "enabled": false } }));
    let (text, cfg) = render("helm/token-sidecar", &exposed).unwrap().proxy_yaml();
    assert!(cfg.get("admin_token_file").is_none());
    let out = validate(&text, secrets.path());
    assert!(
        out.ok && out.stderr.contains("admin_token_file"),
        "{out:#?}"
    );
}

#[test]
fn sidecar_mode_keeps_the_proxy_on_loopback_and_the_example_validates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client_id"), "id\n").unwrap();
    std::fs::write(dir.path().join("client_secret"), "secret\n").unwrap();
    // The example app's chart: token-sidecar as a native sidecar in the app's pod.
    let r = render("helm/examples/app-with-sidecar", &json!({})).unwrap();
    let (text, cfg) = r.proxy_yaml();
    let text = text.replace(
        "/var/run/secrets/token-sidecar/",
        &format!("{}/", dir.path().display()),
    );
    let out = validate(&text, dir.path());
    out.assert_clean();
    assert!(
        out.stdout.contains("valid (1 providers, 1 routes)"),
        "only the example's provider and route: {out:#?}"
    );
    assert_eq!(cfg["listen"], "127.0.0.1:4480");
    for key in ["server_names", "admin_token_file", "clients", "unmatched"] {
        assert!(
            cfg.get(key).is_none(),
            "{key} is standalone-only or opt-in:\n{text}"
        );
    }
    assert!(r.of_kind("Service").is_empty() && r.of_kind("NetworkPolicy").is_empty());
    let pod = &r.get("Deployment", "egress-app")["spec"]["template"]["spec"];
    let sidecar = sidecar_container(pod);
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    assert!(pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "token-sidecar"));
    let app = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    let env = app["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "HTTP_PROXY" && e["value"] == "http://127.0.0.1:4480"));

    // The chart's own defaults in sidecar mode validate too.
    let (text, _) = render("helm/token-sidecar", &json!({ "mode": "sidecar" }))
        .unwrap()
        .proxy_yaml();
    validate(&text, dir.path()).assert_clean_but(NO_ROUTES);

    // A sidecar listening beyond loopback would be a proxy for the whole cluster.
    let err = render(
        "helm/token-sidecar",
        &json!({ "mode": "sidecar", "listenAddress": { "proxy": "0.0.0.0" } }),
    )
    .err()
    .expect("sidecar mode must refuse a non-loopback listen");
    assert!(err.contains("loopback"), "{err}");
    // Nor can config.listen say so behind the chart's back (packaging/ports.rs).
    let err = render(
        "helm/token-sidecar",
        &json!({ "mode": "sidecar", "config": { "listen": "0.0.0.0:4480" } }),
    )
    .err()
    .expect("config.listen must not override the rendered listen");
    assert!(err.contains("ports.proxy"), "{err}");
}
