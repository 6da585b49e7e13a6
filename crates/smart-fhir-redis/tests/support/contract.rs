//! The store contract of `smart_fhir_store::TokenStore` and `SessionStore` checked against a
//! real Redis (standalone or cluster). Shared by this crate's tests and by
//! `tests/integration/tests/redis_*.rs` (`#[path]`), so that the same checks run against the
//! servers each starts.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::json;
use smart_fhir_core::{AccessToken, RefreshToken};
use smart_fhir_redis::{EncryptionKey, Keyring, RedisSessionStore, RedisStore, RedisTokenStore};
use smart_fhir_store::{
    Lease, SessionStore, SharedSessionStore, SharedTokenStore, StoreError, StoredToken, TokenStore,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Where the stores under test connect.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// One server.
    Single(String),
    /// Cluster nodes.
    Cluster(Vec<String>),
}

/// A fresh key prefix, so that tests sharing one server never see each other's keys.
pub(crate) fn fresh_prefix(test: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("randomness");
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("t-{test}-{hex}:")
}

/// A store on `target` with a fresh prefix, encrypted when `encrypted`.
pub(crate) fn store(target: &Target, test: &str, encrypted: bool) -> RedisStore {
    let builder = RedisStore::builder()
        .prefix(fresh_prefix(test))
        .command_timeout(Duration::from_secs(3));
    let builder = match target {
        Target::Single(url) => builder.url(url.clone()),
        Target::Cluster(urls) => builder.cluster(urls.clone()),
    };
    let builder = if encrypted {
        builder.encryption(test_keyring())
    } else {
        builder
    };
    builder.build().expect("store configuration")
}

/// The keyring the encrypted tests use.
pub(crate) fn test_keyring() -> Keyring {
    Keyring::new(EncryptionKey::new("test-2", [0x42; 32]).expect("key"))
        .with_old_key(EncryptionKey::new("test-1", [0x24; 32]).expect("key"))
        .expect("keyring")
}

fn token(value: &str, lifetime: Duration) -> StoredToken {
    let now = smart_fhir_core::Clock::now(&smart_fhir_core::SystemClock);
    StoredToken::new(AccessToken::new(value), now, now + lifetime).with_scope("system/Patient.rs")
}

/// Every check below, in order.
pub(crate) async fn all(target: &Target) {
    for encrypted in [false, true] {
        token_get_set_delete(target, encrypted).await;
        delete_if_access_token_keeps_a_newer_token(target, encrypted).await;
        session_put_get_delete_and_sessions_are_separate(target, encrypted).await;
        compare_and_swap_rotates_once(target, encrypted).await;
        compare_and_swap_with_zero_ttl_deletes(target, encrypted).await;
    }
    lease_is_exclusive_and_released_only_by_its_holder(target).await;
    lease_expires_by_itself(target).await;
    concurrent_acquirers_get_exactly_one_lease(target).await;
    concurrent_takes_hand_the_value_to_exactly_one(target).await;
    concurrent_compare_and_swap_has_one_winner(target).await;
    session_entries_expire(target).await;
    value_copied_to_another_key_does_not_decrypt(target).await;
}

/// get / set / delete; an expired token with a refresh token is still returned (SC-4.29).
pub(crate) async fn token_get_set_delete(target: &Target, encrypted: bool) {
    let s = RedisTokenStore::new(store(target, "tok", encrypted));
    assert!(s.get("k").await.unwrap().is_none());
    s.set("k", token("one", MINUTE)).await.unwrap();
    s.set("other", token("two", MINUTE)).await.unwrap();
    let got = s.get("k").await.unwrap().expect("stored");
    assert!(got.access_token.ct_eq("one"));
    assert_eq!(got.scope.as_deref(), Some("system/Patient.rs"));
    s.set("k", token("three", MINUTE)).await.unwrap();
    assert!(s
        .get("k")
        .await
        .unwrap()
        .unwrap()
        .access_token
        .ct_eq("three"));
    s.delete("k").await.unwrap();
    assert!(s.get("k").await.unwrap().is_none());
    assert!(s.get("other").await.unwrap().is_some());
    s.delete("absent").await.unwrap();

    let now = smart_fhir_core::Clock::now(&smart_fhir_core::SystemClock);
    let expired = StoredToken::new(AccessToken::new("old"), now - MINUTE, now - MINUTE / 2)
        .with_refresh_token(RefreshToken::new("refresh"));
    s.set("expired", expired).await.unwrap();
    let got = s
        .get("expired")
        .await
        .unwrap()
        .expect("kept for its refresh token");
    assert!(got.is_expired(now));
    assert!(got.refresh_token.unwrap().ct_eq("refresh"));
}

