//! [`SessionTokenStore`]: a [`TokenStore`] over any [`SessionStore`], so that a store that only
//! speaks the session contract (a [`FileSessionStore`](crate::FileSessionStore) shared by
//! processes on one machine) also keeps Backend Services tokens and their leases.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use smart_fhir_core::{AccessToken, Clock, SharedClock};

use crate::lease::{LeaseBackend, SessionStoreLease};
use crate::{Lease, SessionStore, SharedSessionStore, StoreError, StoredToken, TokenStore};

/// The reserved session id under which the tokens are kept, one entry per token key.
pub const TOKENS_SESSION_ID: &str = "smart-fhir:tokens";
/// The reserved session id under which the leases are kept, one entry per token key.
pub const LEASES_SESSION_ID: &str = "smart-fhir:token-leases";

/// How long a token without a refresh token is kept after its access token expired.
const EXPIRED_TOKEN_RETENTION: Duration = Duration::from_secs(5 * 60);
/// How long a token with a refresh token is kept after its access token expired.
const REFRESH_TOKEN_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How often `delete_if_access_token` re-reads an entry that changed under it.
const COMPARE_ATTEMPTS: usize = 16;

/// A [`TokenStore`] on a [`SessionStore`]: tokens are JSON values of the reserved session
/// [`TOKENS_SESSION_ID`], leases are values of [`LEASES_SESSION_ID`] taken and released by
/// compare-and-swap (the lease protocol's [`SessionStoreLease`]), and
/// [`delete_if_access_token`](TokenStore::delete_if_access_token) is a compare-and-swap too. The
/// session store's atomicity is therefore all it needs: over a
/// [`FileSessionStore`](crate::FileSessionStore), processes sharing the file renew a token once
/// between them (P12).
///
/// An entry lives until its access token expires, plus 5 minutes without a refresh token or 30
/// days with one (as on Redis). A lease's time-to-live is rounded up to one millisecond.
/// `Debug` shows the session store, which shows no value.
#[derive(Clone)]
pub struct SessionTokenStore {
    sessions: SharedSessionStore,
    clock: SharedClock,
}

impl SessionTokenStore {
    /// Tokens and leases in `sessions`, on the system clock.
    pub fn new(sessions: impl SessionStore + 'static) -> Self {
        Self {
            sessions: SharedSessionStore::new(sessions),
            clock: SharedClock::default(),
        }
    }

    /// Uses `clock` for entry lifetimes and lease expiry; give the session store the same one.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn lease(&self, key: &str) -> SessionStoreLease {
        SessionStoreLease::new(self.sessions.clone(), LEASES_SESSION_ID, key)
    }
}

impl fmt::Debug for SessionTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTokenStore")
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

fn to_value(token: &StoredToken) -> Result<Value, StoreError> {
    let bytes = token.to_json_bytes()?;
    serde_json::from_slice(&bytes)
        .map_err(|_| StoreError::corrupt("stored token could not be serialized"))
}

fn from_value(value: &Value) -> Result<StoredToken, StoreError> {
    let bytes = zeroize::Zeroizing::new(
        serde_json::to_vec(value).map_err(|_| StoreError::corrupt("stored token is not JSON"))?,
    );
    StoredToken::from_json_bytes(&bytes)
}

/// A lease owner value of [`SessionStoreLease`] as a [`Lease`], and back.
fn holder_token(held: &Value) -> Result<String, StoreError> {
    held.get("holder")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| StoreError::corrupt("a lease entry without its holder"))
}

#[async_trait]
impl TokenStore for SessionTokenStore {
    async fn get(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        match self.sessions.get(TOKENS_SESSION_ID, key).await? {
            Some(value) => from_value(&value).map(Some),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, token: StoredToken) -> Result<(), StoreError> {
        let retention = if token.refresh_token.is_some() {
            REFRESH_TOKEN_RETENTION
        } else {
            EXPIRED_TOKEN_RETENTION
        };
        let until = token.expires_at.checked_add(retention);
        let ttl = until.map_or(Duration::MAX, |until| {
            until
                .duration_since(self.clock.now())
                .unwrap_or(Duration::ZERO)
        });
        // A token of no use any more is removed (a zero time-to-live removes).
        let value = to_value(&token)?;
        self.sessions.put(TOKENS_SESSION_ID, key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.sessions.delete(TOKENS_SESSION_ID, key).await
    }

    async fn delete_if_access_token(
        &self,
        key: &str,
        token: &AccessToken,
    ) -> Result<bool, StoreError> {
        for _ in 0..COMPARE_ATTEMPTS {
            let Some(current) = self.sessions.get(TOKENS_SESSION_ID, key).await? else {
                return Ok(false);
            };
            if !from_value(&current)?.access_token.ct_eq(token.secret()) {
                return Ok(false);
            }
            if self
                .sessions
                .compare_and_swap(
                    TOKENS_SESSION_ID,
                    key,
                    Some(&current),
                    Value::Null,
                    Duration::ZERO,
                )
                .await?
            {
                return Ok(true);
            }
            // Changed between the read and the swap: look again.
        }
        Err(StoreError::backend_message(
            "the token entry kept changing during a compare-and-delete",
        ))
    }

    async fn try_acquire_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let ttl = ttl.max(Duration::from_millis(1));
        let expires_at = self
            .clock
            .now()
            .checked_add(ttl)
            .ok_or_else(|| StoreError::invalid_argument("lease ttl is too long"))?;
        match self.lease(key).try_acquire(ttl).await? {
            Some(held) => Ok(Some(Lease::new(key, holder_token(&held)?, expires_at))),
            None => Ok(None),
        }
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), StoreError> {
        let held = serde_json::json!({ "holder": lease.token() });
        self.lease(lease.key()).release(held).await
    }
}

#[cfg(test)]
mod tests {
    use smart_fhir_core::FixedClock;

