//! `id_token` verification (SC-4.33–SC-4.36, P9).
//!
//! [`IdTokenVerifier`] finds the issuer's keys through
//! `{issuer}/.well-known/openid-configuration` → `jwks_uri` → JWKS (SC-4.34) with
//! [`smart_fhir_discovery::JwksCache`], checks the signature with the key the token's `kid`
//! names ([`keys`]), then checks the claims as OpenID Connect Core §3.1.3.7 asks (SC-4.33) and
//! resolves `fhirUser` (SC-4.35, SC-4.36) ([`claims`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use smart_fhir_core::{Clock, FhirBaseUrl, IdToken, SharedClock, SharedHttpClient, UrlError};
use smart_fhir_discovery::{Issuer, JwksCache, KeyDiscoveryError};
use smart_fhir_jwt::JwtError;
use url::Url;

pub(crate) mod claims;
mod keys;

#[cfg(test)]
mod tests;

pub use claims::FHIR_USER_RESOURCE_TYPES;
pub use keys::ID_TOKEN_ALGORITHMS;
pub use smart_fhir_discovery::{
    KeyDocument, KeyFetchError, DEFAULT_JWKS_REFETCH_INTERVAL, DEFAULT_JWKS_TTL, KEY_FETCH_TIMEOUT,
    MAX_JWKS_TTL, MAX_OPENID_CONFIGURATION_BYTES, MIN_JWKS_TTL,
};