/// The compare-and-delete after a 401 keeps a newer token (SC-8.26).
pub(crate) async fn delete_if_access_token_keeps_a_newer_token(target: &Target, encrypted: bool) {
    let s = RedisTokenStore::new(store(target, "cad", encrypted));
    s.set("k", token("newer", MINUTE)).await.unwrap();
    assert!(!s
        .delete_if_access_token("k", &AccessToken::new("older"))
        .await
        .unwrap());
    assert!(!s
        .delete_if_access_token("k", &AccessToken::new("newe"))
        .await
        .unwrap());
    assert!(s.get("k").await.unwrap().is_some());
    let current = AccessToken::new("newer");
    assert!(s.delete_if_access_token("k", &current).await.unwrap());
    assert!(s.get("k").await.unwrap().is_none());
    assert!(!s.delete_if_access_token("k", &current).await.unwrap());
}

/// A lease is exclusive, per key, separate from tokens, and only its holder releases it (P12).
pub(crate) async fn lease_is_exclusive_and_released_only_by_its_holder(target: &Target) {
    let s = RedisTokenStore::new(store(target, "lease", false));
    let lease = s
        .try_acquire_lease("k", MINUTE)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(lease.key(), "k");
    assert_eq!(lease.token().len(), 32);
    assert!(s.try_acquire_lease("k", MINUTE).await.unwrap().is_none());
    assert!(s
        .try_acquire_lease("other", MINUTE)
        .await
        .unwrap()
        .is_some());
    assert!(s.get("k").await.unwrap().is_none());

    // Someone who merely knows the key cannot release it.
    s.release_lease(Lease::new("k", "0".repeat(32), lease.expires_at()))
        .await
        .unwrap();
    assert!(s.try_acquire_lease("k", MINUTE).await.unwrap().is_none());

    s.release_lease(lease).await.unwrap();
    let again = s.try_acquire_lease("k", MINUTE).await.unwrap();
    assert!(again.is_some());
}

