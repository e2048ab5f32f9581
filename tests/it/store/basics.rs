//! Round trips, what Redis gets to see, refusal of values that do not authenticate,
//! compare-and-delete, refresh-token compare-and-set and publications.

use super::{config, count, token, wait_up, OTHER_KEY};
use crate::support::redis::RedisServer;
use redis::AsyncCommands;
use std::time::{Duration, Instant};
use token_sidecar::secret::Secret;
use token_sidecar::store::{Op, Outcome, Store, StoredToken, Waited};

const IDENTITY: &[u8] = b"oauth|https://idp.example/token|client-42|read:orders";

#[tokio::test]
async fn put_then_get_on_another_replica() {
    let redis = RedisServer::with_password().await;
    let (a, b) = (
        Store::new(&config(redis.url())).unwrap(),
        Store::new(&config(redis.url())).unwrap(),
    );
    let keys = a.keys(IDENTITY, None);
    assert_eq!(keys, b.keys(IDENTITY, None), "replicas agree on names");
    assert_eq!(a.get(&keys).await.unwrap(), None);
    let t = token("at-round-trip", 60);
    a.put(&keys, &t, Duration::from_secs(5)).await.unwrap();
    assert_eq!(b.get(&keys).await.unwrap(), Some(t.clone()));
    // The value expires with the token.
    let pttl: i64 = redis.raw().await.pttl(keys.token()).await.unwrap();
    assert!((4000..=5000).contains(&pttl), "{pttl}");
    // Subjects (token exchange) get their own names.
    let sub = a.keys(IDENTITY, Some(b"subject-fingerprint"));
    assert_ne!(sub, keys);
    assert_eq!(a.get(&sub).await.unwrap(), None);
    assert_eq!(count(&a, Op::Put, Outcome::Ok), 1);
    assert_eq!(count(&b, Op::Get, Outcome::Ok), 1);
    assert!(a.up() && b.up());
}

#[tokio::test]
async fn redis_sees_no_token_scope_or_identity() {
    let redis = RedisServer::with_password().await;
    let store = Store::new(&config(redis.url())).unwrap();
    let keys = store.keys(IDENTITY, Some(b"subject-alice"));
    let t = token("eyJhbGciOiJSUzI1NiJ9.at-secret-value", 60);
    store.put(&keys, &t, Duration::from_secs(60)).await.unwrap();
    let rt = Secret::new("rt-secret-refresh-value");
    assert!(store.cas_refresh(&keys, 0, &rt).await.unwrap());
    let _lease = store
        .try_lease(&keys, Duration::from_secs(60))
        .await
        .unwrap();

    let mut raw = redis.raw().await;
    let names: Vec<String> = raw.keys("*").await.unwrap();
    assert_eq!(names.len(), 3, "{names:?}");
    let mut everything: Vec<u8> = names.join("\n").into_bytes();
    for name in &names {
        let kind: String = redis::cmd("TYPE")
            .arg(name)
            .query_async(&mut raw)
            .await
            .unwrap();
        if kind == "hash" {
            let fields: Vec<Vec<u8>> = raw.hgetall(name).await.unwrap();
            fields.iter().for_each(|f| everything.extend_from_slice(f));
        } else {
            let value: Vec<u8> = raw.get(name).await.unwrap();
            everything.extend_from_slice(&value);
        }
    }
    for secret in [
        "at-secret-value",
        "eyJhbGciOiJSUzI1NiJ9",
        "rt-secret-refresh-value",
        "read:orders",
        "client-42",
        "idp.example",
        "alice",
        "Bearer",
    ] {
        let found = everything
            .windows(secret.len())
            .any(|w| w == secret.as_bytes());
        assert!(!found, "{secret} is readable in Redis");
    }
}

