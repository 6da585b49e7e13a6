//! SMART on FHIR for Rust backends.
//!
//! This facade re-exports the `smart-fhir` crates; depend on it, or on just the small crate you
//! need:
//!
//! | module | crate | for |
//! |---|---|---|
//! | [`core`] | `smart-fhir-core` | secret types, `HttpClient`, `Clock`, `FhirBaseUrl` |
//! | [`scopes`] | `smart-fhir-scopes` | SMART v1/v2 scopes: parse, build, normalise, compare |
//! | [`pkce`] | `smart-fhir-pkce` | PKCE S256, `state`, `nonce` |
//! | [`jwt`] | `smart-fhir-jwt` | keys, JWKS, client assertions, JWS verification |
//! | [`discovery`] | `smart-fhir-discovery` | `.well-known/smart-configuration` and fallback |
//! | [`store`] | `smart-fhir-store` | token and session stores, `AccessTokenProvider` |
//! | [`oauth`] | `smart-fhir-oauth` | Backend Services, App Launch, `id_token`, introspection, revocation |
//! | [`http`] | `smart-fhir-http` | the FHIR REST client, Bulk Data export, the hyper + rustls transport |
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
//! let token = backend.token().await?;
//! println!("granted: {:?}", token.scope);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use smart_fhir_core as core;
pub use smart_fhir_discovery as discovery;
pub use smart_fhir_http as http;
pub use smart_fhir_jwt as jwt;
pub use smart_fhir_oauth as oauth;
pub use smart_fhir_pkce as pkce;
pub use smart_fhir_scopes as scopes;
pub use smart_fhir_store as store;

pub use smart_fhir_core::{
    AccessToken, AccessTokenProvider, Clock, FhirBaseUrl, HttpClient, InsecureHttp,
    SharedHttpClient, StaticTokenProvider, SystemClock,
};
pub use smart_fhir_http::{FhirClient, FhirError, FhirResponse, HyperHttpClient};
pub use smart_fhir_jwt::{Algorithm, PrivateKey};
pub use smart_fhir_oauth::{
    AppLaunch, BackendServices, ClientAuth, IssuerPolicy, LaunchClientConfig, LaunchError,
    OAuthError, SessionClient,
};
pub use smart_fhir_scopes::ScopeSet;
pub use smart_fhir_store::{
    MemorySessionStore, MemoryTokenStore, SessionStore, StoredToken, TokenStore,
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
