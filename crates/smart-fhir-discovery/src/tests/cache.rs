use std::sync::Arc;
use std::time::Duration;

use smart_fhir_core::{FixedClock, SharedClock, SharedHttpClient};

use super::*;
use crate::*;

fn cache_with(server: &Arc<FakeServer>, clock: &FixedClock) -> DiscoveryCache {
    let client: Arc<dyn HttpClient> = server.clone();
    DiscoveryCache::builder(SharedHttpClient::from_arc(client))
        .clock(SharedClock::new(clock.clone()))
        .build()
}

#[tokio::test]
async fn hit_then_expiry_after_the_default_five_minutes() {
    let server =
        Arc::new(FakeServer::new().on(&well_known(SANDBOX_BASE), answer(200, SANDBOX_WELL_KNOWN)));
    let clock = FixedClock::at_unix(1_700_000_000);
    let cache = cache_with(&server, &clock);
    let b = base(SANDBOX_BASE);

    let first = cache.get(&b).await.unwrap();
    let second = cache.get(&b).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(server.count(), 1);

    clock.advance(DEFAULT_TTL - Duration::from_secs(1));
    cache.get(&b).await.unwrap();
    assert_eq!(server.count(), 1, "still fresh one second before expiry");

    clock.advance(Duration::from_secs(1));
    let third = cache.get(&b).await.unwrap();
    assert_eq!(server.count(), 2, "expired at exactly the TTL");
    assert!(!Arc::ptr_eq(&first, &third));
}

#[tokio::test]
async fn max_age_sets_the_lifetime_and_is_capped() {
    let short = Arc::new(FakeServer::new().on(
        &well_known(SANDBOX_BASE),
        answer_with(
            200,
            &[("Cache-Control", "public, max-age=60")],
            SANDBOX_WELL_KNOWN,
        ),
    ));
    let clock = FixedClock::at_unix(1_700_000_000);
    let cache = cache_with(&short, &clock);
    let b = base(SANDBOX_BASE);
    cache.get(&b).await.unwrap();
    clock.advance(Duration::from_secs(59));
    cache.get(&b).await.unwrap();
    assert_eq!(short.count(), 1);
    clock.advance(Duration::from_secs(1));
    cache.get(&b).await.unwrap();
    assert_eq!(short.count(), 2);

    // A year of max-age is kept for 24 hours at most.
    let long = Arc::new(FakeServer::new().on(
        &well_known(SANDBOX_BASE),
        answer_with(
            200,
            &[("cache-control", "max-age=31536000")],
            SANDBOX_WELL_KNOWN,
        ),
    ));
    let cache = cache_with(&long, &clock);
    cache.get(&b).await.unwrap();
    clock.advance(MAX_TTL - Duration::from_secs(1));
    cache.get(&b).await.unwrap();
    assert_eq!(long.count(), 1);
    clock.advance(Duration::from_secs(1));
    cache.get(&b).await.unwrap();
    assert_eq!(long.count(), 2);
}

#[tokio::test]
async fn no_store_and_max_age_zero_are_never_cached() {
    for header in ["no-store", "max-age=0", "no-cache, max-age=600"] {
        let server = Arc::new(FakeServer::new().on(
            &well_known(SANDBOX_BASE),
            answer_with(200, &[("Cache-Control", header)], SANDBOX_WELL_KNOWN),
        ));
        let cache = cache_with(&server, &FixedClock::at_unix(1_700_000_000));
        let b = base(SANDBOX_BASE);
        cache.get(&b).await.unwrap();
        cache.get(&b).await.unwrap();
        assert_eq!(server.count(), 2, "{header}");
    }
}

