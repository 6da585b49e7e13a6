//! A cache of discovered configurations, keyed by FHIR base URL.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use smart_fhir_core::{
    Clock, Expiring, ExpiringCache, FhirBaseUrl, HttpError, HttpErrorKind, LoadTimedOut,
    ServerClocks, SharedClock, SharedHttpClient,
};

use crate::cache_control::TtlPolicy;
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
/// The longest one discovery (the `.well-known` request and its `/metadata` fallback) may take
/// when the options set no per-request limit.
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a shared discovery failed: the error (one for every waiter), or the time limit.
#[derive(Debug, Clone)]
enum Failure {
    Failed(Arc<DiscoveryError>),
    TimedOut(LoadTimedOut),
}

impl From<LoadTimedOut> for Failure {
    fn from(e: LoadTimedOut) -> Self {
        Self::TimedOut(e)
    }
}

/// Discovered configurations, keyed by FHIR base URL (with its insecure-HTTP policy).
///
/// * An entry lives for the response's `Cache-Control: max-age`, else [`DEFAULT_TTL`], capped
///   at [`MAX_TTL`]; `no-store` (and `no-cache`, as this cache does not revalidate) keeps
///   nothing. Time comes from the injected [`Clock`].
/// * Concurrent misses for one base make one discovery (the one expiring cache,
///   [`ExpiringCache`]); every caller gets its result or its error (shared, hence the `Arc`).
///   Different bases do not wait on each other. A discovery that outlasts twice the options'
///   per-request limit (else [`DEFAULT_DISCOVERY_TIMEOUT`]) fails with a transport timeout.
/// * Errors are not cached: the next call after a failure discovers again.
/// * At most [`max_entries`](DiscoveryCacheBuilder::max_entries) bases are kept; expired
///   entries go first, then the one closest to expiry.
/// * The `Date` of every response is fed to the [`ServerClocks`] of the transport and clock
///   ([`ServerClocks::for_transport`]), so that a server's clock offset is known before the
///   first assertion is signed for it.
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
    entries: ExpiringCache<FhirBaseUrl, Arc<SmartConfiguration>, Failure>,
    server_clocks: Arc<ServerClocks>,
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
        let load_timeout = self
            .options
            .timeout_value()
            .map_or(DEFAULT_DISCOVERY_TIMEOUT, |t| t.saturating_mul(2));
        DiscoveryCache {
            server_clocks: ServerClocks::for_transport(&self.client, &self.clock),
            entries: ExpiringCache::new(
                self.clock.clone(),
                Duration::ZERO,
                load_timeout,
                self.max_entries,
            ),
            client: self.client,
            clock: self.clock,
            options: self.options,
            ttl: TtlPolicy {
                default: self.default_ttl.min(self.max_ttl),
                min: Duration::ZERO,
                max: self.max_ttl,
            },
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
    pub async fn get(
        &self,
        base: &FhirBaseUrl,
    ) -> Result<Arc<SmartConfiguration>, Arc<DiscoveryError>> {
        let client = self.client.clone();
        let options = self.options.clone();
        let clock = self.clock.clone();
        let ttl = self.ttl;
        let owned = base.clone();
        let server_clocks = Arc::clone(&self.server_clocks);
        let (result, outcome) = self
            .entries
            .get_or_load_traced(base, move || async move {
                let (config, directive) =
                    fetch(&server_clocks.observing(&client), &owned, &options)
                        .await
                        .map_err(|e| Failure::Failed(Arc::new(e)))?;
                // A lifetime of zero (`no-store`) or past the end of time: for this call only.
                let now = clock.now();
                let expires_at = now.checked_add(ttl.ttl(directive)).unwrap_or(now);
                Ok(Expiring::new(Arc::new(config), expires_at))
            })
            .await;
        tracing::debug!(
            origin = %origin(base.url()),
            path = base.url().path(),
            cache = if matches!(outcome, smart_fhir_core::CacheOutcome::Hit) { "hit" } else { "miss" },
            "SMART configuration"
        );
        result.map_err(|failure| match failure {
            Failure::Failed(e) => e,
            Failure::TimedOut(LoadTimedOut(limit)) => {
                let uri = base.url().as_str().parse::<http::Uri>().unwrap_or_default();
                Arc::new(DiscoveryError::Http {
                    url: smart_fhir_core::text::display_url(base.url()),
                    source: HttpError::new(
                        HttpErrorKind::Timeout,
                        &uri,
                        format!("discovery took longer than {limit:?}"),
                    ),
                })
            }
        })
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

    /// The clock offsets of the servers this cache fetches from, fed by every discovery
    /// response's `Date`.
    pub fn server_clocks(&self) -> &Arc<ServerClocks> {
        &self.server_clocks
    }

    /// Forgets `base` (for instance after a token endpoint answered that the configuration
    /// changed).
    pub fn invalidate(&self, base: &FhirBaseUrl) {
        self.entries.invalidate_if(base, |_| true);
    }

    /// Forgets every base.
    pub fn clear(&self) {
        self.entries.clear();
    }
}
