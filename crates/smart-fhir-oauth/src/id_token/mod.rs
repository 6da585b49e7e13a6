//! `id_token` verification (SC-4.33–SC-4.36, P9).
//!
//! [`IdTokenVerifier`] finds the issuer's keys through
//! `{issuer}/.well-known/openid-configuration` → `jwks_uri` → JWKS (SC-4.34) with
//! [`smart_fhir_discovery::JwksCache`], checks the signature with the key the token's `kid`
//! names ([`keys`]), then checks the claims as OpenID Connect Core §3.1.3.7 asks (SC-4.33) and
//! resolves `fhirUser` (SC-4.35, SC-4.36) ([`claims`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use smart_fhir_core::{Clock, IdToken, ServerClocks, SharedClock, SharedHttpClient};
use smart_fhir_discovery::{Issuer, JwksCache};

pub(crate) mod claims;
mod error;
mod keys;

#[cfg(test)]
mod tests;

pub use claims::{IdTokenClaims, IdTokenExpectations, FHIR_USER_RESOURCE_TYPES};
pub use error::IdTokenError;
pub use keys::ID_TOKEN_ALGORITHMS;
pub use smart_fhir_discovery::{
    KeyDocument, KeyFetchError, DEFAULT_JWKS_REFETCH_INTERVAL, DEFAULT_JWKS_TTL, KEY_FETCH_TIMEOUT,
    MAX_JWKS_TTL, MAX_OPENID_CONFIGURATION_BYTES, MIN_JWKS_TTL,
};

/// The clock skew allowed on `exp`, `iat` and `nbf`, by default.
pub const DEFAULT_ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// Verifies `id_token`s (SC-4.33–SC-4.36, P9).
///
/// * Keys: `{issuer}/.well-known/openid-configuration` → `jwks_uri` → JWKS, each URL checked
///   against the FHIR base's insecure-HTTP policy, bodies bounded, redirects not followed. The
///   keys are cached per issuer for the JWKS response's `max-age` (default
///   [`DEFAULT_JWKS_TTL`], kept between [`MIN_JWKS_TTL`] and [`MAX_JWKS_TTL`]), by the injected
///   clock. Concurrent fetches for one issuer are made once.
/// * A token whose `kid` is not in the cached JWKS makes the verifier refetch the JWKS once and
///   retry; such refetches happen at most once per [`DEFAULT_JWKS_REFETCH_INTERVAL`] per issuer.
/// * Signature: [`ID_TOKEN_ALGORITHMS`] only; `jku`, `x5u`, `jwk` and `x5c` headers are ignored
///   (P9).
/// * Claims: `iss` exactly the expected issuer; `aud` contains the client id; with several
///   audiences, `azp` is required, and whenever present it must be the client id; `exp` in the
///   future and `iat` (required) and `nbf` not in the future, with [`DEFAULT_ID_TOKEN_LEEWAY`];
///   `sub` present; the nonce, when one was sent, present and equal (compared in constant
///   time). Time is the issuer's: the local clock corrected by the offset its `Date` headers
///   showed (token, OpenID configuration and JWKS responses from the issuer's origin; see
///   [`ServerClocks`]), unless [`clock_skew_correction`](Self::clock_skew_correction) is off.
/// * `fhirUser` must be the URL of a Patient, Practitioner, PractitionerRole, RelatedPerson or
///   Person, absolute (https, or http to loopback where the FHIR base allows it) or relative to
///   the FHIR base (`Type/id`, optionally `/_history/vid`); anything else refuses the token,
///   because an app that cannot tell who the user is must not proceed as if it could. When
///   `fhirUser` is absent, the v1 `profile` claim is read the same way (SC-4.36); but since
///   OpenID Connect also defines `profile` as the user's profile *web page*, a `profile` that
///   is not a FHIR resource URL is ignored rather than refused.
///
/// Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct IdTokenVerifier {
    keys: JwksCache,
    clock: SharedClock,
    /// The issuers' clock offsets, when correction is on.
    server_clocks: Option<Arc<ServerClocks>>,
    leeway: Duration,
}

impl fmt::Debug for IdTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenVerifier")
            .field("leeway", &self.leeway)
            .field("default_ttl", &self.keys.default_ttl_value())
            .field("refetch_interval", &self.keys.refetch_interval_value())
            .field("cached_issuers", &self.keys.cached_issuers())
            .finish_non_exhaustive()
    }
}

impl IdTokenVerifier {
    /// A verifier that fetches keys through `http` and reads time from `clock`.
    pub fn new(http: SharedHttpClient, clock: SharedClock) -> Self {
        let keys = JwksCache::new(http, clock.clone());
        Self {
            server_clocks: Some(Arc::clone(keys.server_clocks())),
            keys,
            clock,
            leeway: DEFAULT_ID_TOKEN_LEEWAY,
        }
    }

    /// Whether `exp`, `iat` and `nbf` are compared with the issuer's time as its `Date`
    /// headers show it (default on), or with the local clock alone. The offsets are those of
    /// the transport and clock ([`ServerClocks::for_transport`]), which the token exchange of
    /// the same transport and clock feeds too.
    pub fn clock_skew_correction(mut self, on: bool) -> Self {
        self.server_clocks = on.then(|| Arc::clone(self.keys.server_clocks()));
        self
    }

    /// The clock skew allowed on `exp`, `iat` and `nbf` (default [`DEFAULT_ID_TOKEN_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How long keys are kept when the JWKS response has no `max-age` (default
    /// [`DEFAULT_JWKS_TTL`]; kept between [`MIN_JWKS_TTL`] and [`MAX_JWKS_TTL`]).
    pub fn jwks_ttl(mut self, ttl: Duration) -> Self {
        self.keys = self.keys.default_ttl(ttl);
        self
    }

    /// The shortest interval between two refetches caused by an unknown `kid`, per issuer
    /// (default [`DEFAULT_JWKS_REFETCH_INTERVAL`]).
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.keys = self.keys.refetch_interval(interval);
        self
    }

    /// Forgets the cached keys of `issuer`.
    pub fn invalidate(&self, issuer: &str) {
        self.keys.invalidate(issuer);
    }

    /// Verifies `id_token` and checks its claims against `expected` (SC-4.33–SC-4.36, P9).
    ///
    /// Network requests are made only when the issuer's keys are not cached or the token names
    /// a key the cache does not hold; a token that is malformed or uses a refused algorithm is
    /// refused before any request.
    pub async fn verify(
        &self,
        id_token: &IdToken,
        expected: &IdTokenExpectations<'_>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let token = id_token.secret();
        keys::precheck(token)?;
        let issuer = Issuer::parse(expected.issuer, expected.fhir_base.insecure_http())
            .map_err(IdTokenError::IssuerUrl)?;
        let verified = keys::verify_signature(&self.keys, &issuer, token).await?;
        let now = match &self.server_clocks {
            Some(clocks) => clocks.now_at(issuer.url()),
            None => self.clock.now(),
        };
        claims::check_claims(verified, expected, now, self.leeway)
    }
}
