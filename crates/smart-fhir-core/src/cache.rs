//! One expiring cache with single flight, for every cache of the library: tokens, session
//! refreshes, key sets and server configurations.
//!
//! * A fresh value is handed out under a short lock, with no await and no allocation beyond the
//!   value's own clone.
//! * A missing value, or one within its renewal buffer of expiry, is loaded **once** however many
//!   callers ask while the load runs; each of them gets the load's value or its error. An error is
//!   not cached: the next call loads again.
//! * The load is shared, not owned by the caller that started it: if that caller gives up (its
//!   future is dropped), the load goes on for the callers still waiting. When the last waiter
//!   gives up, the load is dropped (cancelled) and forgotten, so the next caller starts a fresh
//!   one rather than joining a load that nobody polled meanwhile (whose time limit may have
//!   passed). Nothing is spawned: a load that must finish even then (a refresh-token rotation)
//!   spawns its own task.
//! * A load that takes longer than the load timeout fails with the error made from
//!   [`LoadTimedOut`], for every waiter.
//! * The renewal buffer is `min(buffer, lifetime / 2)`, so a short-lived value is not renewed on
//!   every call. A value already due for renewal when its load ends (a lifetime of zero, e.g.
//!   `no-store`) goes to that load's waiters and is not kept: the cache is then single flight
//!   alone.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::{Clock, SharedClock};

/// A loaded value with the time it stops being valid.
#[derive(Debug, Clone)]
pub struct Expiring<V> {
    /// The value.
    pub value: V,
    /// When it stops being valid (absolute).
    pub expires_at: SystemTime,
}

impl<V> Expiring<V> {
    /// `value`, valid until `expires_at`.
    pub fn new(value: V, expires_at: SystemTime) -> Self {
        Self { value, expires_at }
    }
}

/// The load did not finish within the cache's load timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("loading took longer than {0:?}")]
pub struct LoadTimedOut(pub Duration);

type Flight<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

struct Entry<V, E> {
    /// The value and when to renew it.
    value: Option<(V, SystemTime)>,
    /// The load in progress.
    flight: Option<InFlight<V, E>>,
}

/// A load in progress: its number (so that a finished or abandoned load clears only itself),
/// the shared future, and how many callers wait for it.
struct InFlight<V, E> {
    id: u64,
    shared: Flight<V, E>,
    waiters: usize,
}

type Entries<K, V, E> = Arc<Mutex<HashMap<K, Entry<V, E>>>>;

/// An expiring, single-flight cache of `V` by `K`; loads fail with `E`.
///
/// Cheap to clone: clones share the entries.
pub struct ExpiringCache<K, V, E> {
    entries: Entries<K, V, E>,
    clock: SharedClock,
    renewal_buffer: Duration,
    load_timeout: Duration,
    max_entries: usize,
    next_flight: Arc<AtomicU64>,
}

impl<K, V, E> Clone for ExpiringCache<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            entries: Arc::clone(&self.entries),
            clock: self.clock.clone(),
            renewal_buffer: self.renewal_buffer,
            load_timeout: self.load_timeout,
            max_entries: self.max_entries,
            next_flight: Arc::clone(&self.next_flight),
        }
    }
}

impl<K, V, E> fmt::Debug for ExpiringCache<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither keys nor values: either may be a secret or identify a person.
        f.debug_struct("ExpiringCache")
            .field("renewal_buffer", &self.renewal_buffer)
            .field("load_timeout", &self.load_timeout)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// Whether a value came from the cache or was loaded for this call (for `tracing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A fresh value was in the cache.
    Hit,
    /// This call started a load.
    Loaded,
    /// This call joined a load another caller had started.
    Joined,
}

