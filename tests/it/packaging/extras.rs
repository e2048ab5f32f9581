//! What an operator adds to the chart (issue 13): `extraEnv`/`extraEnvFrom`,
//! `extraVolumes`/`extraVolumeMounts`, `imagePullSecrets`, a writable directory for
//! refresh-token stores on a read-only root filesystem; and what the chart tells them:
//! the standard labels and NOTES.

use super::chart::{hardened_values, merged, secret_files, sidecar_container};
use super::render::{render, validate, Rendered};
use serde_json::{json, Value};

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v["name"] == name)
}

fn pod(r: &Rendered) -> &Value {
    &r.get("Deployment", "egress-token-sidecar")["spec"]["template"]["spec"]
}

fn extras() -> Value {
    json!({
        "imagePullSecrets": [{ "name": "regcred" }],
        "extraEnv": [
            { "name": "CRM_CLIENT_ID", "valueFrom": { "secretKeyRef": { "name": "crm", "key": "client_id" } } }
        ],
        "extraEnvFrom": [{ "configMapRef": { "name": "more-env" } }],
        "extraVolumes": [{ "name": "ca-bundle", "configMap": { "name": "corp-ca" } }],
        "extraVolumeMounts": [{ "name": "ca-bundle", "mountPath": "/etc/corp-ca", "readOnly": true }]
    })
}

#[test]
fn extra_env_volumes_and_pull_secrets_reach_the_pod_in_both_modes() {
    let r = render("helm/token-sidecar", &extras()).unwrap();
    let standalone = pod(&r);
    let app = render(
        "helm/examples/app-with-sidecar",
        &json!({ "token-sidecar": extras() }),
    )
    .unwrap();
    let sidecar = &app.get("Deployment", "egress-app")["spec"]["template"]["spec"];
    for pod in [standalone, sidecar] {
        assert_eq!(pod["imagePullSecrets"], json!([{ "name": "regcred" }]));
        let c = sidecar_container(pod);
        assert_eq!(
            find(&c["env"], "CRM_CLIENT_ID").unwrap()["valueFrom"]["secretKeyRef"]["key"],
            "client_id"
        );
        assert_eq!(c["envFrom"], extras()["extraEnvFrom"]);
        assert_eq!(
            find(&c["volumeMounts"], "ca-bundle").unwrap()["mountPath"],
            "/etc/corp-ca"
        );
        assert_eq!(
            find(&pod["volumes"], "ca-bundle").unwrap()["configMap"]["name"],
            "corp-ca"
        );
        // The chart's own mounts are still there.
        assert!(find(&c["volumeMounts"], "token-sidecar-config").is_some());
    }

    // None of it by default.
    let r = render("helm/token-sidecar", &json!({})).unwrap();
    let c = sidecar_container(pod(&r));
    assert!(pod(&r).get("imagePullSecrets").is_none());
    assert!(
        c.get("env").is_none() && c.get("envFrom").is_none(),
        "{c:#}"
    );
}

