use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use serde_json::Value;
use smart_fhir_store::{SessionStore, StoreError};
use zeroize::Zeroizing;

use crate::conn::RedisStore;
use crate::crypto::{open, seal};
use crate::keys::{hashed, ttl_millis, MAX_CAS_ATTEMPTS};

/// Stores `ARGV[1]` under `KEYS[1]` for `ARGV[2]` ms and records member `ARGV[3]` in the
/// session's index `KEYS[2]`, whose lifetime is extended to cover the entry.
const PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('PTTL', KEYS[2])
redis.call('SADD', KEYS[2], ARGV[3])
if t < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
";

/// Compare-and-swap on raw bytes: if `KEYS[1]` is absent (`ARGV[5]` = `1`) or holds exactly
/// `ARGV[1]`, stores `ARGV[2]` for `ARGV[3]` ms (or deletes it when `ARGV[3]` is `0`) and keeps
/// the index `KEYS[2]` (member `ARGV[4]`) up to date. Returns 1 if it swapped.
const COMPARE_AND_SWAP: &str = r"
local cur = redis.call('GET', KEYS[1])
if ARGV[5] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[4])
  return 1
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local t = redis.call('PTTL', KEYS[2])
redis.call('SADD', KEYS[2], ARGV[4])
if t < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
";

/// Deletes entry `KEYS[1]` and its member `ARGV[1]` of the index `KEYS[2]`.
const DELETE: &str = r"
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
";

/// Deletes every entry named in the index `KEYS[1]` (entry keys are `ARGV[1]` followed by the
/// member; all in the index's hash slot) and the index itself.
const DELETE_SESSION: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
for i = 1, #members do
  redis.call('DEL', ARGV[1] .. members[i])
end
redis.call('DEL', KEYS[1])
return #members
";

/// A [`SessionStore`] on Redis, Valkey or Redis Cluster.
///
/// Each entry is one string key `<prefix>sess:{<session hash>}:v:<key hash>` with its own `PX`
/// time-to-live, and each session has an index set `<prefix>sess:{<session hash>}:keys` of its
/// entries (for [`SessionStore::delete_session`]) that lives as long as its longest entry. The
/// hashes are SHA-256 (hex) of the session id and of the key, so neither (the session id is a
/// bearer secret in a cookie; a key can embed an OAuth `state`) appears in Redis. The braces keep
/// a session in one Redis Cluster hash slot.
///
/// Commands: `GET`, `GETDEL` ([`SessionStore::take`], Redis ≥ 6.2 or Valkey), `SREM`, and
/// `EVALSHA` (with `SCRIPT LOAD` the first time) of four scripts using `SET … PX`, `GET`, `DEL`,
/// `PTTL`, `SADD`, `SREM`, `SMEMBERS` and `PEXPIRE`: put, compare-and-swap, delete, and delete
/// session. A compare-and-swap decrypts and compares the current value here, then swaps only if
/// Redis still holds exactly the bytes compared (retrying if another writer came in between).
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    redis: RedisStore,
    scripts: Arc<Scripts>,
}

#[derive(Debug)]
struct Scripts {
    put: Script,
    compare_and_swap: Script,
    delete: Script,
    delete_session: Script,
}

impl RedisSessionStore {
    /// A session store on `redis`.
    pub fn new(redis: RedisStore) -> Self {
        Self {
            redis,
            scripts: Arc::new(Scripts {
                put: Script::new(PUT),
                compare_and_swap: Script::new(COMPARE_AND_SWAP),
                delete: Script::new(DELETE),
                delete_session: Script::new(DELETE_SESSION),
            }),
        }
    }

    fn session_prefix(&self, session_id: &str) -> String {
        format!(
            "{}sess:{{{}}}:",
            self.redis.inner.prefix,
            hashed("session", session_id)
        )
    }

    /// The Redis key of the index of `session_id`'s entries.
    pub fn index_key(&self, session_id: &str) -> String {
        format!("{}keys", self.session_prefix(session_id))
    }

    /// The Redis key an entry is stored under, and its member name in the session's index.
    pub fn entry_key(&self, session_id: &str, key: &str) -> String {
        format!(
            "{}v:{}",
            self.session_prefix(session_id),
            hashed("entry", key)
        )
    }

