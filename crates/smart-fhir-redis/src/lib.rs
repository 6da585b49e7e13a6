//! [`TokenStore`](smart_fhir_store::TokenStore) and
//! [`SessionStore`](smart_fhir_store::SessionStore) on Redis, Valkey or Redis Cluster, so that
//! many processes (replicas behind a load balancer, CLI invocations) share tokens, App Launch
//! sessions and the leases that make one of them renew a token while the others wait.
//!
//! ```no_run
//! use smart_fhir_redis::{EncryptionKey, Keyring, RedisSessionStore, RedisStore, RedisTokenStore};
//! use smart_fhir_store::SharedTokenStore;
//!
//! # fn main() -> Result<(), smart_fhir_store::StoreError> {
//! # let key_bytes = [0u8; 32];
//! let redis = RedisStore::builder()
//!     .url("redis://redis.internal:6379") // or .cluster(["redis://node-a:7000", ...])
//!     .encryption(Keyring::new(EncryptionKey::new("2026-01", key_bytes)?))
//!     .build()?;
//! let tokens = SharedTokenStore::new(RedisTokenStore::new(redis.clone()));
//! let sessions = RedisSessionStore::new(redis);
//! // BackendServices::builder().token_store(tokens) ...; LaunchConfig ... .session_store(sessions)
//! # let _ = (tokens, sessions);
//! # Ok(())
//! # }
//! ```
//!
//! # Connections and failures
//!
//! A single server is reached through the `redis` crate's `ConnectionManager` (one multiplexed
//! connection, re-established after it breaks); a cluster through its cluster client, which
//! follows `MOVED`/`ASK` and reconnects to nodes. Nothing connects before the first operation,
//! and the connection's background tasks run on the tokio runtime of that first operation: share
//! a [`RedisStore`] within one runtime (the usual single `#[tokio::main]`), not across runtimes.
//! Every operation is bounded by [`RedisStoreBuilder::command_timeout`] (connecting included)
//! and every failure is a [`StoreError::Backend`](smart_fhir_store::StoreError::Backend) whose
//! message names the operation (`redis GET (token) failed`, `redis SET NX PX (lease) timed out
//! after 2000 ms`) and whose source is a [`RedisFailure`] (kind and server error code only):
//! neither carries a key, a value or the URL. A Redis that is down therefore makes token
//! sources fail fast with `Unavailable` rather than hang, and they work again once it is back.
//!
//! # Keys
//!
//! Every key starts with the prefix (default `smart-fhir:`). The caller's token key, session ids
//! and session keys are replaced by their SHA-256, so no session id (a bearer secret) and no
//! OAuth `state` is visible in Redis. The token key made by the token sources already names the
//! FHIR base, the client id and the scope. Keys of one token and its lease, and the keys of one
//! session, share a `{hash tag}` and so one Redis Cluster hash slot, which the scripts need.
//!
//! * token: `smart-fhir:tok:{H}`, lease: `smart-fhir:lease:{H}`
//! * session entry: `smart-fhir:sess:{S}:v:K`, session index: `smart-fhir:sess:{S}:keys`
//!
//! # Commands used
//!
//! `GET`, `SET` (with `PX`, and with `NX PX` for leases), `DEL`, `GETDEL` (Redis ≥ 6.2, any
//! Valkey), `SREM`, `PING`, and `EVALSHA` / `SCRIPT LOAD` of five small Lua scripts, which call
//! `GET`, `SET … PX`, `DEL`, `PTTL`, `SADD`, `SREM`, `SMEMBERS` and `PEXPIRE` on keys of one
//! hash slot. Nothing else: no `KEYS`, no `SCAN`, no `MULTI`, no modules. Redis 7 and Valkey 7/8
//! speak the same protocol for all of these. In a cluster the delete-session script reads the
//! session's entry names from its index and deletes them; they are in the index's slot.
//!
//! # Time to live
//!
//! A token lives until its access token expires plus a retention: 5 minutes without a refresh
//! token, 30 days with one (both configurable); a lease for its `ttl` (`SET NX PX`, released by a
//! compare-and-delete of its random owner value, so only its holder releases it); a session entry
//! for the `ttl` it was given, a zero `ttl` deleting it (Redis refuses `PX 0`).
//!
//! # Encryption at rest
//!
//! With [`RedisStoreBuilder::encryption`], every value is encrypted with XChaCha20-Poly1305
//! (RustCrypto's `chacha20poly1305`) under the keyring's current key, with a fresh random
//! 192-bit nonce, and stored with the key's id so that keys can rotate ([`Keyring`]). The
//! associated data is the Redis key name, so a value copied to another key (another session,
//! another client's token) fails to decrypt. A store with a keyring refuses values stored in the
//! clear, and one without refuses encrypted values: both are
//! [`StoreError::Corrupt`](smart_fhir_store::StoreError::Corrupt).
//!
//! **Without a keyring, values are stored in the clear**: anyone who can read Redis (or its
//! RDB/AOF files and backups) reads the access tokens, refresh tokens and ID tokens, the granted
//! scope and the launch context (patient and encounter ids), and App Launch session values (PKCE
//! verifiers, pending `state`, the signed-in user's tokens). Lease owner values are random and
//! never encrypted. **Always in the clear**, with or without encryption: key names (the prefix
//! and SHA-256 hashes), time-to-live values, value sizes and when keys are written and read.
//!
//! # TLS
//!
//! `rediss://` URLs need the `tls` feature: rustls with its `ring` provider (installed as the
//! process default when none was chosen), server certificates checked against the operating
//! system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured). Without the feature a
//! `rediss://` URL is refused by [`RedisStoreBuilder::build`]; plain `redis://` travels in the
//! clear, so use it only over a private network or a TLS tunnel.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod conn;
mod crypto;
mod keys;
mod session;
mod token;

#[cfg(feature = "test-server")]
pub mod test_server;

pub use conn::{
    RedisFailure, RedisStore, RedisStoreBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_EXPIRED_TOKEN_RETENTION, DEFAULT_PREFIX, DEFAULT_REFRESH_TOKEN_RETENTION,
};
pub use crypto::{EncryptionKey, Keyring, MAX_KEY_ID_LEN};
pub use session::RedisSessionStore;
pub use token::RedisTokenStore;