#[test]
fn an_env_reference_in_config_validates_with_the_variable_extra_env_provides() {
    let secrets = secret_files();
    let values = merged(
        &hardened_values(secrets.path()),
        &json!({
            "extraEnv": [{ "name": "CRM_CLIENT_ID", "valueFrom": { "secretKeyRef": { "name": "crm", "key": "client_id" } } }],
            "config": { "providers": { "crm": { "client_id": "${CRM_CLIENT_ID}" } } }
        }),
    );
    let r = render("helm/token-sidecar", &values).unwrap();
    let (text, cfg) = r.proxy_yaml();
    assert_eq!(cfg["providers"]["crm"]["client_id"], "${CRM_CLIENT_ID}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["validate", "-c"])
        .arg({
            let path = secrets.path().join("proxy.yaml");
            std::fs::write(&path, &text).unwrap();
            path
        })
        .env("CRM_CLIENT_ID", "crm-client")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn refresh_provider(store: &str, dir: &std::path::Path) -> Value {
    json!({
        "token_url": "https://idp.example.com/oauth2/token",
        "client_id": "my-app",
        "grant_type": "refresh_token",
        "refresh_token": format!("${{file:{}}}", dir.join("creds/client_secret").display()),
        "refresh_token_store": store
    })
}

#[test]
fn a_refresh_token_store_gets_a_writable_empty_dir_on_the_read_only_root() {
    let secrets = secret_files();
    let values = json!({ "config": { "providers": {
        "user": refresh_provider("/var/lib/token-sidecar/user.rt", secrets.path())
    } } });
    let r = render("helm/token-sidecar", &values).unwrap();
    let (text, _) = r.proxy_yaml();
    validate(&text, secrets.path()).assert_clean_but(super::chart::NO_ROUTES);
    let c = sidecar_container(pod(&r));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let mount = find(&c["volumeMounts"], "token-sidecar-refresh-tokens").expect("a mount");
    assert_eq!(mount["mountPath"], "/var/lib/token-sidecar");
    assert!(mount.get("readOnly").is_none_or(|r| r == false), "{mount}");
    let volume = find(&pod(&r)["volumes"], "token-sidecar-refresh-tokens").unwrap();
    assert!(volume["emptyDir"].is_object(), "{volume}");
    assert!(r.notes.contains("/var/lib/token-sidecar"), "{}", r.notes);

    // Also in sidecar mode (the app's pod).
    let app = render(
        "helm/examples/app-with-sidecar",
        &json!({ "token-sidecar": values }),
    )
    .unwrap();
    let app_pod = &app.get("Deployment", "egress-app")["spec"]["template"]["spec"];
    let mounts = &sidecar_container(app_pod)["volumeMounts"];
    assert!(find(mounts, "token-sidecar-refresh-tokens").is_some());
    assert!(find(&app_pod["volumes"], "token-sidecar-refresh-tokens").is_some());

    // No store, no emptyDir.
    let r = render("helm/token-sidecar", &json!({})).unwrap();
    assert!(find(&pod(&r)["volumes"], "token-sidecar-refresh-tokens").is_none());
}

#[test]
fn a_refresh_token_store_outside_a_writable_mount_is_refused() {
    let secrets = secret_files();
    let at = |store: &str| json!({ "config": { "providers": { "user": refresh_provider(store, secrets.path()) } } });
    let err = render("helm/token-sidecar", &at("/tmp/user.rt"))
        .err()
        .expect("a store on the read-only root must be refused");
    assert!(
        err.contains("user") && err.contains("/tmp/user.rt") && err.contains("read-only"),
        "{err}"
    );
    // Under a writable extra mount (a PersistentVolumeClaim): accepted, no emptyDir.
    let pvc = json!({
        "extraVolumes": [{ "name": "state", "persistentVolumeClaim": { "claimName": "egress-state" } }],
        "extraVolumeMounts": [{ "name": "state", "mountPath": "/data" }]
    });
    let r = render("helm/token-sidecar", &merged(&at("/data/user.rt"), &pvc)).unwrap();
    assert!(find(&pod(&r)["volumes"], "token-sidecar-refresh-tokens").is_none());
    // ...but not under a read-only one.
    let ro = merged(
        &pvc,
        &json!({ "extraVolumeMounts": [{ "name": "state", "mountPath": "/data", "readOnly": true }] }),
    );
    assert!(render("helm/token-sidecar", &merged(&at("/data/user.rt"), &ro)).is_err());
    // A prefix of the directory name is not the directory.
    assert!(render(
        "helm/token-sidecar",
        &at("/var/lib/token-sidecar-other/user.rt")
    )
    .is_err());
}

#[test]
fn every_manifest_carries_the_standard_labels_and_selectors_stay_stable() {
    let secrets = secret_files();
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(super::ROOT).join("helm/token-sidecar/Chart.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let chart_label = format!("token-sidecar-{}", chart["version"].as_str().unwrap());
    let values = merged(
        &hardened_values(secrets.path()),
        &json!({ "image": { "tag": "0.1.0@sha256:abc" } }),
    );
    let r = render("helm/token-sidecar", &values).unwrap();
    assert!(r.docs.len() >= 6, "{}", r.docs.len());
    for doc in &r.docs {
        let labels = &doc["metadata"]["labels"];
        let what = format!("{} {}", doc["kind"], doc["metadata"]["name"]);
        assert_eq!(labels["app.kubernetes.io/name"], "token-sidecar", "{what}");
        assert_eq!(labels["app.kubernetes.io/instance"], "egress", "{what}");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
        assert_eq!(labels["helm.sh/chart"], chart_label.as_str(), "{what}");
        // The tag that runs, as a valid label value.
        assert_eq!(
            labels["app.kubernetes.io/version"], "0.1.0_sha256_abc",
            "{what}"
        );
    }
    // Selectors (immutable in a Deployment) never name the version or the chart.
    let d = r.get("Deployment", "egress-token-sidecar");
    let selector = d["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(selector
        .keys()
        .all(|k| k != "app.kubernetes.io/version" && k != "helm.sh/chart"));
    for (k, v) in selector {
        assert_eq!(&d["spec"]["template"]["metadata"]["labels"][k], v);
    }
    // The default tag: appVersion.
    let r = render("helm/token-sidecar", &json!({})).unwrap();
    assert_eq!(
        r.docs[0]["metadata"]["labels"]["app.kubernetes.io/version"],
        chart["appVersion"]
    );
}

#[test]
fn notes_name_what_is_set_and_never_an_empty_secret() {
    let secrets = secret_files();
    let cases = [
        json!({}),
        json!({ "secret": { "name": "" } }),
        json!({ "mode": "sidecar", "secret": { "name": "" } }),
        json!({ "listenAddress": { "admin": "127.0.0.1" } }),
        hardened_values(secrets.path()),
    ];
    for values in cases {
        let notes = render("helm/token-sidecar", &values).unwrap().notes;
        assert!(
            !notes.contains("\"\""),
            "an empty name in NOTES for {values}:\n{notes}"
        );
        assert!(!notes.contains("<no value>"), "{values}:\n{notes}");
        let secret = values["secret"]["name"].as_str();
        match secret {
            Some("") => assert!(
                !notes.contains("Secret \"token-sidecar-credentials\""),
                "{notes}"
            ),
            _ => assert!(notes.contains("Secret \""), "{values}:\n{notes}"),
        }
    }
    let notes = render("helm/token-sidecar", &hardened_values(secrets.path()))
        .unwrap()
        .notes;
    assert!(notes.contains("Secret \"crm-credentials\""), "{notes}");
    assert!(notes.contains("Secret \"egress-admin\""), "{notes}");
    assert!(notes.contains("egress.example.com"), "{notes}");
}
