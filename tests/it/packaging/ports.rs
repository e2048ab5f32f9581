//! One source of truth for ports (issue 13): `ports.proxy` and `ports.admin` set once, and
//! config `listen`/`admin_listen`, the containerPorts, the probes, the Services, the
//! NetworkPolicy, the scrape annotation and the app's `http_proxy` all follow, so a
//! non-default port still renders a pod that becomes ready.

use super::chart::{hardened_values, merged, secret_files, sidecar_container};
use super::render::{render, validate, Rendered};
use serde_json::{json, Value};

const PROXY: u64 = 15080;
const ADMIN: u64 = 15081;

/// The port number a probe, Service or NetworkPolicy refers to: a number, or the name
/// of one of `container`'s ports (as the kubelet and the Service controller resolve it).
fn resolve(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *name)
            .unwrap_or_else(|| panic!("no container port named {name}: {container:#}"))
            ["containerPort"]
            .as_u64()
            .unwrap(),
        other => panic!("not a port: {other}"),
    }
}

/// The port of a `host:port` listen address.
fn port_of(addr: &Value) -> u64 {
    let addr = addr
        .as_str()
        .unwrap_or_else(|| panic!("not an address: {addr}"));
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The probes reach admin where it listens: each probe's port is admin_listen's port
/// and a containerPort, and admin is not on loopback (kubelet connects to the pod IP).
fn assert_probes_reach_admin(container: &Value, cfg: &Value) {
    let admin = port_of(&cfg["admin_listen"]);
    let ip = cfg["admin_listen"].as_str().unwrap();
    assert!(
        ip.starts_with("0.0.0.0:") || ip.starts_with("[::]:"),
        "probes connect to the pod IP: {ip}"
    );
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(resolve(container, &get["port"]), admin, "{probe}: {get}");
        assert!(get.get("host").is_none(), "{probe} goes to the pod IP");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
}

fn standalone(ports: Value) -> (Rendered, tempfile::TempDir) {
    let secrets = secret_files();
    let values = merged(&hardened_values(secrets.path()), &json!({ "ports": ports }));
    (render("helm/token-sidecar", &values).unwrap(), secrets)
}

#[test]
fn standalone_one_port_setting_moves_listen_ports_probes_services_and_policy_together() {
    let (r, secrets) = standalone(json!({ "proxy": PROXY, "admin": ADMIN }));
    let (text, cfg) = r.proxy_yaml();
    assert_eq!(cfg["listen"], format!("0.0.0.0:{PROXY}"));
    assert_eq!(cfg["admin_listen"], format!("0.0.0.0:{ADMIN}"));
    validate(&text, secrets.path()).assert_clean();

    let deployment = r.get("Deployment", "egress-token-sidecar");
    let c = sidecar_container(&deployment["spec"]["template"]["spec"]);
    assert_eq!(resolve(c, &json!("proxy")), port_of(&cfg["listen"]));
    assert_eq!(resolve(c, &json!("admin")), port_of(&cfg["admin_listen"]));
    assert_probes_reach_admin(c, &cfg);

    let svc = &r.get("Service", "egress-token-sidecar")["spec"]["ports"][0];
    assert_eq!(svc["port"], PROXY, "{svc}");
    assert_eq!(resolve(c, &svc["targetPort"]), PROXY);
    let metrics = &r.get("Service", "egress-token-sidecar-metrics")["spec"]["ports"][0];
    assert_eq!(resolve(c, &metrics["targetPort"]), ADMIN);
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], ADMIN.to_string());

    let rules = &r.get("NetworkPolicy", "egress-token-sidecar")["spec"]["ingress"];
    assert_eq!(resolve(c, &rules[0]["ports"][0]["port"]), PROXY);
    assert_eq!(resolve(c, &rules[1]["ports"][0]["port"]), ADMIN);
    assert!(
        r.notes.contains(&format!(":{PROXY}")),
        "NOTES give apps the port: {}",
        r.notes
    );
}

