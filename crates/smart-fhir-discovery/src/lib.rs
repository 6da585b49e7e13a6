//! SMART on FHIR discovery (SMART App Launch 2.2, checklist SC-1.1 to SC-1.17).
//!
//! Sans-IO at heart: [`smart_configuration_request`] builds the `http::Request`,
//! [`parse_smart_configuration`] reads the `http::Response`; the thin async [`discover`] does
//! the I/O through any [`HttpClient`](smart_fhir_core::HttpClient), and [`DiscoveryCache`]
//! keeps results for their `Cache-Control` lifetime.
//!
//! * [`SmartConfiguration`]: every field of the IG, endpoint URLs resolved (SC-1.5) and checked
//!   against the base's insecure-HTTP policy (P15), unknown fields kept (SC-1.6).
//! * [`Capability`] and [`CapabilitySet`] (SC-1.8–1.10).
//! * [`SmartConfiguration::validate`]: what the IG requires, as errors and warnings (SC-1.7,
//!   SC-1.11).
//! * [`SmartConfiguration::check_fit`]: does the server offer what the client will do, and which
//!   algorithm to sign with (SC-1.13).
//! * The deprecated CapabilityStatement path (SC-1.16, SC-1.17) when `.well-known` is not
//!   served.
//! * OpenID Connect: an issuer's configuration ([`fetch_openid_configuration`]) and its keys
//!   ([`fetch_jwks`]), kept per issuer by [`JwksCache`] for their `Cache-Control` lifetime and
//!   refetched (rate-limited) when a token names an unknown key (SC-4.34).
//!
//! Every fetch and cache decision is a `tracing` event (origin, path, status, duration, cache
//! hit or miss); none carries a query string, a header value or a body.
//!
//! ```no_run
//! use smart_fhir_core::{FhirBaseUrl, SharedHttpClient};
//! use smart_fhir_discovery::{discover, Capability, ClientProfile};
//!
//! async fn backend_setup(client: SharedHttpClient) -> Result<(), Box<dyn std::error::Error>> {
//!     let base = FhirBaseUrl::parse("https://fhir.example/api/FHIR/R4")?;
//!     let config = discover(&client, &base).await?;
//!
//!     // Refuse configurations that break the IG; log the rest.
//!     for warning in config.validate().into_result()? {
//!         eprintln!("discovery: {warning}");
//!     }
//!
//!     // Backend Services: client_credentials with private_key_jwt.
//!     let fit = config.check_fit(&ClientProfile::backend_services(["ES384", "RS384"]))?;
//!     println!(
//!         "token endpoint {}, sign with {:?}, v1 scopes: {}, OIDC: {}",
//!         config.token_endpoint(),
//!         fit.signing_algorithm,
//!         config.prefers_v1_scopes(),
//!         config.supports(Capability::SsoOpenidConnect),
//!     );
//!     Ok(())
//! }
//! ```
//!
//! The same exchange without the async layer, for callers with their own transport:
//!
//! ```
//! use smart_fhir_core::{Bytes, FhirBaseUrl};
//! use smart_fhir_discovery::{parse_smart_configuration, smart_configuration_request};
//!
//! let base = FhirBaseUrl::parse("https://ehr.example/apis/fhir")?;
//! let request = smart_configuration_request(&base)?;
//! assert_eq!(request.uri(), "https://ehr.example/apis/fhir/.well-known/smart-configuration");
//!
//! // ... send `request`, then:
//! let response = smart_fhir_core::http::Response::new(Bytes::from_static(br#"{
//!     "token_endpoint": "https://ehr.example/auth/token",
//!     "grant_types_supported": ["client_credentials"],
//!     "capabilities": ["client-confidential-asymmetric"],
//!     "code_challenge_methods_supported": ["S256"]
//! }"#));
//! let config = parse_smart_configuration(&base, response)?;
//! assert_eq!(config.token_endpoint().as_str(), "https://ehr.example/auth/token");
//! assert!(config.validate().is_valid());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod cache;
mod cache_control;
mod capability;
mod config;
mod endpoint;
mod error;
mod fetch;
mod fit;
mod fit_error;
mod issue;
mod json;
mod jwks;
mod key_error;
mod metadata;
mod openid;
mod options;
mod response;
mod well_known;

#[cfg(test)]
mod tests;

/// Entry points for the fuzz targets in `fuzz/`: parsers of untrusted input that have no public
/// path of their own. Not part of the API; no stability promise.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    use crate::cache_control::{cache_directive, CacheDirective, TtlPolicy};

    /// What the `Cache-Control` headers say: `None` for `no-store` / `no-cache`, `Some(max_age)`
    /// for a usable `max-age`, `Some(None)` for nothing usable.
    pub fn cache_control(headers: &http::HeaderMap) -> Option<Option<Duration>> {
        match cache_directive(headers) {
            CacheDirective::NoStore => None,
            CacheDirective::MaxAge(age) => Some(Some(age)),
            CacheDirective::Default => Some(None),
        }
    }

    /// How long a cache with these bounds keeps a response with these headers.
    pub fn cache_ttl(
        headers: &http::HeaderMap,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        TtlPolicy { default, min, max }.ttl_of(headers)
    }
}

pub use cache::{
    DiscoveryCache, DiscoveryCacheBuilder, DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL, MAX_TTL,
};
pub use capability::{Capability, CapabilitySet};
pub use config::{AssociatedEndpoint, ConfigurationSource, SmartConfiguration, Validation};
pub use endpoint::check_document_endpoint;
pub use error::{BodyKind, DiscoveryError};
pub use fetch::{discover, discover_with};
pub use fit::{
    ClientAuthMethod, ClientProfile, Fit, FitError, FitNote, GrantKind, LaunchKind,
    SMART_REQUIRED_SIGNING_ALGORITHMS,
};
pub use issue::ValidationIssue;
pub use jwks::{
    fetch_jwks, jwks_request, parse_jwks, JwksCache, DEFAULT_JWKS_REFETCH_INTERVAL,
    DEFAULT_JWKS_TTL, MAX_JWKS_TTL, MIN_JWKS_TTL,
};
pub use key_error::{KeyDiscoveryError, KeyDocument, KeyFetchError};
pub use metadata::{
    capability_statement_request, capability_statement_request_with, parse_capability_statement,
    METADATA_ACCEPT, OAUTH_URIS_EXTENSION, SECURITY_SERVICE_SYSTEMS,
};
pub use openid::{
    fetch_openid_configuration, openid_configuration_request, parse_openid_configuration, Issuer,
    OpenIdConfiguration, KEY_FETCH_TIMEOUT, MAX_OPENID_CONFIGURATION_BYTES,
};
pub use options::{DiscoveryOptions, DEFAULT_MAX_RESPONSE_BYTES};
pub use well_known::{
    parse_smart_configuration, smart_configuration_request, smart_configuration_request_with,
};
