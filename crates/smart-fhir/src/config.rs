//! Configuration from the environment, the way services configure themselves.
//!
//! [`Config::from_env`] reads the `SMART_*` variables once, checks every one it finds, and then
//! hands out ready clients: [`Config::backend_services`], [`Config::fhir_client`] and, for App
//! Launch, a pre-filled [`Config::app_launch_config`]. Several servers (tenants) are configured
//! side by side with a prefix: [`Config::from_env_prefixed("EPIC")`](Config::from_env_prefixed)
//! reads `EPIC_SMART_CLIENT_ID` and so on.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use smart_fhir_core::{check_endpoint_url, FhirBaseUrl, InsecureHttp, SharedHttpClient, Url};
use smart_fhir_http::{FhirClient, HyperHttpClient};
use smart_fhir_jwt::PrivateKey;
use smart_fhir_oauth::{
    BackendServices, BackendServicesBuilder, ClientAuth, IssuerPolicy, LaunchClientConfig,
    LaunchClientConfigBuilder, PrivateKeyJwt,
};
use smart_fhir_scopes::ScopeSet;
use zeroize::Zeroizing;

use crate::Error;

/// The largest private key file read, in bytes: a 4096-bit RSA JWKS with several keys fits
/// many times over; anything larger is not a key.
pub const MAX_PRIVATE_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The FHIR server's base URL.
pub const FHIR_BASE: &str = "SMART_FHIR_BASE";
/// The FHIR server's base URL, under the name an EHR launch gives it (`iss`).
pub const ISS: &str = "SMART_ISS";
/// The registered client id.
pub const CLIENT_ID: &str = "SMART_CLIENT_ID";
/// The scopes to request, space-separated.
pub const SCOPE: &str = "SMART_SCOPE";
/// The private key itself: PEM, a private JWK, or a JWKS.
pub const PRIVATE_KEY: &str = "SMART_PRIVATE_KEY";
/// A file holding the private key (PEM, JWK or JWKS).
pub const PRIVATE_KEY_FILE: &str = "SMART_PRIVATE_KEY_FILE";
/// The key id: picks a key from a JWKS, or names a PEM key.
pub const KID: &str = "SMART_KID";
/// The client's registered JWKS URL, sent as the assertion's `jku` header.
pub const JKU: &str = "SMART_JKU";
/// The token endpoint, which skips discovery (Backend Services).
pub const TOKEN_URL: &str = "SMART_TOKEN_URL";
/// The registered redirect URI (App Launch).
pub const REDIRECT_URI: &str = "SMART_REDIRECT_URI";
/// `loopback` allows plain `http://` to loopback hosts, for every URL of this configuration.
pub const INSECURE_HTTP: &str = "SMART_INSECURE_HTTP";
/// Where Backend Services tokens are kept, shared by processes: `redis://…` or a file path
/// (feature `redis`).
pub const TOKEN_STORE: &str = "SMART_TOKEN_STORE";
/// Where App Launch sessions are kept, shared by processes: `redis://…` or a file path
/// (feature `redis`).
pub const SESSION_STORE: &str = "SMART_SESSION_STORE";

/// Every variable this module reads, without prefix.
pub const VARIABLES: [&str; 13] = [
    FHIR_BASE,
    ISS,
    CLIENT_ID,
    SCOPE,
    PRIVATE_KEY,
    PRIVATE_KEY_FILE,
    KID,
    JKU,
    TOKEN_URL,
    REDIRECT_URI,
    INSECURE_HTTP,
    TOKEN_STORE,
    SESSION_STORE,
];

