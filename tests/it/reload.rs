//! Hot reload: file changes (in place and ConfigMap-style symlink swaps), POST /reload,
//! SIGHUP; invalid configs never replace a working one; unchanged providers keep tokens.

use crate::support::sidecar::Binary;
use crate::support::*;
use std::path::Path;
use std::time::Duration;

fn yaml(idp: &FakeIdp, api: &FakeUpstream, prefix: &str) -> String {
    format!(
        "providers:\n{}routes:\n  - name: api\n    match: {{ path_prefix: {prefix} }}\n    provider: crm\n    upstream: {}\n",
        provider_yaml("crm", idp, ""),
        api.url()
    )
}

/// Polls `f` every 50 ms for up to 10 s.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn status_of(sc: &TestSidecar, path: &str) -> u16 {
    direct_client()
        .get(sc.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn reloads(sc: &TestSidecar, outcome: &str) -> u64 {
    let text = direct_client()
        .get(sc.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("token_sidecar_config_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap()
        .parse()
        .unwrap()
}

/// Writes through a temp file and a rename, as editors and config tools do.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_changed_file_applies_without_restart_and_keeps_the_token() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, yaml(&idp, &api, "/v1")).unwrap();
    let sc = TestSidecar::start_file(&path).await;
    assert_eq!(status_of(&sc, "/v1/x").await, 200);
    assert_eq!(status_of(&sc, "/v2/x").await, 400);

    write_atomically(&path, &yaml(&idp, &api, "/v2"));
    eventually("the new route", async || {
        status_of(&sc, "/v2/x").await == 200
    })
    .await;
    assert_eq!(status_of(&sc, "/v1/x").await, 400, "the old route is gone");
    assert_eq!(
        idp.requests(),
        1,
        "the unchanged provider kept its token: no new IdP request"
    );
    assert_eq!(reloads(&sc, "success").await, 1);

    // A broken file changes nothing, and the failure is counted.
    write_atomically(&path, "routes: [ this is : not yaml");
    eventually("the failed reload", async || {
        reloads(&sc, "error").await == 1
    })
    .await;
    assert_eq!(
        status_of(&sc, "/v2/x").await,
        200,
        "the old config keeps serving"
    );
    // So does a file that parses but does not validate.
    write_atomically(
        &path,
        &yaml(&idp, &api, "/v3").replace(
            "provider: crm\n    upstream",
            "provider: nope\n    upstream",
        ),
    );
    eventually("the second failed reload", async || {
        reloads(&sc, "error").await == 2
    })
    .await;
    assert_eq!(status_of(&sc, "/v2/x").await, 200);
    assert_eq!(status_of(&sc, "/v3/x").await, 400);
    sc.stop().await;
}

#[tokio::test]
async fn a_configmap_style_symlink_swap_is_picked_up() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // What the kubelet builds: proxy.yaml -> ..data/proxy.yaml, ..data -> ..<timestamp>.
    std::fs::create_dir(d.join("..2026_11_21_v1")).unwrap();
    std::fs::write(
        d.join("..2026_11_21_v1/proxy.yaml"),
        yaml(&idp, &api, "/v1"),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_21_v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/proxy.yaml", d.join("proxy.yaml")).unwrap();
    let sc = TestSidecar::start_file(&d.join("proxy.yaml")).await;
    assert_eq!(status_of(&sc, "/v1/x").await, 200);

    // The update: a new timestamped directory, then an atomic swap of the ..data link.
    std::fs::create_dir(d.join("..2026_11_21_v2")).unwrap();
    std::fs::write(
        d.join("..2026_11_21_v2/proxy.yaml"),
        yaml(&idp, &api, "/v2"),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_21_v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_11_21_v1")).unwrap();
    eventually("the swapped config", async || {
        status_of(&sc, "/v2/x").await == 200
    })
    .await;
    assert_eq!(idp.requests(), 1);
    sc.stop().await;
}

#[tokio::test]
async fn post_reload_reports_what_changed_or_every_problem() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, yaml(&idp, &api, "/v1")).unwrap();
    let sc = TestSidecar::start_file(&path).await;
    let two = format!("{}{}", yaml(&idp, &api, "/v1"), "").replace(
        "providers:\n",
        &format!(
            "providers:\n{}",
            provider_yaml("extra", &idp, "    scopes: [x]\n")
        ),
    );
    std::fs::write(&path, two).unwrap();
    let resp = direct_client()
        .post(sc.admin_url("/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["providers_added"], serde_json::json!(["extra"]));
    assert_eq!(v["routes"], 1);

    std::fs::write(
        &path,
        "providers:\n  crm:\n    token_url: nope\n    bogus: 1\n",
    )
    .unwrap();
    let resp = direct_client()
        .post(sc.admin_url("/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["outcome"], "error");
    let problems: Vec<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("providers.crm.bogus")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("providers.crm.token_url")),
        "{problems:?}"
    );
    assert_eq!(status_of(&sc, "/v1/x").await, 200);
    sc.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let mut bin = Binary::start(&yaml(&idp, &api, "/v1"), &["--log-format", "json"], &[]);
    bin.wait_healthy().await;
    let client = direct_client();
    let url = |p: &str| format!("http://{}{p}", bin.proxy);
    assert_eq!(client.get(url("/v1/x")).send().await.unwrap().status(), 200);
    // Rewrite in place, keeping the listen lines the harness put first.
    let cfg = bin.config_path();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("path_prefix: /v1", "path_prefix: /v2");
    std::fs::write(&cfg, text).unwrap();
    bin.signal("HUP");
    eventually("the reloaded route", async || {
        client.get(url("/v2/x")).send().await.unwrap().status() == 200
    })
    .await;
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
    let logs = bin.stderr();
    assert!(
        logs.contains("\"event\":\"config_reloaded\"") && logs.contains("\"target\":\"audit\""),
        "{logs}"
    );
    assert!(logs.contains("\"event\":\"token_fetched\""), "{logs}");
}