impl<K, V, E> ExpiringCache<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + From<LoadTimedOut> + 'static,
{
    /// A cache that renews `renewal_buffer` before expiry (at most half a value's lifetime),
    /// gives a load `load_timeout`, and keeps at most `max_entries` keys (expired ones are dropped
    /// first, then those expiring soonest).
    pub fn new(
        clock: SharedClock,
        renewal_buffer: Duration,
        load_timeout: Duration,
        max_entries: usize,
    ) -> Self {
        Self {
            entries: Arc::default(),
            clock,
            renewal_buffer,
            load_timeout,
            max_entries: max_entries.max(1),
            next_flight: Arc::default(),
        }
    }

    /// The cached value for `key` while it is fresh (not within its renewal buffer).
    pub fn get(&self, key: &K) -> Option<V> {
        let now = self.clock.now();
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key).and_then(|e| e.value.as_ref()) {
            Some((value, renew_at)) if now < *renew_at => Some(value.clone()),
            _ => None,
        }
    }

    /// The fresh value for `key`, or the result of one shared load of it.
    pub async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<V>, E>> + Send + 'static,
    {
        self.get_or_load_traced(key, load).await.0
    }

    /// As [`ExpiringCache::get_or_load`], also saying whether the value was a hit, a load of
    /// this call's, or a load joined.
    pub async fn get_or_load_traced<F, Fut>(&self, key: &K, load: F) -> (Result<V, E>, CacheOutcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<V>, E>> + Send + 'static,
    {
        self.get_or_load_unless(key, |_| false, load).await
    }

    /// As [`ExpiringCache::get_or_load_traced`], treating a fresh value for which `stale` holds
    /// as absent (e.g. a key set that lacks a key a token names): one shared load replaces it.
    /// If that load fails, the old value stays.
    pub async fn get_or_load_unless<F, Fut>(
        &self,
        key: &K,
        stale: impl FnOnce(&V) -> bool,
        load: F,
    ) -> (Result<V, E>, CacheOutcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<V>, E>> + Send + 'static,
    {
        let (flight, outcome) = {
            let now = self.clock.now();
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = entries.entry(key.clone()).or_insert(Entry {
                value: None,
                flight: None,
            });
            if let Some((value, renew_at)) = &entry.value {
                if now < *renew_at && !stale(value) {
                    return (Ok(value.clone()), CacheOutcome::Hit);
                }
            }
            let (flight, outcome) = match &mut entry.flight {
                Some(in_flight) => {
                    in_flight.waiters += 1;
                    (in_flight.shared.clone(), CacheOutcome::Joined)
                }
                None => {
                    let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                    let shared = self.flight(key.clone(), id, load());
                    entry.flight = Some(InFlight {
                        id,
                        shared: shared.clone(),
                        waiters: 1,
                    });
                    (shared, CacheOutcome::Loaded)
                }
            };
            let waiter = Waiter {
                entries: Arc::clone(&self.entries),
                key: key.clone(),
                id: entry.flight.as_ref().map_or(0, |f| f.id),
            };
            ((flight, waiter), outcome)
        };
        let (flight, waiter) = flight;
        let result = flight.await;
        drop(waiter);
        (result, outcome)
    }

    /// Drops the value of `key` if `stale` says so (e.g. it is the token a server refused), so
    /// that the next call loads again. A load in progress is left alone.
    pub fn invalidate_if(&self, key: &K, stale: impl FnOnce(&V) -> bool) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = entries.get_mut(key) else {
            return false;
        };
        if entry.value.as_ref().is_some_and(|(v, _)| stale(v)) {
            entry.value = None;
            if entry.flight.is_none() {
                entries.remove(key);
            }
            return true;
        }
        false
    }

    /// Drops the values of every key for which `stale` holds; loads in progress are left
    /// alone.
    pub fn invalidate_keys(&self, mut stale: impl FnMut(&K) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|key, entry| {
            if !stale(key) {
                return true;
            }
            entry.value = None;
            entry.flight.is_some()
        });
    }

    /// Drops every value and forgets loads in progress (their waiters still get their results).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many keys the cache holds (with a value or a load in progress).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared load: times out, then records its value (or clears itself on error).
    fn flight<Fut>(&self, key: K, id: u64, load: Fut) -> Flight<V, E>
    where
        Fut: Future<Output = Result<Expiring<V>, E>> + Send + 'static,
    {
        let entries = Arc::clone(&self.entries);
        let clock = self.clock.clone();
        let buffer = self.renewal_buffer;
        let timeout = self.load_timeout;
        let max_entries = self.max_entries;
        async move {
            let started = clock.now();
            let result = match tokio::time::timeout(timeout, load).await {
                Ok(result) => result,
                Err(_) => Err(E::from(LoadTimedOut(timeout))),
            };
            let mut map = entries.lock().unwrap_or_else(PoisonError::into_inner);
            let ours = map
                .get(&key)
                .and_then(|e| e.flight.as_ref())
                .is_some_and(|f| f.id == id);
            match &result {
                Ok(loaded) if ours => {
                    let lifetime = loaded
                        .expires_at
                        .duration_since(started)
                        .unwrap_or(Duration::ZERO);
                    let renew_at = loaded
                        .expires_at
                        .checked_sub(buffer.min(lifetime / 2))
                        .unwrap_or(loaded.expires_at);
                    let now = clock.now();
                    if renew_at <= now {
                        // Stale already (`no-store`, a lifetime of zero): handed to this load's
                        // waiters only, not kept.
                        map.remove(&key);
                    } else if let Some(entry) = map.get_mut(&key) {
                        entry.value = Some((loaded.value.clone(), renew_at));
                        entry.flight = None;
                    }
                    prune(&mut map, now, max_entries);
                }
                Err(_) if ours => {
                    let keep = map.get_mut(&key).is_some_and(|entry| {
                        entry.flight = None;
                        entry.value.is_some()
                    });
                    if !keep {
                        map.remove(&key);
                    }
                }
                _ => {}
            }
            result.map(|loaded| loaded.value)
        }
        .boxed()
        .shared()
    }
}

