//! An issuer's JWKS: the sans-IO request and parse, a thin fetch, and [`JwksCache`], which
//! keeps each issuer's keys for their `Cache-Control` lifetime (SC-4.34).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use smart_fhir_core::{
    CacheOutcome, Clock, Expiring, ExpiringCache, HttpClient, HttpError, HttpErrorKind,
    InsecureHttp, LoadTimedOut, ServerClocks, SharedClock, SharedHttpClient,
};
use smart_fhir_jwt::{Jwks, MAX_JWKS_BYTES};
use url::Url;

use crate::cache_control::TtlPolicy;
use crate::key_error::{KeyDiscoveryError, KeyDocument, KeyFetchError};
use crate::openid::{fetch_openid_configuration, json_get, success_body, Issuer};
use crate::response::{origin, send};
use crate::KEY_FETCH_TIMEOUT;

/// How long an issuer's keys are kept when the JWKS response has no `Cache-Control: max-age`.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(60 * 60);

/// The shortest time an issuer's keys are kept, whatever the response's `Cache-Control` says.
///
/// Keys are public, so keeping them for a minute despite `no-store` or `max-age=0` discloses
/// nothing, and it spares the issuer a fetch per login during a burst.
pub const MIN_JWKS_TTL: Duration = Duration::from_secs(60);

