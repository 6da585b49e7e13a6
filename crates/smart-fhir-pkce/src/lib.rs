//! PKCE (S256), `state` and `nonce` for the SMART App Launch authorization-code flow.
//!
//! * [`PkceVerifier`]: a code verifier of 43 to 128 unreserved characters (RFC 7636 §4.1,
//!   SC-4.8), generated from 32 bytes of the operating system's secure random number generator by
//!   default. It wraps [`smart_fhir_core::PkceCodeVerifier`]: redacted `Debug`, zeroized, not
//!   `Clone`.
//! * [`PkceChallenge`]: `BASE64URL(SHA-256(verifier))` without padding. The method is always
//!   `S256`; there is no `plain` method in this API (SC-1.11, SC-4.8, P4).
//! * [`Pkce`]: a verifier with its challenge, one per flow.
//! * [`State`] and [`Nonce`]: 256 random bits each, well above the 122 bits SMART requires for
//!   `state` (SC-4.6, P3), with a constant-time [`State::verify`] for the callback check
//!   (SC-4.13).
//!
//! A failure of the operating system's generator is reported as [`PkceError::Random`], never as a
//! panic. The crate does no I/O beyond asking the operating system for random bytes; keeping the
//! values server-side, bound to the session and used once is the caller's job (P3).
//!
//! ```
//! use smart_fhir_pkce::{Nonce, Pkce, PkceVerifier, State};
//!
//! // Starting a flow: a fresh verifier, state and nonce, kept in the server-side session.
//! let pkce = Pkce::new()?;
//! let state = State::generate()?;
//! let nonce = Nonce::generate()?;
//! let authorize_query = format!(
//!     "code_challenge={}&code_challenge_method={}&state={}&nonce={}",
//!     pkce.challenge().as_str(),
//!     pkce.challenge().method(),
//!     state.as_str(),
//!     nonce.as_str(),
//! );
//! assert!(authorize_query.contains("code_challenge_method=S256"));
//!
//! // The callback: check the returned state in constant time before using the code.
//! let returned_state = state.as_str().to_owned();
//! assert!(state.verify(&returned_state));
//! assert!(!state.verify("forged"));
//!
//! // The token request: send the verifier.
//! let (verifier, _challenge) = pkce.into_parts();
//! let code_verifier: smart_fhir_core::PkceCodeVerifier = verifier.into_code_verifier();
//! assert_eq!(code_verifier.secret().len(), 43);
//!
//! // A verifier loaded from a store is validated; RFC 7636 appendix B:
//! let verifier = PkceVerifier::from_string("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")?;
//! assert_eq!(verifier.challenge().as_str(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
//! assert!(PkceVerifier::from_string("too-short").is_err());
//! # Ok::<(), smart_fhir_pkce::PkceError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod error;
mod random;
mod token;
mod verifier;

pub use error::{PkceError, RandomError, ValueKind};
pub use token::{Nonce, State};
pub use verifier::{Pkce, PkceChallenge, PkceVerifier};
