//! Foundation types shared by every `smart-fhir` crate.
//!
//! * [`secret`]: newtypes for tokens, codes, verifiers and client secrets. Their `Debug` output is
//!   redacted, they have no `Display`, and their memory is zeroized on drop.
//! * [`HttpClient`]: the object-safe transport trait that discovery, the OAuth grants and the FHIR
//!   client call. `smart-fhir-http` implements it on hyper; tests implement it with fakes.
//! * [`AccessTokenProvider`]: what the FHIR client asks for a token before each request; every
//!   token source (Backend Services, an App Launch session, [`StaticTokenProvider`]) implements it
//!   and names the server its tokens are for.
//! * [`Clock`]: injected time, with [`SystemClock`] and [`FixedClock`]; [`ServerClocks`]: each
//!   server's clock offset, estimated from its `Date` header, for times sent to it.
//! * [`FhirBaseUrl`]: a normalised FHIR base URL (SC-1.1, SC-1.2, SC-8.1) that refuses plain
//!   `http://` unless the host is loopback and the caller opted in with [`InsecureHttp::AllowLoopback`].
//!
//! ```
//! use smart_fhir_core::{FhirBaseUrl, InsecureHttp};
//!
//! let base = FhirBaseUrl::parse("https://ehr.example/apis/fhir/")?;
//! assert_eq!(base.as_str(), "https://ehr.example/apis/fhir");
//! assert_eq!(
//!     base.smart_configuration_url().as_str(),
//!     "https://ehr.example/apis/fhir/.well-known/smart-configuration"
//! );
//!
//! // Plain HTTP is refused, unless the host is loopback and the caller says so explicitly.
//! assert!(FhirBaseUrl::parse("http://127.0.0.1:8080/fhir").is_err());
//! let dev = FhirBaseUrl::parse_with("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback)?;
//! assert_eq!(dev.as_str(), "http://127.0.0.1:8080/fhir");
//! # Ok::<(), smart_fhir_core::UrlError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod auth;
mod base_url;
pub mod cache;
mod cause;
mod clock;
mod http_client;
pub mod secret;
pub mod server_time;
pub mod text;

pub use auth::{
    AccessTokenProvider, BoxError, ProviderError, ProviderErrorKind, SharedAccessTokenProvider,
    StaticTokenProvider,
};
pub use base_url::{
    check_endpoint_url, check_endpoint_url_from, is_loopback_host, FhirBaseUrl, InsecureHttp,
    UrlError,
};
pub use cache::{CacheOutcome, Expiring, ExpiringCache, LoadTimedOut};
pub use cause::find_cause;
pub use clock::{Clock, FixedClock, SharedClock, SystemClock};
pub use http_client::{
    ChunkStream, HttpClient, HttpError, HttpErrorKind, MaxResponseBytes, RequestTimeout,
    SharedHttpClient, StreamingBody,
};
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, IdToken, PkceCodeVerifier, RefreshToken,
};
pub use server_time::{
    response_date, server_origin, ClockOffset, Observation, ObservingHttpClient, ServerClocks,
    ServerUrl, MAX_CLOCK_OFFSET, MIN_CLOCK_OFFSET, WARN_CLOCK_OFFSET,
};

/// Re-exported so that implementers of [`HttpClient`] and callers use the same versions.
pub use bytes::Bytes;
pub use http;
pub use url::Url;
