//! `id_token` verification (SC-4.33–SC-4.36, P9).
//!
//! [`IdTokenVerifier`] finds the issuer's keys through
//! `{issuer}/.well-known/openid-configuration` → `jwks_uri` → JWKS (SC-4.34), caches them per
//! issuer, checks the signature with the key named by the token's `kid`, then checks the claims
//! as OpenID Connect Core §3.1.3.7 asks (SC-4.33) and resolves `fhirUser` (SC-4.35, SC-4.36).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::ACCEPT;
use serde_json::{Map, Value};
use smart_fhir_core::{
    check_endpoint_url, Clock, FhirBaseUrl, HttpClient, HttpError, IdToken, InsecureHttp,
    MaxResponseBytes, RequestTimeout, SharedClock, SharedHttpClient, UrlError,
};
use smart_fhir_jwt::{verify, Algorithm, Jwks, JwtError, MAX_JWKS_BYTES};
use subtle::ConstantTimeEq;
use url::Url;

use crate::error::excerpt;

/// The signature algorithms accepted on an `id_token`: RS256 (which SMART requires, SC-4.34),
/// RS384, PS384, ES256 and ES384. `none` and the HMAC algorithms are never accepted (P9).
pub const ID_TOKEN_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// The clock skew allowed on `exp`, `iat` and `nbf`, by default.
pub const DEFAULT_ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// How long an issuer's keys are kept when the JWKS response has no `Cache-Control: max-age`.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(60 * 60);

/// The shortest time an issuer's keys are kept, whatever the response's `Cache-Control` says.
///
/// Keys are public, so keeping them for a minute despite `no-store` or `max-age=0` discloses
/// nothing, and it spares the issuer a fetch per login during a burst.
pub const MIN_JWKS_TTL: Duration = Duration::from_secs(60);

/// The longest time an issuer's keys are kept, whatever `max-age` says.
pub const MAX_JWKS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest interval between two JWKS refetches caused by an unknown `kid`, per issuer, by
/// default: a flood of tokens with made-up `kid`s costs the issuer at most one request a minute.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The largest OpenID configuration document read.
pub const MAX_OPENID_CONFIGURATION_BYTES: usize = 256 * 1024;

/// How long a request for the OpenID configuration or the JWKS may take.
pub const KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The resource types a `fhirUser` may name (SC-4.35).
pub const FHIR_USER_RESOURCE_TYPES: [&str; 5] = [
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
    "Person",
];

/// How many issuers' keys are remembered; beyond that, idle entries are dropped.
const MAX_CACHED_ISSUERS: usize = 64;

/// Which document was being fetched when key discovery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyDocument {
    /// `{issuer}/.well-known/openid-configuration`.
    OpenidConfiguration,
    /// The JWKS at the configuration's `jwks_uri`.
    Jwks,
}

impl fmt::Display for KeyDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenidConfiguration => "OpenID configuration",
            Self::Jwks => "JWKS",
        })
    }
}

/// Why the OpenID configuration or the JWKS could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFetchError {
    /// The request could not be built.
    #[error("cannot build the request: {reason}")]
    Request {
        /// Why.
        reason: String,
    },
    /// The transport failed.
    #[error("the request failed")]
    Http(#[source] HttpError),
    /// The server answered with a status other than 2xx (redirects are not followed).
    #[error("HTTP {status}: {excerpt}")]
    Status {
        /// The status code.
        status: u16,
        /// A bounded, printable excerpt of the body.
        excerpt: String,
    },
    /// The document is not what it should be.
    #[error("{reason}")]
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration's `jwks_uri` was refused (not https, or plain http where not allowed).
    #[error("the jwks_uri was refused")]
    JwksUri(#[source] UrlError),
}

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
            Self::KeyFetch { source, .. } => match source {
                KeyFetchError::Http(e) => e.is_transient(),
                KeyFetchError::Status { status, .. } => *status >= 500 || *status == 429,
                _ => false,
            },
            _ => false,
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
            .and_then(resource_reference)
            .map(|(t, _)| t)
    }

    /// The logical id of the resource `fhirUser` names.
    pub fn fhir_user_id(&self) -> Option<&str> {
        self.fhir_user
            .as_ref()
            .and_then(resource_reference)
            .map(|(_, id)| id)
    }
}

/// One issuer's keys and where they come from.
#[derive(Default)]
struct IssuerKeys {
    jwks_uri: Option<Url>,
    jwks: Option<Arc<Jwks>>,
    expires_at: Option<SystemTime>,
    last_forced_refetch: Option<SystemTime>,
}

impl IssuerKeys {
    fn fresh(&self, now: SystemTime) -> Option<&Arc<Jwks>> {
        match (&self.jwks, self.expires_at) {
            (Some(jwks), Some(expires_at)) if now < expires_at => Some(jwks),
            _ => None,
        }
    }
}