/// One caller waiting for a load; when the last one is dropped before the load ends, the load
/// is forgotten and dropped.
struct Waiter<K: Eq + Hash, V, E> {
    entries: Entries<K, V, E>,
    key: K,
    id: u64,
}

impl<K: Eq + Hash, V, E> Drop for Waiter<K, V, E> {
    fn drop(&mut self) {
        let abandoned = {
            let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(entry) = map.get_mut(&self.key) else {
                return;
            };
            let Some(flight) = entry.flight.as_mut().filter(|f| f.id == self.id) else {
                return;
            };
            flight.waiters -= 1;
            if flight.waiters > 0 {
                return;
            }
            let abandoned = entry.flight.take();
            if entry.value.is_none() {
                map.remove(&self.key);
            }
            abandoned
        };
        // Dropped outside the lock: the load's own drop code may use the cache.
        drop(abandoned);
    }
}

/// Keeps at most `max` entries: drops expired values first, then those renewed soonest; never
/// an entry with a load in progress.
fn prune<K: Eq + Hash + Clone, V, E>(
    map: &mut HashMap<K, Entry<V, E>>,
    now: SystemTime,
    max: usize,
) {
    if map.len() <= max {
        return;
    }
    map.retain(|_, e| e.flight.is_some() || e.value.as_ref().is_some_and(|(_, at)| *at > now));
    while map.len() > max {
        let Some(victim) = map
            .iter()
            .filter(|(_, e)| e.flight.is_none())
            .min_by_key(|(_, e)| e.value.as_ref().map(|(_, at)| *at))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        map.remove(&victim);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::FixedClock;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TestError {
        Failed(u32),
        TimedOut,
    }

    impl From<LoadTimedOut> for TestError {
        fn from(_: LoadTimedOut) -> Self {
            Self::TimedOut
        }
    }

    fn cache(clock: &FixedClock) -> ExpiringCache<&'static str, u32, TestError> {
        ExpiringCache::new(
            SharedClock::new(clock.clone()),
            Duration::from_secs(30),
            Duration::from_secs(5),
            100,
        )
    }

    /// P12: a thousand callers on an empty cache make one load and all get its value.
    #[tokio::test]
    async fn p12_one_load_for_many_callers() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let cache = cache.clone();
            let loads = Arc::clone(&loads);
            let mut gate = gate.clone();
            let expires = clock.now() + Duration::from_secs(300);
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(&"k", move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(Expiring::new(7, expires))
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get(&"k"), Some(7));
    }

    /// Every waiter gets the error; the error is not cached.
    #[tokio::test]
    async fn errors_reach_every_waiter_and_are_not_cached() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let (release, mut gate) = tokio::sync::watch::channel(false);
        let first = cache.get_or_load(&"k", move || async move {
            let _ = gate.wait_for(|open| *open).await;
            Err(TestError::Failed(1))
        });
        let second = async {
            tokio::task::yield_now().await;
            let joined = cache.get_or_load(&"k", || async { Err(TestError::Failed(2)) });
            release.send(true).unwrap();
            joined.await
        };
        let (a, b) = tokio::join!(first, second);
        assert_eq!(a, Err(TestError::Failed(1)));
        assert_eq!(
            b,
            Err(TestError::Failed(1)),
            "the second caller joined the first load"
        );
        let expires = clock.now() + Duration::from_secs(300);
        let c = cache
            .get_or_load(&"k", move || async move { Ok(Expiring::new(3, expires)) })
            .await;
        assert_eq!(c, Ok(3));
    }

    /// SC-3.8: renewed a buffer before expiry, at most half the lifetime.
    #[tokio::test]
    async fn sc_3_8_renews_within_the_buffer_capped_at_half_the_lifetime() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let expires = clock.now() + Duration::from_secs(40);
        let load = move || async move { Ok(Expiring::new(1, expires)) };
        assert_eq!(cache.get_or_load(&"k", load).await, Ok(1));
        // Lifetime 40 s, buffer 30 s: renewal at 20 s before expiry (half the lifetime).
        clock.advance(Duration::from_secs(19));
        assert_eq!(cache.get(&"k"), Some(1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(cache.get(&"k"), None);
        let next = clock.now() + Duration::from_secs(300);
        let (value, outcome) = cache
            .get_or_load_traced(&"k", move || async move { Ok(Expiring::new(2, next)) })
            .await;
        assert_eq!((value, outcome), (Ok(2), CacheOutcome::Loaded));
        let (value, outcome) = cache
            .get_or_load_traced(&"k", || async { Err(TestError::Failed(9)) })
            .await;
        assert_eq!((value, outcome), (Ok(2), CacheOutcome::Hit));
    }

    /// A caller that gives up does not cancel the load for the others still waiting: they get
    /// its value from the one load.
    #[tokio::test]
    async fn a_cancelled_caller_leaves_the_load_to_the_others() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let expires = clock.now() + Duration::from_secs(300);
        let first = {
            let loads = Arc::clone(&loads);
            let mut gate = gate.clone();
            cache.get_or_load(&"k", move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                Ok(Expiring::new(5, expires))
            })
        };
        // Poll the first caller once, so its load starts; a second caller joins; the first
        // gives up.
        let mut first = Box::pin(first);
        assert!(first.as_mut().now_or_never().is_none());
        let mut second = Box::pin(cache.get_or_load(&"k", || async { Err(TestError::Failed(0)) }));
        assert!(second.as_mut().now_or_never().is_none());
        drop(first);
        release.send(true).unwrap();
        assert_eq!(second.await, Ok(5));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    /// A load every caller gave up is dropped (its drop code runs) and the next caller loads
    /// afresh, rather than joining a load nobody polled.
    #[tokio::test]
    async fn a_load_nobody_waits_for_is_dropped() {
        struct OnDrop(Arc<AtomicUsize>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let dropped = Arc::new(AtomicUsize::new(0));
        let guard = OnDrop(Arc::clone(&dropped));
        let mut first = Box::pin(cache.get_or_load(&"k", move || async move {
            let _guard = guard;
            std::future::pending::<Result<Expiring<u32>, TestError>>().await
        }));
        assert!(first.as_mut().now_or_never().is_none());
        drop(first);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the abandoned load was dropped"
        );
        assert!(cache.is_empty());
        let expires = clock.now() + Duration::from_secs(300);
        let next = cache
            .get_or_load(&"k", move || async move { Ok(Expiring::new(6, expires)) })
            .await;
        assert_eq!(next, Ok(6));
    }

    /// A load that hangs fails every waiter with the timeout error, and the next call loads again.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_load_times_out() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let r = cache
            .get_or_load(
                &"k",
                std::future::pending::<Result<Expiring<u32>, TestError>>,
            )
            .await;
        assert_eq!(r, Err(TestError::TimedOut));
        assert!(cache.is_empty());
    }

    /// SC-8.26: a rejected value is dropped only if it is still the cached one.
    #[tokio::test]
    async fn sc_8_26_invalidate_only_the_stale_value() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let expires = clock.now() + Duration::from_secs(300);
        cache
            .get_or_load(&"k", move || async move { Ok(Expiring::new(1, expires)) })
            .await
            .unwrap();
        assert!(!cache.invalidate_if(&"k", |v| *v == 2));
        assert_eq!(cache.get(&"k"), Some(1));
        assert!(cache.invalidate_if(&"k", |v| *v == 1));
        assert_eq!(cache.get(&"k"), None);
    }

    /// A value of no lifetime reaches the load's waiters and is not kept (single flight alone).
    #[tokio::test]
    async fn a_value_already_due_is_not_kept() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let now = clock.now();
        let r = cache
            .get_or_load(&"k", move || async move { Ok(Expiring::new(4, now)) })
            .await;
        assert_eq!(r, Ok(4));
        assert!(cache.is_empty());
        assert_eq!(cache.get(&"k"), None);
    }

    /// SC-4.34: a fresh value said stale is replaced by one shared load; if that load fails,
    /// the old value stays.
    #[tokio::test]
    async fn sc_4_34_a_stale_value_is_reloaded_and_kept_on_failure() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache = cache(&clock);
        let expires = clock.now() + Duration::from_secs(300);
        let load = |v| move || async move { Ok(Expiring::new(v, expires)) };
        assert_eq!(cache.get_or_load(&"k", load(1)).await, Ok(1));
        let (r, outcome) = cache.get_or_load_unless(&"k", |v| *v == 2, load(9)).await;
        assert_eq!(
            (r, outcome),
            (Ok(1), CacheOutcome::Hit),
            "not the stale one"
        );
        let (r, outcome) = cache.get_or_load_unless(&"k", |v| *v == 1, load(2)).await;
        assert_eq!((r, outcome), (Ok(2), CacheOutcome::Loaded));
        let (r, _) = cache
            .get_or_load_unless(&"k", |v| *v == 2, || async { Err(TestError::Failed(3)) })
            .await;
        assert_eq!(r, Err(TestError::Failed(3)));
        assert_eq!(cache.get(&"k"), Some(2), "kept after the failed reload");
        cache.invalidate_keys(|k| *k == "k");
        assert!(cache.is_empty());
    }

    /// The cache keeps at most its bound of keys.
    #[tokio::test]
    async fn bounded_number_of_keys() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let cache: ExpiringCache<u32, u32, TestError> = ExpiringCache::new(
            SharedClock::new(clock.clone()),
            Duration::from_secs(1),
            Duration::from_secs(5),
            10,
        );
        for k in 0..100_u32 {
            let expires = clock.now() + Duration::from_secs(100 + u64::from(k));
            cache
                .get_or_load(&k, move || async move { Ok(Expiring::new(k, expires)) })
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 10);
        // The longest-lived ones were kept.
        assert_eq!(cache.get(&99), Some(99));
        assert_eq!(cache.get(&0), None);
    }
}
