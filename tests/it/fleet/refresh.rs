//! A `refresh_token` grant shared by a fleet, against an IdP that rotates the refresh
//! token on every use and revokes the whole grant when a used one comes back (as
//! oidc-provider's reuse detection does).

use super::*;
use ::redis::AsyncCommands;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Grant {
    current: String,
    used: HashSet<String>,
    revoked: bool,
    requests: usize,
    rotations: usize,
    /// The next this many requests get a 503 (nothing rotated).
    fail_next: usize,
    /// Every access and refresh token handed out.
    issued: Vec<String>,
}

/// The rotating, reuse-detecting IdP.
pub(super) struct RotatingIdp {
    pub addr: SocketAddr,
    grant: Arc<Mutex<Grant>>,
}

impl RotatingIdp {
    pub async fn start(ttl: u64) -> RotatingIdp {
        Self::start_slow(ttl, Duration::ZERO).await
    }

    /// Like [`start`](Self::start), answering each request after `delay`.
    pub async fn start_slow(ttl: u64, delay: Duration) -> RotatingIdp {
        let grant = Arc::new(Mutex::new(Grant {
            current: "rt-0".into(),
            ..Grant::default()
        }));
        let g = grant.clone();
        let addr = serve(move |req: Request<Incoming>| {
            let g = g.clone();
            async move {
                tokio::time::sleep(delay).await;
                answer(&g, req, ttl).await
            }
        })
        .await;
        RotatingIdp { addr, grant }
    }
}

async fn answer(grant: &Mutex<Grant>, req: Request<Incoming>, ttl: u64) -> Response<TestBody> {
    let form = req.into_body().collect().await.unwrap().to_bytes();
    let form = String::from_utf8_lossy(&form).to_string();
    let presented = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("refresh_token="))
        .unwrap_or("")
        .to_string();
    let mut g = grant.lock().unwrap();
    g.requests += 1;
    let refuse = |why: &str| {
        let mut resp = Response::new(body(format!(
            "{{\"error\":\"invalid_grant\",\"error_description\":\"{why}\"}}"
        )));
        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
        resp
    };
    if g.fail_next > 0 {
        g.fail_next -= 1;
        let mut resp = Response::new(body(r#"{"error":"temporarily_unavailable"}"#));
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return resp;
    }
    if g.revoked {
        return refuse("grant revoked");
    }
    if presented != g.current {
        if g.used.contains(&presented) {
            g.revoked = true;
            return refuse("refresh token reuse detected: grant revoked");
        }
        return refuse("unknown refresh token");
    }
    g.rotations += 1;
    let next = format!("rt-{}", g.rotations);
    let used = std::mem::replace(&mut g.current, next.clone());
    g.used.insert(used);
    let access = format!("at-{}-{:08x}", g.rotations, fastrand::u32(..));
    g.issued.extend([access.clone(), next.clone()]);
    let json = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": next,
    });
    Response::new(body(json.to_string()))
}

impl RotatingIdp {
    /// The next `n` requests fail with 503 (the refresh token stays as it is).
    pub fn fail_next(&self, n: usize) {
        self.grant.lock().unwrap().fail_next = n;
    }

    /// Every access and refresh token handed out so far.
    pub fn issued(&self) -> Vec<String> {
        self.grant.lock().unwrap().issued.clone()
    }
}