/// One slot per issuer; its async lock makes concurrent fetches for one issuer a single fetch.
type Slot = Arc<tokio::sync::Mutex<IssuerKeys>>;
type SlotKey = (String, InsecureHttp);

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
    http: SharedHttpClient,
    clock: SharedClock,
    leeway: Duration,
    default_ttl: Duration,
    refetch_interval: Duration,
    cache: Arc<Mutex<HashMap<SlotKey, Slot>>>,
}

impl fmt::Debug for IdTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenVerifier")
            .field("leeway", &self.leeway)
            .field("default_ttl", &self.default_ttl)
            .field("refetch_interval", &self.refetch_interval)
            .field("cached_issuers", &self.lock_cache().len())
            .finish_non_exhaustive()
    }
}

impl IdTokenVerifier {
    /// A verifier that fetches keys through `http` and reads time from `clock`.
    pub fn new(http: SharedHttpClient, clock: SharedClock) -> Self {
        Self {
            http,
            clock,
            leeway: DEFAULT_ID_TOKEN_LEEWAY,
            default_ttl: DEFAULT_JWKS_TTL,
            refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            cache: Arc::default(),
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
        self.default_ttl = ttl.clamp(MIN_JWKS_TTL, MAX_JWKS_TTL);
        self
    }

    /// The shortest interval between two refetches caused by an unknown `kid`, per issuer
    /// (default [`DEFAULT_JWKS_REFETCH_INTERVAL`]).
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Forgets the cached keys of `issuer`.
    pub fn invalidate(&self, issuer: &str) {
        self.lock_cache().retain(|(iss, _), _| iss != issuer);
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
        precheck(token)?;
        let insecure = expected.fhir_base.insecure_http();
        let issuer_url = issuer_url(expected.issuer, insecure)?;
        let slot = self.slot(expected.issuer, insecure);
        let target = FetchTarget {
            issuer: expected.issuer,
            issuer_url: &issuer_url,
            insecure,
        };
        let jwks = self.current_keys(&slot, &target).await?;
        let verified = match verify(token, &jwks, &ID_TOKEN_ALGORITHMS) {
            Ok(verified) => verified,
            Err(JwtError::UnknownKid { kid }) => {
                match self.refetch_keys(&slot, &target, &jwks).await? {
                    Some(fresh) => {
                        verify(token, &fresh, &ID_TOKEN_ALGORITHMS).map_err(signature_error)?
                    }
                    None => return Err(IdTokenError::UnknownKey { kid }),
                }
            }
            Err(e) => return Err(signature_error(e)),
        };
        check_claims(
            verified.into_claims(),
            expected,
            self.clock.now(),
            self.leeway,
        )
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, Slot>> {
        // Every operation on the map is a single insert, lookup or removal, so it stays
        // consistent whatever panicked while holding the lock.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, issuer: &str, insecure: InsecureHttp) -> Slot {
        let mut cache = self.lock_cache();
        let key = (issuer.to_owned(), insecure);
        if let Some(slot) = cache.get(&key) {
            return Arc::clone(slot);
        }
        if cache.len() >= MAX_CACHED_ISSUERS {
            // Drop the idle entries (held by the map alone, lock free) that are expired; if the
            // map is still full, every idle entry. Issuers are few (an allow-list), so this is
            // a guard against growth rather than a policy.
            let now = self.clock.now();
            let idle_expired = |slot: &Slot| {
                Arc::strong_count(slot) == 1
                    && slot.try_lock().is_ok_and(|keys| keys.fresh(now).is_none())
            };
            cache.retain(|_, slot| !idle_expired(slot));
            if cache.len() >= MAX_CACHED_ISSUERS {
                cache.retain(|_, slot| Arc::strong_count(slot) > 1);
            }
        }
        let slot = Slot::default();
        cache.insert(key, Arc::clone(&slot));
        slot
    }

    /// The issuer's cached keys, or freshly fetched ones.
    async fn current_keys(
        &self,
        slot: &Slot,
        target: &FetchTarget<'_>,
    ) -> Result<Arc<Jwks>, IdTokenError> {
        let mut keys = slot.lock().await;
        if let Some(jwks) = keys.fresh(self.clock.now()) {
            return Ok(Arc::clone(jwks));
        }
        let jwks_uri = self.fetch_jwks_uri(target).await?;
        let jwks = self.fetch_jwks(&jwks_uri, &mut keys).await?;
        keys.jwks_uri = Some(jwks_uri);
        Ok(jwks)
    }

    /// Refetches the JWKS after `stale` lacked a token's `kid`: `None` when a refetch was made
    /// less than the refetch interval ago (unless it brought keys other than `stale`, which are
    /// then returned).
    async fn refetch_keys(
        &self,
        slot: &Slot,
        target: &FetchTarget<'_>,
        stale: &Arc<Jwks>,
    ) -> Result<Option<Arc<Jwks>>, IdTokenError> {
        let mut keys = slot.lock().await;
        let now = self.clock.now();
        if let Some(current) = keys.fresh(now) {
            if !Arc::ptr_eq(current, stale) {
                // Another caller refetched while this one waited for the lock.
                return Ok(Some(Arc::clone(current)));
            }
        }
        if let Some(last) = keys.last_forced_refetch {
            // A clock that went backwards counts as the interval having passed.
            if now
                .duration_since(last)
                .is_ok_and(|elapsed| elapsed < self.refetch_interval)
            {
                return Ok(None);
            }
        }
        // Recorded before the fetch, so that failed refetches are rate-limited too.
        keys.last_forced_refetch = Some(now);
        let jwks_uri = match keys.jwks_uri.clone() {
            Some(uri) => uri,
            None => self.fetch_jwks_uri(target).await?,
        };
        let jwks = self.fetch_jwks(&jwks_uri, &mut keys).await?;
        keys.jwks_uri = Some(jwks_uri);
        Ok(Some(jwks))
    }

    /// Fetches the OpenID configuration and returns its checked `jwks_uri`.
    async fn fetch_jwks_uri(&self, target: &FetchTarget<'_>) -> Result<Url, IdTokenError> {
        let url = openid_configuration_url(target.issuer_url);
        let fail = |source| IdTokenError::KeyFetch {
            document: KeyDocument::OpenidConfiguration,
            url: display_url(&url),
            source,
        };
        let (body, _) = self
            .get(&url, MAX_OPENID_CONFIGURATION_BYTES)
            .await
            .map_err(fail)?;
        parse_openid_configuration(&body, target.issuer, target.insecure).map_err(fail)
    }

    /// Fetches the JWKS at `jwks_uri` and stores it in `keys` with its lifetime.
    async fn fetch_jwks(
        &self,
        jwks_uri: &Url,
        keys: &mut IssuerKeys,
    ) -> Result<Arc<Jwks>, IdTokenError> {
        let fail = |source| IdTokenError::KeyFetch {
            document: KeyDocument::Jwks,
            url: display_url(jwks_uri),
            source,
        };
        let (body, headers) = self.get(jwks_uri, MAX_JWKS_BYTES).await.map_err(fail)?;
        let jwks = Jwks::from_slice(&body).map_err(|e| {
            fail(KeyFetchError::Invalid {
                reason: e.to_string(),
            })
        })?;
        let jwks = Arc::new(jwks);
        let ttl = jwks_lifetime(&headers, self.default_ttl);
        let now = self.clock.now();
        keys.jwks = Some(Arc::clone(&jwks));
        keys.expires_at = Some(now.checked_add(ttl).unwrap_or(now));
        Ok(jwks)
    }

    async fn get(&self, url: &Url, max: usize) -> Result<(Bytes, http::HeaderMap), KeyFetchError> {
        let request = json_get(url, max)?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(KeyFetchError::Http)?;
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            return Err(KeyFetchError::Status {
                status: parts.status.as_u16(),
                excerpt: excerpt(&body),
            });
        }
        if body.len() > max {
            return Err(KeyFetchError::Invalid {
                reason: format!("the body is larger than {max} bytes"),
            });
        }
        Ok((body, parts.headers))
    }
}

/// The issuer and how to reach it.
struct FetchTarget<'a> {
    issuer: &'a str,
    issuer_url: &'a Url,
    insecure: InsecureHttp,
}