/// Why a configuration could not be read. Every variant but
/// [`InvalidPrefix`](ConfigError::InvalidPrefix) names the variable, with its prefix; none shows a
/// variable's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable that this use needs is not set (or is empty).
    #[error("{var} is not set{}", alternative.as_deref().map(|a| format!(" (nor {a})")).unwrap_or_default())]
    Missing {
        /// The variable.
        var: String,
        /// Another variable that would do instead, if any.
        alternative: Option<String>,
    },
    /// A variable's value is not valid Unicode.
    #[error("{var} is not valid Unicode")]
    NotUnicode {
        /// The variable.
        var: String,
    },
    /// A variable's value cannot be used.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable.
        var: String,
        /// Why, without the value.
        reason: String,
    },
    /// Two variables that say the same thing are both set, and disagree (or must not both be
    /// set).
    #[error("{var} and {other} are both set: {reason}")]
    Conflict {
        /// The first variable.
        var: String,
        /// The second variable.
        other: String,
        /// What to do.
        reason: &'static str,
    },
    /// The private key file cannot be read.
    #[error("{var}: cannot read {}: {reason}", path.display())]
    KeyFile {
        /// The variable that names the file.
        var: String,
        /// The file.
        path: PathBuf,
        /// Why (not found, not a regular file, too large, not text).
        reason: String,
    },
    /// The prefix given to [`Config::from_env_prefixed`] cannot start a variable name.
    #[error("invalid configuration prefix {prefix:?}: use letters, digits and `_`")]
    InvalidPrefix {
        /// The prefix, as given (bounded).
        prefix: String,
    },
}

/// A SMART on FHIR client configuration read from environment variables, the way services
/// configure themselves (as `aws-config`'s `from_env()` does).
///
/// | variable | meaning |
/// |---|---|
/// | `SMART_FHIR_BASE` (or `SMART_ISS`) | the FHIR server's base URL (required) |
/// | `SMART_CLIENT_ID` | the registered client id |
/// | `SMART_SCOPE` | the scopes to request, space-separated |
/// | `SMART_PRIVATE_KEY` | the private key itself: PEM, a private JWK, or a JWKS |
/// | `SMART_PRIVATE_KEY_FILE` | or a file holding it (at most 64 KiB, a regular file) |
/// | `SMART_KID` | picks a key of a JWKS, or names a PEM key (default: the key's own `kid`, or its RFC 7638 thumbprint) |
/// | `SMART_JKU` | the client's registered JWKS URL, sent as the assertion's `jku` header |
/// | `SMART_TOKEN_URL` | the token endpoint, which skips discovery (Backend Services) |
/// | `SMART_REDIRECT_URI` | the registered redirect URI (App Launch) |
/// | `SMART_INSECURE_HTTP` | `loopback` allows plain `http://` to loopback hosts (local development only) |
/// | `SMART_TOKEN_STORE` | `memory` (the default); with feature `redis`: `redis://…`, `file:PATH` or a file path where Backend Services tokens are shared by processes |
/// | `SMART_SESSION_STORE` | `memory` (the default); with feature `redis`: `redis://…`, `file:PATH` or a file path where App Launch sessions are shared by processes |
///
/// Every variable found is checked when the configuration is read, so a malformed one fails at
/// start-up with an error that names it. Which of the others are required depends on the use:
/// [`backend_services`](Config::backend_services) needs the client id, the scope and a key;
/// [`app_launch_config`](Config::app_launch_config) the client id, the scope and the redirect
/// URI. An empty variable counts as unset. Errors never show a value.
///
/// ```no_run
/// # async fn run() -> Result<(), smart_fhir::Error> {
/// // SMART_FHIR_BASE=https://ehr.example/fhir SMART_CLIENT_ID=my-backend
/// // SMART_SCOPE="system/Patient.rs" SMART_PRIVATE_KEY_FILE=/run/secrets/client.pem
/// let fhir = smart_fhir::Config::from_env()?.fhir_client()?;
/// let patient = fhir.read::<serde_json::Value>("Patient", "123").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Config {
    prefix: String,
    fhir_base: FhirBaseUrl,
    client_id: Option<String>,
    scope: Option<String>,
    private_key: Option<PrivateKey>,
    jku: Option<String>,
    token_url: Option<String>,
    redirect_uri: Option<String>,
    insecure_http: InsecureHttp,
    token_store: Option<StoreLocation>,
    session_store: Option<StoreLocation>,
}

