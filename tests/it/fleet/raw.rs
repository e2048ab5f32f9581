//! What Redis holds after a fleet has worked: no token, refresh token, client id,
//! secret, scope or subject in any key or value, raw, base64 or hex.

use super::refresh::RotatingIdp;
use super::*;
use ::redis::AsyncCommands;
use base64::Engine as _;

const CLIENT_ID: &str = "fleet-client-id-1";
const SUBJECT: &str = "subject-token-of-alice-4f2a9c";

#[tokio::test]
async fn redis_holds_no_token_client_id_scope_or_subject_in_any_encoding() {
    let redis = redis().await;
    let idp = FakeIdp::builder().ttl(3600).run().await;
    let rotating = RotatingIdp::start(3600).await;
    let api = FakeUpstream::ok().await;
    let yaml = format!(
        "providers:
  crm:
    token_url: {idp}
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    scopes: [orders.read]
  obo:
    token_url: {idp}
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    grant_type: token_exchange
    subject_token_from: {{ header: X-Subject-Token }}
  user:
    token_url: http://{rot}/token
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    grant_type: refresh_token
    refresh_token: rt-0
routes:
  - {{ match: {{ path_prefix: /api }}, provider: crm, upstream: {up} }}
  - {{ match: {{ path_prefix: /obo }}, provider: obo, upstream: {up} }}
  - {{ match: {{ path_prefix: /user }}, provider: user, upstream: {up} }}
{store}",
        idp = idp.token_url(),
        rot = rotating.addr,
        up = api.url(),
        store = store_yaml(&redis.url(), KEY),
    );
    let fleet = start_fleet(2, &yaml).await;
    wait_store_up(&fleet).await;
    let client = direct_client();
    for sc in &fleet {
        for path in ["/api/x", "/user/x"] {
            assert_eq!(sc.get_status(path).await, 200, "{path}");
        }
        let r = client
            .get(sc.url("/obo/x"))
            .header("x-subject-token", SUBJECT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        idp.requests(),
        2,
        "one client-credentials and one exchange fetch"
    );

    let mut raw = redis.raw().await;
    let names: Vec<String> = raw.keys("*").await.unwrap();
    assert!(
        names.len() >= 3,
        "tokens of all three providers are stored: {names:?}"
    );
    let mut contents: Vec<Vec<u8>> = names.iter().map(|n| n.clone().into_bytes()).collect();
    for name in &names {
        let kind: String = ::redis::cmd("TYPE")
            .arg(name)
            .query_async(&mut raw)
            .await
            .unwrap();
        match kind.as_str() {
            "string" => contents.push(raw.get(name).await.unwrap()),
            "hash" => {
                let fields: Vec<(Vec<u8>, Vec<u8>)> = raw.hgetall(name).await.unwrap();
                for (f, v) in fields {
                    contents.extend([f, v]);
                }
            }
            other => panic!("unexpected {other} at {name}"),
        }
    }
    let mut secrets: Vec<String> = idp.issued();
    secrets.extend(rotating.issued());
    secrets.extend(
        [
            "rt-0",
            CLIENT_ID,
            CLIENT_SECRET,
            SUBJECT,
            "orders.read",
            "read",
            "Bearer",
        ]
        .map(String::from),
    );
    assert!(
        rotating.issued().iter().any(|t| t.starts_with("rt-")),
        "a rotated refresh token exists"
    );
    for secret in &secrets {
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for form in [secret.as_str(), b64.trim_end_matches('='), hex.as_str()] {
            for c in &contents {
                let found = c.windows(form.len()).any(|w| w == form.as_bytes());
                assert!(!found, "{secret:?} (as {form:?}) in Redis");
            }
        }
    }
    for sc in fleet {
        sc.stop().await;
    }
}