/// Refuses, without any request, a token that no key could make acceptable: malformed, too
/// large, with a refused algorithm or a `crit` header. Verifying against an empty key set stops
/// exactly at the key lookup for every other token.
fn precheck(token: &str) -> Result<(), IdTokenError> {
    match verify(token, &Jwks::default(), &ID_TOKEN_ALGORITHMS) {
        Err(
            JwtError::UnknownKid { .. }
            | JwtError::NoMatchingKey { .. }
            | JwtError::AmbiguousVerificationKey
            | JwtError::KeyAlgorithmMismatch { .. },
        )
        | Ok(_) => Ok(()),
        Err(e) => Err(signature_error(e)),
    }
}

fn signature_error(e: JwtError) -> IdTokenError {
    match e {
        JwtError::UnknownKid { kid } => IdTokenError::UnknownKey { kid },
        JwtError::MalformedToken { reason } => IdTokenError::Malformed {
            reason: reason.to_owned(),
        },
        e @ JwtError::TokenTooLarge { .. } => IdTokenError::Malformed {
            reason: e.to_string(),
        },
        other => IdTokenError::Signature(other),
    }
}

/// Checks the expected issuer as a URL: https (or http to loopback where allowed), no query.
fn issuer_url(issuer: &str, insecure: InsecureHttp) -> Result<Url, IdTokenError> {
    let url = Url::parse(issuer).map_err(|e| {
        IdTokenError::IssuerUrl(UrlError::Invalid {
            what: "issuer".to_owned(),
            reason: e.to_string(),
        })
    })?;
    check_endpoint_url(&url, "issuer", insecure).map_err(IdTokenError::IssuerUrl)?;
    if url.query().is_some() {
        return Err(IdTokenError::IssuerUrl(UrlError::Forbidden {
            what: "issuer".to_owned(),
            part: "a query string",
        }));
    }
    Ok(url)
}

