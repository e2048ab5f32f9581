//! The deployments the README describes, end to end through sidecars: TLS with a
//! least-privilege ACL user, and a Redis Cluster; and `validate` on token_store errors.

use super::*;
use crate::support::redis::{RedisCluster, ACL_USER};
use crate::support::tls::TestCa;
use std::process::{Command, Stdio};

/// The README's ACL rule for the default `key_prefix`: its keys and channels only, and
/// the commands the store sends (scripts' commands included).
pub const README_ACL: &str = "resetchannels ~token-sidecar:* &token-sidecar:* -@all +@connection +get +set +del +eval +hget +hset +hmget +publish +psubscribe +punsubscribe";

/// Two sidecars on `store`: a cold herd costs one IdP request, the second adopts.
async fn two_share_one_token(store: &str) {
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let api = FakeUpstream::ok().await;
    let fleet = start_fleet(3, &fleet_yaml(&idp, &api, store)).await;
    wait_store_up(&fleet).await;
    let statuses = burst(&fleet, 3).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.requests(), 1);
    assert_eq!(distinct_tokens(&api).len(), 1);
    for sc in &fleet {
        let errors = "token_sidecar_store_operations_total{op=\"get\",outcome=\"error\"}";
        assert_eq!(metric(sc, errors).await, 0.0);
    }
    for sc in fleet {
        sc.stop().await;
    }
}

#[tokio::test]
async fn tls_with_the_readme_acl_user_end_to_end() {
    let ca = TestCa::new("fleet redis CA");
    let redis = RedisServer::with_tls_and_acl_rule(&ca, README_ACL).await;
    let store = format!(
        "token_store:\n  redis:\n    url: {}\n    username: {ACL_USER}\n    password: {PASSWORD}\n    ca_file: {}\n  encryption_key: \"{KEY}\"\n",
        redis.url(),
        ca.cert_path().display()
    );
    two_share_one_token(&store).await;
}

/// Redis 7's default for a new ACL user (`acl-pubsub-default resetchannels`): keys and
/// commands, but no channel. Publishing and subscribing are refused; the store must
/// still take writes, stay up, and waiters must poll instead.
#[tokio::test]
async fn an_acl_user_without_channel_rights_still_shares_one_token() {
    let ca = TestCa::new("fleet redis CA");
    let no_channels = README_ACL.replace(" &token-sidecar:*", "");
    assert!(!no_channels.contains('&'), "{no_channels}");
    let redis = RedisServer::with_tls_and_acl_rule(&ca, &no_channels).await;
    let store = format!(
        "token_store:\n  redis:\n    url: {}\n    username: {ACL_USER}\n    password: {PASSWORD}\n    ca_file: {}\n  encryption_key: \"{KEY}\"\n",
        redis.url(),
        ca.cert_path().display()
    );
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let api = FakeUpstream::ok().await;
    let fleet = start_fleet(5, &fleet_yaml(&idp, &api, &store)).await;
    wait_store_up(&fleet).await;
    let statuses = burst(&fleet, 3).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.requests(), 1, "one IdP request for the whole fleet");
    assert_eq!(distinct_tokens(&api).len(), 1);
    let (mut puts, mut refused_subscriptions) = (0.0, 0.0);
    for sc in &fleet {
        assert_eq!(metric(sc, "token_sidecar_store_up").await, 1.0);
        let status = sc.admin_json("/status").await;
        assert_eq!(status["store"]["up"], true, "{}", status["store"]);
        let put =
            |o: &str| format!("token_sidecar_store_operations_total{{op=\"put\",outcome=\"{o}\"}}");
        assert_eq!(metric(sc, &put("error")).await, 0.0, "the write stands");
        puts += metric(sc, &put("ok")).await;
        let sub = "token_sidecar_store_operations_total{op=\"subscribe\",outcome=\"error\"}";
        refused_subscriptions += metric(sc, sub).await;
    }
    assert_eq!(puts, 1.0, "the lease holder stored the token");
    assert!(
        refused_subscriptions >= 5.0,
        "every sidecar was refused the channel"
    );
    for sc in fleet {
        sc.stop().await;
    }
}

#[tokio::test]
async fn a_redis_cluster_end_to_end() {
    let cluster = RedisCluster::start().await;
    let urls: Vec<String> = cluster.urls();
    let store = format!(
        "token_store:\n  redis:\n    cluster: true\n    urls: [{}]\n  encryption_key: \"{KEY}\"\n",
        urls.join(", ")
    );
    two_share_one_token(&store).await;
}

#[test]
fn validate_names_file_line_and_field_of_token_store_errors_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("store-key");
    std::fs::write(&key_file, "too-short-key\n").unwrap();
    let cfg = dir.path().join("proxy.yaml");
    std::fs::write(
        &cfg,
        format!(
            "providers:\n  crm:\n    token_url: https://idp.example.com/t\n    client_id: c\n    client_secret: s\n    timeout: 30s\ntoken_store:\n  redis:\n    url: \"redis://user:pw-in-the-url@redis:6379\"\n    cluster: true\n  encryption_key: ${{file:{}}}\n  lease: 20s\n",
            key_file.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["validate", "-c", cfg.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let file = cfg.display().to_string();
    for want in [
        format!("{file}:9:10: token_store.redis.url: with cluster: true, list the seed nodes in urls"),
        format!("{file}:11:19: token_store.encryption_key: must hold at least 32 bytes"),
        format!("{file}:12:10: token_store.lease: must exceed every provider's timeout: provider crm has timeout 30s"),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    for secret in ["pw-in-the-url", "too-short-key"] {
        assert!(!stderr.contains(secret), "{secret} in:\n{stderr}");
    }
}
