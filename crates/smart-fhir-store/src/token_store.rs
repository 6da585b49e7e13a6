use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use smart_fhir_core::{AccessToken, Clock, SharedClock};

use crate::{StoreError, StoredToken};

/// Where token caches keep their tokens, and how processes that share them agree on who renews.
///
/// Keys are opaque strings chosen by the caller, typically a hash of the FHIR base URL, the
/// client id and the requested scope, so that one entry holds one token.
///
/// A store returns an entry whether or not its access token has expired: an expired access token
/// may come with a refresh token that still works. Callers check
/// [`StoredToken::expires_within`] themselves. A store may drop entries that are expired and carry
/// no refresh token, since they are of no use.
///
/// # Single flight across processes
///
/// A lease is a short-lived lock on a key, in a namespace separate from the tokens. The process
/// that gets one renews the token and stores it; the others wait and read the store again. A lease
/// expires by itself after its `ttl`, so a crashed holder does not block renewal for ever; after
/// that anyone may take it. Release compares the lease's random owner token, so a holder that
/// overran its `ttl` cannot release a lease someone else took meanwhile. On Redis:
/// `SET <lease-key> <owner> NX PX <ttl>` to acquire, and a compare-and-delete script to release.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The entry under `key`, if any, including one whose access token has expired.
    async fn get(&self, key: &str) -> Result<Option<StoredToken>, StoreError>;

    /// Stores `token` under `key`, replacing any previous entry.
    async fn set(&self, key: &str, token: StoredToken) -> Result<(), StoreError>;

    /// Removes the entry under `key`, if any.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Removes the entry under `key` only if its access token is `token`, compared in constant
    /// time, and returns whether it did.
    ///
    /// Used when a server rejects a token: if another task or process has stored a newer token
    /// meanwhile, that one is kept.
    async fn delete_if_access_token(
        &self,
        key: &str,
        token: &AccessToken,
    ) -> Result<bool, StoreError>;

    /// Takes the lease on `key` for `ttl` if no one holds an unexpired lease on it, and returns
    /// `None` otherwise.
    ///
    /// Implementations round `ttl` up to their time resolution and to at least one unit of it
    /// (the in-memory store: one millisecond).
    async fn try_acquire_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;

    /// Releases `lease` if it is still the current lease on its key. Releasing a lease that has
    /// expired and been taken by someone else does nothing and returns `Ok(())`.
    async fn release_lease(&self, lease: Lease) -> Result<(), StoreError>;
}

/// A lease on a key of a [`TokenStore`], from [`TokenStore::try_acquire_lease`].
///
/// `Debug` shows the key and the expiry, not the owner token.
#[must_use = "a lease blocks other holders until it is released or expires"]
pub struct Lease {
    key: String,
    token: String,
    expires_at: SystemTime,
}

impl Lease {
    /// A lease as a store implementation hands it out. `token` is the random owner id that
    /// release compares; make it with [`Lease::random_token`].
    pub fn new(key: impl Into<String>, token: impl Into<String>, expires_at: SystemTime) -> Self {
        Self {
            key: key.into(),
            token: token.into(),
            expires_at,
        }
    }

