//! SMART on FHIR OAuth 2.0 grants.
//!
//! * The **Backend Services** token source ([`BackendServices`]): OAuth 2.0 client credentials
//!   with a `private_key_jwt` client assertion (SC-2, SC-3), discovery of the token endpoint
//!   with a fit check (SC-1.13), tokens cached in a [`smart_fhir_store::TokenStore`] and renewed
//!   before expiry, **single flight** (one token request however many callers wait; each gets
//!   the token or a clone of the error), and renewal after the FHIR server rejects a token.
//! * The **App Launch** flow for server-side web apps ([`AppLaunch`], module [`launch`]): EHR
//!   and standalone launch with PKCE, `state` and nonce kept server-side and bound to the
//!   session, the callback with the code exchange for public, symmetric and asymmetric clients,
//!   the typed launch context ([`LaunchContext`]), and self-refreshing sessions
//!   ([`SessionClient`]) with refresh-token rotation (SC-4).
//! * One `private_key_jwt` credential for both ([`PrivateKeyJwt`]: key, algorithm, `kid`, `jku`,
//!   assertion lifetime); a [`PrivateKey`](smart_fhir_jwt::PrivateKey) converts into one.
//! * `id_token` verification ([`IdTokenVerifier`]: keys from the issuer's OpenID configuration,
//!   cached and refetched once on an unknown `kid`; SC-4.33–SC-4.36, P9), and token
//!   introspection and revocation ([`introspect`], [`revoke`]; SC-6).
//!
//! The token protocol is sans-IO at heart ([`token`]): build the request, parse the response;
//! [`token::exchange`] is the one function every grant sends its token request with (no
//! redirects followed; the lifetime counted from just before the request).
//!
//! # Features
//!
//! * `fhir-client` (off by default): depends on `smart-fhir-http` and adds
//!   `BackendServices::fhir_client` and `SessionClient::fhir_client` (a ready
//!   `FhirClient` for the token source's server, on its transport, with its tokens), and the
//!   App Launch shortcuts `SessionClient::read_patient`, `read_encounter` and `read_user`.
//!   `smart-fhir-http` does not depend on this crate, so there is no cycle.
//!
//! # Logging
//!
//! Spans and events go to [`tracing`]: `smart_fhir.token_request` (grant, origin, path, then
//! status, duration and the number of granted scopes), the Backend Services cache (hit, miss),
//! and the App Launch steps (launch, callback, code exchange, refresh, rotation, sign-out) with
//! the session id as a short one-way hash. No token, assertion, code, `state`, verifier,
//! secret, query string or body is ever logged.
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
//!     .private_key(key) // or a `PrivateKeyJwt` with its algorithm, kid, jku
//!     .http_client(http)
//!     .build()?;
//! let token = backend.token().await?;
//! println!("granted {:?}, expires {:?}", token.scope, token.expires_at);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

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
    LogoutOutcome, RelaunchReason, SessionClient, MAX_CONTEXT_ID_LEN,
};
