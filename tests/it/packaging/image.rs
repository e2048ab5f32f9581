//! The container image as the Dockerfile describes it (no Docker engine here: the image is
//! not built, hadolint and these checks read the file): the config path the image runs
//! agrees with the chart's mount, its ports with the chart's, dependencies build in a
//! layer of their own, and the build context holds what the build copies.

use super::chart::sidecar_container;
use super::render::render;
use super::ROOT;
use serde_json::{json, Value};
use std::path::Path;

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap()
}

/// The instructions (continuation lines joined, comments dropped) as (keyword, rest).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let (kw, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((kw.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

fn last(instrs: &[(String, String)], kw: &str) -> String {
    instrs
        .iter()
        .rev()
        .find(|(k, _)| k == kw)
        .unwrap_or_else(|| panic!("no {kw} in the Dockerfile"))
        .1
        .clone()
}

#[test]
fn the_image_runs_the_config_where_the_chart_mounts_it_on_the_chart_ports() {
    let instrs = instructions(&dockerfile());
    let cmd: Value = serde_json::from_str(&last(&instrs, "CMD")).expect("CMD in exec form");
    let entrypoint: Value = serde_json::from_str(&last(&instrs, "ENTRYPOINT")).unwrap();
    assert_eq!(entrypoint, json!(["token-sidecar"]));
    for (chart, values) in [
        ("helm/token-sidecar", json!({})),
        ("helm/examples/app-with-sidecar", json!({})),
    ] {
        let r = render(chart, &values).unwrap();
        let deployment = r.of_kind("Deployment")[0];
        let pod = &deployment["spec"]["template"]["spec"];
        let c = sidecar_container(pod);
        assert!(c.get("command").is_none(), "the image's ENTRYPOINT runs");
        assert_eq!(
            c["args"], cmd,
            "{chart}: the chart runs what the image runs"
        );
        // ...and the file is in the mounted ConfigMap.
        let path = cmd[2].as_str().unwrap();
        let (dir, file) = path.rsplit_once('/').unwrap();
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let cm = r.get("ConfigMap", volume["configMap"]["name"].as_str().unwrap());
        assert!(cm["data"].get(file).is_some(), "{file} in {cm:#}");
    }

    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("helm/token-sidecar/values.yaml")).unwrap(),
    )
    .unwrap();
    let exposed: Vec<u64> = last(&instrs, "EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        exposed,
        [&values["ports"]["proxy"], &values["ports"]["admin"]].map(|p| p.as_u64().unwrap())
    );
}

#[test]
fn dependencies_build_in_their_own_layer_before_the_sources_are_copied() {
    let instrs = instructions(&dockerfile());
    let build_stage: Vec<_> = instrs
        .iter()
        .skip_while(|(k, v)| !(k == "FROM" && v.contains(" AS build")))
        .skip(1)
        .take_while(|(k, _)| k != "FROM")
        .collect();
    let copy_src = build_stage
        .iter()
        .position(|(k, v)| k == "COPY" && v.starts_with("src "))
        .expect("COPY src");
    let first_build = build_stage
        .iter()
        .position(|(k, v)| k == "RUN" && v.contains("cargo build --release --locked"))
        .expect("a cargo build");
    assert!(
        first_build < copy_src,
        "dependencies build before COPY src: {build_stage:#?}"
    );
    // Only the manifest and lock file before it, so the layer changes only with them.
    for (k, v) in &build_stage[..first_build] {
        if k == "COPY" {
            assert_eq!(v, "Cargo.toml Cargo.lock ./");
        }
    }
    // After the sources: the real build, with the crate roots touched so cargo does not
    // take the placeholder build as up to date.
    let (_, real) = build_stage[copy_src + 1..]
        .iter()
        .find(|(k, _)| k == "RUN")
        .expect("a RUN after COPY src");
    assert!(
        real.contains("touch src/main.rs src/lib.rs") && real.contains("cargo build --release"),
        "{real}"
    );
}

#[test]
fn the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() {
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(patterns.first(), Some(&"*"), "an allow-list: {patterns:?}");
    let allowed: Vec<&str> = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    for (k, v) in instructions(&dockerfile()) {
        if k == "COPY" && !v.starts_with("--from") {
            let mut parts: Vec<&str> = v.split_whitespace().collect();
            parts.pop(); // the destination
            for source in parts {
                assert!(allowed.contains(&source), "{source} is not in the context");
            }
        }
    }
}

#[test]
fn the_dockerfile_says_what_the_binary_links() {
    let text = dockerfile();
    assert!(
        text.contains("FROM gcr.io/distroless/cc-"),
        "glibc needs distroless/cc"
    );
    assert!(text.contains("glibc"));
    // Not "static": the binary links glibc dynamically.
    for line in text.lines() {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains("static") || lower.contains("not a static"),
            "{line}"
        );
    }
}
