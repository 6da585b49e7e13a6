//! The [`SessionStore`] contract as tests that every store runs: the memory store and the file
//! store here, a store on another backend in its own crate (feature `contract-tests`).
//!
//! Each test function takes a [`StoreFactory`] that makes a fresh, empty store on a given clock,
//! and panics (it is a test) when the store breaks the contract.
//! [`session_store_contract_tests!`](crate::session_store_contract_tests) turns them into
//! `#[test]` functions:
//!
//! ```
//! use smart_fhir_core::SharedClock;
//! use smart_fhir_store::MemorySessionStore;
//!
//! mod memory {
//!     use super::*;
//!     smart_fhir_store::session_store_contract_tests!(|clock: SharedClock| async move {
//!         MemorySessionStore::new().with_clock(clock)
//!     });
//! }
//! # fn main() {}
//! ```
//!
//! A store whose expiry follows another clock than the injected one (a server's) names the tests
//! it runs: `session_store_contract_tests!(factory; take_is_one_time_sc_4_13_p3, ...)`; every
//! test whose name says `injected_clock` needs the injected clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use smart_fhir_core::{FixedClock, SharedClock};

use crate::{SessionStore, SharedSessionStore, StoreError};

const MINUTE: Duration = Duration::from_secs(60);

/// Makes a fresh, empty store for one contract test, on the given clock.
///
/// Implemented for every `Fn(SharedClock) -> impl Future<Output = impl SessionStore>`, so a
/// factory is a closure; one that needs a place (a temporary directory, a database prefix)
/// owns it, and keeps it as long as the test runs.
pub trait StoreFactory {
    /// The store made.
    type Store: SessionStore + 'static;

    /// A fresh, empty store whose expiry follows `clock`.
    fn new_store(&self, clock: SharedClock) -> impl Future<Output = Self::Store>;
}

impl<F, Fut, S> StoreFactory for F
where
    F: Fn(SharedClock) -> Fut,
    Fut: Future<Output = S>,
    S: SessionStore + 'static,
{
    type Store = S;

    fn new_store(&self, clock: SharedClock) -> impl Future<Output = S> {
        self(clock)
    }
}

/// Runs one contract test on a multi-threaded runtime (the concurrency tests need real
/// parallelism), with the time and I/O drivers on.
///
/// # Panics
///
/// If the runtime cannot start, or the test fails.
pub fn run<T: Future>(test: T) -> T::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the contract test")
        .block_on(test)
}

/// A store on a fixed clock, and the clock.
async fn on_fixed_clock<F: StoreFactory>(factory: &F) -> (F::Store, FixedClock) {
    let clock = FixedClock::at_unix(1_000);
    let store = factory.new_store(SharedClock::new(clock.clone())).await;
    (store, clock)
}

/// Values are filed under a session id and a key; sessions do not see each other's; `put`
/// replaces; `delete` and `delete_session` remove.
pub async fn put_get_delete_and_sessions_are_separate(factory: &impl StoreFactory) {
    let (s, _) = on_fixed_clock(factory).await;
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
    s.delete("s1", "absent").await.unwrap();

    s.delete_session("s1").await.unwrap();
    assert_eq!(s.get("s1", "tokens").await.unwrap(), None);
    assert_eq!(s.get("s2", "state").await.unwrap(), Some(json!({"v": 2})));
}

/// SC-4.13, P3: `take` hands a value out once.
pub async fn take_is_one_time_sc_4_13_p3(factory: &impl StoreFactory) {
    let (s, _) = on_fixed_clock(factory).await;
    s.put("s", "state", json!("abc"), MINUTE).await.unwrap();
    assert_eq!(s.take("s", "state").await.unwrap(), Some(json!("abc")));
    assert_eq!(s.take("s", "state").await.unwrap(), None);
    assert_eq!(s.get("s", "state").await.unwrap(), None);
}

