//! Helm's rendering of a chart (Helm's Go SDK through Python's `helm_python`, no
//! cluster) and the real binary's `validate`, for the chart tests.

use super::ROOT;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// What Helm rendered: every manifest, and NOTES.txt.
pub struct Rendered {
    pub docs: Vec<Value>,
    pub notes: String,
}

impl Rendered {
    /// The one manifest of `kind` whose name is `name`.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", self.names()))
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn names(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| format!("{} {}", d["kind"], d["metadata"]["name"]))
            .collect()
    }

    /// proxy.yaml as the ConfigMap carries it, text and parsed.
    pub fn proxy_yaml(&self) -> (String, Value) {
        let cm = self.of_kind("ConfigMap");
        assert_eq!(cm.len(), 1, "one ConfigMap: {:#?}", self.names());
        let text = cm[0]["data"]["proxy.yaml"].as_str().unwrap().to_string();
        let parsed = serde_saphyr::from_str(&text).unwrap();
        (text, parsed)
    }
}

/// Renders the chart at `chart` (relative to the repository) as release `egress` in
/// namespace `team-a`, or returns Helm's error (e.g. a template's `fail`).
pub fn render(chart: &str, values: &Value) -> Result<Rendered, String> {
    let script = r#"
import json, sys
import helm_python as helm
with helm.Chart.load(sys.argv[1]) as chart:
    print(json.dumps(chart.render(json.loads(sys.argv[2]), name="egress", namespace="team-a")))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(Path::new(ROOT).join(chart))
        .arg(values.to_string())
        .output()
        .expect("python3 is needed");
    if !out.status.success() {
        return Err(format!(
            "helm template failed (is helm_python installed? ./test.sh installs it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let files: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut rendered = Rendered {
        docs: Vec::new(),
        notes: String::new(),
    };
    for (path, text) in files {
        let text = text.as_str().unwrap();
        if path.ends_with("NOTES.txt") {
            rendered.notes = text.to_string();
            continue;
        }
        for doc in text.split("\n---") {
            if doc.trim().is_empty() {
                continue;
            }
            let doc: Value = serde_saphyr::from_str(doc)
                .unwrap_or_else(|e| panic!("{path} is not YAML ({e}):\n{doc}"));
            if !doc.is_null() {
                rendered.docs.push(doc);
            }
        }
    }
    Ok(rendered)
}

/// What `token-sidecar validate` said about a config.
#[derive(Debug)]
pub struct Validated {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Validated {
    /// Valid, and no `warning:` line.
    #[track_caller]
    pub fn assert_clean(&self) {
        self.assert_clean_but("");
    }

    /// Valid, and no `warning:` line but those containing `allowed` (the chart's own
    /// defaults have no routes, which validate rightly points out).
    #[track_caller]
    pub fn assert_clean_but(&self, allowed: &str) {
        assert!(self.ok, "validate refused the rendered config: {self:#?}");
        let warnings: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("warning") && (allowed.is_empty() || !l.contains(allowed)))
            .collect();
        assert!(
            warnings.is_empty(),
            "validate warned about the rendered config: {}",
            self.stderr
        );
    }
}

/// Runs the real binary's `validate` on `text`, written to `dir/proxy.yaml`.
pub fn validate(text: &str, dir: &Path) -> Validated {
    let cfg = dir.join("proxy.yaml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    Validated {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}
