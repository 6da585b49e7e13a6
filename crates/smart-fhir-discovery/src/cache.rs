//! A cache of discovered configurations, keyed by FHIR base URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use smart_fhir_core::{Clock, FhirBaseUrl, SharedClock, SharedHttpClient};

use crate::cache_control::{Expiring, TtlPolicy};
use crate::config::SmartConfiguration;
use crate::error::DiscoveryError;
use crate::fetch::fetch;
use crate::options::DiscoveryOptions;
use crate::response::origin;

/// How long a configuration is kept when the response has no `Cache-Control`: 5 minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// The longest a configuration is kept, whatever `max-age` says: 24 hours.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How many bases are remembered by default.
pub const DEFAULT_MAX_ENTRIES: usize = 256;

type Slot = Arc<tokio::sync::Mutex<Option<Expiring<SmartConfiguration>>>>;

/// Discovered configurations, keyed by FHIR base URL (with its insecure-HTTP policy).
///
/// * An entry lives for the response's `Cache-Control: max-age`, else [`DEFAULT_TTL`], capped
///   at [`MAX_TTL`]; `no-store` (and `no-cache`, as this cache does not revalidate) keeps
///   nothing. Time comes from the injected [`Clock`].
/// * Concurrent misses for one base wait on a per-base lock, so only one request runs; the
///   others then read its result. Different bases do not wait on each other.
/// * Errors are not cached: after a failure, each waiting caller tries again in turn.
/// * At most [`max_entries`](DiscoveryCacheBuilder::max_entries) bases are kept; expired
///   entries go first, then the one closest to expiry.
///
/// ```no_run
/// # async fn run(client: smart_fhir_core::SharedHttpClient) -> Result<(), Box<dyn std::error::Error>> {
/// use smart_fhir_core::FhirBaseUrl;
/// use smart_fhir_discovery::DiscoveryCache;
///
/// let cache = DiscoveryCache::builder(client).build();
/// let base = FhirBaseUrl::parse("https://fhir.example/r4")?;
/// let config = cache.get(&base).await?; // fetched
/// let again = cache.get(&base).await?; // from the cache
/// assert!(std::sync::Arc::ptr_eq(&config, &again));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DiscoveryCache {
    client: SharedHttpClient,
    clock: SharedClock,
    options: DiscoveryOptions,
    ttl: TtlPolicy,
    max_entries: usize,
    slots: Mutex<HashMap<FhirBaseUrl, Slot>>,
}

/// Builds a [`DiscoveryCache`].
#[derive(Debug, Clone)]
#[must_use]
pub struct DiscoveryCacheBuilder {
    client: SharedHttpClient,
    clock: SharedClock,
    options: DiscoveryOptions,
    default_ttl: Duration,
    max_ttl: Duration,
    max_entries: usize,
}

impl DiscoveryCacheBuilder {
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How requests are made (default: [`DiscoveryOptions::default`]).
    pub fn options(mut self, options: DiscoveryOptions) -> Self {
        self.options = options;
        self
    }

