//! Where `smart-fhir` keeps tokens and sign-in state, and how the FHIR client asks for a token.
//!
//! * [`StoredToken`]: a token response with absolute times, launch context and a JSON form for
//!   stores that persist. Its `Debug` prints no secret.
//! * [`TokenStore`]: tokens by caller-chosen key, a compare-and-delete for rejected tokens, and
//!   leases so that processes sharing a store renew a token once (P12).
//!   [`MemoryTokenStore`] implements it in memory; [`SessionTokenStore`] on any
//!   [`SessionStore`] (over `FileSessionStore`: tokens shared by the processes of one machine).
//! * [`SessionStore`]: per-session JSON values with a time-to-live, a one-time
//!   [`take`](SessionStore::take) for `state` (P3) and a
//!   [`compare_and_swap`](SessionStore::compare_and_swap) for refresh-token rotation (P12).
//!   [`MemorySessionStore`] implements it in memory, `FileSessionStore` (feature `file`) in a
//!   file only its owner can read. Both pass one contract test suite, `contract` (feature
//!   `contract-tests`), which a store in another crate runs too.
//! * The lease protocol ([`acquire_or_wait`], [`LeaseGuard`]): one implementation of acquire
//!   with expiry, release by the holder only, bounded wait with backoff and takeover of a dead
//!   holder's lease, over a [`LeaseBackend`]: [`TokenStoreLease`] (Backend Services token
//!   renewal) or [`SessionStoreLease`] (App Launch session refresh).
//! * [`StoredToken::launch_context`] keeps the launch context of an App Launch token response
//!   (`patient`, `encounter`, `fhirContext`, ...) as the server sent it; `smart-fhir-oauth`
//!   reads it into a typed `LaunchContext`.
//!
//! The traits are object safe and held as `Arc<dyn …>` through [`SharedTokenStore`] and
//! [`SharedSessionStore`]. A store failure converts into a
//! [`smart_fhir_core::ProviderError`] of kind `Unavailable` for the token sources built on a store. Stores on other backends (Redis)
//! live in their own crates. Time comes from an injected [`smart_fhir_core::Clock`].
//!
//! ```
//! use std::time::Duration;
//! use smart_fhir_core::{AccessToken, Clock, FixedClock, SharedClock};
//! use smart_fhir_store::{MemoryTokenStore, SharedTokenStore, StoredToken, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), smart_fhir_store::StoreError> {
//! let clock = FixedClock::at_unix(1_700_000_000);
//! let store = SharedTokenStore::new(
//!     MemoryTokenStore::new().with_clock(SharedClock::new(clock.clone())),
//! );
//! let key = "ehr.example|my-client|system/Patient.rs";
//!
//! // One task wins the lease and renews; the others wait and read the store again.
//! let lease = store.try_acquire_lease(key, Duration::from_secs(30)).await?.expect("free");
//! assert!(store.try_acquire_lease(key, Duration::from_secs(30)).await?.is_none());
//!
//! let now = clock.now();
//! let token = StoredToken::new(AccessToken::new("eyJ..."), now, now + Duration::from_secs(300))
//!     .with_scope("system/Patient.rs");
//! store.set(key, token).await?;
//! store.release_lease(lease).await?;
//!
//! let cached = store.get(key).await?.expect("stored");
//! assert!(!cached.expires_within(clock.now(), Duration::from_secs(60)));
//!
//! // The server answered 401 with this token: drop it, unless a newer one replaced it.
//! assert!(store.delete_if_access_token(key, &cached.access_token).await?);
//! assert!(store.get(key).await?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! None is on by default.
//!
//! * `file`: `FileSessionStore`, a [`SessionStore`] in a JSON file of mode 0600 with a lock file
//!   between processes, for a session that outlives the process that signed in (the
//!   `smart-fhir` command-line tool's saved sign-in). Adds `tokio` (`sync`, `time`).
//! * `contract-tests`: the module `contract`, the [`SessionStore`] contract as test functions and
//!   the `session_store_contract_tests!` macro, for a store in another crate. Adds `tokio`
//!   (`rt-multi-thread`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
mod error;
#[cfg(feature = "file")]
mod file;
mod lease;
mod session;
mod session_token_store;
mod token;
mod token_store;

pub use error::{BoxError, StoreError};
#[cfg(feature = "file")]
pub use file::FileSessionStore;
pub use lease::{
    acquire_or_wait, Acquired, LeaseBackend, LeaseGuard, LeaseOptions, SessionStoreLease,
    TokenStoreLease, FAST_POLLING, FIRST_BACKOFF, MAX_BACKOFF,
};
pub use session::{
    MemorySessionStore, SessionStore, SharedSessionStore, DEFAULT_MAX_SESSION_ENTRIES,
};
pub use session_token_store::{SessionTokenStore, LEASES_SESSION_ID, TOKENS_SESSION_ID};
pub use token::StoredToken;
pub use token_store::{Lease, MemoryTokenStore, SharedTokenStore, TokenStore};