#[test]
fn sidecar_one_port_setting_moves_the_app_env_with_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client_id"), "id\n").unwrap();
    std::fs::write(dir.path().join("client_secret"), "secret\n").unwrap();
    let values = json!({ "token-sidecar": { "ports": { "proxy": PROXY, "admin": ADMIN } } });
    let r = render("helm/examples/app-with-sidecar", &values).unwrap();
    let (text, cfg) = r.proxy_yaml();
    assert_eq!(cfg["listen"], format!("127.0.0.1:{PROXY}"));
    let text = text.replace(
        "/var/run/secrets/token-sidecar/",
        &format!("{}/", dir.path().display()),
    );
    validate(&text, dir.path()).assert_clean();

    let pod = &r.get("Deployment", "egress-app")["spec"]["template"]["spec"];
    let c = sidecar_container(pod);
    assert_eq!(resolve(c, &json!("proxy")), port_of(&cfg["listen"]));
    assert_probes_reach_admin(c, &cfg);
    let app = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    let url = format!("http://127.0.0.1:{PROXY}");
    for name in ["http_proxy", "HTTP_PROXY"] {
        assert!(
            app["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == name && e["value"] == url),
            "{name}={url} in {:#}",
            app["env"]
        );
    }
}

#[test]
fn ipv6_listen_addresses_render_in_brackets_and_validate() {
    let secrets = secret_files();
    let values = merged(
        &hardened_values(secrets.path()),
        &json!({ "listenAddress": { "proxy": "::", "admin": "::" } }),
    );
    let r = render("helm/token-sidecar", &values).unwrap();
    let (text, cfg) = r.proxy_yaml();
    assert_eq!(cfg["listen"], "[::]:4480");
    assert_eq!(cfg["admin_listen"], "[::]:4481");
    validate(&text, secrets.path()).assert_clean();
    let c =
        sidecar_container(&r.get("Deployment", "egress-token-sidecar")["spec"]["template"]["spec"]);
    assert_probes_reach_admin(c, &cfg);

    // Sidecar mode on IPv6 loopback: the app's proxy URL follows.
    let r = render(
        "helm/examples/app-with-sidecar",
        &json!({ "token-sidecar": { "listenAddress": { "proxy": "::1" } } }),
    )
    .unwrap();
    assert_eq!(r.proxy_yaml().1["listen"], "[::1]:4480");
    let pod = &r.get("Deployment", "egress-app")["spec"]["template"]["spec"];
    let env = &pod["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "http_proxy" && e["value"] == "http://[::1]:4480"),
        "{env:#}"
    );
}

#[test]
fn listen_addresses_in_config_cannot_disagree_with_the_ports() {
    // The value the chart renders anyway is accepted (a config copied from elsewhere)...
    let r = render(
        "helm/token-sidecar",
        &json!({ "config": { "listen": "0.0.0.0:4480", "admin_listen": "0.0.0.0:4481" } }),
    )
    .unwrap();
    assert_eq!(r.proxy_yaml().1["listen"], "0.0.0.0:4480");
    // ...a different one is refused, naming the setting to change instead.
    for (config, setting) in [
        (json!({ "listen": "0.0.0.0:9000" }), "ports.proxy"),
        (json!({ "listen": "127.0.0.1:4480" }), "ports.proxy"),
        (json!({ "admin_listen": "0.0.0.0:9001" }), "ports.admin"),
    ] {
        let err = render("helm/token-sidecar", &json!({ "config": config }))
            .err()
            .unwrap_or_else(|| panic!("{config} must be refused"));
        assert!(err.contains(setting), "{config}: {err}");
    }
    // Moving the port moves listen; the old listen value is then refused.
    let err = render(
        "helm/token-sidecar",
        &json!({ "ports": { "proxy": PROXY }, "config": { "listen": "0.0.0.0:4480" } }),
    )
    .err()
    .expect("a stale listen must be refused");
    assert!(err.contains(&format!("0.0.0.0:{PROXY}")), "{err}");
    // Two listeners cannot share a port.
    let err = render("helm/token-sidecar", &json!({ "ports": { "admin": 4480 } }))
        .err()
        .expect("proxy and admin on one port must be refused");
    assert!(err.contains("ports.proxy and ports.admin"), "{err}");
}
