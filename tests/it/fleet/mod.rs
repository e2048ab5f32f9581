//! Several in-process sidecars sharing one token store (SPEC §9) on real `redis-server`
//! processes, against counting fake IdPs: what a fleet asks of the IdP, what reaches the
//! upstream, and what happens when the store fails.

mod dpop;
mod herd;
mod outage;
mod raw;
mod refresh;
mod setups;

use crate::support::redis::{RedisServer, PASSWORD};
use crate::support::*;
use std::time::Duration;

pub const KEY: &str = "fleet-test-encryption-key-0123456789abcdef";
pub const OTHER_KEY: &str = "another-fleet-key-fedcba9876543210-xyz!";

/// The `token_store` block for `redis` (password auth) with `key`.
pub fn store_yaml(url: &str, key: &str) -> String {
    format!(
        "token_store:\n  redis:\n    url: {url}\n    password: {PASSWORD}\n    timeout: 500ms\n  encryption_key: \"{key}\"\n  lease: 15s\n"
    )
}

/// One client-credentials provider `crm` on `idp`, one route `/api` to `api`, and the
/// store block.
pub fn fleet_yaml(idp: &FakeIdp, api: &FakeUpstream, store: &str) -> String {
    format!(
        "providers:\n{}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n{store}",
        provider_yaml("crm", idp, "    retries: { max_attempts: 1 }\n"),
        api.url()
    )
}

/// `n` sidecars with the same config.
pub async fn start_fleet(n: usize, yaml: &str) -> Vec<TestSidecar> {
    let mut fleet = Vec::with_capacity(n);
    for _ in 0..n {
        fleet.push(TestSidecar::start(yaml).await);
    }
    fleet
}

/// Waits (up to 10 s) until every sidecar's `/status` says the store is up.
pub async fn wait_store_up(fleet: &[TestSidecar]) {
    for sc in fleet {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = sc.admin_json("/status").await;
            if status["store"]["up"] == true {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "store never up: {}",
                status["store"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of one series in a sidecar's `/metrics` (0 when absent).
pub async fn metric(sc: &TestSidecar, series: &str) -> f64 {
    let text = direct_client()
        .get(sc.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// GETs `/api/x` through every sidecar at once, `per` times each; the statuses.
pub async fn burst(fleet: &[TestSidecar], per: usize) -> Vec<u16> {
    let client = direct_client();
    let requests = fleet.iter().flat_map(|sc| {
        let client = client.clone();
        (0..per).map(move |_| {
            let req = client.get(sc.url("/api/x")).send();
            async move { req.await.map_or(0, |r| r.status().as_u16()) }
        })
    });
    futures_util::future::join_all(requests).await
}

/// Starts a password-protected Redis.
pub async fn redis() -> RedisServer {
    RedisServer::with_password().await
}

/// The distinct bearer tokens the upstream saw.
pub fn distinct_tokens(api: &FakeUpstream) -> std::collections::BTreeSet<String> {
    api.seen()
        .iter()
        .filter_map(|s| s.bearer().map(str::to_string))
        .collect()
}