    /// A fresh random owner token: 128 bits from the operating system, as 32 hex digits.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the operating system has no randomness to give.
    pub fn random_token() -> Result<String, StoreError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| StoreError::backend("no randomness for a lease owner token", e))?;
        Ok(bytes.iter().fold(String::with_capacity(32), |mut s, b| {
            use fmt::Write as _;
            // Writing to a `String` cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        }))
    }

    /// The key the lease is on.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The owner token that identifies this holder.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// When the lease stops protecting the key (by the store's clock).
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A cheaply cloneable, shared [`TokenStore`].
#[derive(Debug, Clone)]
pub struct SharedTokenStore(Arc<dyn TokenStore>);

impl SharedTokenStore {
    /// Wraps a store.
    pub fn new(store: impl TokenStore + 'static) -> Self {
        // One setter takes a value or an already shared one: the latter is not wrapped again.
        if let Some(shared) = (&store as &dyn std::any::Any).downcast_ref::<Self>() {
            return shared.clone();
        }
        Self(Arc::new(store))
    }

    /// Wraps an already shared store.
    pub fn from_arc(store: Arc<dyn TokenStore>) -> Self {
        Self(store)
    }
}

#[async_trait]
impl TokenStore for SharedTokenStore {
    async fn get(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        self.0.get(key).await
    }

    async fn set(&self, key: &str, token: StoredToken) -> Result<(), StoreError> {
        self.0.set(key, token).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }

    async fn delete_if_access_token(
        &self,
        key: &str,
        token: &AccessToken,
    ) -> Result<bool, StoreError> {
        self.0.delete_if_access_token(key, token).await
    }

    async fn try_acquire_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.0.try_acquire_lease(key, ttl).await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), StoreError> {
        self.0.release_lease(lease).await
    }
}

/// The number of entries below which [`MemoryTokenStore`] never sweeps.
const SWEEP_FLOOR: usize = 1024;

/// A [`TokenStore`] in this process's memory, for a single process (leases then only serialise
/// the tasks of this process).
///
/// Every operation takes a `std` mutex for a few map operations and never holds it across an
/// await; `get` clones the entry.
///
/// # Memory
///
/// The store holds one entry per key, and keys come from the caller's configuration (one per
/// server, client and scope), so it stays small in the usual case. When it holds many entries it
/// drops, on insertion, those whose access token has expired and which have no refresh token,
/// and leases that have expired; the sweep runs each time the map doubles, so its cost is
/// amortised. Entries with a live access token or a refresh token are kept until deleted: a
/// caller that makes a key per user should delete the entry when the user's session ends.
#[derive(Default)]
pub struct MemoryTokenStore {
    inner: Mutex<TokenInner>,
    clock: SharedClock,
}

struct TokenInner {
    tokens: HashMap<String, StoredToken>,
    leases: HashMap<String, LeaseEntry>,
    /// Sweep the tokens when an insertion finds at least this many.
    next_token_sweep: usize,
    /// Sweep the leases when an acquisition finds at least this many.
    next_lease_sweep: usize,
}

impl Default for TokenInner {
    fn default() -> Self {
        Self {
            tokens: HashMap::new(),
            leases: HashMap::new(),
            next_token_sweep: SWEEP_FLOOR,
            next_lease_sweep: SWEEP_FLOOR,
        }
    }
}

struct LeaseEntry {
    token: String,
    expires_at: SystemTime,
}

impl MemoryTokenStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `clock` for lease expiry and for deciding which entries a sweep may drop.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn lock(&self) -> MutexGuard<'_, TokenInner> {
        // No code path panics while holding the lock, but if one ever did the maps would still
        // be consistent: every update is a single map operation.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryTokenStore")
            .field("entries", &inner.tokens.len())
            .field("leases", &inner.leases.len())
            .field("clock", &self.clock)
            .finish()
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn get(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        Ok(self.lock().tokens.get(key).cloned())
    }

    async fn set(&self, key: &str, token: StoredToken) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if !inner.tokens.contains_key(key) && inner.tokens.len() >= inner.next_token_sweep {
            inner
                .tokens
                .retain(|_, t| t.refresh_token.is_some() || !t.is_expired(now));
            inner.next_token_sweep = SWEEP_FLOOR.max(inner.tokens.len().saturating_mul(2));
        }
        inner.tokens.insert(key.to_owned(), token);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().tokens.remove(key);
        Ok(())
    }

    async fn delete_if_access_token(
        &self,
        key: &str,
        token: &AccessToken,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let matches = inner
            .tokens
            .get(key)
            .is_some_and(|stored| stored.access_token.ct_eq(token.secret()));
        if matches {
            inner.tokens.remove(key);
        }
        Ok(matches)
    }

    async fn try_acquire_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let now = self.clock.now();
        let expires_at = now
            .checked_add(ttl.max(Duration::from_millis(1)))
            .ok_or_else(|| StoreError::invalid_argument("lease ttl is too long"))?;
        let owner = Lease::random_token()?;
        let mut inner = self.lock();
        if inner.leases.get(key).is_some_and(|l| l.expires_at > now) {
            return Ok(None);
        }
        if !inner.leases.contains_key(key) && inner.leases.len() >= inner.next_lease_sweep {
            inner.leases.retain(|_, l| l.expires_at > now);
            inner.next_lease_sweep = SWEEP_FLOOR.max(inner.leases.len().saturating_mul(2));
        }
        inner.leases.insert(
            key.to_owned(),
            LeaseEntry {
                token: owner.clone(),
                expires_at,
            },
        );
        Ok(Some(Lease::new(key, owner, expires_at)))
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner
            .leases
            .get(&lease.key)
            .is_some_and(|l| l.token == lease.token)
        {
            inner.leases.remove(&lease.key);
        }
        Ok(())
    }
}