/// Where a store lives, from `SMART_TOKEN_STORE` or `SMART_SESSION_STORE`. `Debug` never shows
/// a Redis URL (it may carry a password).
#[derive(Clone)]
enum StoreLocation {
    /// `redis://…`.
    // Read only by the `redis` feature's store constructors.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Redis(Zeroizing<String>),
    /// A file path.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    File(PathBuf),
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(_) => f.write_str("Redis"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// A store location from a variable's value: `memory` (the default, this process only: `None`),
/// `redis://…`, `rediss://…`, `file:PATH` or a plain path; `var` names it in errors. The value
/// is never quoted (a Redis URL may hold a password).
fn store_location(var: String, value: &str) -> Result<Option<StoreLocation>, ConfigError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("memory") {
        return Ok(None);
    }
    let location = match value.split_once("://").map(|(scheme, _)| scheme) {
        Some(scheme) if scheme.eq_ignore_ascii_case("redis") => {
            StoreLocation::Redis(Zeroizing::new(value.to_owned()))
        }
        Some(scheme) if scheme.eq_ignore_ascii_case("rediss") => {
            if !cfg!(feature = "redis-tls") {
                return Err(invalid(
                    var,
                    "rediss:// (Redis over TLS) needs the `redis-tls` feature of the smart-fhir \
                     crate",
                ));
            }
            StoreLocation::Redis(Zeroizing::new(value.to_owned()))
        }
        Some(_) => {
            return Err(invalid(
                var,
                "expected memory, a redis:// URL, file:PATH or a file path",
            ))
        }
        None => match value.strip_prefix("file:") {
            Some("") => return Err(invalid(var, "file: names no path")),
            Some(path) => StoreLocation::File(PathBuf::from(path)),
            None => StoreLocation::File(PathBuf::from(value)),
        },
    };
    if cfg!(feature = "redis") {
        Ok(Some(location))
    } else {
        Err(invalid(
            var,
            "a shared store needs the `redis` feature of the smart-fhir crate",
        ))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("prefix", &self.prefix)
            .field("fhir_base", &self.fhir_base)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            // The key's `Debug` shows its type and `kid`, never key material.
            .field("private_key", &self.private_key)
            .field("jku", &self.jku)
            .field("token_url", &self.token_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("insecure_http", &self.insecure_http)
            .field("token_store", &self.token_store)
            .field("session_store", &self.session_store)
            .finish()
    }
}

impl Config {
    /// Reads the `SMART_*` variables of this process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(String::new(), env_lookup)
    }

    /// Reads the variables of one tenant: with prefix `EPIC`, `EPIC_SMART_FHIR_BASE`,
    /// `EPIC_SMART_CLIENT_ID` and so on (a trailing `_` in the prefix is optional).
    pub fn from_env_prefixed(prefix: &str) -> Result<Self, ConfigError> {
        Self::load(normalise_prefix(prefix)?, env_lookup)
    }

    /// Reads the variables from `vars` instead of the environment (for tests, and for
    /// configuration kept elsewhere).
    ///
    /// ```
    /// let config = smart_fhir::Config::from_vars([
    ///     ("SMART_FHIR_BASE", "https://ehr.example/fhir"),
    ///     ("SMART_CLIENT_ID", "my-backend"),
    /// ])?;
    /// assert_eq!(config.client_id(), Some("my-backend"));
    /// # Ok::<(), smart_fhir::ConfigError>(())
    /// ```
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_vars_prefixed("", vars)
    }