/// `{issuer}/.well-known/openid-configuration`, without a doubled `/` (OpenID Connect
/// Discovery §4).
fn openid_configuration_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = format!(
        "{}/.well-known/openid-configuration",
        issuer.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url
}

fn json_get(url: &Url, max: usize) -> Result<http::Request<Bytes>, KeyFetchError> {
    let mut request = http::Request::builder()
        .method(http::Method::GET)
        .uri(url.as_str())
        .header(ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| KeyFetchError::Request {
            reason: e.to_string(),
        })?;
    request.extensions_mut().insert(MaxResponseBytes(max));
    request
        .extensions_mut()
        .insert(RequestTimeout(KEY_FETCH_TIMEOUT));
    Ok(request)
}

/// Reads the `jwks_uri` of an OpenID configuration whose `issuer` must be exactly the expected
/// one (OpenID Connect Discovery §4.3).
fn parse_openid_configuration(
    body: &[u8],
    issuer: &str,
    insecure: InsecureHttp,
) -> Result<Url, KeyFetchError> {
    let invalid = |reason: String| KeyFetchError::Invalid { reason };
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| invalid(format!("not valid JSON: {}", excerpt(body))))?;
    let doc = doc
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".to_owned()))?;
    match doc.get("issuer") {
        Some(Value::String(got)) if got == issuer => {}
        Some(Value::String(got)) => {
            return Err(invalid(format!(
                "its issuer `{}` is not the expected `{issuer}`",
                excerpt(got.as_bytes())
            )))
        }
        _ => return Err(invalid("it has no issuer".to_owned())),
    }
    let jwks_uri = match doc.get("jwks_uri") {
        Some(Value::String(uri)) => uri,
        _ => return Err(invalid("it has no jwks_uri".to_owned())),
    };
    let url = Url::parse(jwks_uri).map_err(|e| {
        KeyFetchError::JwksUri(UrlError::Invalid {
            what: "jwks_uri".to_owned(),
            reason: e.to_string(),
        })
    })?;
    check_endpoint_url(&url, "jwks_uri", insecure).map_err(KeyFetchError::JwksUri)?;
    Ok(url)
}

/// How long to keep a JWKS: its `Cache-Control: max-age` (header names compare
/// case-insensitively), else `default`; `no-store` and `no-cache` count as zero; always between
/// [`MIN_JWKS_TTL`] and [`MAX_JWKS_TTL`].
fn jwks_lifetime(headers: &http::HeaderMap, default: Duration) -> Duration {
    let mut max_age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return MIN_JWKS_TTL;
            }
            if name.eq_ignore_ascii_case("max-age") {
                if let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok()) {
                    max_age.get_or_insert(secs);
                }
            }
        }
    }
    max_age
        .map_or(default, Duration::from_secs)
        .clamp(MIN_JWKS_TTL, MAX_JWKS_TTL)
}

fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Both fail only for URLs that cannot carry credentials, which then have none to remove.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn malformed(reason: impl Into<String>) -> IdTokenError {
    IdTokenError::Malformed {
        reason: reason.into(),
    }
}

/// A NumericDate claim as whole seconds: `None` when absent, an error when not a non-negative
/// number.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, IdTokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            // Truncation is the intent: NumericDate allows fractions of a second.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            (None, Some(f)) if (0.0..1.8e19).contains(&f) => Ok(Some(f as u64)),
            _ => Err(malformed(format!("the {name} claim is out of range"))),
        },
        Some(_) => Err(malformed(format!("the {name} claim is not a number"))),
    }
}

