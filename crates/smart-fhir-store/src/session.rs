use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::Value;
use smart_fhir_core::{Clock, SharedClock};
use zeroize::Zeroize;

use crate::StoreError;

/// Server-side session state for App Launch: small JSON documents (the pending `state`, PKCE
/// verifier and FHIR base of an authorization in flight; the tokens of a signed-in user), filed
/// under a session id and a key, each with its own time-to-live.
///
/// The session id comes from the application (typically an unguessable id in an `HttpOnly`
/// cookie) and binds the values to one browser session (SC-4.6, P3); the store does not make ids.
///
/// An entry is visible strictly before `now + ttl` by the store's clock; after that every
/// operation behaves as if it were absent. A `ttl` of zero therefore removes the entry.
///
/// All operations on one entry are atomic with respect to each other: [`SessionStore::take`]
/// hands a value to exactly one caller (a `state` is used once, SC-4.13, P3), and
/// [`SessionStore::compare_and_swap`] lets concurrent refreshes agree on one rotation (SC-4.32,
/// P12). On Redis: `SET ... PX`, `GETDEL`, and a compare-and-set script.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Stores `value` under (`session_id`, `key`) for `ttl`, replacing any previous value.
    async fn put(
        &self,
        session_id: &str,
        key: &str,
        value: Value,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The value under (`session_id`, `key`), if present and not expired.
    async fn get(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError>;

    /// Removes the value under (`session_id`, `key`) and returns it, atomically: of any number of
    /// concurrent callers, at most one gets it.
    async fn take(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError>;

    /// Removes the value under (`session_id`, `key`), if any.
    async fn delete(&self, session_id: &str, key: &str) -> Result<(), StoreError>;

    /// Removes every value of `session_id` (sign-out).
    async fn delete_session(&self, session_id: &str) -> Result<(), StoreError>;

    /// Replaces the value under (`session_id`, `key`) with `new` (for `ttl`) if the current value
    /// equals `expected`, where `None` means "absent or expired", and returns whether it did.
    async fn compare_and_swap(
        &self,
        session_id: &str,
        key: &str,
        expected: Option<&Value>,
        new: Value,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
}

/// A cheaply cloneable, shared [`SessionStore`].
#[derive(Debug, Clone)]
pub struct SharedSessionStore(Arc<dyn SessionStore>);

impl SharedSessionStore {
    /// Wraps a store.
    pub fn new(store: impl SessionStore + 'static) -> Self {
        // One setter takes a value or an already shared one: the latter is not wrapped again.
        if let Some(shared) = (&store as &dyn std::any::Any).downcast_ref::<Self>() {
            return shared.clone();
        }
        Self(Arc::new(store))
    }

    /// Wraps an already shared store.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self(store)
    }
}

#[async_trait]
impl SessionStore for SharedSessionStore {
    async fn put(
        &self,
        session_id: &str,
        key: &str,
        value: Value,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.0.put(session_id, key, value, ttl).await
    }

    async fn get(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.0.get(session_id, key).await
    }

    async fn take(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.0.take(session_id, key).await
    }

    async fn delete(&self, session_id: &str, key: &str) -> Result<(), StoreError> {
        self.0.delete(session_id, key).await
    }

    async fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.0.delete_session(session_id).await
    }

    async fn compare_and_swap(
        &self,
        session_id: &str,
        key: &str,
        expected: Option<&Value>,
        new: Value,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.0
            .compare_and_swap(session_id, key, expected, new, ttl)
            .await
    }
}

/// The default bound on the number of entries of a [`MemorySessionStore`].
pub const DEFAULT_MAX_SESSION_ENTRIES: usize = 100_000;

/// The number of entries below which [`MemorySessionStore`] never sweeps.
const SWEEP_FLOOR: usize = 1024;

/// A [`SessionStore`] in this process's memory, for an application that runs as one process.
///
/// # Memory
///
/// Expired entries are dropped when an operation meets them, and all of them are swept when an
/// insertion finds the store at twice the size of the last sweep (amortised cost) or at its bound.
/// The store holds at most [`DEFAULT_MAX_SESSION_ENTRIES`] live entries unless
/// [`MemorySessionStore::with_max_entries`] says otherwise; beyond that, inserting a new entry
/// fails with [`StoreError::CapacityExceeded`] rather than evicting a live one (which would break
/// a sign-in in progress without telling anyone).
///
/// String values are overwritten with zeros when an entry is replaced, removed or swept, since
/// they can hold a PKCE verifier or a refresh token. `Debug` shows only counts.
pub struct MemorySessionStore {
    inner: Mutex<SessionInner>,
    clock: SharedClock,
    max_entries: usize,
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self {
            inner: Mutex::new(SessionInner {
                sessions: HashMap::new(),
                len: 0,
                next_sweep: SWEEP_FLOOR,
            }),
            clock: SharedClock::default(),
            max_entries: DEFAULT_MAX_SESSION_ENTRIES,
        }
    }
}

