//! SMART on FHIR OAuth 2.0 grants.
//!
//! Today: the **Backend Services** token source ([`BackendServices`]): OAuth 2.0 client
//! credentials with a `private_key_jwt` client assertion (SC-2, SC-3), discovery of the token
//! endpoint with a fit check (SC-1.13), tokens cached in a [`smart_fhir_store::TokenStore`] and
//! renewed before expiry, **single flight** (one token request however many callers wait), and
//! renewal after the FHIR server rejects a token.
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
//!     .shared_http_client(http)
//!     .build()?;
//! let token = backend.token().await?;
//! println!("granted {:?}, expires {:?}", token.scope, token.expires_at);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod error;
mod fit;
pub mod token;

pub use backend::{
    BackendServices, BackendServicesBuilder, DEFAULT_ASSERTION_LIFETIME, DEFAULT_LOAD_TIMEOUT,
    DEFAULT_RENEWAL_BUFFER,
};
pub use error::{OAuthError, OAuthErrorCode};
