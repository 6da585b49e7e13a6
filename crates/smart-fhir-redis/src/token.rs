use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use smart_fhir_core::{AccessToken, Clock};
use smart_fhir_store::{Lease, StoreError, StoredToken, TokenStore};

use crate::conn::RedisStore;
use crate::crypto::{open, seal};
use crate::keys::{hashed, ttl_millis, MAX_CAS_ATTEMPTS};

/// Deletes `KEYS[1]` if its value is exactly `ARGV[1]`; returns 1 if it did.
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`TokenStore`] on Redis, Valkey or Redis Cluster.
///
/// Each token is one string key, `<prefix>tok:{<hash>}`, where `<hash>` is the SHA-256 (hex) of
/// the caller's key (which the token sources make of the FHIR base, the client id and the
/// scope); its lease is `<prefix>lease:{<hash>}`. The braces make both one Redis Cluster hash
/// slot. A token lives in Redis until its access token expires plus a retention (longer when it
/// carries a refresh token, see [`crate::RedisStoreBuilder::refresh_token_retention`]).
///
/// Commands: `GET`, `SET … PX`, `DEL`, `SET … NX PX` (lease), and `EVALSHA` (with `SCRIPT LOAD`
/// the first time) of a compare-and-delete script for [`TokenStore::release_lease`] and
/// [`TokenStore::delete_if_access_token`].
#[derive(Debug, Clone)]
pub struct RedisTokenStore {
    redis: RedisStore,
    compare_and_delete: std::sync::Arc<Script>,
}

impl RedisTokenStore {
    /// A token store on `redis`.
    pub fn new(redis: RedisStore) -> Self {
        Self {
            redis,
            compare_and_delete: std::sync::Arc::new(Script::new(COMPARE_AND_DELETE)),
        }
    }

    /// The Redis key a token is stored under (for operators and tests: it names no secret).
    pub fn token_key(&self, key: &str) -> String {
        format!(
            "{}tok:{{{}}}",
            self.redis.inner.prefix,
            hashed("token", key)
        )
    }

    /// The Redis key of the lease on `key`; in the same cluster hash slot as the token.
    pub fn lease_key(&self, key: &str) -> String {
        format!(
            "{}lease:{{{}}}",
            self.redis.inner.prefix,
            hashed("token", key)
        )
    }

    async fn get_raw(&self, redis_key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.redis
            .query("GET (token)", redis::cmd("GET").arg(redis_key))
            .await
    }

    fn decode(&self, redis_key: &str, raw: &[u8]) -> Result<StoredToken, StoreError> {
        let plain = open(self.redis.inner.keys.as_ref(), redis_key, raw)?;
        StoredToken::from_json_bytes(&plain)
    }

    fn ttl_for(&self, token: &StoredToken) -> Result<u64, StoreError> {
        let inner = &self.redis.inner;
        let retention = if token.refresh_token.is_some() {
            inner.refresh_token_retention
        } else {
            inner.expired_token_retention
        };
        let ttl = token
            .remaining(inner.clock.now())
            .checked_add(retention)
            .ok_or_else(|| StoreError::invalid_argument("token lifetime is too long"))?;
        ttl_millis(ttl.max(Duration::from_millis(1)), "token lifetime")
    }
}

#[async_trait]
impl TokenStore for RedisTokenStore {
    async fn get(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        let redis_key = self.token_key(key);
        match self.get_raw(&redis_key).await? {
            Some(raw) => self.decode(&redis_key, &raw).map(Some),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, token: StoredToken) -> Result<(), StoreError> {
        let redis_key = self.token_key(key);
        let ttl = self.ttl_for(&token)?;
        let json = token.to_json_bytes()?;
        let value = seal(self.redis.inner.keys.as_ref(), &redis_key, &json)?;
        let _: () = self
            .redis
            .query(
                "SET (token)",
                redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl),
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .redis
            .query("DEL (token)", redis::cmd("DEL").arg(self.token_key(key)))
            .await?;
        Ok(())
    }

    async fn delete_if_access_token(
        &self,
        key: &str,
        token: &AccessToken,
    ) -> Result<bool, StoreError> {
        let redis_key = self.token_key(key);
        // Decrypt and compare here (values are encrypted with a random nonce, so Redis cannot
        // compare them), then delete only if the stored bytes are still the ones compared.
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(raw) = self.get_raw(&redis_key).await? else {
                return Ok(false);
            };
            if !self
                .decode(&redis_key, &raw)?
                .access_token
                .ct_eq(token.secret())
            {
                return Ok(false);
            }
            let deleted: i64 = self
                .redis
                .script(
                    "compare-and-delete (token)",
                    &self.compare_and_delete,
                    &[&redis_key],
                    &[&raw],
                )
                .await?;
            if deleted == 1 {
                return Ok(true);
            }
        }
        Err(StoreError::backend_message(
            "redis compare-and-delete (token) lost every attempt to concurrent writers",
        ))
    }

    async fn try_acquire_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let ttl = ttl.max(Duration::from_millis(1));
        let millis = ttl_millis(ttl, "lease ttl")?;
        let expires_at = self
            .redis
            .inner
            .clock
            .now()
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| StoreError::invalid_argument("lease ttl is too long"))?;
        let owner = Lease::random_token()?;
        let set: Option<String> = self
            .redis
            .query(
                "SET NX PX (lease)",
                redis::cmd("SET")
                    .arg(self.lease_key(key))
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis),
            )
            .await?;
        Ok(set.map(|_| Lease::new(key, owner, expires_at)))
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), StoreError> {
        let _: i64 = self
            .redis
            .script(
                "compare-and-delete (lease)",
                &self.compare_and_delete,
                &[&self.lease_key(lease.key())],
                &[lease.token().as_bytes()],
            )
            .await?;
        Ok(())
    }
}