#[tokio::test]
async fn four_sidecars_rotate_one_refresh_token_and_the_grant_is_never_revoked() {
    let redis = redis().await;
    let idp = RotatingIdp::start(2).await;
    let api = FakeUpstream::ok().await;
    let yaml = format!(
        "providers:\n  user:\n    token_url: http://{}/token\n    client_id: app\n    client_secret: s\n    grant_type: refresh_token\n    refresh_token: rt-0\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: user\n    upstream: {}\n{}",
        idp.addr,
        api.url(),
        store_yaml(&redis.url(), KEY)
    );
    let mut fleet = start_fleet(4, &yaml).await;
    wait_store_up(&fleet).await;
    let start = tokio::time::Instant::now();
    let (mut failures, mut requests) = (0, 0);
    // About four token lifetimes, each sidecar busy. Halfway, a fifth replica starts
    // with the configured (long used) refresh token: it must take the fleet's current
    // one from the store.
    while start.elapsed() < Duration::from_secs(8) {
        if fleet.len() == 4 && start.elapsed() > Duration::from_secs(4) {
            fleet.push(TestSidecar::start(&yaml).await);
        }
        for s in burst(&fleet, 2).await {
            requests += 1;
            failures += usize::from(s != 200);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (revoked, requests_seen, rotations) = {
        let g = idp.grant.lock().unwrap();
        (g.revoked, g.requests, g.rotations)
    };
    assert!(
        !revoked,
        "the IdP revoked the grant after {requests_seen} requests"
    );
    assert_eq!(failures, 0, "every one of {requests} requests succeeded");
    assert_eq!(
        requests_seen, rotations,
        "every refresh presented the current token"
    );
    // One replica's refreshes (every ~1 s), not four replicas'.
    assert!(
        (4..=12).contains(&rotations),
        "rotations in 8 s: {rotations}"
    );
    for sc in fleet {
        sc.stop().await;
    }
}

fn refresh_yaml(idp: &RotatingIdp, api: &FakeUpstream, store: &str) -> String {
    format!(
        "providers:\n  user:\n    token_url: http://{}/token\n    client_id: app\n    client_secret: s\n    grant_type: refresh_token\n    refresh_token: rt-0\n    retries: {{ max_attempts: 1 }}\nroutes:\n  - match: {{ path_prefix: /api }}\n    provider: user\n    upstream: {}\n{store}",
        idp.addr,
        api.url(),
    )
}

/// Redis stalls while the IdP rotates the refresh token, so the store does not take the
/// rotation: the holder keeps the fetch lease and writes the rotation as soon as Redis
/// answers, then stores the token and releases. Another replica never presents the used
/// refresh token; it gets the holder's access token.
#[tokio::test]
async fn a_rotation_the_store_did_not_take_is_written_before_anyone_refreshes() {
    let redis = redis().await;
    let idp = RotatingIdp::start_slow(3600, Duration::from_millis(600)).await;
    let api = FakeUpstream::ok().await;
    let yaml = refresh_yaml(&idp, &api, &store_yaml(&redis.url(), KEY));
    let fleet = start_fleet(2, &yaml).await;
    wait_store_up(&fleet).await;
    let (a, b) = (&fleet[0], &fleet[1]);
    let first = tokio::spawn({
        let url = a.url("/api/x");
        async move { direct_client().get(url).send().await.unwrap().status() }
    });
    // A is inside its token request now (the IdP answers after 600 ms): Redis stalls, so
    // A's compare-and-set of the rotated refresh token times out (500 ms).
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.pause();
    assert_eq!(first.await.unwrap(), 200, "A got its token");
    redis.resume();
    // B asks while A may still hold the lease: it waits for A's token, or refreshes
    // with the rotated refresh token — never the used one.
    assert_eq!(b.get_status("/api/x").await, 200);
    let (revoked, requests, rotations) = {
        let g = idp.grant.lock().unwrap();
        (g.revoked, g.requests, g.rotations)
    };
    assert!(!revoked, "the grant was revoked after {requests} requests");
    assert_eq!(
        requests, rotations,
        "every refresh presented the current token"
    );
    let cas_ok = "token_sidecar_store_operations_total{op=\"cas_refresh\",outcome=\"ok\"}";
    let cas_failed = "token_sidecar_store_operations_total{op=\"cas_refresh\",outcome=\"timeout\"}";
    let cas_lost = "token_sidecar_store_operations_total{op=\"cas_refresh\",outcome=\"lost\"}";
    let failed =
        metric(a, cas_failed).await + metric(a, &cas_failed.replace("timeout", "error")).await;
    assert!(
        failed >= 1.0,
        "the first write failed (the store's timeout, or the client's)"
    );
    // Written later: by the retry, or by the stalled command itself once Redis went on
    // (then the retry finds it there).
    let written = metric(a, cas_ok).await + metric(a, cas_lost).await;
    assert!(written >= 1.0, "the rotation was written later");
    for sc in fleet {
        sc.stop().await;
    }
}

/// POST `/providers/user/refresh` on `sc`: the status and the body.
async fn refresh_now(sc: &TestSidecar) -> (u16, String) {
    let resp = direct_client()
        .post(sc.admin_url("/providers/user/refresh"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Redis loses the refresh-token record (flushed, or restarted without persistence).
/// A replica that only read the last generation it knows must not present its copy (it
/// may have been rotated away since): it fails with a clear error. The replica that
/// wrote that generation presents its copy and re-seeds the record.
#[tokio::test]
async fn a_lost_record_is_reseeded_only_by_the_replica_that_wrote_it() {
    let redis = redis().await;
    let idp = RotatingIdp::start(3600).await;
    let api = FakeUpstream::ok().await;
    let fleet = start_fleet(2, &refresh_yaml(&idp, &api, &store_yaml(&redis.url(), KEY))).await;
    wait_store_up(&fleet).await;
    let (a, b) = (&fleet[0], &fleet[1]);
    // A refreshes: generation 1, written by A.
    assert_eq!(a.get_status("/api/x").await, 200);
    // B needs a token of its own (the shared one is gone) and reads generation 1, but
    // its refresh fails: B knows generation 1 without having written it.
    let mut raw = redis.raw().await;
    let tokens: Vec<String> = raw.keys("token-sidecar:*:token").await.unwrap();
    assert_eq!(tokens.len(), 1);
    let _: () = raw.del(&tokens[0]).await.unwrap();
    idp.fail_next(1);
    assert_eq!(b.get_status("/api/x").await, 503);
    let _: () = ::redis::cmd("FLUSHALL")
        .query_async(&mut raw)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (status, body) = refresh_now(b).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("gone from the token store"), "{body}");
    assert!(body.contains("provide a new refresh_token"), "{body}");
    let (status, body) = refresh_now(a).await;
    assert_eq!(status, 200, "{body}");
    let (revoked, requests, rotations) = {
        let g = idp.grant.lock().unwrap();
        (g.revoked, g.requests, g.rotations)
    };
    assert!(!revoked);
    assert_eq!(
        (requests, rotations),
        (3, 2),
        "B presented nothing after the loss"
    );
    // The record is back (re-seeded, then rotated): B takes it at its next refresh.
    let record = raw_refresh_key(&mut raw).await;
    let g: Option<u64> = raw.hget(record, "g").await.unwrap();
    assert_eq!(g, Some(2));
    for sc in fleet {
        sc.stop().await;
    }
}

async fn raw_refresh_key(raw: &mut ::redis::aio::MultiplexedConnection) -> String {
    let keys: Vec<String> = raw.keys("token-sidecar:*:refresh").await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}