#[tokio::test]
async fn concurrent_misses_for_one_base_make_one_request() {
    let server = Arc::new(
        FakeServer::new()
            .yielding(20)
            .on(&well_known(SANDBOX_BASE), answer(200, SANDBOX_WELL_KNOWN)),
    );
    let cache = cache_with(&server, &FixedClock::at_unix(1_700_000_000));
    let b = base(SANDBOX_BASE);
    let (r1, r2, r3, r4, r5) = tokio::join!(
        cache.get(&b),
        cache.get(&b),
        cache.get(&b),
        cache.get(&b),
        cache.get(&b)
    );
    let first = r1.unwrap();
    for other in [r2, r3, r4, r5] {
        assert!(Arc::ptr_eq(&first, &other.unwrap()));
    }
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn different_bases_are_cached_apart_and_invalidate_forgets_one() {
    let server = Arc::new(
        FakeServer::new()
            .on(&well_known(SANDBOX_BASE), answer(200, SANDBOX_WELL_KNOWN))
            .on(&well_known(EPIC_BASE), answer(200, EPIC_WELL_KNOWN)),
    );
    let cache = cache_with(&server, &FixedClock::at_unix(1_700_000_000));
    let (sandbox, epic) = (base(SANDBOX_BASE), base(EPIC_BASE));
    let a = cache.get(&sandbox).await.unwrap();
    let e = cache.get(&epic).await.unwrap();
    assert_ne!(a.token_endpoint(), e.token_endpoint());
    assert_eq!(server.count(), 2);
    cache.invalidate(&sandbox);
    cache.get(&epic).await.unwrap();
    assert_eq!(server.count(), 2);
    cache.get(&sandbox).await.unwrap();
    assert_eq!(server.count(), 3);
    cache.clear();
    cache.get(&epic).await.unwrap();
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let server = Arc::new(
        FakeServer::new()
            .on(
                &well_known(SANDBOX_BASE),
                answer(503, "Service Unavailable"),
            )
            .on(&well_known(SANDBOX_BASE), answer(200, SANDBOX_WELL_KNOWN)),
    );
    let cache = cache_with(&server, &FixedClock::at_unix(1_700_000_000));
    let b = base(SANDBOX_BASE);
    let failed = cache.get(&b).await.unwrap_err();
    assert!(matches!(
        *failed,
        DiscoveryError::Status { status: 503, .. }
    ));
    assert!(cache.get(&b).await.is_ok());
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn the_fallback_response_is_cached_too() {
    let server = Arc::new(
        FakeServer::new()
            .on(&well_known(HAPI_BASE), answer(404, ""))
            .on(
                &metadata(HAPI_BASE),
                answer_with(200, &[("Cache-Control", "max-age=120")], HAPI_R4_METADATA),
            ),
    );
    let clock = FixedClock::at_unix(1_700_000_000);
    let cache = cache_with(&server, &clock);
    let b = base(HAPI_BASE);
    cache.get(&b).await.unwrap();
    cache.get(&b).await.unwrap();
    assert_eq!(server.count(), 2);
    clock.advance(Duration::from_secs(120));
    cache.get(&b).await.unwrap();
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn a_full_cache_evicts_the_entry_closest_to_expiry() {
    let bases = [
        "https://a.example/fhir",
        "https://b.example/fhir",
        "https://c.example/fhir",
    ];
    let mut server = FakeServer::new();
    for b in bases {
        server = server.on(&well_known(b), answer(200, MINIMAL_BACKEND));
    }
    let server = Arc::new(server);
    let clock = FixedClock::at_unix(1_700_000_000);
    let client: Arc<dyn HttpClient> = server.clone();
    let cache = DiscoveryCache::builder(SharedHttpClient::from_arc(client))
        .clock(SharedClock::new(clock.clone()))
        .max_entries(2)
        .build();
    cache.get(&base(bases[0])).await.unwrap();
    clock.advance(Duration::from_secs(1));
    cache.get(&base(bases[1])).await.unwrap();
    cache.get(&base(bases[2])).await.unwrap();
    assert_eq!(server.count(), 3);
    // b and c are still cached; a was evicted (it expired first).
    cache.get(&base(bases[1])).await.unwrap();
    cache.get(&base(bases[2])).await.unwrap();
    assert_eq!(server.count(), 3);
    cache.get(&base(bases[0])).await.unwrap();
    assert_eq!(server.count(), 4);
}

/// SC-1.4, memory for many tenants: clients of one transport share one cache (one request for
/// one server); another transport gets its own.
#[tokio::test]
async fn one_cache_per_transport() {
    let server =
        Arc::new(FakeServer::new().on(&well_known(SANDBOX_BASE), answer(200, SANDBOX_WELL_KNOWN)));
    let client: Arc<dyn HttpClient> = server.clone();
    let transport = SharedHttpClient::from_arc(client);
    let clock = SharedClock::new(FixedClock::at_unix(1_700_000_000));
    let b = base(SANDBOX_BASE);
    let first = DiscoveryCache::for_transport(&transport, &clock);
    let second = DiscoveryCache::for_transport(&transport.clone(), &clock);
    assert!(Arc::ptr_eq(&first, &second));
    let a = first.get(&b).await.unwrap();
    let c = second.get(&b).await.unwrap();
    assert!(Arc::ptr_eq(&a, &c));
    assert_eq!(server.count(), 1);

    let other: Arc<dyn HttpClient> = Arc::new(FakeServer::new());
    let other = DiscoveryCache::for_transport(&SharedHttpClient::from_arc(other), &clock);
    assert!(!Arc::ptr_eq(&first, &other));
}

/// Clock skew: the `Date` of a discovery response feeds the server's clock offset (the
/// transport's and clock's `ServerClocks`), for that origin only; a cache hit sends nothing.
#[tokio::test]
async fn discovery_responses_feed_the_servers_clock_offset() {
    // The server's clock is four minutes behind the local one (1_750_000_000 - 240).
    let server = Arc::new(FakeServer::new().on(
        &well_known(SANDBOX_BASE),
        answer_with(
            200,
            &[("Date", "Sun, 15 Jun 2025 15:02:40 GMT")],
            SANDBOX_WELL_KNOWN,
        ),
    ));
    let clock = FixedClock::at_unix(1_750_000_000);
    let cache = cache_with(&server, &clock);
    let b = base(SANDBOX_BASE);
    cache.get(&b).await.unwrap();
    let clocks = cache.server_clocks();
    assert_eq!(
        clocks.offset(b.url()),
        smart_fhir_core::ClockOffset::from_seconds(-240)
    );
    let other = url::Url::parse("https://auth.example/token").unwrap();
    assert_eq!(clocks.offset(&other), smart_fhir_core::ClockOffset::ZERO);
}
