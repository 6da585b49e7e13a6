//! The connection to Redis (one server or a cluster), its timeouts, and the mapping of every
//! failure to a [`StoreError::Backend`] that names the operation and nothing else.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError, Script};
use smart_fhir_core::{SharedClock, SystemClock};
use smart_fhir_store::StoreError;

use crate::crypto::Keyring;

/// The key prefix used unless [`RedisStoreBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "smart-fhir:";
/// How long a connection attempt may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one store operation may take by default, reconnecting included.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a token without a refresh token is kept after its expiry, by default.
pub const DEFAULT_EXPIRED_TOKEN_RETENTION: Duration = Duration::from_secs(300);
/// How long a token with a refresh token is kept after its access token's expiry, by default.
pub const DEFAULT_REFRESH_TOKEN_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest key prefix accepted.
const MAX_PREFIX_LEN: usize = 128;

/// Configures a [`RedisStore`]: where Redis is, the key prefix, timeouts and encryption.
///
/// ```
/// use std::time::Duration;
/// use smart_fhir_redis::{EncryptionKey, Keyring, RedisStore, RedisTokenStore};
///
/// # fn main() -> Result<(), smart_fhir_store::StoreError> {
/// let keys = Keyring::new(EncryptionKey::new("k2", [7u8; 32])?)
///     .with_old_key(EncryptionKey::new("k1", [9u8; 32])?)?;
/// let redis = RedisStore::builder()
///     .url("redis://127.0.0.1:6379/0")
///     .prefix("my-app:")
///     .command_timeout(Duration::from_millis(500))
///     .encryption(keys)
///     .build()?; // no connection yet: the first operation connects
/// let tokens = RedisTokenStore::new(redis.clone());
/// # let _ = tokens;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    urls: Vec<String>,
    cluster: bool,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    expired_token_retention: Duration,
    refresh_token_retention: Duration,
    keys: Option<Keyring>,
    clock: SharedClock,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            cluster: false,
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            expired_token_retention: DEFAULT_EXPIRED_TOKEN_RETENTION,
            refresh_token_retention: DEFAULT_REFRESH_TOKEN_RETENTION,
            keys: None,
            clock: SharedClock::new(SystemClock),
        }
    }
}

impl RedisStoreBuilder {
    /// One Redis or Valkey server: `redis://[user:password@]host[:port][/db]`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls = vec![url.into()];
        self.cluster = false;
        self
    }

    /// A Redis Cluster, reached through any of these nodes (`redis://host:port` each); the
    /// client learns the others and the slot map from them.
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls = nodes.into_iter().map(Into::into).collect();
        self.cluster = true;
        self
    }

    /// The prefix of every key the stores write (default [`DEFAULT_PREFIX`]), so that several
    /// applications can share one Redis. At most 128 bytes, without `{` or `}` (they would
    /// change the cluster hash slot).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one store operation may take, connecting and reconnecting included (default
    /// [`DEFAULT_COMMAND_TIMEOUT`]). When Redis is down, operations fail with
    /// [`StoreError::Backend`] within about this time instead of hanging.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Encrypts every value with the keyring's current key, and decrypts with any of its keys.
    /// Without this call values are stored in the clear (see the crate documentation).
    pub fn encryption(mut self, keys: Keyring) -> Self {
        self.keys = Some(keys);
        self
    }

    /// How long a token without a refresh token stays in Redis after its access token expired
    /// (default [`DEFAULT_EXPIRED_TOKEN_RETENTION`]), so that readers see it as expired rather
    /// than absent.
    pub fn expired_token_retention(mut self, retention: Duration) -> Self {
        self.expired_token_retention = retention;
        self
    }

    /// How long a token with a refresh token stays in Redis after its access token expired
    /// (default [`DEFAULT_REFRESH_TOKEN_RETENTION`], 30 days): set it to the refresh token's
    /// lifetime at the server.
    pub fn refresh_token_retention(mut self, retention: Duration) -> Self {
        self.refresh_token_retention = retention;
        self
    }

    /// The clock that lease expiry times and token time-to-live are computed with. Redis expires
    /// keys by its own clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the configuration and prepares the connection, without connecting: the first
    /// operation connects, and a lost connection is re-established by later operations.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidArgument`] for no URL, a URL that does not parse (the message does
    /// not quote it: it may hold a password), a bad prefix or a zero timeout.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        if self.urls.is_empty() {
            return Err(StoreError::invalid_argument("no redis URL was configured"));
        }
        if self.prefix.len() > MAX_PREFIX_LEN || self.prefix.contains(['{', '}']) {
            return Err(StoreError::invalid_argument(
                "redis key prefix is longer than 128 bytes or contains '{' or '}'",
            ));
        }
        if self.connect_timeout.is_zero() || self.command_timeout.is_zero() {
            return Err(StoreError::invalid_argument(
                "redis connect and command timeouts must not be zero",
            ));
        }
        let tls = self.urls.iter().any(|u| {
            u.get(..9)
                .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
        });
        if tls {
            #[cfg(feature = "tls")]
            {
                // rustls needs a process-wide provider; `ring` unless the application chose one.
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            #[cfg(not(feature = "tls"))]
            return Err(StoreError::invalid_argument(
                "rediss:// (Redis over TLS) needs the `tls` feature of smart-fhir-redis",
            ));
        }
        let bad_url = |i: usize| {
            move |_: RedisError| {
                StoreError::invalid_argument(format!(
                    "redis URL #{} is not a valid redis:// URL",
                    i + 1
                ))
            }
        };
        let conn = if self.cluster {
            let mut infos = Vec::with_capacity(self.urls.len());
            for (i, url) in self.urls.iter().enumerate() {
                infos.push(
                    redis::IntoConnectionInfo::into_connection_info(url.as_str())
                        .map_err(bad_url(i))?,
                );
            }
            let client = ClusterClientBuilder::new(infos)
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.command_timeout)
                .retries(2)
                .min_retry_wait(20)
                .max_retry_wait(200)
                .build()
                .map_err(|_| StoreError::invalid_argument("redis cluster configuration"))?;
            Conn::Cluster(client)
        } else {
            let client = redis::Client::open(self.urls[0].as_str()).map_err(bad_url(0))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.command_timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(200));
            Conn::Single(client, config)
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                connected: OnceLock::new(),
                connect_timeout: self.connect_timeout,
                prefix: self.prefix,
                command_timeout: self.command_timeout,
                expired_token_retention: self.expired_token_retention,
                refresh_token_retention: self.refresh_token_retention,
                keys: self.keys,
                clock: self.clock,
            }),
        })
    }
}