/// The behaviour every [`TokenStore`] of this crate shows, as functions over a store made at
/// Unix time 1,000 on a [`FixedClock`], and the macro that runs them all for one store factory
/// (`async fn(&FixedClock) -> (impl TokenStore, guard)`).
#[cfg(test)]
pub(crate) mod behaviour {
    use super::*;
    use smart_fhir_core::{FixedClock, RefreshToken};

    pub(crate) fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    pub(crate) fn token(value: &str) -> StoredToken {
        StoredToken::new(AccessToken::new(value), at(1_000), at(1_300))
    }

    pub(crate) async fn get_set_delete(store: SharedTokenStore, clock: &FixedClock) {
        let _ = clock;
        assert!(store.get("k").await.unwrap().is_none());
        store.set("k", token("one")).await.unwrap();
        store.set("other", token("two")).await.unwrap();
        assert!(store
            .get("k")
            .await
            .unwrap()
            .unwrap()
            .access_token
            .ct_eq("one"));
        store.set("k", token("three")).await.unwrap();
        assert!(store
            .get("k")
            .await
            .unwrap()
            .unwrap()
            .access_token
            .ct_eq("three"));
        store.delete("k").await.unwrap();
        assert!(store.get("k").await.unwrap().is_none());
        assert!(store.get("other").await.unwrap().is_some());
        store.delete("absent").await.unwrap();
    }

    pub(crate) async fn expired_entries_are_still_returned_for_their_refresh_token_sc_4_29(
        store: SharedTokenStore,
        clock: &FixedClock,
    ) {
        store
            .set(
                "k",
                token("old").with_refresh_token(RefreshToken::new("refresh")),
            )
            .await
            .unwrap();
        clock.advance(Duration::from_secs(10_000));
        let got = store.get("k").await.unwrap().unwrap();
        assert!(got.is_expired(clock.now()));
        assert!(got.refresh_token.unwrap().ct_eq("refresh"));
    }

    pub(crate) async fn compare_and_delete_keeps_a_newer_token_sc_8_26(
        store: SharedTokenStore,
        clock: &FixedClock,
    ) {
        let _ = clock;
        store.set("k", token("newer")).await.unwrap();
        let rejected = AccessToken::new("older");
        assert!(!store.delete_if_access_token("k", &rejected).await.unwrap());
        assert!(store.get("k").await.unwrap().is_some());
        // A prefix of the stored token must not match either.
        let prefix = AccessToken::new("newe");
        assert!(!store.delete_if_access_token("k", &prefix).await.unwrap());

        let current = AccessToken::new("newer");
        assert!(store.delete_if_access_token("k", &current).await.unwrap());
        assert!(store.get("k").await.unwrap().is_none());
        assert!(!store.delete_if_access_token("k", &current).await.unwrap());
    }