    use super::*;
    use crate::token_store::behaviour;
    use crate::MemorySessionStore;

    async fn on_memory(clock: &FixedClock) -> (SessionTokenStore, ()) {
        let clock = SharedClock::new(clock.clone());
        let sessions = MemorySessionStore::new().with_clock(clock.clone());
        (SessionTokenStore::new(sessions).with_clock(clock), ())
    }

    behaviour::token_store_behaviour_tests!(on_memory);

    /// P12, P5: tokens and leases are values of the two reserved sessions, and a token's value
    /// leaves the session store only as the stored-token JSON.
    #[tokio::test]
    async fn tokens_and_leases_live_in_the_reserved_sessions_p12() {
        let clock = FixedClock::at_unix(1_000);
        let sessions = SharedSessionStore::new(
            MemorySessionStore::new().with_clock(SharedClock::new(clock.clone())),
        );
        let store = SessionTokenStore::new(sessions.clone()).with_clock(SharedClock::new(clock));
        store.set("k", behaviour::token("secret")).await.unwrap();
        let lease = store
            .try_acquire_lease("k", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let value = sessions.get(TOKENS_SESSION_ID, "k").await.unwrap().unwrap();
        assert_eq!(value["access_token"], "secret");
        let held = sessions.get(LEASES_SESSION_ID, "k").await.unwrap().unwrap();
        assert_eq!(held["holder"], lease.token());
        store.release_lease(lease).await.unwrap();
        assert!(sessions
            .get(LEASES_SESSION_ID, "k")
            .await
            .unwrap()
            .is_none());
        let printed = format!("{store:?}");
        assert!(!printed.contains("secret"), "{printed}");
    }

    /// SC-4.29: an expired token without a refresh token is kept 5 minutes, then dropped; one
    /// with a refresh token stays.
    #[tokio::test]
    async fn lifetime_follows_expiry_and_refresh_token_sc_4_29() {
        let clock = FixedClock::at_unix(1_000);
        let (store, ()) = on_memory(&clock).await;
        store.set("plain", behaviour::token("a")).await.unwrap();
        clock.advance(Duration::from_secs(300 + 299));
        assert!(store.get("plain").await.unwrap().is_some());
        clock.advance(Duration::from_secs(1));
        assert!(store.get("plain").await.unwrap().is_none());
    }

    #[cfg(feature = "file")]
    mod file {
        use super::*;
        use crate::FileSessionStore;

        async fn on_file(clock: &FixedClock) -> (SessionTokenStore, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tokens.json");
            let clock = SharedClock::new(clock.clone());
            let file = FileSessionStore::open_or_create(&path, Value::Null)
                .unwrap()
                .with_clock(clock.clone());
            (SessionTokenStore::new(file).with_clock(clock), dir)
        }

        behaviour::token_store_behaviour_tests!(on_file);

        /// P12: two stores on one file (two processes) see one lease and one token.
        #[tokio::test]
        async fn two_stores_on_one_file_share_tokens_and_leases_p12() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tokens.json");
            let a = SessionTokenStore::new(
                FileSessionStore::open_or_create(&path, Value::Null).unwrap(),
            );
            let b = SessionTokenStore::new(
                FileSessionStore::open_or_create(&path, Value::Null).unwrap(),
            );
            let lease = a
                .try_acquire_lease("k", Duration::from_secs(30))
                .await
                .unwrap()
                .unwrap();
            assert!(b
                .try_acquire_lease("k", Duration::from_secs(30))
                .await
                .unwrap()
                .is_none());
            let now = smart_fhir_core::SystemClock.now();
            let token = StoredToken::new(AccessToken::new("t"), now, now + Duration::from_secs(60));
            a.set("k", token).await.unwrap();
            a.release_lease(lease).await.unwrap();
            assert!(b.get("k").await.unwrap().unwrap().access_token.ct_eq("t"));
            assert!(b
                .try_acquire_lease("k", Duration::from_secs(30))
                .await
                .unwrap()
                .is_some());
        }
    }
}