/// The longest time an issuer's keys are kept, whatever `max-age` says.
pub const MAX_JWKS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest interval between two forced JWKS refetches (after a token named an unknown
/// `kid`), per issuer, by default: a flood of tokens with made-up `kid`s costs the issuer at
/// most one request a minute.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// How many issuers' keys are remembered; beyond that, idle entries are dropped.
const MAX_CACHED_ISSUERS: usize = 64;

/// `GET {jwks_uri}` with `Accept: application/json`, bounded to [`MAX_JWKS_BYTES`], with
/// [`KEY_FETCH_TIMEOUT`](crate::KEY_FETCH_TIMEOUT).
pub fn jwks_request(jwks_uri: &Url) -> Result<http::Request<Bytes>, KeyFetchError> {
    json_get(jwks_uri, MAX_JWKS_BYTES)
}

/// Reads the response to [`jwks_request`]: a 2xx JWKS document (keys that cannot be used are
/// skipped, see [`Jwks`]).
pub fn parse_jwks(response: http::Response<Bytes>) -> Result<Jwks, KeyFetchError> {
    parse_jwks_with_headers(response).map(|(jwks, _)| jwks)
}

fn parse_jwks_with_headers(
    response: http::Response<Bytes>,
) -> Result<(Jwks, http::HeaderMap), KeyFetchError> {
    let (headers, body) = success_body(response, MAX_JWKS_BYTES)?;
    let jwks = Jwks::from_slice(&body).map_err(|e| KeyFetchError::Invalid {
        reason: e.to_string(),
    })?;
    Ok((jwks, headers))
}

/// Fetches and reads the JWKS at `jwks_uri` (see [`parse_jwks`]).
pub async fn fetch_jwks(
    client: &dyn HttpClient,
    jwks_uri: &Url,
) -> Result<Jwks, KeyDiscoveryError> {
    fetch_jwks_with_headers(client, jwks_uri)
        .await
        .map(|(jwks, _)| jwks)
}

async fn fetch_jwks_with_headers(
    client: &dyn HttpClient,
    jwks_uri: &Url,
) -> Result<(Jwks, http::HeaderMap), KeyDiscoveryError> {
    let fail = |source| KeyDiscoveryError::new(KeyDocument::Jwks, jwks_uri, source);
    let request = jwks_request(jwks_uri).map_err(fail)?;
    let response = send(client, request, jwks_uri, "JWKS")
        .await
        .map_err(|e| fail(KeyFetchError::Http(Arc::new(e))))?;
    parse_jwks_with_headers(response).map_err(fail)
}

/// What is remembered of an issuer besides its keys: where they are, and the last forced
/// refetch (for the rate limit).
#[derive(Default)]
struct IssuerState {
    jwks_uri: Option<Url>,
    last_forced_refetch: Option<SystemTime>,
}

type SlotKey = (String, InsecureHttp);

type LoadFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Expiring<Arc<Jwks>>, Failure>> + Send>,
>;

/// Why a shared key fetch failed: the error (one for every waiter), or the time limit.
#[derive(Debug, Clone)]
enum Failure {
    Failed(KeyDiscoveryError),
    TimedOut(LoadTimedOut),
}

impl From<LoadTimedOut> for Failure {
    fn from(e: LoadTimedOut) -> Self {
        Self::TimedOut(e)
    }
}

impl From<KeyDiscoveryError> for Failure {
    fn from(e: KeyDiscoveryError) -> Self {
        Self::Failed(e)
    }
}

/// Issuers' keys, fetched through `{issuer}/.well-known/openid-configuration` → `jwks_uri` →
/// JWKS and kept per issuer (SC-4.34).
///
/// * Each URL is checked against the issuer's insecure-HTTP policy; bodies are bounded;
///   redirects are not followed. Every response's `Date` feeds the
///   [`server_clocks`](Self::server_clocks) of the transport and clock.
/// * Keys are kept for the JWKS response's `max-age` (default [`DEFAULT_JWKS_TTL`]), never
///   less than [`MIN_JWKS_TTL`] nor more than [`MAX_JWKS_TTL`], by the injected clock. When
///   they expire, the configuration and the JWKS are fetched again.
/// * Concurrent fetches for one issuer are made once (the one expiring cache,
///   [`ExpiringCache`]); failures are not cached.
/// * [`refetch`](Self::refetch) forces a new JWKS (a token named a key the cached set lacks),
///   at most once per [`refetch_interval`](Self::refetch_interval) per issuer.
///
/// Cheap to clone; clones share the cached keys.
#[derive(Clone)]
pub struct JwksCache {
    http: SharedHttpClient,
    clock: SharedClock,
    ttl: TtlPolicy,
    refetch_interval: Duration,
    keys: ExpiringCache<SlotKey, Arc<Jwks>, Failure>,
    issuers: Arc<Mutex<HashMap<SlotKey, IssuerState>>>,
    server_clocks: Arc<ServerClocks>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("default_ttl", &self.ttl.default)
            .field("refetch_interval", &self.refetch_interval)
            .field("cached_issuers", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache that fetches through `http` and reads time from `clock`.
    pub fn new(http: SharedHttpClient, clock: SharedClock) -> Self {
        Self {
            server_clocks: ServerClocks::for_transport(&http, &clock),
            keys: ExpiringCache::new(
                clock.clone(),
                Duration::ZERO,
                // The configuration and the JWKS, each bounded by the fetch timeout.
                KEY_FETCH_TIMEOUT.saturating_mul(2),
                MAX_CACHED_ISSUERS,
            ),
            http,
            clock,
            ttl: TtlPolicy {
                default: DEFAULT_JWKS_TTL,
                min: MIN_JWKS_TTL,
                max: MAX_JWKS_TTL,
            },
            refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            issuers: Arc::default(),
        }
    }

    /// How long keys are kept when the JWKS response has no `max-age` (default
    /// [`DEFAULT_JWKS_TTL`]; kept between [`MIN_JWKS_TTL`] and [`MAX_JWKS_TTL`]).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.ttl.default = ttl.clamp(MIN_JWKS_TTL, MAX_JWKS_TTL);
        self
    }

    /// The shortest interval between two forced refetches, per issuer (default
    /// [`DEFAULT_JWKS_REFETCH_INTERVAL`]).
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The default lifetime in use.
    pub fn default_ttl_value(&self) -> Duration {
        self.ttl.default
    }

    /// The refetch interval in use.
    pub fn refetch_interval_value(&self) -> Duration {
        self.refetch_interval
    }

    /// How many issuers have keys cached or being fetched.
    pub fn cached_issuers(&self) -> usize {
        self.keys.len()
    }

    /// Forgets the cached keys of `issuer`.
    pub fn invalidate(&self, issuer: &str) {
        self.keys.invalidate_keys(|(iss, _)| iss == issuer);
        self.lock_issuers().retain(|(iss, _), _| iss != issuer);
    }

    /// The issuer's keys: cached while fresh, else fetched (configuration, then JWKS) and
    /// cached.
    pub async fn keys(&self, issuer: &Issuer) -> Result<Arc<Jwks>, KeyDiscoveryError> {
        let key = slot_key(issuer);
        let (result, outcome) = self
            .keys
            .get_or_load_traced(&key, self.load(issuer, key.clone(), false))
            .await;
        tracing::debug!(
            origin = %origin(issuer.url()),
            path = issuer.url().path(),
            cache = if outcome == CacheOutcome::Hit { "hit" } else { "miss" },
            "issuer keys"
        );
        result.map_err(|f| failure(issuer, f))
    }

    /// Fetches the issuer's JWKS again because `stale` (what [`keys`](Self::keys) returned)
    /// lacks a key a token names. Returns the new keys, or `None` when a forced refetch was
    /// made less than the refetch interval ago; if another caller has meanwhile replaced
    /// `stale`, its keys are returned without a request.
    pub async fn refetch(
        &self,
        issuer: &Issuer,
        stale: &Arc<Jwks>,
    ) -> Result<Option<Arc<Jwks>>, KeyDiscoveryError> {
        let key = slot_key(issuer);
        if let Some(current) = self.keys.get(&key) {
            if !Arc::ptr_eq(&current, stale) {
                // Another caller refetched meanwhile.
                return Ok(Some(current));
            }
        }
        let now = self.clock.now();
        {
            let mut issuers = self.lock_issuers();
            let state = issuers.entry(key.clone()).or_default();
            // A clock that went backwards counts as the interval having passed.
            if state.last_forced_refetch.is_some_and(|last| {
                now.duration_since(last)
                    .is_ok_and(|elapsed| elapsed < self.refetch_interval)
            }) {
                tracing::debug!(
                    origin = %origin(issuer.url()),
                    path = issuer.url().path(),
                    "unknown kid: JWKS refetch skipped, one was made within the refetch interval"
                );
                return Ok(None);
            }
            // Recorded before the fetch, so that failed refetches are rate-limited too.
            state.last_forced_refetch = Some(now);
        }
        tracing::info!(
            origin = %origin(issuer.url()),
            path = issuer.url().path(),
            "unknown kid: refetching the issuer's JWKS"
        );
        let (result, _) = self
            .keys
            .get_or_load_unless(
                &key,
                |current| Arc::ptr_eq(current, stale),
                self.load(issuer, key.clone(), true),
            )
            .await;
        result.map(Some).map_err(|f| failure(issuer, f))
    }

    /// The load of an issuer's keys: its configuration (unless `reuse_uri` and the JWKS URL is
    /// known), then the JWKS, kept for its lifetime.
    fn load(&self, issuer: &Issuer, key: SlotKey, reuse_uri: bool) -> impl FnOnce() -> LoadFuture {
        let this = self.clone();
        let issuer = issuer.clone();
        move || {
            Box::pin(async move {
                let known = reuse_uri
                    .then(|| {
                        this.lock_issuers()
                            .get(&key)
                            .and_then(|s| s.jwks_uri.clone())
                    })
                    .flatten();
                let jwks_uri = match known {
                    Some(uri) => uri,
                    None => {
                        fetch_openid_configuration(&this.observed(), &issuer)
                            .await?
                            .jwks_uri
                    }
                };
                let (jwks, headers) = fetch_jwks_with_headers(&this.observed(), &jwks_uri).await?;
                this.remember_uri(key, jwks_uri);
                // Past the end of time the keys are used for this call only.
                let now = this.clock.now();
                let expires_at = now.checked_add(this.ttl.ttl_of(&headers)).unwrap_or(now);
                Ok(Expiring::new(Arc::new(jwks), expires_at))
            })
        }
    }

    /// The transport, feeding every response's `Date` to [`Self::server_clocks`].
    fn observed(&self) -> smart_fhir_core::ObservingHttpClient<'_> {
        self.server_clocks.observing(&self.http)
    }

    /// The clock offsets of the servers keys are fetched from (the [`ServerClocks`] of the
    /// transport and clock), fed by the `Date` of the OpenID configuration and JWKS responses.
    pub fn server_clocks(&self) -> &Arc<ServerClocks> {
        &self.server_clocks
    }

    fn remember_uri(&self, key: SlotKey, uri: Url) {
        let mut issuers = self.lock_issuers();
        if issuers.len() >= MAX_CACHED_ISSUERS && !issuers.contains_key(&key) {
            // A guard against growth rather than a policy: issuers are few (an allow-list).
            issuers.clear();
        }
        issuers.entry(key).or_default().jwks_uri = Some(uri);
    }

    fn lock_issuers(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, IssuerState>> {
        // Every operation on the map is a single insert, lookup or removal, so it stays
        // consistent whatever panicked while holding the lock.
        self.issuers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn slot_key(issuer: &Issuer) -> SlotKey {
    (issuer.as_str().to_owned(), issuer.insecure_http())
}

/// The caller's error: the shared fetch error, or the time limit as a transport timeout.
fn failure(issuer: &Issuer, failure: Failure) -> KeyDiscoveryError {
    match failure {
        Failure::Failed(e) => e,
        Failure::TimedOut(LoadTimedOut(limit)) => {
            let uri = issuer
                .url()
                .as_str()
                .parse::<http::Uri>()
                .unwrap_or_default();
            KeyDiscoveryError::new(
                KeyDocument::Jwks,
                issuer.url(),
                KeyFetchError::Http(Arc::new(HttpError::new(
                    HttpErrorKind::Timeout,
                    &uri,
                    format!("fetching the issuer's keys took longer than {limit:?}"),
                ))),
            )
        }
    }
}
