//! The network side of `smart-fhir`: [`HyperHttpClient`], the hyper + rustls implementation of
//! [`smart_fhir_core::HttpClient`] that discovery, the OAuth grants and the FHIR client call.
//!
//! This is the only `smart-fhir` crate that names hyper, hyper-util, hyper-rustls or rustls, and
//! none of their types appears in its public API.
//!
//! What the transport guarantees:
//!
//! * **TLS** with rustls, TLS 1.2 and 1.3 only (SC-2.14, SC-7.2, P7), certificates always
//!   verified: there is no option to turn verification off. Trust comes from [`Roots`] plus any
//!   private-PKI roots given with [`HyperHttpClientBuilder::add_root_certificate_pem`].
//! * **Plain HTTP** only to loopback hosts, and only with [`InsecureHttp::AllowLoopback`]; any
//!   other `http://` URI (or another scheme) fails with `InvalidRequest` before a connection is
//!   attempted.
//! * **Pooled connections**, HTTP/1.1 and HTTP/2 negotiated by ALPN.
//! * **Bounds**: a connect timeout (10 s), a request timeout for the whole exchange including the
//!   body (60 s) and a response size limit (8 MiB), the last two overridable per request with the
//!   core [`RequestTimeout`] and [`MaxResponseBytes`] extensions. Bodies are read incrementally
//!   and abandoned as soon as they exceed the limit (P15).
//! * **No redirects** are followed: a `3xx` is returned as it is.
//! * **No leaks** (P5): `Authorization` values are marked sensitive, and error messages name the
//!   scheme and host only, never the path, the query or a header value.
//! * [`HyperHttpClient::execute_streaming`] returns a [`BodyStream`] for downloads too large to
//!   hold in memory (Bulk Data NDJSON files).
//!
//! # Crate features
//!
//! * `ring` (default): rustls's `ring` crypto provider. Without it, the client uses the
//!   process-wide provider installed with `rustls::crypto::CryptoProvider::install_default`, and
//!   [`HyperHttpClientBuilder::build`] fails when there is none.
//! * `webpki-roots` (default): Mozilla's root certificates compiled in ([`Roots::Webpki`]).
//! * `native-roots`: the operating system's certificate store ([`Roots::Native`]).
//!
//! # Tracing
//!
//! Every FHIR request runs in a `fhir_request` span (debug level) with the method, the origin,
//! a path template such as `[base]/Patient/{id}/_history/{vid}`, the status, the number of
//! attempts and the duration; token renewal and retries are events inside it, and each
//! exchange of the transport is a debug event with the method, the origin and the status.
//! No span or event holds a token, a query string, an id or a body (P5). Without a subscriber
//! they cost a check of a static flag.
//!
//! The lower `smart-fhir` crates have no default features. This one has `ring` and
//! `webpki-roots` on by default because without a crypto provider and a root store it cannot
//! build a client that reaches a public server: a user who adds the crate gets a working
//! transport. Choose otherwise with `default-features = false` (the `smart-fhir` facade does).
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use smart_fhir_core::{http, Bytes, HttpClient, RequestTimeout};
//! use smart_fhir_http::HyperHttpClient;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = HyperHttpClient::builder()
//!     .request_timeout(Duration::from_secs(30))
//!     .build()?;
//!
//! let mut request = http::Request::get("https://ehr.example/fhir/metadata")
//!     .header(http::header::ACCEPT, "application/fhir+json")
//!     .body(Bytes::new())?;
//! // This request may take longer than the client's default.
//! request
//!     .extensions_mut()
//!     .insert(RequestTimeout(Duration::from_secs(90)));
//!
//! let response = client.execute(request).await?;
//! println!("{} ({} bytes)", response.status(), response.body().len());
//! # Ok(())
//! # }
//! ```
//!
//! [`InsecureHttp::AllowLoopback`]: smart_fhir_core::InsecureHttp::AllowLoopback
//! [`RequestTimeout`]: smart_fhir_core::RequestTimeout
//! [`MaxResponseBytes`]: smart_fhir_core::MaxResponseBytes
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod bulk;
pub mod client;
mod transport;

pub use bulk::{BulkExport, BulkJob, Manifest};

pub use client::{
    AuthMode, FhirClient, FhirClientBuilder, FhirError, FhirResponse, FhirVersion,
    OperationOutcome, RequestOptions, RetryPolicy,
};

pub use transport::{
    is_unknown_issuer, BodyStream, HyperHttpClient, HyperHttpClientBuilder, Roots, TransportError,
};