/// A configured connection to Redis, shared by a [`crate::RedisTokenStore`] and a
/// [`crate::RedisSessionStore`]; cheap to clone.
///
/// `Debug` shows the mode, the prefix and whether values are encrypted; never a URL (it may
/// carry a password) or a key.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    conn: Conn,
    /// Made on first use, inside the caller's tokio runtime (the `redis` crate spawns tasks).
    connected: OnceLock<Connected>,
    connect_timeout: Duration,
    pub(crate) prefix: String,
    command_timeout: Duration,
    pub(crate) expired_token_retention: Duration,
    pub(crate) refresh_token_retention: Duration,
    pub(crate) keys: Option<Keyring>,
    pub(crate) clock: SharedClock,
}

enum Conn {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(redis::cluster::ClusterClient),
}

#[derive(Clone)]
enum Connected {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A URL may carry a user and a password: only scheme, host, port and path are shown.
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|u| {
                smart_fhir_core::Url::parse(u)
                    .map(|u| smart_fhir_core::text::display_url(&u))
                    .unwrap_or_else(|_| "[not a URL]".to_owned())
            })
            .collect();
        f.debug_struct("RedisStoreBuilder")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("expired_token_retention", &self.expired_token_retention)
            .field("refresh_token_retention", &self.refresh_token_retention)
            .field("keys", &self.keys)
            .field("clock", &self.clock)
            .finish()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner.conn {
            Conn::Single(..) => "single",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("prefix", &self.inner.prefix)
            .field("command_timeout", &self.inner.command_timeout)
            .field("encrypted", &self.inner.keys.is_some())
            .finish()
    }
}

impl RedisStore {
    /// A builder with the defaults: no URL yet, prefix [`DEFAULT_PREFIX`], no encryption.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// Whether values are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.inner.keys.is_some()
    }

    /// Sends `PING` and waits for the answer: a way to check the connection at start-up.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if Redis does not answer within the command timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query("PING", &redis::cmd("PING")).await?;
        Ok(())
    }

    /// The connection, made on first use. It does not wait for Redis: connecting happens in
    /// the first command (and again after a connection breaks).
    fn connection(&self) -> Result<Connected, StoreError> {
        if let Some(c) = self.inner.connected.get() {
            return Ok(c.clone());
        }
        let made = match &self.inner.conn {
            Conn::Single(client, config) => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Connected::Single)
                    .map_err(|e| {
                        StoreError::backend("redis connection setup failed", RedisFailure::from(&e))
                    })?
            }
            Conn::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(self.inner.connect_timeout)
                    .set_response_timeout(self.inner.command_timeout);
                Connected::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        // Two first callers may both make one; the first stored wins and the other is dropped.
        let _ = self.inner.connected.set(made);
        self.inner
            .connected
            .get()
            .cloned()
            .ok_or_else(|| StoreError::backend_message("redis connection setup failed"))
    }

    /// Runs one command, bounded by the command timeout.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let conn = self.connection()?;
        let run = async {
            match conn {
                Connected::Single(mut c) => cmd.query_async::<T>(&mut c).await,
                Connected::Cluster(mut c) => cmd.query_async::<T>(&mut c).await,
            }
        };
        self.bounded(op, run).await
    }

    /// Runs one Lua script (`EVALSHA`, loading it with `SCRIPT LOAD` when Redis does not know
    /// it), bounded by the command timeout.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        let conn = self.connection()?;
        let run = async {
            match conn {
                Connected::Single(mut c) => invocation.invoke_async::<T>(&mut c).await,
                Connected::Cluster(mut c) => invocation.invoke_async::<T>(&mut c).await,
            }
        };
        self.bounded(op, run).await
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        run: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.command_timeout, run).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::backend(
                format!("redis {op} failed"),
                RedisFailure::from(&e),
            )),
            Err(_) => Err(StoreError::backend_message(format!(
                "redis {op} timed out after {} ms",
                self.inner.command_timeout.as_millis()
            ))),
        }
    }
}

