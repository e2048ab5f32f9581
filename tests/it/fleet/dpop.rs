//! DPoP providers in a fleet (SPEC §9, §10): a token is bound to a key, so replicas share
//! a stored token only when they hold the same key, and a DPoP token never reaches a
//! Bearer provider (nor the other way round), whatever else their settings share.

use super::*;
use crate::support::dpop::{DpopApi, DpopIdp, IdpOptions};
use crate::support::keys;

/// A `dpop` provider `bound` on `idp` with `key`, its route `/api` to `api`, the store.
fn dpop_yaml(idp: &DpopIdp, api: &str, key: &std::path::Path, store: &str) -> String {
    format!(
        "providers:\n  bound:\n    token_url: {}\n    client_id: svc\n    client_secret: s3cr3t-client-secret\n    dpop: {{ key_file: {} }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: bound\n    upstream: {api}\n{store}",
        idp.token_url(),
        key.display(),
    )
}

/// The same provider without `dpop`.
fn bearer_yaml(idp: &DpopIdp, api: &str, store: &str) -> String {
    format!(
        "providers:\n  bound:\n    token_url: {}\n    client_id: svc\n    client_secret: s3cr3t-client-secret\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: bound\n    upstream: {api}\n{store}",
        idp.token_url(),
    )
}

async fn source(sc: &TestSidecar) -> String {
    let status = sc.admin_json("/status").await;
    status["providers"]["bound"]["source"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Per-pod keys: each replica fetches a token bound to its own key (the API, which checks
/// `cnf.jkt` against the proof's key, never sees a token bound to another key). A replica
/// holding the same key in another file adopts the stored token.
#[tokio::test]
async fn replicas_share_a_dpop_token_only_when_they_hold_the_same_key() {
    let redis = redis().await;
    let store = store_yaml(&redis.url(), KEY);
    let idp = DpopIdp::start(IdpOptions::default()).await;
    let api = DpopApi::start(None).await;
    let (dir_a, dir_b, dir_copy) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (key_a, key_b) = (keys::p256(dir_a.path()), keys::p256(dir_b.path()));
    let copy_of_a = dir_copy.path().join("same-key.pem");
    std::fs::copy(&key_a.path, &copy_of_a).unwrap();
    let mut fleet = Vec::new();
    for key in [&key_a.path, &key_b.path, &copy_of_a] {
        fleet.push(TestSidecar::start(&dpop_yaml(&idp, &api.url(), key, &store)).await);
    }
    wait_store_up(&fleet).await;
    // One after the other, so the first one's token is in the store for the others.
    for sc in &fleet {
        assert_eq!(sc.get_status("/api/x").await, 200);
    }
    assert_eq!(api.problems(), Vec::<String>::new());
    assert_eq!(idp.problems(), Vec::<String>::new());
    let issued = idp.issued();
    assert_eq!(issued.len(), 2, "one token per key");
    let seen: Vec<_> = api.seen().into_iter().map(|(auth, _)| auth).collect();
    let want: Vec<_> = [&issued[0], &issued[1], &issued[0]]
        .iter()
        .map(|t| format!("DPoP {t}"))
        .collect();
    assert_eq!(seen, want);
    let mut sources = Vec::new();
    for sc in &fleet {
        sources.push(source(sc).await);
    }
    assert_eq!(sources, ["idp", "idp", "store"]);
    for sc in fleet {
        sc.stop().await;
    }
}

/// A DPoP provider and a Bearer provider with otherwise equal settings (one IdP, one
/// client) fetch a token each: the DPoP API gets the DPoP token with its proof, the plain
/// API the Bearer token.
#[tokio::test]
async fn a_dpop_and_a_bearer_provider_never_share_a_token() {
    let redis = redis().await;
    let store = store_yaml(&redis.url(), KEY);
    let idp = DpopIdp::start(IdpOptions {
        bearer_without_proof: true,
        ..IdpOptions::default()
    })
    .await;
    let dpop_api = DpopApi::start(None).await;
    let plain_api = FakeUpstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let key = keys::p256(dir.path());
    let dpop_sc = TestSidecar::start(&dpop_yaml(&idp, &dpop_api.url(), &key.path, &store)).await;
    let bearer_sc = TestSidecar::start(&bearer_yaml(&idp, &plain_api.url(), &store)).await;
    let dpop_again = TestSidecar::start(&dpop_yaml(&idp, &dpop_api.url(), &key.path, &store)).await;
    let fleet = [dpop_sc, bearer_sc, dpop_again];
    wait_store_up(&fleet).await;
    for sc in &fleet {
        assert_eq!(sc.get_status("/api/x").await, 200);
    }
    assert_eq!(dpop_api.problems(), Vec::<String>::new());
    assert_eq!(idp.problems(), Vec::<String>::new());
    let (dpop_tokens, bearer_tokens) = (idp.issued(), idp.bearer_issued());
    assert_eq!((dpop_tokens.len(), bearer_tokens.len()), (1, 1));
    let dpop_seen: Vec<_> = dpop_api.seen().into_iter().map(|(a, _)| a).collect();
    let dpop_want = format!("DPoP {}", dpop_tokens[0]);
    assert_eq!(dpop_seen, [dpop_want.clone(), dpop_want]);
    let plain_seen: Vec<_> = plain_api
        .seen()
        .iter()
        .map(|s| s.header("authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(plain_seen, [format!("Bearer {}", bearer_tokens[0])]);
    let plain = &plain_api.seen()[0];
    assert!(plain.header("dpop").is_none(), "no proof to a Bearer API");
    for sc in fleet {
        sc.stop().await;
    }
}
