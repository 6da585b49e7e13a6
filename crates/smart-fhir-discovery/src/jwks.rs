//! An issuer's JWKS: the sans-IO request and parse, a thin fetch, and [`JwksCache`], which
//! keeps each issuer's keys for their `Cache-Control` lifetime (SC-4.34).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use smart_fhir_core::{Clock, HttpClient, InsecureHttp, SharedClock, SharedHttpClient};
use smart_fhir_jwt::{Jwks, MAX_JWKS_BYTES};
use url::Url;

use crate::cache_control::{Expiring, TtlPolicy};
use crate::key_error::{KeyDiscoveryError, KeyDocument, KeyFetchError};
use crate::openid::{fetch_openid_configuration, json_get, success_body, Issuer};
use crate::response::{origin, send};

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
        .map_err(|e| fail(KeyFetchError::Http(e)))?;
    parse_jwks_with_headers(response).map_err(fail)
}

/// One issuer's keys and where they come from.
#[derive(Default)]
struct IssuerKeys {
    jwks_uri: Option<Url>,
    jwks: Option<Expiring<Jwks>>,
    last_forced_refetch: Option<SystemTime>,
}

impl IssuerKeys {
    fn fresh(&self, now: SystemTime) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref().and_then(|e| e.fresh(now))
    }
}

/// One slot per issuer; its async lock makes concurrent fetches for one issuer a single fetch.
type Slot = Arc<tokio::sync::Mutex<IssuerKeys>>;
type SlotKey = (String, InsecureHttp);

/// Issuers' keys, fetched through `{issuer}/.well-known/openid-configuration` → `jwks_uri` →
/// JWKS and kept per issuer (SC-4.34).
///
/// * Each URL is checked against the issuer's insecure-HTTP policy; bodies are bounded;
///   redirects are not followed.
/// * Keys are kept for the JWKS response's `max-age` (default [`DEFAULT_JWKS_TTL`]), never
///   less than [`MIN_JWKS_TTL`] nor more than [`MAX_JWKS_TTL`], by the injected clock. When
///   they expire, the configuration and the JWKS are fetched again.
/// * Concurrent fetches for one issuer are made once; failures are not cached.
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
    slots: Arc<Mutex<HashMap<SlotKey, Slot>>>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("default_ttl", &self.ttl.default)
            .field("refetch_interval", &self.refetch_interval)
            .field("cached_issuers", &self.lock_slots().len())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache that fetches through `http` and reads time from `clock`.
    pub fn new(http: SharedHttpClient, clock: SharedClock) -> Self {
        Self {
            http,
            clock,
            ttl: TtlPolicy {
                default: DEFAULT_JWKS_TTL,
                min: MIN_JWKS_TTL,
                max: MAX_JWKS_TTL,
            },
            refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            slots: Arc::default(),
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

    /// How many issuers have a slot (with or without fresh keys).
    pub fn cached_issuers(&self) -> usize {
        self.lock_slots().len()
    }

    /// Forgets the cached keys of `issuer`.
    pub fn invalidate(&self, issuer: &str) {
        self.lock_slots().retain(|(iss, _), _| iss != issuer);
    }

    /// The issuer's keys: cached while fresh, else fetched (configuration, then JWKS) and
    /// cached.
    pub async fn keys(&self, issuer: &Issuer) -> Result<Arc<Jwks>, KeyDiscoveryError> {
        let slot = self.slot(issuer);
        let mut keys = slot.lock().await;
        if let Some(jwks) = keys.fresh(self.clock.now()) {
            tracing::debug!(
                origin = %origin(issuer.url()),
                path = issuer.url().path(),
                cache = "hit",
                "issuer keys from the cache"
            );
            return Ok(Arc::clone(jwks));
        }
        tracing::debug!(
            origin = %origin(issuer.url()),
            path = issuer.url().path(),
            cache = "miss",
            "issuer keys not cached or expired; fetching"
        );
        let jwks_uri = fetch_openid_configuration(&self.http, issuer)
            .await?
            .jwks_uri;
        self.fetch_into(&mut keys, jwks_uri).await
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
        let slot = self.slot(issuer);
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
                tracing::debug!(
                    origin = %origin(issuer.url()),
                    path = issuer.url().path(),
                    "unknown kid: JWKS refetch skipped, one was made within the refetch interval"
                );
                return Ok(None);
            }
        }
        tracing::info!(
            origin = %origin(issuer.url()),
            path = issuer.url().path(),
            "unknown kid: refetching the issuer's JWKS"
        );
        // Recorded before the fetch, so that failed refetches are rate-limited too.
        keys.last_forced_refetch = Some(now);
        let jwks_uri = match keys.jwks_uri.clone() {
            Some(uri) => uri,
            None => {
                fetch_openid_configuration(&self.http, issuer)
                    .await?
                    .jwks_uri
            }
        };
        self.fetch_into(&mut keys, jwks_uri).await.map(Some)
    }

    /// Fetches the JWKS at `jwks_uri` and keeps it in `keys` for its lifetime.
    async fn fetch_into(
        &self,
        keys: &mut IssuerKeys,
        jwks_uri: Url,
    ) -> Result<Arc<Jwks>, KeyDiscoveryError> {
        let (jwks, headers) = fetch_jwks_with_headers(&self.http, &jwks_uri).await?;
        let jwks = Arc::new(jwks);
        // Past the end of time the keys are used for this call only.
        keys.jwks = Expiring::new(
            Arc::clone(&jwks),
            self.clock.now(),
            self.ttl.ttl_of(&headers),
        );
        keys.jwks_uri = Some(jwks_uri);
        Ok(jwks)
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, Slot>> {
        // Every operation on the map is a single insert, lookup or removal, so it stays
        // consistent whatever panicked while holding the lock.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, issuer: &Issuer) -> Slot {
        let mut slots = self.lock_slots();
        let key = (issuer.as_str().to_owned(), issuer.insecure_http());
        if let Some(slot) = slots.get(&key) {
            return Arc::clone(slot);
        }
        if slots.len() >= MAX_CACHED_ISSUERS {
            // Drop the idle entries (held by the map alone, lock free) that are expired; if the
            // map is still full, every idle entry. Issuers are few (an allow-list), so this is
            // a guard against growth rather than a policy.
            let now = self.clock.now();
            let idle_expired = |slot: &Slot| {
                Arc::strong_count(slot) == 1
                    && slot.try_lock().is_ok_and(|keys| keys.fresh(now).is_none())
            };
            slots.retain(|_, slot| !idle_expired(slot));
            if slots.len() >= MAX_CACHED_ISSUERS {
                slots.retain(|_, slot| Arc::strong_count(slot) > 1);
            }
        }
        let slot = Slot::default();
        slots.insert(key, Arc::clone(&slot));
        slot
    }
}