fn from_unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The claim checks of OpenID Connect Core §3.1.3.7 that SMART requires (SC-4.33), and the
/// `fhirUser` resolution (SC-4.35, SC-4.36), on the claims of a token whose signature verified.
fn check_claims(
    claims: Map<String, Value>,
    expected: &IdTokenExpectations<'_>,
    now: SystemTime,
    leeway: Duration,
) -> Result<IdTokenClaims, IdTokenError> {
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) if iss == expected.issuer => iss.clone(),
        other => {
            return Err(IdTokenError::Issuer {
                expected: expected.issuer.to_owned(),
                got: other.and_then(Value::as_str).map(|s| excerpt(s.as_bytes())),
            })
        }
    };

    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed("the aud claim holds a value that is not a string"))?,
        Some(_) => return Err(malformed("the aud claim is not a string or an array")),
        None => Vec::new(),
    };
    if !audiences.iter().any(|a| a == expected.client_id) {
        return Err(IdTokenError::Audience {
            client_id: expected.client_id.to_owned(),
        });
    }
    let several_audiences = audiences.iter().any(|a| a != expected.client_id);
    match claims.get("azp") {
        None if several_audiences => return Err(IdTokenError::Azp { got: None }),
        None => {}
        Some(Value::String(azp)) if azp == expected.client_id => {}
        Some(Value::String(azp)) => {
            return Err(IdTokenError::Azp {
                got: Some(excerpt(azp.as_bytes())),
            })
        }
        Some(_) => return Err(malformed("the azp claim is not a string")),
    }

    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let leeway = leeway.as_secs();
    let exp = numeric_date(&claims, "exp")?.ok_or_else(|| malformed("no exp claim"))?;
    if now_secs >= exp.saturating_add(leeway) {
        return Err(IdTokenError::Expired {
            expired_at: from_unix(exp),
        });
    }
    let iat = numeric_date(&claims, "iat")?.ok_or_else(|| malformed("no iat claim"))?;
    if iat > now_secs.saturating_add(leeway) {
        return Err(IdTokenError::IssuedInFuture);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if nbf > now_secs.saturating_add(leeway) {
            return Err(IdTokenError::NotYetValid);
        }
    }

    if let Some(nonce) = expected.nonce {
        match claims.get("nonce") {
            Some(Value::String(got)) => {
                if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
                    return Err(IdTokenError::Nonce { missing: false });
                }
            }
            Some(_) => return Err(IdTokenError::Nonce { missing: false }),
            None => return Err(IdTokenError::Nonce { missing: true }),
        }
    }

    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(Value::String(_)) => return Err(malformed("the sub claim is empty")),
        Some(_) => return Err(malformed("the sub claim is not a string")),
        None => return Err(malformed("no sub claim")),
    };

    let fhir_user = match claims.get("fhirUser") {
        Some(Value::String(value)) => Some(
            resolve_fhir_user(value, expected.fhir_base)
                .map_err(|reason| IdTokenError::FhirUser { reason })?,
        ),
        Some(Value::Null) | None => claims
            .get("profile")
            .and_then(Value::as_str)
            .and_then(|value| resolve_fhir_user(value, expected.fhir_base).ok()),
        Some(_) => {
            return Err(IdTokenError::FhirUser {
                reason: "it is not a string",
            })
        }
    };

    Ok(IdTokenClaims {
        issuer,
        subject,
        audiences,
        expires_at: from_unix(exp),
        issued_at: from_unix(iat),
        fhir_user,
        claims,
    })
}

/// Whether `id` is a FHIR logical id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Reads `Type/id` or `Type/id/_history/vid` segments, with an allowed type.
fn reference_in<'a>(segments: &[&'a str]) -> Option<(&'a str, &'a str)> {
    let (ty, id) = match segments {
        [.., ty, id, "_history", vid] if is_fhir_id(vid) => (*ty, *id),
        [.., ty, id] => (*ty, *id),
        _ => return None,
    };
    (is_fhir_id(id) && FHIR_USER_RESOURCE_TYPES.contains(&ty)).then_some((ty, id))
}

/// The resource type and id at the end of a resolved `fhirUser` URL.
fn resource_reference(url: &Url) -> Option<(&str, &str)> {
    let segments: Vec<&str> = url.path_segments()?.collect();
    reference_in(&segments)
}