/// P3: of 100 concurrent `take`s of one value, exactly one gets it.
pub async fn concurrent_takes_hand_the_value_to_exactly_one_p3(factory: &impl StoreFactory) {
    let s = SharedSessionStore::new(factory.new_store(SharedClock::default()).await);
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

/// An entry is visible strictly before `put` time + ttl by the injected clock; an expired
/// `state` cannot be taken; a deadline that cannot be represented is an invalid argument.
pub async fn entries_expire_by_the_injected_clock(factory: &impl StoreFactory) {
    let (s, clock) = on_fixed_clock(factory).await;
    s.put("s", "k", json!(1), MINUTE).await.unwrap();
    clock.advance(MINUTE - Duration::from_millis(1));
    assert_eq!(s.get("s", "k").await.unwrap(), Some(json!(1)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(s.get("s", "k").await.unwrap(), None);

    s.put("s", "k", json!(2), MINUTE).await.unwrap();
    clock.advance(MINUTE);
    assert_eq!(
        s.take("s", "k").await.unwrap(),
        None,
        "expired state is unusable"
    );
    assert!(matches!(
        s.put("s", "k", json!(4), Duration::MAX).await,
        Err(StoreError::InvalidArgument { .. })
    ));
}

/// A zero ttl removes: `put` with it deletes the entry, and so does a `compare_and_swap` that
/// matches (and says it swapped).
pub async fn zero_ttl_removes(factory: &impl StoreFactory) {
    let (s, _) = on_fixed_clock(factory).await;
    s.put("s", "k", json!(3), MINUTE).await.unwrap();
    s.put("s", "k", json!(3), Duration::ZERO).await.unwrap();
    assert_eq!(s.get("s", "k").await.unwrap(), None);

    s.put("s", "t", json!("r1"), MINUTE).await.unwrap();
    assert!(s
        .compare_and_swap("s", "t", Some(&json!("r1")), json!("r2"), Duration::ZERO)
        .await
        .unwrap());
    assert_eq!(s.get("s", "t").await.unwrap(), None);
    assert!(
        s.compare_and_swap("s", "t", None, json!("r3"), MINUTE)
            .await
            .unwrap(),
        "the entry is absent after a zero-ttl swap"
    );
}

/// SC-4.32, P12: `compare_and_swap` replaces only the expected value (`None`: absent), so of
/// two refreshes that read one refresh token only the first rotation lands; the new ttl
/// applies by the injected clock, and an expired value counts as absent.
pub async fn compare_and_swap_rotates_once_sc_4_32_p12_injected_clock(factory: &impl StoreFactory) {
    let (s, clock) = on_fixed_clock(factory).await;
    let v1 = json!({"refresh_token": "r1"});
    let v2 = json!({"refresh_token": "r2"});
    let v2_other = json!({"refresh_token": "r2-other"});

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
        .compare_and_swap("s", "t", Some(&v1), v2_other, MINUTE)
        .await
        .unwrap());
    assert_eq!(s.get("s", "t").await.unwrap(), Some(v2.clone()));

    clock.advance(MINUTE);
    assert!(!s
        .compare_and_swap("s", "t", Some(&v2), v1.clone(), MINUTE)
        .await
        .unwrap());
    assert!(s
        .compare_and_swap("s", "t", None, v1.clone(), MINUTE)
        .await
        .unwrap());
    assert_eq!(s.get("s", "t").await.unwrap(), Some(v1));
}

/// P12: of 100 concurrent swaps from one value, exactly one wins.
pub async fn concurrent_compare_and_swap_has_one_winner_p12(factory: &impl StoreFactory) {
    let s = SharedSessionStore::new(factory.new_store(SharedClock::default()).await);
    let old = json!("r0");
    s.put("s", "t", old.clone(), MINUTE).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = s.clone();
            let old = old.clone();
            tokio::spawn(async move {
                s.compare_and_swap("s", "t", Some(&old), json!(format!("new{i}")), MINUTE)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

/// The store works behind `Arc<dyn SessionStore>` and [`SharedSessionStore`], which reach the
/// same entries.
pub async fn object_safe_behind_arc_dyn(factory: &impl StoreFactory) {
    let store: Arc<dyn SessionStore> = Arc::new(factory.new_store(SharedClock::default()).await);
    let shared = SharedSessionStore::from_arc(store.clone());
    shared.put("s", "k", json!(true), MINUTE).await.unwrap();
    assert_eq!(store.get("s", "k").await.unwrap(), Some(json!(true)));
    assert_eq!(shared.take("s", "k").await.unwrap(), Some(json!(true)));
    shared.put("s", "k", json!(1), MINUTE).await.unwrap();
    shared.delete("s", "k").await.unwrap();
    assert!(shared
        .compare_and_swap("s", "k", None, json!(2), MINUTE)
        .await
        .unwrap());
    shared.delete_session("s").await.unwrap();
    assert_eq!(store.get("s", "k").await.unwrap(), None);
}

/// P5: `Debug` shows neither a value nor a session id.
pub async fn debug_shows_no_value_p5(factory: &impl StoreFactory) {
    let (s, _) = on_fixed_clock(factory).await;
    s.put(
        "session-id",
        "tokens",
        json!({"refresh_token": "SECRET"}),
        MINUTE,
    )
    .await
    .unwrap();
    let shared = SharedSessionStore::new(s);
    let printed = format!("{shared:?}");
    assert!(!printed.contains("SECRET"), "{printed}");
    assert!(!printed.contains("session-id"), "{printed}");
}

/// Turns the [contract tests](crate::contract) into `#[test]` functions in the calling module,
/// each on a fresh store from the factory expression (evaluated once per test):
/// `session_store_contract_tests!(factory)` runs them all,
/// `session_store_contract_tests!(factory; name, ...)` the named ones.
#[macro_export]
macro_rules! session_store_contract_tests {
    ($factory:expr) => {
        $crate::session_store_contract_tests!(
            $factory;
            put_get_delete_and_sessions_are_separate,
            take_is_one_time_sc_4_13_p3,
            concurrent_takes_hand_the_value_to_exactly_one_p3,
            entries_expire_by_the_injected_clock,
            zero_ttl_removes,
            compare_and_swap_rotates_once_sc_4_32_p12_injected_clock,
            concurrent_compare_and_swap_has_one_winner_p12,
            object_safe_behind_arc_dyn,
            debug_shows_no_value_p5,
        );
    };
    ($factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::contract::run(async {
                    let factory = $factory;
                    $crate::contract::$name(&factory).await;
                });
            }
        )+
    };
}