    /// The lifetime when the response has no `max-age` (default [`DEFAULT_TTL`]).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The cap on any lifetime (default [`MAX_TTL`]).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// How many bases are kept (default [`DEFAULT_MAX_ENTRIES`]; at least 1).
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries.max(1);
        self
    }

    /// The cache. A default lifetime above the cap is lowered to the cap.
    pub fn build(self) -> DiscoveryCache {
        DiscoveryCache {
            client: self.client,
            clock: self.clock,
            options: self.options,
            ttl: TtlPolicy {
                default: self.default_ttl.min(self.max_ttl),
                min: Duration::ZERO,
                max: self.max_ttl,
            },
            max_entries: self.max_entries,
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl DiscoveryCache {
    /// A builder with the defaults described on [`DiscoveryCache`].
    pub fn builder(client: SharedHttpClient) -> DiscoveryCacheBuilder {
        DiscoveryCacheBuilder {
            client,
            clock: SharedClock::default(),
            options: DiscoveryOptions::default(),
            default_ttl: DEFAULT_TTL,
            max_ttl: MAX_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    /// The configuration of `base`: cached when fresh, else discovered (see
    /// [`discover_with`](crate::discover_with)) and cached as the response allows.
    pub async fn get(&self, base: &FhirBaseUrl) -> Result<Arc<SmartConfiguration>, DiscoveryError> {
        let slot = self.slot(base);
        let mut entry = slot.lock().await;
        if let Some(fresh) = entry.as_ref().and_then(|e| e.fresh(self.clock.now())) {
            tracing::debug!(
                origin = %origin(base.url()),
                path = base.url().path(),
                cache = "hit",
                "SMART configuration from the cache"
            );
            return Ok(Arc::clone(fresh));
        }
        tracing::debug!(
            origin = %origin(base.url()),
            path = base.url().path(),
            cache = "miss",
            "SMART configuration not cached or expired; discovering"
        );
        *entry = None;
        let (config, directive) = fetch(&self.client, base, &self.options).await?;
        let config = Arc::new(config);
        *entry = Expiring::new(
            Arc::clone(&config),
            self.clock.now(),
            self.ttl.ttl(directive),
        );
        Ok(config)
    }

    /// The process-wide cache of the transport `client`: every caller that passes the same
    /// shared transport (clones of one [`SharedHttpClient`]) gets the same cache, so clients of
    /// one server discover its configuration once and share one copy of it (a thousand Backend
    /// Services tenants of one server: one discovery request).
    ///
    /// The cache is made on first use with the defaults and `clock`, and lives while someone
    /// holds it: the registry keeps only weak references. Transports are told apart by
    /// identity, so two transports (say, with different TLS roots) never share configurations.
    pub fn for_transport(client: &SharedHttpClient, clock: &SharedClock) -> Arc<DiscoveryCache> {
        static REGISTRY: OnceLock<Mutex<Vec<Weak<DiscoveryCache>>>> = OnceLock::new();
        let mut caches = REGISTRY
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        caches.retain(|cache| cache.strong_count() > 0);
        // A live cache holds its transport, so the transport's identity cannot be reused by
        // another one while the cache is found here.
        if let Some(cache) = caches
            .iter()
            .filter_map(Weak::upgrade)
            .find(|cache| cache.client.same_client(client))
        {
            return cache;
        }
        let cache = Arc::new(Self::builder(client.clone()).clock(clock.clone()).build());
        caches.push(Arc::downgrade(&cache));
        cache
    }

    /// Forgets `base` (for instance after a token endpoint answered that the configuration
    /// changed).
    pub fn invalidate(&self, base: &FhirBaseUrl) {
        self.lock_slots().remove(base);
    }

    /// Forgets every base.
    pub fn clear(&self) {
        self.lock_slots().clear();
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<FhirBaseUrl, Slot>> {
        // The map stays consistent whatever panicked while holding it: every operation on it
        // is a single insert or remove.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The per-base slot, created when absent (evicting if the cache is full).
    fn slot(&self, base: &FhirBaseUrl) -> Slot {
        let mut slots = self.lock_slots();
        if let Some(slot) = slots.get(base) {
            return Arc::clone(slot);
        }
        if slots.len() >= self.max_entries {
            self.evict(&mut slots);
        }
        let slot = Slot::default();
        slots.insert(base.clone(), Arc::clone(&slot));
        slot
    }

    /// Removes idle slots that are empty or expired; if the map is still full, the idle slot
    /// closest to expiry. A slot is idle when no caller holds it (only the map does) and its
    /// lock is free.
    fn evict(&self, slots: &mut HashMap<FhirBaseUrl, Slot>) {
        let now = self.clock.now();
        let mut idle: Vec<(FhirBaseUrl, SystemTime)> = slots
            .iter()
            .filter(|(_, slot)| Arc::strong_count(slot) == 1)
            .filter_map(|(base, slot)| {
                let entry = slot.try_lock().ok()?;
                let expires_at = entry
                    .as_ref()
                    .map_or(SystemTime::UNIX_EPOCH, |e| e.expires_at);
                Some((base.clone(), expires_at))
            })
            .collect();
        // Soonest expiry first: the expired (and empty) slots, then the one to evict if the map
        // is still full.
        idle.sort_by_key(|(_, expires_at)| *expires_at);
        for (base, expires_at) in idle {
            if expires_at <= now || slots.len() >= self.max_entries {
                slots.remove(&base);
            } else {
                break;
            }
        }
    }
}
