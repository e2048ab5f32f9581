//! The chart's `tokenStore` (SPEC §9): Redis settings and Secret references rendered into
//! `token_store`, the Secrets mounted read-only, and the result accepted by the binary.

use super::chart::{secret_files, sidecar_container, NO_ROUTES};
use super::render::{render, validate, Rendered};
use serde_json::{json, Value};
use std::path::Path;

const KEY: &str = "chart-test-store-key-0123456789abcdef-xyz";

fn pod(r: &Rendered) -> &Value {
    &r.get("Deployment", "egress-token-sidecar")["spec"]["template"]["spec"]
}

/// A store from Secrets mounted at `dir/store` (where the files exist for `validate`).
fn store_values(dir: &Path, cluster: bool) -> Value {
    let mount = dir.join("store");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::write(mount.join("encryption-key"), format!("{KEY}\n")).unwrap();
    std::fs::write(mount.join("redis-password"), "redis-pw\n").unwrap();
    let redis = match cluster {
        false => json!({ "url": "redis://redis.infra:6379/0", "username": "token-sidecar" }),
        true => {
            json!({ "cluster": true, "urls": ["redis://r-0.redis:6379", "redis://r-1.redis:6379"] })
        }
    };
    json!({ "tokenStore": {
        "enabled": true,
        "redis": redis,
        "lease": "20s",
        "encryptionKey": { "secretName": "token-store" },
        "password": { "secretName": "token-store" },
        "mountPath": mount.display().to_string()
    } })
}

#[test]
fn token_store_renders_from_secrets_and_the_binary_accepts_it() {
    let secrets = secret_files();
    let r = render("helm/token-sidecar", &store_values(secrets.path(), false)).unwrap();
    let (text, cfg) = r.proxy_yaml();
    let mount = secrets.path().join("store").display().to_string();
    let store = &cfg["token_store"];
    assert_eq!(store["redis"]["url"], "redis://redis.infra:6379/0");
    assert_eq!(store["redis"]["username"], "token-sidecar");
    assert_eq!(store["redis"]["key_prefix"], "token-sidecar:");
    assert_eq!(store["redis"]["timeout"], "250ms");
    assert_eq!(
        store["redis"]["password"],
        format!("${{file:{mount}/redis-password}}")
    );
    assert_eq!(
        store["encryption_key"],
        format!("${{file:{mount}/encryption-key}}")
    );
    assert_eq!(store["lease"], "20s");
    assert!(store["redis"].get("ca_file").is_none(), "{text}");
    assert!(
        !text.contains(KEY) && !text.contains("redis-pw"),
        "no secret in the ConfigMap"
    );
    validate(&text, secrets.path()).assert_clean_but(NO_ROUTES);

    let c = sidecar_container(pod(&r));
    let mounts = c["volumeMounts"].as_array().unwrap();
    let m = mounts
        .iter()
        .find(|m| m["name"] == "token-sidecar-store")
        .expect("a mount");
    assert_eq!(m["mountPath"], mount);
    assert_eq!(m["readOnly"], true);
    let volumes = pod(&r)["volumes"].as_array().unwrap();
    let v = volumes
        .iter()
        .find(|v| v["name"] == "token-sidecar-store")
        .unwrap();
    let sources = v["projected"]["sources"].as_array().unwrap();
    let items: Vec<&Value> = sources
        .iter()
        .map(|s| &s["secret"]["items"][0]["key"])
        .collect();
    assert_eq!(items, [&json!("encryption-key"), &json!("redis-password")]);

    // A cluster, and the same in sidecar mode (the app's pod).
    let values = store_values(secrets.path(), true);
    let r = render("helm/token-sidecar", &values).unwrap();
    let (text, cfg) = r.proxy_yaml();
    assert_eq!(cfg["token_store"]["redis"]["cluster"], true);
    assert_eq!(
        cfg["token_store"]["redis"]["urls"][1],
        "redis://r-1.redis:6379"
    );
    validate(&text, secrets.path()).assert_clean_but(NO_ROUTES);
    let app = render(
        "helm/examples/app-with-sidecar",
        &json!({ "token-sidecar": values }),
    )
    .unwrap();
    let app_pod = &app.get("Deployment", "egress-app")["spec"]["template"]["spec"];
    let mounts = sidecar_container(app_pod)["volumeMounts"]
        .as_array()
        .unwrap()
        .clone();
    assert!(mounts.iter().any(|m| m["name"] == "token-sidecar-store"));

    // Disabled (the default): no token_store, no volume.
    let r = render("helm/token-sidecar", &json!({})).unwrap();
    assert!(r.proxy_yaml().1.get("token_store").is_none());
    let volumes = pod(&r)["volumes"].as_array().unwrap().clone();
    assert!(volumes.iter().all(|v| v["name"] != "token-sidecar-store"));
}

#[test]
fn an_incomplete_token_store_fails_the_render_naming_the_value() {
    let cases = [
        (
            json!({ "tokenStore": { "enabled": true, "redis": { "url": "redis://r:6379" } } }),
            "tokenStore.encryptionKey.secretName",
        ),
        (
            json!({ "tokenStore": { "enabled": true, "encryptionKey": { "secretName": "k" } } }),
            "tokenStore.redis.url",
        ),
        (
            json!({ "tokenStore": { "enabled": true, "redis": { "cluster": true }, "encryptionKey": { "secretName": "k" } } }),
            "tokenStore.redis.urls",
        ),
        (
            json!({ "tokenStore": { "enabled": true, "redis": { "url": "redis://r:6379" }, "encryptionKey": { "secretName": "k" } },
                    "config": { "token_store": { "redis": { "url": "redis://x:1" } } } }),
            "set the store in tokenStore only",
        ),
    ];
    for (values, want) in cases {
        let err = render("helm/token-sidecar", &values)
            .err()
            .expect("refused");
        assert!(err.contains(want), "{values}: {err}");
    }
}