#[tokio::test]
async fn values_that_do_not_authenticate_are_never_returned() {
    let redis = RedisServer::with_password().await;
    let store = Store::new(&config(redis.url())).unwrap();
    let keys = store.keys(IDENTITY, None);
    let other = store.keys(b"another provider", None);
    store
        .put(&keys, &token("at-genuine", 60), Duration::from_secs(60))
        .await
        .unwrap();
    let mut raw = redis.raw().await;
    let sealed: Vec<u8> = raw.get(keys.token()).await.unwrap();

    // Moved under another key name: the name is authenticated.
    let _: () = raw.set(other.token(), &sealed).await.unwrap();
    assert_eq!(store.get(&other).await.unwrap(), None);
    // Tampered: one flipped bit, or cut short.
    let mut tampered = sealed.clone();
    tampered[20] ^= 0x01;
    let _: () = raw.set(keys.token(), &tampered).await.unwrap();
    assert_eq!(store.get(&keys).await.unwrap(), None);
    let _: () = raw
        .set(keys.token(), &sealed[..sealed.len() - 1])
        .await
        .unwrap();
    assert_eq!(store.get(&keys).await.unwrap(), None);
    assert_eq!(count(&store, Op::Get, Outcome::Invalid), 3);

    // Another encryption key (a fleet mid-rotation): other names, and the old value
    // under the new store's name does not open either.
    let _: () = raw.set(keys.token(), &sealed).await.unwrap();
    let mut cfg = config(redis.url());
    cfg.encryption_key = Secret::new(OTHER_KEY);
    let rotated = Store::new(&cfg).unwrap();
    let rotated_keys = rotated.keys(IDENTITY, None);
    assert_ne!(rotated_keys, keys);
    assert_eq!(rotated.get(&rotated_keys).await.unwrap(), None);
    let _: () = raw.set(rotated_keys.token(), &sealed).await.unwrap();
    assert_eq!(rotated.get(&rotated_keys).await.unwrap(), None);
    let _lease = rotated
        .try_lease(&rotated_keys, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free lease");
    assert_eq!(
        rotated
            .wait(&rotated_keys, Duration::from_millis(100), |_| true)
            .await,
        Ok(Waited::TimedOut)
    );
    // The genuine value still opens with the right key.
    assert_eq!(
        store
            .get(&keys)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "at-genuine"
    );
    // A refresh record under the wrong key: the generation still counts, the token not.
    assert!(store
        .cas_refresh(&keys, 0, &Secret::new("rt-1"))
        .await
        .unwrap());
    let _: () = raw
        .rename(keys.refresh(), rotated_keys.refresh())
        .await
        .unwrap();
    let state = rotated.get_refresh(&rotated_keys).await.unwrap();
    assert_eq!((state.generation, state.token), (1, None));
    assert!(store.up() && rotated.up(), "bad values are not an outage");
}

#[tokio::test]
async fn delete_if_deletes_only_the_rejected_token() {
    let redis = RedisServer::with_password().await;
    let store = Store::new(&config(redis.url())).unwrap();
    let keys = store.keys(IDENTITY, None);
    let ttl = Duration::from_secs(60);
    assert!(!store.delete_if(&keys, &Secret::new("at-a")).await.unwrap());
    store.put(&keys, &token("at-a", 60), ttl).await.unwrap();
    assert!(!store.delete_if(&keys, &Secret::new("at-b")).await.unwrap());
    assert!(
        store.get(&keys).await.unwrap().is_some(),
        "another token stays"
    );
    assert!(store.delete_if(&keys, &Secret::new("at-a")).await.unwrap());
    assert_eq!(store.get(&keys).await.unwrap(), None);
    // A herd of replicas rejecting the same token: one deletion, the replacement stays.
    store.put(&keys, &token("at-c", 60), ttl).await.unwrap();
    let rejected = Secret::new("at-c");
    let herd = (0..10).map(|_| store.delete_if(&keys, &rejected));
    let deleted = futures_util::future::join_all(herd).await;
    assert_eq!(deleted.iter().filter(|d| *d == &Ok(true)).count(), 1);
    store.put(&keys, &token("at-d", 60), ttl).await.unwrap();
    assert!(!store.delete_if(&keys, &Secret::new("at-c")).await.unwrap());
    assert_eq!(
        store
            .get(&keys)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "at-d"
    );
}

#[tokio::test]
async fn refresh_rotation_has_one_winner_per_generation() {
    let redis = RedisServer::with_password().await;
    let (a, b) = (
        Store::new(&config(redis.url())).unwrap(),
        Store::new(&config(redis.url())).unwrap(),
    );
    let keys = a.keys(IDENTITY, None);
    let empty = a.get_refresh(&keys).await.unwrap();
    assert_eq!((empty.generation, empty.token), (0, None));
    let (ra, rb) = (Secret::new("rt-from-a"), Secret::new("rt-from-b"));
    let (wa, wb) = tokio::join!(a.cas_refresh(&keys, 0, &ra), b.cas_refresh(&keys, 0, &rb));
    let (wa, wb) = (wa.unwrap(), wb.unwrap());
    assert!(wa ^ wb, "exactly one writer wins: {wa} {wb}");
    let now = b.get_refresh(&keys).await.unwrap();
    assert_eq!(now.generation, 1);
    assert_eq!(now.token, Some(if wa { ra } else { rb }));
    // The loser (or anyone still at generation 0) cannot overwrite generation 1.
    assert!(!a
        .cas_refresh(&keys, 0, &Secret::new("rt-stale"))
        .await
        .unwrap());
    assert!(a.cas_refresh(&keys, 1, &Secret::new("rt-2")).await.unwrap());
    let now = a.get_refresh(&keys).await.unwrap();
    assert_eq!(now.generation, 2);
    assert_eq!(now.token.unwrap().expose(), "rt-2");
    assert_eq!(
        count(&a, Op::CasRefresh, Outcome::Lost) + count(&b, Op::CasRefresh, Outcome::Lost),
        2
    );
}

#[tokio::test]
async fn a_publication_wakes_a_waiter() {
    let redis = RedisServer::with_password().await;
    let (waiter, writer) = (
        Store::new(&config(redis.url())).unwrap(),
        Store::new(&config(redis.url())).unwrap(),
    );
    wait_up(&waiter).await;
    // Subscribed once the store is up (the reconnect loop's next step).
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&waiter, Op::Subscribe, Outcome::Ok) == 0 {
        assert!(Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let keys = waiter.keys(IDENTITY, None);
    // The writer holds the lease while the waiter waits.
    let _lease = writer
        .try_lease(&keys, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free lease");
    // A sealed token that only a publication carries: written, read raw, deleted.
    let fresh = token("at-published", 3600);
    writer
        .put(&keys, &fresh, Duration::from_secs(60))
        .await
        .unwrap();
    let mut raw = redis.raw().await;
    let sealed: Vec<u8> = raw.get(keys.token()).await.unwrap();
    let _: () = raw.del(keys.token()).await.unwrap();
    let publish = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _: i64 = raw.publish(keys.channel(), &sealed).await.unwrap();
    };
    let (got, ()) = tokio::join!(
        waiter.wait(&keys, Duration::from_secs(10), |_| true),
        publish
    );
    assert_eq!(got, Ok(Waited::Token(fresh)));
    assert_eq!(count(&waiter, Op::Wait, Outcome::Ok), 1);
}

#[tokio::test]
async fn wait_takes_only_what_it_accepts_and_ends_in_time() {
    let redis = RedisServer::with_password().await;
    let (waiter, writer) = (
        Store::new(&config(redis.url())).unwrap(),
        Store::new(&config(redis.url())).unwrap(),
    );
    let keys = waiter.keys(IDENTITY, None);
    let _lease = writer
        .try_lease(&keys, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free lease");
    // A token at its refresh point is there; the waiter wants the refreshed one.
    let stale = token("at-stale", 1);
    writer
        .put(&keys, &stale, Duration::from_secs(60))
        .await
        .unwrap();
    let fresh = token("at-fresh", 3600);
    let put = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .put(&keys, &fresh, Duration::from_secs(60))
            .await
            .unwrap();
    };
    let accept = |t: &StoredToken| t.remaining() > Duration::from_secs(60);
    let (got, ()) = tokio::join!(waiter.wait(&keys, Duration::from_secs(10), accept), put);
    assert_eq!(got, Ok(Waited::Token(fresh)));

    // Nothing acceptable comes while the lease is held: `TimedOut` once `within` has
    // passed.
    let started = Instant::now();
    let none = waiter
        .wait(&keys, Duration::from_millis(300), |_| false)
        .await;
    assert_eq!(none, Ok(Waited::TimedOut));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(count(&waiter, Op::Wait, Outcome::Absent), 1);
}

#[tokio::test]
async fn a_holder_that_gives_up_ends_the_wait_long_before_its_end() {
    let redis = RedisServer::with_password().await;
    let (waiter, holder) = (
        Store::new(&config(redis.url())).unwrap(),
        Store::new(&config(redis.url())).unwrap(),
    );
    let keys = waiter.keys(IDENTITY, None);
    let lease = holder
        .try_lease(&keys, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free lease");
    // The holder's fetch fails: it releases without storing a token.
    let give_up = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(holder.release(&lease).await.unwrap());
    };
    // Noticed by polling, not at the end of `within` (which would be `TimedOut`).
    let (waited, ()) = tokio::join!(
        waiter.wait(&keys, Duration::from_secs(20), |_| true),
        give_up
    );
    assert_eq!(waited, Ok(Waited::LeaseFree));
    // A token stored before the release is taken, not the free lease.
    let lease = holder
        .try_lease(&keys, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free again");
    let t = token("at-stored", 60);
    holder
        .put(&keys, &t, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(holder.release(&lease).await.unwrap());
    let got = waiter.wait(&keys, Duration::from_secs(20), |_| true).await;
    assert_eq!(got, Ok(Waited::Token(t)));
}