    /// [`from_vars`](Self::from_vars) for the variables of one tenant (see
    /// [`from_env_prefixed`](Self::from_env_prefixed)); an empty prefix reads the plain names.
    pub fn from_vars_prefixed<K, V>(
        prefix: &str,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            normalise_prefix(prefix)?
        };
        let map: HashMap<String, Zeroizing<String>> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), Zeroizing::new(v.into())))
            .collect();
        Self::load(prefix, |name| Ok(map.get(name).cloned()))
    }

    fn load(
        prefix: String,
        lookup: impl Fn(&str) -> Result<Option<Zeroizing<String>>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let name = |var: &str| format!("{prefix}{var}");
        // An empty variable counts as unset (a common way of "unsetting" one in a container).
        let get = |var: &str| -> Result<Option<Zeroizing<String>>, ConfigError> {
            Ok(lookup(&name(var))?.filter(|v| !v.trim().is_empty()))
        };
        let text = |var: &str| -> Result<Option<String>, ConfigError> {
            Ok(get(var)?.map(|v| v.trim().to_owned()))
        };

        let insecure_http = match text(INSECURE_HTTP)? {
            None => InsecureHttp::Deny,
            Some(v) if v.eq_ignore_ascii_case("loopback") => InsecureHttp::AllowLoopback,
            Some(v) if v.eq_ignore_ascii_case("deny") => InsecureHttp::Deny,
            Some(_) => {
                return Err(invalid(
                    name(INSECURE_HTTP),
                    "expected `loopback` (plain http:// to loopback hosts) or `deny`",
                ))
            }
        };

        let parse_base = |var: &str| -> Result<Option<FhirBaseUrl>, ConfigError> {
            text(var)?
                .map(|v| {
                    FhirBaseUrl::parse_with(&v, insecure_http)
                        .map_err(|e| invalid(name(var), url_reason(e, insecure_http)))
                })
                .transpose()
        };
        let fhir_base = match (parse_base(FHIR_BASE)?, parse_base(ISS)?) {
            (Some(base), Some(iss)) if base != iss => {
                return Err(ConfigError::Conflict {
                    var: name(FHIR_BASE),
                    other: name(ISS),
                    reason: "they name different servers; set one",
                })
            }
            (Some(base), _) | (None, Some(base)) => base,
            (None, None) => {
                return Err(ConfigError::Missing {
                    var: name(FHIR_BASE),
                    alternative: Some(name(ISS)),
                })
            }
        };

        let client_id = text(CLIENT_ID)?;
        if client_id
            .as_deref()
            .is_some_and(|c| c.chars().any(char::is_control))
        {
            return Err(invalid(name(CLIENT_ID), "contains control characters"));
        }

        let scope = text(SCOPE)?;
        if let Some(s) = &scope {
            ScopeSet::parse(s).map_err(|e| invalid(name(SCOPE), e.to_string()))?;
        }

        let kid = text(KID)?;
        let key_text = match (get(PRIVATE_KEY)?, text(PRIVATE_KEY_FILE)?) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict {
                    var: name(PRIVATE_KEY),
                    other: name(PRIVATE_KEY_FILE),
                    reason: "give the key one way",
                })
            }
            (Some(key), None) => Some((name(PRIVATE_KEY), key)),
            (None, Some(path)) => {
                let var = name(PRIVATE_KEY_FILE);
                let key = read_key_file(&var, Path::new(&path))?;
                Some((var, key))
            }
            (None, None) => None,
        };
        let private_key = key_text
            .map(|(var, key)| load_key(&key, kid.as_deref()).map_err(|reason| invalid(var, reason)))
            .transpose()?;
        if kid.is_some() && private_key.is_none() {
            return Err(ConfigError::Missing {
                var: name(PRIVATE_KEY),
                alternative: Some(name(PRIVATE_KEY_FILE)),
            });
        }

        let endpoint = |var: &str| -> Result<Option<String>, ConfigError> {
            let Some(v) = text(var)? else { return Ok(None) };
            let url = Url::parse(&v).map_err(|e| invalid(name(var), format!("not a URL: {e}")))?;
            check_endpoint_url(&url, "the URL", insecure_http)
                .map_err(|e| invalid(name(var), url_reason(e, insecure_http)))?;
            Ok(Some(v))
        };
        let jku = endpoint(JKU)?;
        let token_url = endpoint(TOKEN_URL)?;
        let redirect_uri = endpoint(REDIRECT_URI)?;
        let token_store = text(TOKEN_STORE)?
            .map(|v| store_location(name(TOKEN_STORE), &v))
            .transpose()?
            .flatten();
        let session_store = text(SESSION_STORE)?
            .map(|v| store_location(name(SESSION_STORE), &v))
            .transpose()?
            .flatten();

        Ok(Self {
            prefix,
            fhir_base,
            client_id,
            scope,
            private_key,
            jku,
            token_url,
            redirect_uri,
            insecure_http,
            token_store,
            session_store,
        })
    }

    /// The FHIR server's base URL (`SMART_FHIR_BASE` or `SMART_ISS`).
    pub fn fhir_base(&self) -> &FhirBaseUrl {
        &self.fhir_base
    }

    /// The client id (`SMART_CLIENT_ID`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The scopes to request (`SMART_SCOPE`), as written.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The private key (`SMART_PRIVATE_KEY` or `SMART_PRIVATE_KEY_FILE`, with `SMART_KID`).
    pub fn private_key(&self) -> Option<&PrivateKey> {
        self.private_key.as_ref()
    }

    /// The `jku` header (`SMART_JKU`).
    pub fn jku(&self) -> Option<&str> {
        self.jku.as_deref()
    }

    /// The token endpoint (`SMART_TOKEN_URL`).
    pub fn token_url(&self) -> Option<&str> {
        self.token_url.as_deref()
    }

    /// The redirect URI (`SMART_REDIRECT_URI`).
    pub fn redirect_uri(&self) -> Option<&str> {
        self.redirect_uri.as_deref()
    }

    /// Whether plain `http://` to loopback hosts is allowed (`SMART_INSECURE_HTTP=loopback`).
    /// It applies to every URL of the configuration and to the transport, so it is said once.
    pub fn insecure_http(&self) -> InsecureHttp {
        self.insecure_http
    }

    /// The prefix the variables were read with (`""` or, for instance, `"EPIC_"`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new transport with this configuration's insecure-HTTP policy (a new connection pool).
    /// The clients below build one each and share it between tokens and FHIR requests.
    pub fn http_client(&self) -> Result<SharedHttpClient, Error> {
        Ok(SharedHttpClient::new(
            HyperHttpClient::builder()
                .insecure_http(self.insecure_http)
                .build()?,
        ))
    }

    /// A Backend Services builder filled from the configuration (FHIR base, client id, scope,
    /// key, `jku`, token endpoint, and a new transport), for settings the environment does not
    /// carry, such as a shared token store.
    ///
    /// Fails when `SMART_CLIENT_ID`, `SMART_SCOPE` or the private key is not set.
    pub fn backend_services_builder(&self) -> Result<BackendServicesBuilder, Error> {
        let client_id = self.require(&self.client_id, CLIENT_ID)?;
        let scope = self.require(&self.scope, SCOPE)?;
        let credential = self.credential().ok_or_else(|| ConfigError::Missing {
            var: self.name(PRIVATE_KEY),
            alternative: Some(self.name(PRIVATE_KEY_FILE)),
        })?;
        let mut builder = BackendServices::builder()
            .fhir_base(self.fhir_base.clone())
            .client_id(client_id)
            .scope(scope)
            .private_key(credential)
            .http_client(self.http_client()?);
        if let Some(url) = &self.token_url {
            builder = builder.token_endpoint(url.clone());
        }
        #[cfg(feature = "redis")]
        if let Some(store) = self.token_store()? {
            builder = builder.token_store(store);
        }
        Ok(builder)
    }

    /// The token store `SMART_TOKEN_STORE` names, if set: on Redis (values in the clear; for
    /// encryption at rest build a [`crate::redis::RedisStore`] with a keyring yourself), or in a
    /// file shared by the processes of one machine (created with mode 0600). A Redis store
    /// connects at its first use. [`backend_services_builder`](Self::backend_services_builder)
    /// uses it.
    #[cfg(feature = "redis")]
    pub fn token_store(&self) -> Result<Option<smart_fhir_store::SharedTokenStore>, Error> {
        use smart_fhir_store::{FileSessionStore, SessionTokenStore, SharedTokenStore};
        Ok(match &self.token_store {
            None => None,
            Some(StoreLocation::Redis(url)) => Some(SharedTokenStore::new(
                smart_fhir_redis::RedisTokenStore::new(redis_store(url)?),
            )),
            Some(StoreLocation::File(path)) => Some(SharedTokenStore::new(SessionTokenStore::new(
                FileSessionStore::open_or_create(path, serde_json::Value::Null)?,
            ))),
        })
    }

    /// The session store `SMART_SESSION_STORE` names, if set: on Redis (values in the clear;
    /// for encryption at rest build a [`crate::redis::RedisStore`] with a keyring yourself) or
    /// in a file (created with mode 0600). [`app_launch_config`](Self::app_launch_config) uses
    /// it.
    #[cfg(feature = "redis")]
    pub fn session_store(&self) -> Result<Option<smart_fhir_store::SharedSessionStore>, Error> {
        use smart_fhir_store::{FileSessionStore, SharedSessionStore};
        Ok(match &self.session_store {
            None => None,
            Some(StoreLocation::Redis(url)) => Some(SharedSessionStore::new(
                smart_fhir_redis::RedisSessionStore::new(redis_store(url)?),
            )),
            Some(StoreLocation::File(path)) => Some(SharedSessionStore::new(
                FileSessionStore::open_or_create(path, serde_json::Value::Null)?,
            )),
        })
    }

    /// The `private_key_jwt` credential (the key with its kid, and `SMART_JKU`), when a key is set.
    fn credential(&self) -> Option<PrivateKeyJwt> {
        let key = self.private_key.clone()?;
        let credential = PrivateKeyJwt::new(key);
        Some(match &self.jku {
            Some(jku) => credential.jku(jku.clone()),
            None => credential,
        })
    }

    /// A Backend Services token source for the configured server: tokens for the FHIR client,
    /// cached and renewed before expiry. Nothing is sent until a token is asked for.
    ///
    /// Fails when `SMART_CLIENT_ID`, `SMART_SCOPE` or the private key is not set.
    pub fn backend_services(&self) -> Result<BackendServices, Error> {
        Ok(self.backend_services_builder()?.build()?)
    }

    /// A FHIR client for the configured server with a Backend Services token source; tokens
    /// and FHIR requests share one connection pool.
    pub fn fhir_client(&self) -> Result<FhirClient, Error> {
        Ok(self.backend_services()?.fhir_client()?)
    }

    /// An App Launch configuration builder filled from the configuration: client id, redirect
    /// URI, scope, `private_key_jwt` client authentication when a key is set (else a public
    /// client), the configured server as the only allowed issuer, the insecure-HTTP policy and
    /// a new transport. Add at least the [landing URL](LaunchClientConfigBuilder::landing_url),
    /// then [`build`](LaunchClientConfigBuilder::build).
    ///
    /// Fails when `SMART_CLIENT_ID`, `SMART_SCOPE` or `SMART_REDIRECT_URI` is not set.
    pub fn app_launch_config(&self) -> Result<LaunchClientConfigBuilder, Error> {
        let auth = match self.credential() {
            Some(credential) => ClientAuth::PrivateKeyJwt(credential),
            None => ClientAuth::Public,
        };
        let builder = LaunchClientConfig::builder()
            .client_id(self.require(&self.client_id, CLIENT_ID)?)
            .redirect_uri(self.require(&self.redirect_uri, REDIRECT_URI)?)
            .scope(self.require(&self.scope, SCOPE)?)
            .client_auth(auth)
            .issuer_policy(IssuerPolicy::allow_list([self.fhir_base.clone()]))
            .insecure_http(self.insecure_http)
            .http_client(self.http_client()?);
        #[cfg(feature = "redis")]
        let builder = match self.session_store()? {
            Some(store) => builder.session_store(store),
            None => builder,
        };
        Ok(builder)
    }

    fn name(&self, var: &str) -> String {
        format!("{}{var}", self.prefix)
    }

    fn require(&self, value: &Option<String>, var: &str) -> Result<String, ConfigError> {
        value.clone().ok_or_else(|| ConfigError::Missing {
            var: self.name(var),
            alternative: None,
        })
    }
}