impl MemorySessionStore {
    /// An empty store on the system clock, bounded to [`DEFAULT_MAX_SESSION_ENTRIES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `clock` to decide expiry.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Bounds the number of entries (over all sessions).
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    fn lock(&self) -> MutexGuard<'_, SessionInner> {
        // Every update leaves the maps and the count consistent before anything that could
        // panic, so a poisoned lock still guards valid data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deadline(&self, ttl: Duration) -> Result<(SystemTime, SystemTime), StoreError> {
        let now = self.clock.now();
        let expires_at = now
            .checked_add(ttl)
            .ok_or_else(|| StoreError::invalid_argument("session entry ttl is too long"))?;
        Ok((now, expires_at))
    }
}

impl fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemorySessionStore")
            .field("sessions", &inner.sessions.len())
            .field("entries", &inner.len)
            .field("max_entries", &self.max_entries)
            .field("clock", &self.clock)
            .finish()
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn put(
        &self,
        session_id: &str,
        key: &str,
        value: Value,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let (now, expires_at) = self.deadline(ttl)?;
        let mut inner = self.lock();
        inner.store(session_id, key, value, now, expires_at, self.max_entries)
    }

    async fn get(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        Ok(inner.live(session_id, key, now).map(|e| e.value.0.clone()))
    }

    async fn take(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.purge_if_expired(session_id, key, now);
        Ok(inner
            .remove(session_id, key)
            .map(|mut e| std::mem::take(&mut e.value.0)))
    }

    async fn delete(&self, session_id: &str, key: &str) -> Result<(), StoreError> {
        self.lock().remove(session_id, key);
        Ok(())
    }

    async fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(session) = inner.sessions.remove(session_id) {
            inner.len = inner.len.saturating_sub(session.len());
        }
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        session_id: &str,
        key: &str,
        expected: Option<&Value>,
        new: Value,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (now, expires_at) = self.deadline(ttl)?;
        let mut inner = self.lock();
        let current = inner.live(session_id, key, now).map(|e| &e.value.0);
        if current != expected {
            return Ok(false);
        }
        inner.store(session_id, key, new, now, expires_at, self.max_entries)?;
        Ok(true)
    }
}

struct SessionInner {
    sessions: HashMap<String, HashMap<String, Entry>>,
    /// The number of entries over all sessions, expired ones included.
    len: usize,
    /// Sweep when an insertion finds at least this many entries.
    next_sweep: usize,
}

struct Entry {
    value: Scrubbed,
    expires_at: SystemTime,
}

impl SessionInner {
    fn peek(&self, session_id: &str, key: &str) -> Option<&Entry> {
        self.sessions.get(session_id)?.get(key)
    }

    fn purge_if_expired(&mut self, session_id: &str, key: &str, now: SystemTime) {
        if self
            .peek(session_id, key)
            .is_some_and(|e| e.expires_at <= now)
        {
            self.remove(session_id, key);
        }
    }

    /// The entry, if present and not expired; an expired one is dropped on the way.
    fn live(&mut self, session_id: &str, key: &str, now: SystemTime) -> Option<&Entry> {
        self.purge_if_expired(session_id, key, now);
        self.peek(session_id, key)
    }

    fn remove(&mut self, session_id: &str, key: &str) -> Option<Entry> {
        let session = self.sessions.get_mut(session_id)?;
        let entry = session.remove(key)?;
        if session.is_empty() {
            self.sessions.remove(session_id);
        }
        self.len = self.len.saturating_sub(1);
        Some(entry)
    }

    /// Stores `value` until `expires_at`, or removes the entry if that is not after `now`.
    fn store(
        &mut self,
        session_id: &str,
        key: &str,
        value: Value,
        now: SystemTime,
        expires_at: SystemTime,
        max_entries: usize,
    ) -> Result<(), StoreError> {
        let entry = Entry {
            value: Scrubbed(value),
            expires_at,
        };
        if expires_at <= now {
            self.remove(session_id, key);
            return Ok(());
        }
        if let Some(slot) = self
            .sessions
            .get_mut(session_id)
            .and_then(|s| s.get_mut(key))
        {
            // Replacing drops (and scrubs) the old value; the count does not change.
            *slot = entry;
            return Ok(());
        }
        if self.len >= self.next_sweep || self.len >= max_entries {
            self.sweep(now);
            self.next_sweep = SWEEP_FLOOR.max(self.len.saturating_mul(2));
        }
        if self.len >= max_entries {
            return Err(StoreError::CapacityExceeded { limit: max_entries });
        }
        match self.sessions.get_mut(session_id) {
            Some(session) => {
                session.insert(key.to_owned(), entry);
            }
            None => {
                self.sessions.insert(
                    session_id.to_owned(),
                    HashMap::from([(key.to_owned(), entry)]),
                );
            }
        }
        self.len += 1;
        Ok(())
    }

