//! `workers: 2` with the real binary: the proxy listener is served by two threads with a
//! runtime each (src/workers.rs), which together respect `limits.max_connections`, share
//! one token, and drain on SIGTERM.

use crate::support::sidecar::Binary;
use crate::support::*;
use std::time::Duration;

fn yaml(idp: &FakeIdp, api: &FakeUpstream, limits: &str) -> String {
    format!(
        "workers: 2\n{limits}providers:\n{}routes:\n  - name: reverse\n    match: {{ path_prefix: /crm }}\n    provider: crm\n    upstream: {api}\n    strip_prefix: true\n",
        provider_yaml("crm", idp, "    prefetch: true\n"),
        api = api.url()
    )
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

/// Sends one GET on a connection of its own; the status.
async fn get_alone(url: String) -> u16 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn two_worker_threads_serve_many_connections_with_one_token() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let mut bin = Binary::start(&yaml(&idp, &api, ""), &[], &[]);
    bin.wait_healthy().await;
    let names = thread_names(bin.child.id());
    for w in ["proxy-worker-0", "proxy-worker-1"] {
        assert!(names.iter().any(|n| n == w), "{w} in {names:?}");
    }
    let requests: Vec<_> = (0..64)
        .map(|i| tokio::spawn(get_alone(format!("http://{}/crm/r{i}", bin.proxy))))
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200, "{}", bin.stderr());
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 64);
    let issued = idp.issued();
    assert_eq!(issued.len(), 1, "one IdP request for both workers");
    assert!(
        seen.iter().all(|s| s.bearer() == Some(issued[0].as_str())),
        "every request carries the one token"
    );
    bin.signal("TERM");
    assert_eq!(
        bin.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        bin.stderr()
    );
}

/// `max_connections` counts the connections of every worker together: with two served
/// (each holding a slow request), a third waits in the backlog even though one worker
/// thread is free to accept it, and is served once a slot frees.
#[tokio::test]
async fn max_connections_counts_the_connections_of_both_workers() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::slow(Duration::from_millis(1500)).await;
    let limits = "limits: { max_connections: 2 }\n";
    let mut bin = Binary::start(&yaml(&idp, &api, limits), &[], &[]);
    bin.wait_healthy().await;
    let url = |i: usize| format!("http://{}/crm/slow{i}", bin.proxy);
    let first = [
        tokio::spawn(get_alone(url(0))),
        tokio::spawn(get_alone(url(1))),
    ];
    assert_eq!(
        api.wait_count(2).await,
        2,
        "both slow requests are upstream"
    );
    let third = tokio::spawn(get_alone(url(2)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        api.count(),
        2,
        "the third connection waits for a slot while both are taken"
    );
    for r in first {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(third.await.unwrap(), 200, "served once a slot freed");
    assert_eq!(api.count(), 3);
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
}

/// SIGTERM with a request in flight on a worker thread: it completes, the listener
/// closes, the process exits 0.
#[tokio::test]
async fn sigterm_drains_the_worker_threads_and_exits_zero() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::slow(Duration::from_millis(1500)).await;
    let mut bin = Binary::start(&yaml(&idp, &api, ""), &[], &[]);
    bin.wait_healthy().await;
    let inflight = tokio::spawn(get_alone(format!("http://{}/crm/slow", bin.proxy)));
    assert_eq!(
        api.wait_count(1).await,
        1,
        "the slow request reached the upstream"
    );
    bin.signal("TERM");
    assert_eq!(
        inflight.await.unwrap(),
        200,
        "the in-flight request completes"
    );
    bin.assert_exited_cleanly().await;
}

/// Without `workers` in the file the binary picks the CPU count; a reload of the same file
/// does not call that a change that needs a restart.
#[tokio::test]
async fn the_default_worker_count_is_not_a_restart_only_change() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::ok().await;
    let text = yaml(&idp, &api, "").replace("workers: 2\n", "");
    assert!(!text.contains("workers"));
    let mut bin = Binary::start(&text, &[], &[]);
    bin.wait_healthy().await;
    assert_eq!(get_alone(format!("http://{}/crm/x", bin.proxy)).await, 200);
    bin.signal("HUP");
    for _ in 0..200 {
        if bin.stderr().contains("config reloaded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = bin.stderr();
    assert!(log.contains("config reloaded"), "{log}");
    assert!(!log.contains("only after a restart"), "{log}");
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(15)).await, Some(0));
}
