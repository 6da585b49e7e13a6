//! Keys, client assertions (`private_key_jwt`) and JWS verification for SMART on FHIR.
//!
//! * [`PrivateKey`]: RSA (≥ 2048 bits) and EC P-256 / P-384 keys, loaded from PEM (PKCS#8,
//!   PKCS#1, SEC1), a private JWK or a JWKS, or generated; the public JWK / JWKS to register
//!   with a server (SC-2.1 – SC-2.8), with [`merge_jwks`] for key rotation.
//! * [`AssertionSigner`]: signs the client assertions of SMART's asymmetric client
//!   authentication and Backend Services (SC-2.9 – SC-2.13, P8, P11): a fresh `jti` on every
//!   call, `exp` at most five minutes ahead, `aud` exactly the token endpoint.
//! * [`Jwks`] and [`verify`]: signature verification of an `id_token` against an OpenID
//!   provider's keys, refusing `alg: none`, HMAC and header-supplied keys (P9).
//!
//! The JOSE work is done by `josekit` on OpenSSL; no `josekit` type appears in this API.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use smart_fhir_jwt::{verify, Algorithm, AssertionSigner, Jwks, KeySpec, PrivateKey};
//!
//! // Generate a P-384 key (or load one: `PrivateKey::from_bytes(&std::fs::read(path)?)`).
//! let key = PrivateKey::generate(KeySpec::for_algorithm(Algorithm::ES384))?;
//!
//! // Publish this at the JWKS URL registered with the server.
//! let jwks = key.public_jwks();
//! println!("{}", serde_json::to_string_pretty(&jwks).unwrap());
//! assert!(jwks["keys"][0].get("d").is_none());
//!
//! // Build the signer once; sign a fresh assertion for every token request.
//! let signer = AssertionSigner::new(&key, Algorithm::ES384)?;
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000); // from your Clock
//! let assertion = signer.sign(
//!     "my-client-id",
//!     "https://ehr.example/oauth2/token",
//!     Duration::from_secs(300),
//!     now,
//! )?;
//! // Send `client_assertion_type` = CLIENT_ASSERTION_TYPE and
//! // `client_assertion` = assertion.secret() to the token endpoint.
//!
//! // Anyone holding the public JWKS can verify it.
//! let verified = verify(assertion.secret(), &Jwks::from_value(&jwks)?, &[Algorithm::ES384])?;
//! assert_eq!(verified.issuer(), Some("my-client-id"));
//! assert!(verified.has_audience("https://ehr.example/oauth2/token"));
//! # Ok::<(), smart_fhir_jwt::JwtError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod algorithm;
mod assertion;
mod error;
mod jose;
mod jwk;
mod jwks;
mod key;
mod pem;
mod verify;

pub use algorithm::{Algorithm, KeySpec, KeyType};
pub use assertion::{
    AssertionSigner, AssertionSignerBuilder, ClientAssertion, CLIENT_ASSERTION_TYPE,
    MAX_ASSERTION_LIFETIME,
};
pub use error::JwtError;
pub use jwk::{jwk_thumbprint, merge_jwks};
pub use jwks::{Jwks, JwksKey, MAX_JWKS_BYTES, MAX_JWKS_KEYS};
pub use key::{PrivateKey, MIN_RSA_BITS};
pub use verify::{verify, VerifiedJws, MAX_TOKEN_BYTES};