/// A Redis store on `url`, default settings.
#[cfg(feature = "redis")]
fn redis_store(url: &str) -> Result<smart_fhir_redis::RedisStore, Error> {
    Ok(smart_fhir_redis::RedisStore::builder().url(url).build()?)
}

fn env_lookup(name: &str) -> Result<Option<Zeroizing<String>>, ConfigError> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(v) => v
            .into_string()
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|_| ConfigError::NotUnicode {
                var: name.to_owned(),
            }),
    }
}

fn normalise_prefix(prefix: &str) -> Result<String, ConfigError> {
    let bare = prefix.strip_suffix('_').unwrap_or(prefix);
    if bare.is_empty() || !bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ConfigError::InvalidPrefix {
            prefix: prefix.chars().take(64).collect(),
        });
    }
    Ok(format!("{bare}_"))
}

fn invalid(var: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        reason: reason.into(),
    }
}

fn url_reason(e: smart_fhir_core::UrlError, insecure: InsecureHttp) -> String {
    match e {
        smart_fhir_core::UrlError::InsecureHttp { .. } if insecure == InsecureHttp::Deny => {
            format!("{e}; set {INSECURE_HTTP}=loopback to allow it for a loopback host")
        }
        e => e.to_string(),
    }
}

/// Loads a key from PEM, JWK or JWKS text; `kid` picks a key of a JWKS or names any other key.
/// The reason of a failure never quotes the key.
fn load_key(text: &str, kid: Option<&str>) -> Result<PrivateKey, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let is_jwks = trimmed.starts_with('{') && trimmed.contains("\"keys\"");
    if is_jwks {
        return PrivateKey::from_jwks(trimmed, kid).map_err(|e| e.to_string());
    }
    let key = PrivateKey::from_bytes(trimmed.as_bytes()).map_err(|e| e.to_string())?;
    match kid {
        Some(kid) => key.with_kid(kid).map_err(|e| e.to_string()),
        None => Ok(key),
    }
}

/// Reads a private key file: a regular file (not a FIFO or device, which could block or never
/// end) of at most [`MAX_PRIVATE_KEY_FILE_BYTES`], as UTF-8 text.
fn read_key_file(var: &str, path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    let fail = |reason: String| ConfigError::KeyFile {
        var: var.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let check = |meta: std::fs::Metadata| {
        if !meta.is_file() {
            return Err(fail("not a regular file".to_owned()));
        }
        if meta.len() > MAX_PRIVATE_KEY_FILE_BYTES {
            return Err(fail(format!(
                "larger than {} KiB",
                MAX_PRIVATE_KEY_FILE_BYTES / 1024
            )));
        }
        Ok(())
    };
    // Checked before opening (opening a FIFO blocks) and again on the open file.
    check(std::fs::metadata(path).map_err(|e| fail(e.to_string()))?)?;
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    check(file.metadata().map_err(|e| fail(e.to_string()))?)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PRIVATE_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_PRIVATE_KEY_FILE_BYTES {
        return Err(fail(format!(
            "larger than {} KiB",
            MAX_PRIVATE_KEY_FILE_BYTES / 1024
        )));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| fail("not UTF-8 text".to_owned()))?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests;