/// Resolves a `fhirUser` value (SC-4.35): an absolute URL, checked like an endpoint against the
/// FHIR base's insecure-HTTP policy, or `Type/id` (optionally `/_history/vid`) relative to the
/// FHIR base; either way naming one of [`FHIR_USER_RESOURCE_TYPES`].
fn resolve_fhir_user(value: &str, base: &FhirBaseUrl) -> Result<Url, &'static str> {
    let value = value.trim();
    if value.is_empty() {
        return Err("it is empty");
    }
    let url = match Url::parse(value) {
        Ok(url) => {
            check_endpoint_url(&url, "fhirUser", base.insecure_http())
                .map_err(|_| "it is not an https URL (or an allowed http one)")?;
            if url.query().is_some() {
                return Err("it carries a query string");
            }
            url
        }
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let segments: Vec<&str> = value.split('/').collect();
            let shape_ok = matches!(segments.as_slice(), [_, _] | [_, _, "_history", _]);
            if !shape_ok || reference_in(&segments).is_none() {
                return Err(
                    "it is neither an absolute URL nor a relative Type/id reference to an allowed type",
                );
            }
            base.join(value)
                .map_err(|_| "it cannot be joined to the FHIR base")?
        }
        Err(_) => return Err("it is not a URL"),
    };
    if resource_reference(&url).is_none() {
        return Err(
            "it does not name a Patient, Practitioner, PractitionerRole, RelatedPerson or Person",
        );
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_750_000_000;
    const ISS: &str = "https://auth.example/oauth2";
    const CLIENT: &str = "app-1";

    fn base() -> FhirBaseUrl {
        FhirBaseUrl::parse("https://ehr.example/fhir/r4").unwrap()
    }

    fn now() -> SystemTime {
        from_unix(NOW)
    }

    fn good_claims() -> Map<String, Value> {
        match json!({
            "iss": ISS, "sub": "user-9", "aud": CLIENT, "exp": NOW + 300, "iat": NOW - 10,
            "nonce": "n-0S6_WzA2Mj", "fhirUser": "Practitioner/abc-1"
        }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn check(
        claims: Map<String, Value>,
        nonce: Option<&str>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let base = base();
        let expected = IdTokenExpectations::new(ISS, CLIENT, nonce, &base);
        check_claims(claims, &expected, now(), DEFAULT_ID_TOKEN_LEEWAY)
    }

    fn with(changes: Value) -> Map<String, Value> {
        let mut claims = good_claims();
        if let Value::Object(changes) = changes {
            for (k, v) in changes {
                if v.is_null() {
                    claims.remove(&k);
                } else {
                    claims.insert(k, v);
                }
            }
        }
        claims
    }

    /// SC-4.33, SC-4.35: a good set of claims yields the typed claims with fhirUser resolved.
    #[test]
    fn sc_4_33_good_claims() {
        let c = check(good_claims(), Some("n-0S6_WzA2Mj")).unwrap();
        assert_eq!(c.issuer, ISS);
        assert_eq!(c.subject, "user-9");
        assert_eq!(c.audiences, vec![CLIENT.to_owned()]);
        assert_eq!(c.expires_at, from_unix(NOW + 300));
        assert_eq!(c.issued_at, from_unix(NOW - 10));
        assert_eq!(
            c.fhir_user.as_ref().map(Url::as_str),
            Some("https://ehr.example/fhir/r4/Practitioner/abc-1")
        );
        assert_eq!(c.fhir_user_resource_type(), Some("Practitioner"));
        assert_eq!(c.fhir_user_id(), Some("abc-1"));
        assert_eq!(c.claims["nonce"], json!("n-0S6_WzA2Mj"));
    }

    /// SC-4.33: exp and iat are checked with the leeway, on both sides of the boundary.
    #[test]
    fn sc_4_33_time_boundaries() {
        let leeway = DEFAULT_ID_TOKEN_LEEWAY.as_secs();
        assert!(check(with(json!({"exp": NOW - leeway + 1})), None).is_ok());
        assert!(matches!(
            check(with(json!({"exp": NOW - leeway})), None),
            Err(IdTokenError::Expired { expired_at }) if expired_at == from_unix(NOW - leeway)
        ));
        assert!(check(with(json!({"iat": NOW + leeway})), None).is_ok());
        assert!(matches!(
            check(with(json!({"iat": NOW + leeway + 1})), None),
            Err(IdTokenError::IssuedInFuture)
        ));
        assert!(matches!(
            check(with(json!({"nbf": NOW + leeway + 1})), None),
            Err(IdTokenError::NotYetValid)
        ));
        assert!(check(with(json!({"exp": (NOW + 100) as f64 + 0.5})), None).is_ok());
        for (change, what) in [
            (json!({"exp": null}), "no exp"),
            (json!({"iat": null}), "no iat"),
            (json!({"exp": "tomorrow"}), "exp claim is not a number"),
            (json!({"iat": -5}), "iat claim is out of range"),
        ] {
            let e = check(with(change), None).unwrap_err();
            assert!(
                matches!(&e, IdTokenError::Malformed { reason } if reason.contains(what)),
                "{e}"
            );
        }
    }

    /// SC-4.33: aud as a string or array; several audiences need azp = client id; an azp that
    /// is present must be the client id even with one audience.
    #[test]
    fn sc_4_33_audience_and_azp() {
        assert!(check(with(json!({"aud": [CLIENT]})), None).is_ok());
        assert!(check(with(json!({"aud": [CLIENT, CLIENT]})), None).is_ok());
        assert!(check(with(json!({"aud": ["other", CLIENT], "azp": CLIENT})), None).is_ok());
        assert!(matches!(
            check(with(json!({"aud": ["other", CLIENT]})), None),
            Err(IdTokenError::Azp { got: None })
        ));
        assert!(matches!(
            check(with(json!({"aud": ["other", CLIENT], "azp": "other"})), None),
            Err(IdTokenError::Azp { got: Some(g) }) if g == "other"
        ));
        assert!(matches!(
            check(with(json!({"azp": "other"})), None),
            Err(IdTokenError::Azp { .. })
        ));
        for aud in [json!("other"), json!(["a", "b"]), json!(null), json!([])] {
            assert!(
                matches!(
                    check(with(json!({ "aud": aud })), None),
                    Err(IdTokenError::Audience { .. })
                ),
                "{aud}"
            );
        }
        assert!(matches!(
            check(with(json!({"aud": [CLIENT, 7]})), None),
            Err(IdTokenError::Malformed { .. })
        ));
        // The client id compares exactly.
        assert!(matches!(
            check(with(json!({"aud": "APP-1"})), None),
            Err(IdTokenError::Audience { .. })
        ));
    }

    /// SC-4.33: iss compares exactly (no trailing-slash or case folding).
    #[test]
    fn sc_4_33_issuer_exact() {
        for iss in [
            json!(format!("{ISS}/")),
            json!("https://AUTH.example/oauth2"),
            json!(7),
        ] {
            assert!(
                matches!(
                    check(with(json!({ "iss": iss })), None),
                    Err(IdTokenError::Issuer { .. })
                ),
                "{iss}"
            );
        }
        let e = check(with(json!({"iss": "https://evil.example"})), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the id_token's issuer is `https://evil.example`, expected {ISS}")
        );
        let e = check(with(json!({"iss": null})), None).unwrap_err();
        assert!(e.to_string().contains("is missing"), "{e}");
    }

    /// SC-4.33: the nonce, when one was sent, must be present and equal; it never appears in an
    /// error message.
    #[test]
    fn sc_4_33_nonce() {
        assert!(matches!(
            check(with(json!({"nonce": null})), Some("n-0S6_WzA2Mj")),
            Err(IdTokenError::Nonce { missing: true })
        ));
        let e = check(good_claims(), Some("n-0S6_WzA2Mk")).unwrap_err();
        assert!(matches!(e, IdTokenError::Nonce { missing: false }));
        assert!(!e.to_string().contains("n-0S6"));
        assert!(matches!(
            check(with(json!({"nonce": 5})), Some("5")),
            Err(IdTokenError::Nonce { missing: false })
        ));
        // No nonce sent: a nonce in the token is not checked.
        assert!(check(good_claims(), None).is_ok());
    }

    #[test]
    fn sub_is_required() {
        for sub in [json!(null), json!(""), json!(12)] {
            assert!(
                matches!(
                    check(with(json!({ "sub": sub })), None),
                    Err(IdTokenError::Malformed { .. })
                ),
                "{sub}"
            );
        }
    }

    /// SC-4.35: absolute and relative fhirUser, with and without _history; other types and
    /// unusable values refused.
    #[test]
    fn sc_4_35_fhir_user_resolution() {
        let b = base();
        for (value, resolved) in [
            ("Patient/123", "https://ehr.example/fhir/r4/Patient/123"),
            (
                "RelatedPerson/r.1/_history/2",
                "https://ehr.example/fhir/r4/RelatedPerson/r.1/_history/2",
            ),
            (
                "https://other.example/fhir/PractitionerRole/x",
                "https://other.example/fhir/PractitionerRole/x",
            ),
            (
                "https://ehr.example/fhir/r4/Person/p-1/_history/7",
                "https://ehr.example/fhir/r4/Person/p-1/_history/7",
            ),
        ] {
            assert_eq!(
                resolve_fhir_user(value, &b).map(String::from),
                Ok(resolved.to_owned()),
                "{value}"
            );
        }
        for bad in [
            "",
            "Observation/1",
            "Patient",
            "Patient/",
            "/Patient/1",
            "../Patient/1",
            "fhir/r4/Patient/1",
            "Patient/1?x=y",
            "Patient/a b",
            "Patient/1/_history",
            "Device/1/_history/2",
            "urn:uuid:4b4f1d6a-1f6b-4b7c-9d4f-0c1d2e3f4a5b",
            "http://ehr.example/fhir/Patient/1",
            "https://ehr.example/fhir/Organization/1",
            "https://ehr.example/fhir/Patient/1?_format=json",
            "javascript:alert(1)",
        ] {
            assert!(resolve_fhir_user(bad, &b).is_err(), "{bad:?}");
        }
        let loopback =
            FhirBaseUrl::parse_with("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback)
                .unwrap();
        assert!(resolve_fhir_user("http://127.0.0.1:8080/fhir/Patient/1", &loopback).is_ok());
    }

    /// SC-4.35: an unusable fhirUser refuses the token (the value is not shown).
    #[test]
    fn sc_4_35_bad_fhir_user_refuses_the_token() {
        for value in [
            json!("Organization/1"),
            json!(42),
            json!("Patient/sensitive id"),
        ] {
            let e = check(with(json!({ "fhirUser": value })), None).unwrap_err();
            assert!(matches!(e, IdTokenError::FhirUser { .. }), "{value}");
            assert!(!e.to_string().contains("sensitive"), "{e}");
        }
        let c = check(with(json!({"fhirUser": null})), None).unwrap();
        assert!(c.fhir_user.is_none());
    }

    /// SC-4.36: `profile` stands in for a missing fhirUser; a profile that is an ordinary web
    /// page (its OpenID Connect meaning) is ignored; fhirUser wins when both are present.
    #[test]
    fn sc_4_36_profile_alias() {
        let c = check(
            with(json!({"fhirUser": null, "profile": "Patient/7"})),
            None,
        )
        .unwrap();
        assert_eq!(c.fhir_user_resource_type(), Some("Patient"));
        assert_eq!(c.fhir_user_id(), Some("7"));
        let c = check(
            with(json!({"fhirUser": null, "profile": "https://social.example/users/jo"})),
            None,
        )
        .unwrap();
        assert!(c.fhir_user.is_none());
        let c = check(with(json!({"profile": "Patient/7"})), None).unwrap();
        assert_eq!(c.fhir_user_resource_type(), Some("Practitioner"));
    }

    #[test]
    fn jwks_lifetime_honours_max_age_within_bounds() {
        let headers = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
            h
        };
        let default = DEFAULT_JWKS_TTL;
        assert_eq!(jwks_lifetime(&http::HeaderMap::new(), default), default);
        assert_eq!(
            jwks_lifetime(&headers("public, Max-Age=600"), default),
            Duration::from_secs(600)
        );
        assert_eq!(jwks_lifetime(&headers("max-age=5"), default), MIN_JWKS_TTL);
        assert_eq!(jwks_lifetime(&headers("no-store"), default), MIN_JWKS_TTL);
        assert_eq!(
            jwks_lifetime(&headers("max-age=99999999"), default),
            MAX_JWKS_TTL
        );
        assert_eq!(jwks_lifetime(&headers("max-age=soon"), default), default);
    }

    #[test]
    fn openid_configuration_url_never_doubles_slashes() {
        for (issuer, expected) in [
            (
                "https://a.example",
                "https://a.example/.well-known/openid-configuration",
            ),
            (
                "https://a.example/",
                "https://a.example/.well-known/openid-configuration",
            ),
            (
                "https://a.example/realms/x/",
                "https://a.example/realms/x/.well-known/openid-configuration",
            ),
        ] {
            let url = issuer_url(issuer, InsecureHttp::Deny).unwrap();
            assert_eq!(openid_configuration_url(&url).as_str(), expected);
        }
    }

    /// P7, P15: the issuer and jwks_uri are checked against the base's insecure-HTTP policy.
    #[test]
    fn p7_issuer_and_jwks_uri_policy() {
        assert!(issuer_url("http://auth.example", InsecureHttp::AllowLoopback).is_err());
        assert!(issuer_url("http://127.0.0.1:9000", InsecureHttp::Deny).is_err());
        assert!(issuer_url("http://127.0.0.1:9000", InsecureHttp::AllowLoopback).is_ok());
        assert!(issuer_url("https://a.example/?x=1", InsecureHttp::Deny).is_err());
        assert!(issuer_url("not a url", InsecureHttp::Deny).is_err());
        let doc = |jwks: &str| json!({"issuer": ISS, "jwks_uri": jwks}).to_string();
        assert!(matches!(
            parse_openid_configuration(
                doc("http://keys.example/jwks").as_bytes(),
                ISS,
                InsecureHttp::AllowLoopback
            ),
            Err(KeyFetchError::JwksUri(_))
        ));
        assert!(matches!(
            parse_openid_configuration(doc("/jwks").as_bytes(), ISS, InsecureHttp::Deny),
            Err(KeyFetchError::JwksUri(_))
        ));
        assert_eq!(
            parse_openid_configuration(
                doc("https://keys.example/jwks").as_bytes(),
                ISS,
                InsecureHttp::Deny
            )
            .unwrap()
            .as_str(),
            "https://keys.example/jwks"
        );
        for bad in [
            json!({"issuer": "https://other.example", "jwks_uri": "https://k.example/j"})
                .to_string(),
            json!({"jwks_uri": "https://k.example/j"}).to_string(),
            json!({"issuer": ISS}).to_string(),
            "[]".to_owned(),
            "<html>".to_owned(),
        ] {
            assert!(
                matches!(
                    parse_openid_configuration(bad.as_bytes(), ISS, InsecureHttp::Deny),
                    Err(KeyFetchError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    /// P5: the expectations' Debug output hides the nonce.
    #[test]
    fn p5_expectations_debug_hides_nonce() {
        let b = base();
        let e = IdTokenExpectations::new(ISS, CLIENT, Some("secret-nonce"), &b);
        let shown = format!("{e:?}");
        assert!(!shown.contains("secret-nonce") && shown.contains("[redacted]"));
    }
}