    fn encode(&self, redis_key: &str, value: &Value) -> Result<Vec<u8>, StoreError> {
        let json = Zeroizing::new(
            serde_json::to_vec(value)
                .map_err(|_| StoreError::corrupt("session value could not be serialized"))?,
        );
        seal(self.redis.inner.keys.as_ref(), redis_key, &json)
    }

    fn decode(&self, redis_key: &str, raw: &[u8]) -> Result<Value, StoreError> {
        let plain = open(self.redis.inner.keys.as_ref(), redis_key, raw)?;
        serde_json::from_slice(&plain)
            .map_err(|_| StoreError::corrupt("stored session value is not valid JSON"))
    }

    async fn get_raw(&self, redis_key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.redis
            .query("GET (session)", redis::cmd("GET").arg(redis_key))
            .await
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn put(
        &self,
        session_id: &str,
        key: &str,
        value: Value,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let millis = ttl_millis(ttl, "session entry ttl")?;
        if millis == 0 {
            return self.delete(session_id, key).await;
        }
        let entry = self.entry_key(session_id, key);
        let raw = self.encode(&entry, &value)?;
        let member = hashed("entry", key);
        let _: i64 = self
            .redis
            .script(
                "put (session)",
                &self.scripts.put,
                &[&entry, &self.index_key(session_id)],
                &[&raw, millis.to_string().as_bytes(), member.as_bytes()],
            )
            .await?;
        Ok(())
    }

    async fn get(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let entry = self.entry_key(session_id, key);
        match self.get_raw(&entry).await? {
            Some(raw) => self.decode(&entry, &raw).map(Some),
            None => Ok(None),
        }
    }

    async fn take(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let entry = self.entry_key(session_id, key);
        let raw: Option<Vec<u8>> = self
            .redis
            .query("GETDEL (session)", redis::cmd("GETDEL").arg(&entry))
            .await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        // The value is ours now; a stale index member only costs a no-op `DEL` at sign-out.
        let _: Result<i64, _> = self
            .redis
            .query(
                "SREM (session)",
                redis::cmd("SREM")
                    .arg(self.index_key(session_id))
                    .arg(hashed("entry", key)),
            )
            .await;
        self.decode(&entry, &raw).map(Some)
    }

    async fn delete(&self, session_id: &str, key: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .redis
            .script(
                "delete (session)",
                &self.scripts.delete,
                &[
                    &self.entry_key(session_id, key),
                    &self.index_key(session_id),
                ],
                &[hashed("entry", key).as_bytes()],
            )
            .await?;
        Ok(())
    }

    async fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        let prefix = format!("{}v:", self.session_prefix(session_id));
        let _: i64 = self
            .redis
            .script(
                "delete session",
                &self.scripts.delete_session,
                &[&self.index_key(session_id)],
                &[prefix.as_bytes()],
            )
            .await?;
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
        let millis = ttl_millis(ttl, "session entry ttl")?;
        let entry = self.entry_key(session_id, key);
        let index = self.index_key(session_id);
        let member = hashed("entry", key);
        // Redis refuses `PX 0`: a zero ttl deletes (the script's `0` branch), as the contract says.
        let new_raw = if millis == 0 {
            Vec::new()
        } else {
            self.encode(&entry, &new)?
        };
        let millis = millis.to_string();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.get_raw(&entry).await?;
            let (expect_absent, current_raw) = match (&current, expected) {
                (None, None) => (true, &[][..]),
                (None, Some(_)) => return Ok(false),
                (Some(_), None) => return Ok(false),
                (Some(raw), Some(expected)) => {
                    if &self.decode(&entry, raw)? != expected {
                        return Ok(false);
                    }
                    (false, raw.as_slice())
                }
            };
            let swapped: i64 = self
                .redis
                .script(
                    "compare-and-swap (session)",
                    &self.scripts.compare_and_swap,
                    &[&entry, &index],
                    &[
                        current_raw,
                        &new_raw,
                        millis.as_bytes(),
                        member.as_bytes(),
                        if expect_absent { b"1" } else { b"0" },
                    ],
                )
                .await?;
            if swapped == 1 {
                return Ok(true);
            }
        }
        Err(StoreError::backend_message(
            "redis compare-and-swap (session) lost every attempt to concurrent writers",
        ))
    }
}