/// The clock skew allowed on `exp`, `iat` and `nbf`, by default.
pub const DEFAULT_ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// Why an `id_token` was refused. No variant carries the token's text or the expected nonce.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// The expected issuer is not an acceptable URL (https, or http to a loopback host when the
    /// FHIR base allows it; no query, no fragment).
    #[error("the expected issuer is not an acceptable URL")]
    IssuerUrl(#[source] UrlError),
    /// The issuer's OpenID configuration or JWKS could not be obtained (SC-4.34).
    #[error("cannot get the issuer's {document} from {url}")]
    KeyFetch {
        /// Which document.
        document: KeyDocument,
        /// Its URL, without query.
        url: String,
        /// What went wrong.
        #[source]
        source: KeyFetchError,
    },
    /// The token is not a well-formed compact JWS, or a claim has the wrong type.
    #[error("malformed id_token: {reason}")]
    Malformed {
        /// What is wrong (never the token's text).
        reason: String,
    },
    /// The signature could not be verified: a disallowed algorithm (`none`, HMAC, P9), a key
    /// that does not fit, or a signature that does not match.
    #[error("the id_token's signature cannot be verified")]
    Signature(#[source] JwtError),
    /// The token's `kid` is not in the issuer's JWKS, even after the JWKS was refetched (or the
    /// refetch was skipped because one was made less than the refetch interval ago).
    #[error("the issuer's JWKS has no key with kid `{kid}`")]
    UnknownKey {
        /// The token's `kid`, shortened and stripped of control characters.
        kid: String,
    },
    /// `iss` is not exactly the expected issuer (SC-4.33).
    #[error("the id_token's issuer is {}, expected {expected}", got.as_deref().map_or("missing".to_owned(), |g| format!("`{g}`")))]
    Issuer {
        /// The expected issuer.
        expected: String,
        /// The token's `iss`, bounded and printable, if it had a string one.
        got: Option<String>,
    },
    /// `aud` does not contain the client id (SC-4.33).
    #[error("the id_token's audience does not include the client id `{client_id}`")]
    Audience {
        /// The client id.
        client_id: String,
    },
    /// The token has several audiences and no `azp`, or an `azp` other than the client id
    /// (SC-4.33).
    #[error("{}", match got { Some(g) => format!("the id_token's azp is `{g}`, not the client id"), None => "the id_token has several audiences and no azp".to_owned() })]
    Azp {
        /// The token's `azp`, bounded and printable, if present.
        got: Option<String>,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("the id_token has expired")]
    Expired {
        /// The token's `exp`.
        expired_at: SystemTime,
    },
    /// `iat` lies in the future (beyond the leeway).
    #[error("the id_token was issued in the future (iat); check the clocks")]
    IssuedInFuture,
    /// `nbf` lies in the future (beyond the leeway).
    #[error("the id_token is not valid yet (nbf)")]
    NotYetValid,
    /// The nonce sent with the authorization request is missing from the token or differs
    /// (SC-4.33).
    #[error("{}", if *missing { "the id_token has no nonce" } else { "the id_token's nonce does not match" })]
    Nonce {
        /// Whether the claim was absent (rather than different).
        missing: bool,
    },
    /// `fhirUser` is not a URL of a Patient, Practitioner, PractitionerRole, RelatedPerson or
    /// Person, absolute or relative to the FHIR base (SC-4.35).
    #[error("the id_token's fhirUser is unusable: {reason}")]
    FhirUser {
        /// Why (never the value itself: it names a person's record).
        reason: &'static str,
    },
}

impl IdTokenError {
    /// Whether the same verification could succeed later: the issuer's keys could not be
    /// fetched because of a transient transport failure, a 5xx or a 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::KeyFetch { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

impl From<KeyDiscoveryError> for IdTokenError {
    fn from(e: KeyDiscoveryError) -> Self {
        Self::KeyFetch {
            document: e.document,
            url: e.url,
            source: e.source,
        }
    }
}

/// What an `id_token` must say: who issued it, for which client, with which nonce, and the FHIR
/// base against which a relative `fhirUser` resolves.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct IdTokenExpectations<'a> {
    /// The authorization server's issuer (from the SMART configuration), compared exactly with
    /// `iss`; the keys are found under `{issuer}/.well-known/openid-configuration`.
    pub issuer: &'a str,
    /// This client's id, which `aud` must contain.
    pub client_id: &'a str,
    /// The nonce sent with the authorization request, if one was: the token must carry it.
    pub nonce: Option<&'a str>,
    /// The FHIR base: a relative `fhirUser` resolves against it, and its insecure-HTTP policy
    /// applies to the issuer and `jwks_uri` URLs.
    pub fhir_base: &'a FhirBaseUrl,
}

impl<'a> IdTokenExpectations<'a> {
    /// Expectations for a token from `issuer` for `client_id`, with the `nonce` sent in the
    /// authorization request (if any), in a launch against `fhir_base`.
    pub fn new(
        issuer: &'a str,
        client_id: &'a str,
        nonce: Option<&'a str>,
        fhir_base: &'a FhirBaseUrl,
    ) -> Self {
        Self {
            issuer,
            client_id,
            nonce,
            fhir_base,
        }
    }
}

impl fmt::Debug for IdTokenExpectations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenExpectations")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("nonce", &self.nonce.map(|_| "[redacted]"))
            .field("fhir_base", &self.fhir_base)
            .finish()
    }
}

/// The checked claims of a verified `id_token`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// `iss`, equal to the expected issuer.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`, as a list (it contains the client id).
    pub audiences: Vec<String>,
    /// `exp`.
    pub expires_at: SystemTime,
    /// `iat`.
    pub issued_at: SystemTime,
    /// `fhirUser` (or the v1 `profile` alias), resolved to an absolute URL (SC-4.35, SC-4.36).
    pub fhir_user: Option<Url>,
    /// Every claim of the token, as sent.
    pub claims: Map<String, Value>,
}

impl IdTokenClaims {
    /// The resource type `fhirUser` names (`Patient`, `Practitioner`, …).
    pub fn fhir_user_resource_type(&self) -> Option<&str> {
        self.fhir_user
            .as_ref()
            .and_then(claims::resource_reference)
            .map(|(t, _)| t)
    }

    /// The logical id of the resource `fhirUser` names.
    pub fn fhir_user_id(&self) -> Option<&str> {
        self.fhir_user
            .as_ref()
            .and_then(claims::resource_reference)
            .map(|(_, id)| id)
    }
}

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
///   time).
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
        Self {
            keys: JwksCache::new(http, clock.clone()),
            clock,
            leeway: DEFAULT_ID_TOKEN_LEEWAY,
        }
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
        claims::check_claims(verified, expected, self.clock.now(), self.leeway)
    }
}
