//! A scriptable local SMART on FHIR server for tests: token endpoint, discovery document,
//! scripted FHIR replies and faults on the wire.
//!
//! [`TestServer::start`] binds `127.0.0.1` on a free port and speaks plain HTTP/1.1, so the
//! client under test must opt in to loopback HTTP (`InsecureHttp::AllowLoopback`). The server
//! offers:
//!
//! * `GET {fhir_base}/.well-known/smart-configuration` and a client-credentials token endpoint
//!   issuing `tok-1`, `tok-2`, … that tests can revoke or wear out
//!   ([`TestServer::revoke`], [`TestServer::expire_after_requests`]);
//! * scripted routes ([`TestServer::route`]) answering with queues of [`Reply`]s: JSON, FHIR,
//!   HTML, text, bytes, NDJSON (also generated on the fly, for benchmarks), gzip, `Retry-After`,
//!   bearer-protected;
//! * faults ([`Fault`]): a reset in the middle of a body, a chunked body cut mid-JSON, an
//!   endless oversize body, a hang, a delay;
//! * a record of every request ([`TestServer::requests`]).
//!
//! It is test tooling (`publish = false`): it uses hyper's server side, which the library crates
//! never do, and it keeps no secrets (its tokens are `tok-N`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use serde_json::json;
//! use smart_fhir_core::{http, Bytes, HttpClient, HttpErrorKind, InsecureHttp, RequestTimeout};
//! use smart_fhir_http::HyperHttpClient;
//! use smart_fhir_testkit::{Fault, Method, Reply, TestServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::start().await;
//! server
//!     .route(Method::GET, "/fhir/Patient/1")
//!     .reply(Reply::fhir(200, json!({"resourceType": "Patient", "id": "1"})).require_auth());
//! server.route(Method::GET, "/fhir/Patient/2").reply(Fault::Hang);
//!
//! let client = HyperHttpClient::builder()
//!     .insecure_http(InsecureHttp::AllowLoopback)
//!     .build()?;
//!
//! // A token from the built-in endpoint.
//! let token_request = http::Request::post(server.token_endpoint())
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(Bytes::from("grant_type=client_credentials&scope=system%2FPatient.rs"))?;
//! let token = client.execute(token_request).await?;
//! let token: serde_json::Value = serde_json::from_slice(token.body())?;
//! assert_eq!(token["access_token"], "tok-1");
//!
//! // The protected read succeeds with it, and fails once it is revoked.
//! let read = || {
//!     http::Request::get(format!("{}/Patient/1", server.fhir_base()))
//!         .header("authorization", "Bearer tok-1")
//!         .body(Bytes::new())
//! };
//! assert_eq!(client.execute(read()?).await?.status(), 200);
//! server.revoke("tok-1");
//! let refused = client.execute(read()?).await?;
//! assert_eq!(refused.status(), 401);
//! assert!(refused.headers()["www-authenticate"]
//!     .to_str()?
//!     .contains("invalid_token"));
//!
//! // A hanging server meets the client's timeout.
//! let mut hang = http::Request::get(format!("{}/Patient/2", server.fhir_base()))
//!     .body(Bytes::new())?;
//! hang.extensions_mut().insert(RequestTimeout(Duration::from_millis(100)));
//! let e = client.execute(hang).await.unwrap_err();
//! assert_eq!(e.kind(), HttpErrorKind::Timeout);
//!
//! // Every request was recorded.
//! assert_eq!(server.token_requests(), 1);
//! assert_eq!(server.requests_to("/fhir/Patient/1").len(), 2);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! * `jwt` (default): [`TestServer::verify_client_assertions`], which checks `private_key_jwt`
//!   client assertions with `smart-fhir-jwt`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

#[cfg(feature = "jwt")]
mod assertion;
mod body;
mod record;
mod reply;
mod server;
mod tokens;

pub use record::RecordedRequest;
pub use reply::{Fault, Reply};
pub use server::{Route, TestServer};

/// Re-exported for [`TestServer::route`].
pub use http::Method;

/// What can go wrong setting up a [`TestServer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No port could be bound on `127.0.0.1`.
    #[error("cannot listen on 127.0.0.1")]
    Bind {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The key set given to [`TestServer::verify_client_assertions`] is not a usable JWKS.
    #[cfg(feature = "jwt")]
    #[error("the JWKS for checking client assertions is not usable")]
    InvalidJwks {
        /// Why.
        #[source]
        source: smart_fhir_jwt::JwtError,
    },
}
