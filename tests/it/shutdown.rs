//! SIGTERM on the real binary (SPEC §7): the proxy drains its in-flight requests while
//! `/readyz` answers 503 `draining`, and the admin listener closes last.

use crate::support::sidecar::Binary;
use crate::support::{direct_client, provider_yaml, FakeIdp, FakeUpstream};
use std::time::Duration;

#[tokio::test]
async fn sigterm_drains_with_readyz_draining_and_the_admin_listener_last() {
    let idp = FakeIdp::builder().run().await;
    let api = FakeUpstream::slow(Duration::from_millis(1500)).await;
    let yaml = format!(
        "shutdown_grace: 10s\nproviders:\n{}routes:\n  - match: {{ path_prefix: /api }}\n    provider: crm\n    upstream: {}\n",
        provider_yaml("crm", &idp, ""),
        api.url()
    );
    let mut bin = Binary::start(&yaml, &[], &[]);
    bin.wait_healthy().await;
    let client = direct_client();
    let ready = |c: reqwest::Client, admin| async move {
        c.get(format!("http://{admin}/readyz")).send().await
    };
    assert_eq!(
        ready(client.clone(), bin.admin).await.unwrap().status(),
        200
    );

    let in_flight = tokio::spawn({
        let (client, url) = (client.clone(), format!("http://{}/api/slow", bin.proxy));
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    bin.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Draining: the admin still answers, and says so.
    let resp = ready(client.clone(), bin.admin)
        .await
        .expect("the admin listener is still open while the proxy drains");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "draining", "{body}");
    assert_eq!(
        client
            .get(format!("http://{}/healthz", bin.admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The request in flight completes.
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request finished");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow ok");
    assert_eq!(
        bin.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        bin.stderr()
    );
}
