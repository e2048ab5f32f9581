//! Every manifest both charts render, for value sets that between them turn on every
//! template and optional block, is valid against the Kubernetes API schemas (strict:
//! no unknown fields) of every version from the chart's `kubeVersion` floor to the
//! newest that Python's `kubernetes-validate` bundles; and the floor covers the features
//! the chart uses.

use super::chart::{hardened_values, merged, secret_files};
use super::ROOT;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Kinds without a bundled schema (custom resources), which must be the only ones skipped.
const CUSTOM_KINDS: [&str; 1] = ["ServiceMonitor"];

/// Features by the Kubernetes version that turns them on by default.
const FEATURE_FLOORS: [(&str, (u64, u64)); 2] = [
    // PodLifecycleSleepAction: alpha in 1.29, beta (on by default) in 1.30.
    ("lifecycle.preStop.sleep", (1, 30)),
    // SidecarContainers: alpha in 1.28, beta (on by default) in 1.29, GA in 1.33.
    ("initContainers[].restartPolicy: Always", (1, 29)),
];

/// Renders `chart` with each of `variants` (Helm through `helm_python`) and validates
/// each manifest against the schemas of every bundled Kubernetes version >= `floor`.
/// Returns, per variant, the manifests as `{kind, name, doc, versions, skipped, errors}`.
fn render_and_validate(variants: &[(&str, Value)], floor: (u64, u64)) -> Vec<Vec<Value>> {
    let script = r#"
import json, sys
import yaml
import helm_python as helm
import kubernetes_validate as kv
from kubernetes_validate.utils import SchemaNotFoundError

job = json.load(sys.stdin)
floor = tuple(job["floor"])
versions = sorted({v for v in kv.utils.all_versions()
                   if tuple(int(x) for x in v.split(".")[:2]) >= floor},
                  key=lambda v: tuple(int(x) for x in v.split(".")))
out = []
for chart_path, values in job["variants"]:
    with helm.Chart.load(chart_path) as chart:
        files = chart.render(values, name="egress", namespace="team-a")
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            entry = {"kind": doc.get("kind"), "name": doc.get("metadata", {}).get("name"),
                     "doc": doc, "versions": [], "skipped": None, "errors": []}
            for version in versions:
                try:
                    kv.validate(doc, version, strict=True)
                    entry["versions"].append(version)
                except SchemaNotFoundError as e:
                    entry["skipped"] = str(e)
                    break
                except Exception as e:
                    entry["errors"].append("%s: %s" % (version, str(e).splitlines()[0]))
            docs.append(entry)
    out.append(docs)
json.dump(out, sys.stdout)
"#;
    let job = json!({
        "floor": [floor.0, floor.1],
        "variants": variants
            .iter()
            .map(|(chart, values)| json!([Path::new(ROOT).join(chart), values]))
            .collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rendering or validating failed (are helm_python and kubernetes_validate installed? ./test.sh installs them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubeVersion: ">=1.30.0-0"` -> (1, 30).
fn kube_floor(chart: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(Path::new(ROOT).join(chart).join("Chart.yaml")).unwrap();
    let meta: Value = serde_saphyr::from_str(&text).unwrap();
    let constraint = meta["kubeVersion"].as_str().expect("kubeVersion is set");
    let version = constraint
        .strip_prefix(">=")
        .unwrap_or_else(|| panic!("a lower bound only: {constraint}"));
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Value sets that between them render every template and optional block of both charts.
fn variants(dir: &Path) -> Vec<(&'static str, Value)> {
    let hardened = hardened_values(dir);
    let everything = json!({
        "imagePullSecrets": [{ "name": "regcred" }],
        "extraEnv": [
            { "name": "CRM_CLIENT_ID", "valueFrom": { "secretKeyRef": { "name": "crm", "key": "client_id" } } },
            { "name": "TZ", "value": "UTC" }
        ],
        "extraEnvFrom": [{ "configMapRef": { "name": "more-env" } }],
        "extraVolumes": [{ "name": "state", "persistentVolumeClaim": { "claimName": "egress-state" } }],
        "extraVolumeMounts": [{ "name": "state", "mountPath": "/var/lib/egress-state" }],
        "serviceAccountToken": { "enabled": true },
        "tlsIntercept": { "enabled": true },
        "reload": { "enabled": false },
        "tokenStore": {
            "enabled": true,
            "redis": { "url": "rediss://redis.infra:6380/0", "username": "token-sidecar" },
            "encryptionKey": { "secretName": "token-store" },
            "password": { "secretName": "token-store" },
            "caCert": { "secretName": "redis-ca" }
        },
        "config": { "providers": {
            "user": {
                "grant_type": "refresh_token",
                "token_url": "https://idp.example.com/oauth2/token",
                "client_id": "public-client",
                "refresh_token": "${file:/var/run/secrets/token-sidecar/refresh_token}",
                "refresh_token_store": "/var/lib/token-sidecar/user.rt"
            },
            "other": {
                "grant_type": "refresh_token",
                "token_url": "https://idp.example.com/oauth2/token",
                "client_id": "public-client",
                "refresh_token": "${file:/var/run/secrets/token-sidecar/refresh_token}",
                "refresh_token_store": "/var/lib/egress-state/other.rt"
            }
        } }
    });
    vec![
        ("helm/token-sidecar", json!({})),
        ("helm/token-sidecar", hardened.clone()),
        ("helm/token-sidecar", merged(&hardened, &everything)),
        (
            "helm/token-sidecar",
            json!({ "listenAddress": { "admin": "127.0.0.1" }, "podDisruptionBudget": { "enabled": false } }),
        ),
        ("helm/token-sidecar", json!({ "mode": "sidecar" })),
        ("helm/examples/app-with-sidecar", json!({})),
        (
            "helm/examples/app-with-sidecar",
            json!({ "token-sidecar": everything }),
        ),
    ]
}

#[test]
fn every_rendered_manifest_is_valid_for_every_kubernetes_version_from_the_charts_floor() {
    let floor = kube_floor("helm/token-sidecar");
    assert_eq!(
        floor,
        kube_floor("helm/examples/app-with-sidecar"),
        "the example shares the chart's floor"
    );
    assert!(floor >= (1, 30), "Kubernetes 1.30+ schemas: {floor:?}");
    let dir = secret_files();
    let variants = variants(dir.path());
    let results = render_and_validate(&variants, floor);
    let mut kinds = std::collections::BTreeSet::new();
    let mut versions = std::collections::BTreeSet::new();
    for ((chart, values), docs) in variants.iter().zip(&results) {
        assert!(!docs.is_empty(), "{chart} rendered nothing");
        for d in docs {
            let what = format!("{chart} {} {} with {values}", d["kind"], d["name"]);
            let errors = d["errors"].as_array().unwrap();
            assert!(errors.is_empty(), "{what}:\n{errors:#?}");
            if d["skipped"].is_null() {
                assert!(!d["versions"].as_array().unwrap().is_empty(), "{what}");
                for v in d["versions"].as_array().unwrap() {
                    versions.insert(v.as_str().unwrap().to_string());
                }
            } else {
                assert!(
                    CUSTOM_KINDS.contains(&d["kind"].as_str().unwrap()),
                    "only custom resources lack a schema: {what}: {}",
                    d["skipped"]
                );
            }
            kinds.insert(d["kind"].as_str().unwrap().to_string());
        }
    }
    // Every template rendered in some variant.
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        assert!(
            kinds.contains(kind),
            "no variant renders a {kind}: {kinds:?}"
        );
    }
    let floor_version = format!("{}.{}.0", floor.0, floor.1);
    assert!(
        versions.contains(&floor_version) && versions.len() >= 2,
        "validated against the floor and newer: {versions:?}"
    );
}

#[test]
fn the_kubernetes_floor_covers_every_feature_the_charts_render() {
    let floor = kube_floor("helm/token-sidecar");
    let dir = secret_files();
    let variants = variants(dir.path());
    let results = render_and_validate(&variants, floor);
    let mut used = std::collections::BTreeSet::new();
    for doc in results.iter().flatten() {
        let pod = &doc["doc"]["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().into_iter().flatten();
        let init = pod["initContainers"].as_array().into_iter().flatten();
        for c in containers.chain(init.clone()) {
            if c["lifecycle"]["preStop"].get("sleep").is_some() {
                used.insert(FEATURE_FLOORS[0]);
            }
        }
        for c in init {
            if c["restartPolicy"] == "Always" {
                used.insert(FEATURE_FLOORS[1]);
            }
        }
    }
    assert_eq!(used.len(), FEATURE_FLOORS.len(), "the charts use: {used:?}");
    for (feature, needs) in used {
        assert!(
            floor >= needs,
            "kubeVersion >= {floor:?}, but {feature} needs {needs:?}"
        );
    }
}

#[test]
fn a_manifest_with_an_unknown_field_fails_validation() {
    // The checks above mean something only if the validator does refuse bad manifests.
    let script = r#"
import kubernetes_validate as kv
doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
       "spec": {"ports": [{"port": 80, "targetPortt": "proxy"}]}}
try:
    kv.validate(doc, "1.30.0", strict=True)
except kv.ValidationError:
    raise SystemExit(0)
raise SystemExit("accepted an unknown field")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
