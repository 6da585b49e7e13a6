//! SMART on FHIR clients for Rust services.
//!
//! SMART Backend Services (OAuth 2.0 client credentials with `private_key_jwt`), App Launch for
//! server-side web apps, discovery, scopes, token and session stores, and a FHIR REST client on
//! hyper with paging and Bulk Data export. The main types are here at the root; each crate of the
//! family is also a module, for everything else:
//!
//! | module | crate | for |
//! |---|---|---|
//! | [`core`] | `smart-fhir-core` | secret types, the `HttpClient`, `Clock` and `AccessTokenProvider` traits, `FhirBaseUrl` |
//! | [`scopes`] | `smart-fhir-scopes` | SMART v1/v2 scopes: parse, build, normalise, compare |
//! | [`pkce`] | `smart-fhir-pkce` | PKCE S256, `state`, `nonce` |
//! | [`jwt`] | `smart-fhir-jwt` | keys, JWKS, client assertions, JWS verification |
//! | [`discovery`] | `smart-fhir-discovery` | `.well-known/smart-configuration` and the CapabilityStatement fallback |
//! | [`store`] | `smart-fhir-store` | token and session stores |
//! | [`oauth`] | `smart-fhir-oauth` | Backend Services, App Launch, `id_token`, introspection, revocation |
//! | [`http`] | `smart-fhir-http` | the FHIR REST client, Bulk Data export, the hyper + rustls transport |
//!
//! # Backend Services
//!
//! A token source knows its FHIR server and its transport, so the FHIR client is made from it
//! (one connection pool for tokens and FHIR requests):
//!
//! ```no_run
//! use smart_fhir::{BackendServices, FhirBaseUrl, HyperHttpClient, PrivateKey};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = BackendServices::builder()
//!     .fhir_base(FhirBaseUrl::parse("https://ehr.example/fhir")?)
//!     .client_id("my-backend")
//!     .scope("system/Patient.rs")
//!     .private_key(PrivateKey::from_pem(&std::fs::read_to_string("client.pem")?)?)
//!     .http_client(HyperHttpClient::builder().build()?)
//!     .build()?;
//! let fhir = backend.fhir_client()?;
//! let patient = fhir.read::<serde_json::Value>("Patient", "123").await?;
//! println!("version {:?}", patient.version_id());
//! # Ok(()) }
//! ```
//!
//! # Configuration from the environment
//!
//! [`Config::from_env`] reads `SMART_FHIR_BASE`, `SMART_CLIENT_ID`, `SMART_SCOPE`,
//! `SMART_PRIVATE_KEY_FILE` and the other variables listed at [`Config`], and checks each;
//! [`Config::from_env_prefixed`] reads one tenant's (`EPIC_SMART_CLIENT_ID`, …). The
//! `smart-fhir` command-line tool reads the same variables.
//!
//! ```no_run
//! # async fn run() -> Result<(), smart_fhir::Error> {
//! let fhir = smart_fhir::Config::from_env()?.fhir_client()?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Each crate has its own precise error type; [`Error`] holds any of them and answers the
//! questions a caller asks: [`Error::is_auth`], [`Error::status`], [`Error::is_transport`],
//! [`Error::is_timeout`], [`Error::oauth_error`], [`Error::relaunch_needed`].
//!
//! # Crate features
//!
//! The transport's TLS is chosen here, once, for every crate of the family:
//!
//! * `rustls-ring` (default): rustls's `ring` crypto provider, which builds with a C compiler
//!   alone. Without it, install a process-wide rustls `CryptoProvider` (for example
//!   `aws-lc-rs`) before building a client, or [`HyperHttpClient`]'s `build` fails with
//!   [`http::TransportError::NoCryptoProvider`].
//! * `webpki-roots` (default): Mozilla's root certificates, compiled in
//!   ([`http::Roots::Webpki`]).
//! * `native-roots`: the operating system's root certificates, read when a transport is built
//!   ([`http::Roots::Native`]). With both root features the default is `webpki-roots`; choose
//!   with [`HyperHttpClientBuilder::tls_roots`](http::HyperHttpClientBuilder::tls_roots).
//!
//! * `redis` (off): [`redis`] (the `smart-fhir-redis` crate: token and session stores on
//!   Redis, Valkey and Redis Cluster, encrypted at rest when given a key), and [`Config`] picks
//!   the stores from `SMART_TOKEN_STORE` and `SMART_SESSION_STORE` (`redis://…` or a file
//!   path, shared by processes). Without it, setting either variable is a configuration error.
//! * `redis-tls` (off): `redis` with `rediss://` (rustls with its `ring` provider, the system's
//!   root certificates).
//!
//! With neither root feature, a transport trusts only the certificates added with
//! [`add_root_certificate_pem`](http::HyperHttpClientBuilder::add_root_certificate_pem) (a
//! private PKI). The lower crates have no default features of their own: depend on this crate
//! with `default-features = false` and pick the features above to change the TLS set-up.
//!
//! `tracing` is not a feature: the crates' spans and events are always there, and cost next to
//! nothing without a subscriber.
//!
//! # Guides
//!
//! [`guides`] holds the guides of `docs/guides/`: Backend Services, App Launch, Bulk export and
//! key rotation.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod config;
mod error;