/// The cause behind a [`StoreError::Backend`]: the kind of Redis failure and the server's error
/// code (`CLUSTERDOWN`, `MOVED`, `READONLY`, ...), without the rest of the server's message or
/// anything of the command (which holds keys and values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisFailure {
    kind: String,
    code: Option<String>,
    connection: Option<&'static str>,
}

impl RedisFailure {
    /// The kind of failure as the `redis` crate classifies it (`IoError`, `Server(...)`, ...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The server's error code, if Redis answered with an error.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// For a connection failure: `"refused"`, `"timed out"`, `"dropped"` or `"I/O error"`.
    pub fn connection(&self) -> Option<&'static str> {
        self.connection
    }
}

impl From<&RedisError> for RedisFailure {
    fn from(e: &RedisError) -> Self {
        let code = e
            .code()
            .filter(|c| c.len() <= 32 && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .map(str::to_owned);
        let mut kind = format!("{:?}", e.kind());
        kind.truncate(64);
        Self {
            kind,
            code,
            connection: if e.is_connection_refusal() {
                Some("refused")
            } else if e.is_timeout() {
                Some("timed out")
            } else if e.is_connection_dropped() {
                Some("dropped")
            } else if e.is_io_error() {
                Some("I/O error")
            } else {
                None
            },
        }
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis error of kind {}", self.kind)?;
        if let Some(code) = &self.code {
            write!(f, " (code {code})")?;
        }
        if let Some(c) = self.connection {
            write!(f, " (connection {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RedisFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_refuses_bad_configuration_without_quoting_the_url() {
        let e = RedisStore::builder().build().unwrap_err();
        assert!(matches!(e, StoreError::InvalidArgument { .. }));
        let e = RedisStore::builder()
            .url("http://user:SECRET@host")
            .build()
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidArgument { .. }), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        for prefix in ["a{b", "x".repeat(129).as_str()] {
            let e = RedisStore::builder()
                .url("redis://127.0.0.1:1")
                .prefix(prefix)
                .build()
                .unwrap_err();
            assert!(e.to_string().contains("prefix"), "{e}");
        }
        let e = RedisStore::builder()
            .url("redis://127.0.0.1:1")
            .command_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
    }

    /// P5: the builder's `Debug` shows where it connects, never the URL's user, password or
    /// query, nor the encryption key.
    #[test]
    fn builder_debug_shows_no_password_or_key() {
        let key = crate::EncryptionKey::new("k1", [0xA7; 32]).unwrap();
        let single = RedisStore::builder()
            .url("redis://user:SECRET-PASSWORD@127.0.0.1:6379/0?password=QUERY-SECRET")
            .encryption(crate::Keyring::new(key));
        let cluster = RedisStore::builder()
            .cluster(["redis://:NODE-SECRET@10.0.0.1:7000", "not a url SECRET"]);
        let printed = format!("{single:?} {single:#?} {cluster:?}");
        for secret in ["SECRET", "user", "167, 167", "a7a7"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("127.0.0.1:6379/0"), "{printed}");
        assert!(printed.contains("10.0.0.1:7000"), "{printed}");
        assert!(printed.contains("k1"), "{printed}");
    }

    #[tokio::test]
    async fn debug_shows_no_url() {
        let store = RedisStore::builder()
            .url("redis://user:SECRET@127.0.0.1:1/0")
            .build()
            .unwrap();
        let printed = format!("{store:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(printed.contains("single"), "{printed}");
    }

    /// Nothing listens on the port: the operation fails quickly with a typed error naming it.
    #[tokio::test]
    async fn unreachable_redis_is_a_backend_error_within_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = RedisStore::builder()
            .url(format!("redis://127.0.0.1:{port}"))
            .command_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let e = store.ping().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(e, StoreError::Backend { .. }), "{e}");
        assert!(e.to_string().contains("PING"), "{e}");
    }
}