    pub(crate) async fn lease_is_exclusive_until_released_p12(
        store: SharedTokenStore,
        clock: &FixedClock,
    ) {
        let _ = clock;
        let lease = store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .expect("free lease");
        assert_eq!(lease.key(), "k");
        assert_eq!(lease.expires_at(), at(1_030));
        assert_eq!(lease.token().len(), 32);
        assert!(store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none());
        // Leases are per key, and separate from tokens.
        assert!(store
            .try_acquire_lease("other", Duration::from_secs(30))
            .await
            .unwrap()
            .is_some());
        assert!(store.get("k").await.unwrap().is_none());

        store.release_lease(lease).await.unwrap();
        assert!(store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .is_some());
    }

    pub(crate) async fn expired_lease_can_be_taken_and_old_holder_cannot_release_it_p12(
        store: SharedTokenStore,
        clock: &FixedClock,
    ) {
        let first = store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        clock.advance(Duration::from_secs(29));
        assert!(store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none());
        clock.advance(Duration::from_secs(1));
        let second = store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .expect("the first lease expired");
        assert_ne!(first.token(), second.token());

        // The first holder overran its ttl: releasing must not free the second holder's lease.
        store.release_lease(first).await.unwrap();
        assert!(store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none());

        // Nor can anyone who merely knows the key.
        let forged = Lease::new("k", "0".repeat(32), at(5_000));
        store.release_lease(forged).await.unwrap();
        assert!(store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none());

        store.release_lease(second).await.unwrap();
        assert!(store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .is_some());
    }

    pub(crate) async fn lease_ttl_is_at_least_a_millisecond_and_overflow_is_an_error(
        store: SharedTokenStore,
        clock: &FixedClock,
    ) {
        let _ = clock;
        let lease = store
            .try_acquire_lease("k", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.expires_at(), at(1_000) + Duration::from_millis(1));
        assert!(store
            .try_acquire_lease("k", Duration::ZERO)
            .await
            .unwrap()
            .is_none());
        assert!(matches!(
            store.try_acquire_lease("j", Duration::MAX).await,
            Err(StoreError::InvalidArgument { .. })
        ));
    }