/// A lease expires by itself after its ttl, and the old holder's release then does not free
/// the new holder's lease (P12). Waits on Redis's own expiry clock.
pub(crate) async fn lease_expires_by_itself(target: &Target) {
    let s = RedisTokenStore::new(store(target, "expiry", false));
    let ttl = Duration::from_millis(300);
    let started = Instant::now();
    let first = s.try_acquire_lease("k", ttl).await.unwrap().expect("free");
    let second = loop {
        if let Some(l) = s.try_acquire_lease("k", ttl * 10).await.unwrap() {
            break l;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        started.elapsed() >= ttl - Duration::from_millis(20),
        "taken over after {:?}, before the ttl",
        started.elapsed()
    );
    s.release_lease(first).await.unwrap();
    assert!(s.try_acquire_lease("k", ttl).await.unwrap().is_none());
    s.release_lease(second).await.unwrap();
    assert!(s.try_acquire_lease("k", ttl).await.unwrap().is_some());
}

/// 100 concurrent acquirers: exactly one lease (P12).
pub(crate) async fn concurrent_acquirers_get_exactly_one_lease(target: &Target) {
    let s = SharedTokenStore::new(RedisTokenStore::new(store(target, "lease100", false)));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.try_acquire_lease("k", MINUTE).await.unwrap().is_some() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

/// put / get / delete / delete_session; sessions are separate (SC-4.6).
pub(crate) async fn session_put_get_delete_and_sessions_are_separate(
    target: &Target,
    encrypted: bool,
) {
    let s = RedisSessionStore::new(store(target, "sess", encrypted));
    s.put("s1", "state", json!({"v": 1}), MINUTE).await.unwrap();
    s.put("s1", "tokens", json!("t"), MINUTE).await.unwrap();
    s.put("s2", "state", json!({"v": 2}), MINUTE).await.unwrap();
    assert_eq!(s.get("s1", "state").await.unwrap(), Some(json!({"v": 1})));
    assert_eq!(s.get("s2", "state").await.unwrap(), Some(json!({"v": 2})));
    assert_eq!(s.get("s3", "state").await.unwrap(), None);
    s.put("s1", "state", json!({"v": 3}), MINUTE).await.unwrap();
    assert_eq!(s.get("s1", "state").await.unwrap(), Some(json!({"v": 3})));
    s.delete("s1", "state").await.unwrap();
    assert_eq!(s.get("s1", "state").await.unwrap(), None);
    assert_eq!(s.get("s1", "tokens").await.unwrap(), Some(json!("t")));

    // take is one-time (SC-4.13, P3).
    s.put("s1", "pending", json!("abc"), MINUTE).await.unwrap();
    assert_eq!(s.take("s1", "pending").await.unwrap(), Some(json!("abc")));
    assert_eq!(s.take("s1", "pending").await.unwrap(), None);

    s.put("s1", "more", json!([1, 2]), MINUTE).await.unwrap();
    s.delete_session("s1").await.unwrap();
    assert_eq!(s.get("s1", "tokens").await.unwrap(), None);
    assert_eq!(s.get("s1", "more").await.unwrap(), None);
    assert_eq!(s.get("s2", "state").await.unwrap(), Some(json!({"v": 2})));

    // A zero ttl removes the entry.
    s.put("s2", "state", json!(0), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(s.get("s2", "state").await.unwrap(), None);
    assert!(matches!(
        s.put("s2", "k", json!(4), Duration::MAX).await,
        Err(StoreError::InvalidArgument { .. })
    ));
}

/// compare_and_swap: `None` expects absence; of two rotations from one value only the first
/// lands (SC-4.32, P12).
pub(crate) async fn compare_and_swap_rotates_once(target: &Target, encrypted: bool) {
    let s = RedisSessionStore::new(store(target, "cas", encrypted));
    let v1 = json!({"refresh_token": "r1"});
    let v2 = json!({"refresh_token": "r2"});
    assert!(s
        .compare_and_swap("s", "t", None, v1.clone(), MINUTE)
        .await
        .unwrap());
    assert!(!s
        .compare_and_swap("s", "t", None, v2.clone(), MINUTE)
        .await
        .unwrap());
    assert!(s
        .compare_and_swap("s", "t", Some(&v1), v2.clone(), MINUTE)
        .await
        .unwrap());
    assert!(!s
        .compare_and_swap("s", "t", Some(&v1), json!("other"), MINUTE)
        .await
        .unwrap());
    assert_eq!(s.get("s", "t").await.unwrap(), Some(v2.clone()));
    assert!(!s
        .compare_and_swap("s", "absent", Some(&v2), v1.clone(), MINUTE)
        .await
        .unwrap());
    // An entry swapped in belongs to its session: sign-out removes it.
    s.delete_session("s").await.unwrap();
    assert_eq!(s.get("s", "t").await.unwrap(), None);
}

/// A zero ttl in compare_and_swap deletes (Redis refuses `PX 0`).
pub(crate) async fn compare_and_swap_with_zero_ttl_deletes(target: &Target, encrypted: bool) {
    let s = RedisSessionStore::new(store(target, "cas0", encrypted));
    let v = json!("r1");
    s.put("s", "t", v.clone(), MINUTE).await.unwrap();
    assert!(s
        .compare_and_swap("s", "t", Some(&v), json!("r2"), Duration::ZERO)
        .await
        .unwrap());
    assert_eq!(s.get("s", "t").await.unwrap(), None);
    assert!(s
        .compare_and_swap("s", "t", None, json!("r3"), Duration::ZERO)
        .await
        .unwrap());
    assert_eq!(s.get("s", "t").await.unwrap(), None);
}

/// 100 concurrent takes: exactly one gets the value (P3).
pub(crate) async fn concurrent_takes_hand_the_value_to_exactly_one(target: &Target) {
    let s = SharedSessionStore::new(RedisSessionStore::new(store(target, "take", true)));
    s.put("s", "state", json!({"state": "xyz"}), MINUTE)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.take("s", "state").await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        if let Some(v) = t.await.unwrap() {
            got.push(v);
        }
    }
    assert_eq!(got, [json!({"state": "xyz"})]);
}

/// 100 concurrent compare-and-swaps from one value: exactly one wins (P12), and the stored
/// value is the winner's.
pub(crate) async fn concurrent_compare_and_swap_has_one_winner(target: &Target) {
    for encrypted in [false, true] {
        let s = SharedSessionStore::new(RedisSessionStore::new(store(target, "cas100", encrypted)));
        let old = json!("r0");
        s.put("s", "t", old.clone(), MINUTE).await.unwrap();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let s = s.clone();
                let old = old.clone();
                tokio::spawn(async move {
                    let won = s
                        .compare_and_swap("s", "t", Some(&old), json!(format!("new{i}")), MINUTE)
                        .await
                        .unwrap();
                    won.then_some(i)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            winners.extend(t.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(
            s.get("s", "t").await.unwrap(),
            Some(json!(format!("new{}", winners[0])))
        );
    }
}

/// Entries disappear after their ttl, by Redis's clock.
pub(crate) async fn session_entries_expire(target: &Target) {
    let s = RedisSessionStore::new(store(target, "ttl", false));
    let started = Instant::now();
    s.put("s", "k", json!(1), Duration::from_millis(300))
        .await
        .unwrap();
    s.put("s", "long", json!(2), MINUTE).await.unwrap();
    assert_eq!(s.get("s", "k").await.unwrap(), Some(json!(1)));
    while s.get("s", "k").await.unwrap().is_some() {
        assert!(started.elapsed() < Duration::from_secs(5), "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(280));
    assert_eq!(s.get("s", "long").await.unwrap(), Some(json!(2)));
}

/// With encryption, a value copied (by someone with Redis access) under another key name fails
/// to decrypt instead of being served for the wrong session.
pub(crate) async fn value_copied_to_another_key_does_not_decrypt(target: &Target) {
    let s = RedisSessionStore::new(store(target, "copy", true));
    s.put(
        "victim",
        "tokens",
        json!({"access_token": "secret"}),
        MINUTE,
    )
    .await
    .unwrap();
    let raw = raw_get(target, &s.entry_key("victim", "tokens"))
        .await
        .expect("stored");
    raw_set(target, &s.entry_key("attacker", "tokens"), &raw).await;
    let e = s.get("attacker", "tokens").await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
}

/// `GET key` through a connection of its own (cluster-aware).
pub(crate) async fn raw_get(target: &Target, key: &str) -> Option<Vec<u8>> {
    raw_query(target, redis::cmd("GET").arg(key)).await
}

/// `SET key value` through a connection of its own (cluster-aware).
pub(crate) async fn raw_set(target: &Target, key: &str, value: &[u8]) {
    let _: Option<String> = raw_query(target, redis::cmd("SET").arg(key).arg(value)).await;
}

async fn raw_query<T: redis::FromRedisValue>(target: &Target, cmd: &redis::Cmd) -> T {
    match target {
        Target::Single(url) => {
            let client = redis::Client::open(url.as_str()).expect("url");
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            cmd.query_async(&mut c).await.expect("raw command")
        }
        Target::Cluster(urls) => {
            let client = redis::cluster::ClusterClient::new(urls.clone()).expect("urls");
            let mut c = client.get_async_connection().await.expect("connect");
            cmd.query_async(&mut c).await.expect("raw command")
        }
    }
}

/// Every key starting with `prefix` and its value, read with `SCAN` + `GET` on every node, as
/// someone with read access to Redis would.
pub(crate) async fn scan_and_get(target: &Target, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let urls = match target {
        Target::Single(url) => vec![url.clone()],
        Target::Cluster(urls) => urls.clone(),
    };
    let mut found = Vec::new();
    for url in urls {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .expect("SCAN");
            for key in keys {
                let kind: String = redis::cmd("TYPE")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .expect("TYPE");
                let value: Vec<u8> = if kind == "string" {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .expect("GET")
                } else {
                    let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .expect("SMEMBERS");
                    members.concat()
                };
                found.push((key, value));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    found
}