pub use smart_fhir_core as core;
pub use smart_fhir_discovery as discovery;
pub use smart_fhir_http as http;
pub use smart_fhir_jwt as jwt;
pub use smart_fhir_oauth as oauth;
pub use smart_fhir_pkce as pkce;
/// Token and session stores on Redis, Valkey and Redis Cluster (feature `redis`).
#[cfg(feature = "redis")]
pub use smart_fhir_redis as redis;
pub use smart_fhir_scopes as scopes;
pub use smart_fhir_store as store;

pub use config::{Config, ConfigError};
pub use error::Error;

pub use smart_fhir_core::{
    AccessToken, AccessTokenProvider, Clock, FhirBaseUrl, HttpClient, HttpError, InsecureHttp,
    ProviderError, ProviderErrorKind, SharedAccessTokenProvider, SharedHttpClient,
    StaticTokenProvider, SystemClock, UrlError,
};
pub use smart_fhir_discovery::{DiscoveryError, SmartConfiguration};
pub use smart_fhir_http::{
    BulkExport, BulkJob, FhirClient, FhirClientBuilder, FhirError, FhirResponse, HyperHttpClient,
    Manifest,
};
pub use smart_fhir_jwt::{Algorithm, JwtError, PrivateKey};
pub use smart_fhir_oauth::{
    AppLaunch, BackendServices, BackendServicesBuilder, ClientAuth, FhirContextItem, IssuerPolicy,
    LaunchClientConfig, LaunchClientConfigBuilder, LaunchContext, LaunchError, Launched,
    LogoutOutcome, OAuthError, PrivateKeyJwt, RelaunchReason, SessionClient,
};
pub use smart_fhir_scopes::{Scope, ScopeSet};
pub use smart_fhir_store::{
    MemorySessionStore, MemoryTokenStore, SessionStore, StoreError, StoredToken, TokenStore,
};

/// The guides in `docs/guides/`, included here so that their code examples are compiled with
/// the documentation tests.
pub mod guides {
    #[doc = include_str!("../../../docs/guides/backend-services.md")]
    pub mod backend_services {}
    #[doc = include_str!("../../../docs/guides/app-launch.md")]
    pub mod app_launch {}
    #[doc = include_str!("../../../docs/guides/bulk-export.md")]
    pub mod bulk_export {}
    #[doc = include_str!("../../../docs/guides/key-rotation.md")]
    pub mod key_rotation {}
}

/// The repository's README, compiled with the documentation tests so that its examples keep
/// working (`cargo test -p smart-fhir --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
