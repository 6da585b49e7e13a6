//! SMART on FHIR OAuth 2.0 grants.
//!
//! Today: the **Backend Services** token source ([`BackendServices`]): OAuth 2.0 client
//! credentials with a `private_key_jwt` client assertion (SC-2, SC-3), discovery of the token
//! endpoint with a fit check (SC-1.13), tokens cached in a [`smart_fhir_store::TokenStore`] and
//! renewed before expiry, **single flight** (one token request however many callers wait), and
//! renewal after the FHIR server rejects a token.
//!
//! The **App Launch** flow for server-side web apps ([`AppLaunch`], module [`launch`]): EHR and
//! standalone launch with PKCE, `state` and nonce kept server-side and bound to the session, the
//! callback with the code exchange for public, symmetric and asymmetric clients, the launch
//! context, and self-refreshing sessions with refresh-token rotation (SC-4).
//!
//! `id_token` verification ([`IdTokenVerifier`]: keys from the issuer's OpenID configuration,
//! cached and refetched once on an unknown `kid`; SC-4.33–SC-4.36, P9), and token
//! introspection and revocation ([`introspect`], [`revoke`]; SC-6).
//!
//! The token protocol is sans-IO at heart ([`token`]): build the request, parse the response;
//! [`BackendServices`] does the I/O through a [`smart_fhir_core::HttpClient`].
//!
//! ```no_run
//! # async fn run(http: smart_fhir_core::SharedHttpClient) -> Result<(), Box<dyn std::error::Error>> {
//! use smart_fhir_core::FhirBaseUrl;
//! use smart_fhir_jwt::PrivateKey;
//! use smart_fhir_oauth::BackendServices;
//!
//! let key = PrivateKey::from_pem(&std::fs::read_to_string("client.pem")?)?;
//! let backend = BackendServices::builder()
//!     .fhir_base(FhirBaseUrl::parse("https://ehr.example/fhir")?)
//!     .client_id("my-backend")
//!     .scope("system/Patient.rs system/Observation.rs")
//!     .private_key(key)
//!     .http_client(http)
//!     .build()?;
//! let token = backend.token().await?;
//! println!("granted {:?}, expires {:?}", token.scope, token.expires_at);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod credential;
mod error;
#[cfg(feature = "fhir-client")]
mod fhir;
mod id_token;
mod introspect;
pub mod launch;
pub mod token;

pub use backend::{
    BackendServices, BackendServicesBuilder, DEFAULT_LOAD_TIMEOUT, DEFAULT_RENEWAL_BUFFER,
};
pub use credential::{PrivateKeyJwt, DEFAULT_ASSERTION_LIFETIME};
pub use error::{OAuthError, OAuthErrorCode};
pub use id_token::{
    IdTokenClaims, IdTokenError, IdTokenExpectations, IdTokenVerifier, KeyDocument, KeyFetchError,
    DEFAULT_ID_TOKEN_LEEWAY, DEFAULT_JWKS_REFETCH_INTERVAL, DEFAULT_JWKS_TTL,
    FHIR_USER_RESOURCE_TYPES, ID_TOKEN_ALGORITHMS, KEY_FETCH_TIMEOUT, MAX_JWKS_TTL,
    MAX_OPENID_CONFIGURATION_BYTES, MIN_JWKS_TTL,
};
pub use introspect::{
    introspect, introspect_with, introspection_request, introspection_request_with,
    parse_introspection_response, parse_revocation_response, revocation_request,
    revocation_request_with, revoke, revoke_with, Introspection, IntrospectionAuth, RevocationAuth,
    RevocationError, TokenTypeHint,
};
pub use launch::{
    AppLaunch, AuthorizeRequest, ClientAuth, FhirContextItem, IssuerPolicy, LaunchClientConfig,
    LaunchClientConfigBuilder, LaunchContext, LaunchContextIssue, LaunchError, Launched,
    RelaunchReason, SessionClient, MAX_CONTEXT_ID_LEN,
};