    pub(crate) async fn concurrent_acquirers_get_exactly_one_lease_p12(
        store: SharedTokenStore,
        clock: &FixedClock,
    ) {
        let _ = clock;
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .try_acquire_lease("k", Duration::from_secs(60))
                        .await
                        .unwrap()
                        .is_some()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    pub(crate) async fn object_safe_behind_arc_dyn(store: SharedTokenStore, clock: &FixedClock) {
        let _ = clock;
        let store: Arc<dyn TokenStore> = Arc::new(store);
        let shared = SharedTokenStore::from_arc(store.clone());
        shared.set("k", token("v")).await.unwrap();
        assert!(store
            .get("k")
            .await
            .unwrap()
            .unwrap()
            .access_token
            .ct_eq("v"));
        let lease = shared
            .try_acquire_lease("k", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        shared.release_lease(lease).await.unwrap();
        shared.delete("k").await.unwrap();
        assert!(store.get("k").await.unwrap().is_none());
    }

    macro_rules! token_store_behaviour_tests {
        ($factory:path) => {
            #[tokio::test]
            async fn get_set_delete() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::get_set_delete(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }

            #[tokio::test]
            async fn expired_entries_are_still_returned_for_their_refresh_token_sc_4_29() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::expired_entries_are_still_returned_for_their_refresh_token_sc_4_29(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }

            #[tokio::test]
            async fn compare_and_delete_keeps_a_newer_token_sc_8_26() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::compare_and_delete_keeps_a_newer_token_sc_8_26(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }

            #[tokio::test]
            async fn lease_is_exclusive_until_released_p12() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::lease_is_exclusive_until_released_p12(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }

            #[tokio::test]
            async fn expired_lease_can_be_taken_and_old_holder_cannot_release_it_p12() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::expired_lease_can_be_taken_and_old_holder_cannot_release_it_p12(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }

            #[tokio::test]
            async fn lease_ttl_is_at_least_a_millisecond_and_overflow_is_an_error() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::lease_ttl_is_at_least_a_millisecond_and_overflow_is_an_error(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_acquirers_get_exactly_one_lease_p12() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::concurrent_acquirers_get_exactly_one_lease_p12(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }

            #[tokio::test]
            async fn object_safe_behind_arc_dyn() {
                let clock = ::smart_fhir_core::FixedClock::at_unix(1_000);
                let (store, _guard) = $factory(&clock).await;
                $crate::token_store::behaviour::object_safe_behind_arc_dyn(
                    $crate::SharedTokenStore::new(store),
                    &clock,
                )
                .await;
            }
        };
    }
    pub(crate) use token_store_behaviour_tests;
}

#[cfg(test)]
mod tests {
    use super::behaviour::{at, token};
    use super::*;
    use smart_fhir_core::{FixedClock, RefreshToken};

    fn store_at(secs: u64) -> (MemoryTokenStore, FixedClock) {
        let clock = FixedClock::at_unix(secs);
        let store = MemoryTokenStore::new().with_clock(SharedClock::new(clock.clone()));
        (store, clock)
    }

    async fn memory(clock: &FixedClock) -> (MemoryTokenStore, ()) {
        (
            MemoryTokenStore::new().with_clock(SharedClock::new(clock.clone())),
            (),
        )
    }

    behaviour::token_store_behaviour_tests!(memory);

    #[tokio::test]
    async fn sweep_drops_only_useless_entries() {
        let (store, clock) = store_at(1_000);
        for i in 0..SWEEP_FLOOR - 2 {
            store.set(&format!("dead{i}"), token("x")).await.unwrap();
        }
        store
            .set(
                "refreshable",
                token("r").with_refresh_token(RefreshToken::new("rt")),
            )
            .await
            .unwrap();
        store
            .set(
                "live",
                StoredToken::new(AccessToken::new("l"), at(1_000), at(9_000)),
            )
            .await
            .unwrap();
        assert_eq!(
            store.lock().tokens.len(),
            SWEEP_FLOOR,
            "no sweep below the floor"
        );
        clock.advance(Duration::from_secs(1_000));
        store.set("new", token("n")).await.unwrap();
        let inner = store.lock();
        let mut keys: Vec<_> = inner.tokens.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["live", "new", "refreshable"]);
    }

    #[tokio::test]
    async fn sweep_drops_expired_leases_only() {
        let (store, clock) = store_at(1_000);
        for i in 0..SWEEP_FLOOR - 1 {
            let lease = store
                .try_acquire_lease(&format!("short{i}"), Duration::from_secs(1))
                .await
                .unwrap();
            assert!(lease.is_some());
        }
        let long = store
            .try_acquire_lease("long", Duration::from_secs(600))
            .await
            .unwrap();
        assert!(long.is_some());
        clock.advance(Duration::from_secs(10));
        let new = store
            .try_acquire_lease("new", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(new.is_some());
        let inner = store.lock();
        let mut keys: Vec<_> = inner.leases.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["long", "new"]);
    }

    #[tokio::test]
    async fn debug_shows_no_secret_p5() {
        let store = MemoryTokenStore::new();
        store
            .set(
                "key",
                token("access-SECRET").with_refresh_token(RefreshToken::new("refresh-SECRET")),
            )
            .await
            .unwrap();
        let lease = store
            .try_acquire_lease("key", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        let shared = SharedTokenStore::new(MemoryTokenStore::new());
        let printed = format!("{store:?} {lease:?} {shared:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(!printed.contains(lease.token()), "{printed}");
        assert!(printed.contains("entries: 1"), "{printed}");
    }

    #[test]
    fn random_tokens_are_hex_and_differ() {
        let a = Lease::random_token().unwrap();
        let b = Lease::random_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