    fn sweep(&mut self, now: SystemTime) {
        let mut len = 0;
        self.sessions.retain(|_, session| {
            session.retain(|_, e| e.expires_at > now);
            len += session.len();
            !session.is_empty()
        });
        self.len = len;
    }
}

/// A JSON value whose strings are overwritten with zeros when it is dropped.
struct Scrubbed(Value);

impl Drop for Scrubbed {
    fn drop(&mut self) {
        scrub(&mut self.0);
    }
}

/// Overwrites every string of a JSON value with zeros: session values hold tokens and verifiers.
pub(crate) fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(members) => members.values_mut().for_each(scrub),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use smart_fhir_core::FixedClock;

    const MINUTE: Duration = Duration::from_secs(60);

    fn store() -> (MemorySessionStore, FixedClock) {
        let clock = FixedClock::at_unix(1_000);
        let store = MemorySessionStore::new().with_clock(SharedClock::new(clock.clone()));
        (store, clock)
    }

    #[tokio::test]
    async fn bounded_with_sweep_of_expired_entries() {
        let (s, clock) = store();
        let s = s.with_max_entries(3);
        s.put("a", "k", json!(1), MINUTE).await.unwrap();
        s.put("b", "k", json!(1), MINUTE).await.unwrap();
        s.put("c", "k", json!(1), 2 * MINUTE).await.unwrap();
        assert!(matches!(
            s.put("d", "k", json!(1), MINUTE).await,
            Err(StoreError::CapacityExceeded { limit: 3 })
        ));
        assert!(matches!(
            s.compare_and_swap("d", "k", None, json!(1), MINUTE).await,
            Err(StoreError::CapacityExceeded { limit: 3 })
        ));
        // Replacing an existing entry needs no room.
        s.put("a", "k", json!(2), MINUTE).await.unwrap();

        clock.advance(MINUTE);
        s.put("d", "k", json!(1), MINUTE).await.unwrap();
        s.put("e", "k", json!(1), MINUTE).await.unwrap();
        assert_eq!(s.lock().len, 3);
        assert_eq!(s.lock().sessions.len(), 3);
        assert_eq!(s.get("c", "k").await.unwrap(), Some(json!(1)));
    }

    #[tokio::test]
    async fn sweep_on_growth_drops_expired_entries() {
        let (s, clock) = store();
        for i in 0..SWEEP_FLOOR - 1 {
            s.put(&format!("s{i}"), "state", json!("x"), MINUTE)
                .await
                .unwrap();
        }
        s.put("long", "state", json!("y"), 10 * MINUTE)
            .await
            .unwrap();
        clock.advance(MINUTE);
        s.put("new", "state", json!("z"), MINUTE).await.unwrap();
        let inner = s.lock();
        assert_eq!(inner.len, 2);
        let mut ids: Vec<_> = inner.sessions.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["long", "new"]);
    }

    /// The contract every session store keeps (`crate::contract`), on the memory store.
    mod contract {
        use super::*;

        crate::session_store_contract_tests!(|clock: SharedClock| async move {
            MemorySessionStore::new().with_clock(clock)
        });
    }

    /// The entry count follows removals, deletions of a session and expiry (an expired entry is
    /// dropped when an operation meets it).
    #[tokio::test]
    async fn the_count_follows_removals_and_expiry() {
        let (s, clock) = store();
        s.put("s1", "state", json!({"v": 1}), MINUTE).await.unwrap();
        s.put("s1", "tokens", json!("t"), MINUTE).await.unwrap();
        s.put("s2", "state", json!({"v": 2}), MINUTE).await.unwrap();
        s.delete("s1", "state").await.unwrap();
        s.delete_session("s1").await.unwrap();
        assert_eq!(s.lock().len, 1);

        clock.advance(MINUTE);
        assert_eq!(s.get("s2", "state").await.unwrap(), None);
        assert_eq!(s.lock().len, 0, "dropped when met");
    }

    #[test]
    fn scrub_zeroes_nested_strings() {
        let mut v = json!({"a": ["secret", {"b": "more"}], "n": 1});
        scrub(&mut v);
        assert_eq!(v, json!({"a": ["", {"b": ""}], "n": 1}));
    }

    /// `Debug` shows counts (the contract test `debug_shows_no_value_p5` checks it shows no
    /// value and no session id).
    #[tokio::test]
    async fn debug_shows_counts() {
        let (s, _) = store();
        s.put(
            "session-id",
            "tokens",
            json!({"refresh_token": "SECRET"}),
            MINUTE,
        )
        .await
        .unwrap();
        let printed = format!("{s:?}");
        assert!(printed.contains("sessions: 1"), "{printed}");
        assert!(printed.contains("entries: 1"), "{printed}");
    }
}
