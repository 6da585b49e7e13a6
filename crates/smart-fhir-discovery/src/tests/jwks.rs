//! The JWKS request, parse and per-issuer cache (SC-4.34): lifetimes from `Cache-Control`,
//! single fetch under concurrency, failures not cached, and the rate-limited forced refetch.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use smart_fhir_core::{FixedClock, InsecureHttp, MaxResponseBytes, SharedClock, SharedHttpClient};
use smart_fhir_jwt::{merge_jwks, KeySpec, PrivateKey, MAX_JWKS_BYTES};

use super::*;
use crate::*;

const NOW: u64 = 1_750_000_000;
const ISS: &str = "https://auth.example/oauth2";
const CONFIG: &str = "https://auth.example/oauth2/.well-known/openid-configuration";
const JWKS: &str = "https://auth.example/oauth2/jwks";

fn key(n: usize) -> &'static PrivateKey {
    static KEYS: OnceLock<Vec<PrivateKey>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..3)
            .map(|i| {
                PrivateKey::generate(KeySpec::P256)
                    .unwrap()
                    .with_kid(format!("k-{i}"))
                    .unwrap()
            })
            .collect()
    })[n]
}

fn jwks_body(keys: &[usize]) -> String {
    let value: Value = merge_jwks(keys.iter().map(|&i| key(i).public_jwks())).unwrap();
    value.to_string()
}

fn config_answer() -> Answer {
    answer(200, &json!({"issuer": ISS, "jwks_uri": JWKS}).to_string())
}

fn issuer() -> Issuer {
    Issuer::parse(ISS, InsecureHttp::Deny).unwrap()
}

struct Setup {
    server: Arc<FakeServer>,
    clock: FixedClock,
    cache: JwksCache,
}

impl Setup {
    fn new(server: FakeServer) -> Self {
        let server = Arc::new(server.yielding(10));
        let clock = FixedClock::at_unix(NOW);
        let client: Arc<dyn HttpClient> = server.clone();
        let cache = JwksCache::new(
            SharedHttpClient::from_arc(client),
            SharedClock::new(clock.clone()),
        );
        Self {
            server,
            clock,
            cache,
        }
    }

    /// (configuration requests, JWKS requests)
    fn counts(&self) -> (usize, usize) {
        let seen = self.server.seen();
        let config = seen.iter().filter(|(u, _)| u == CONFIG).count();
        let jwks = seen.iter().filter(|(u, _)| u == JWKS).count();
        assert_eq!(config + jwks, seen.len(), "{seen:?}");
        (config, jwks)
    }
}

fn kids(jwks: &smart_fhir_jwt::Jwks) -> Vec<String> {
    jwks.keys()
        .filter_map(|k| k.kid().map(str::to_owned))
        .collect()
}

/// SC-4.34: the JWKS request is a bounded JSON GET; the parse skips nothing usable and refuses
/// a document that is not a JWKS.
#[test]
fn sc_4_34_jwks_request_and_parse() {
    let url = url::Url::parse(JWKS).unwrap();
    let request = jwks_request(&url).unwrap();
    assert_eq!(request.uri(), JWKS);
    assert_eq!(request.headers()["accept"], "application/json");
    assert_eq!(
        request.extensions().get::<MaxResponseBytes>(),
        Some(&MaxResponseBytes(MAX_JWKS_BYTES))
    );
    let jwks = parse_jwks(ok_json(&jwks_body(&[0, 1]))).unwrap();
    assert_eq!(kids(&jwks), ["k-0", "k-1"]);
    assert!(matches!(
        parse_jwks(ok_json(r#"{"not": "a jwks"}"#)),
        Err(KeyFetchError::Invalid { .. })
    ));
    let mut gone = ok_json("{}");
    *gone.status_mut() = http::StatusCode::GONE;
    assert!(matches!(
        parse_jwks(gone),
        Err(KeyFetchError::Status { status: 410, .. })
    ));
}

/// SC-4.34: keys are cached per issuer for the default lifetime; at its end the configuration
/// and the JWKS are fetched again.
#[tokio::test]
async fn sc_4_34_keys_are_cached_for_the_default_lifetime() {
    let s = Setup::new(
        FakeServer::new()
            .on(CONFIG, config_answer())
            .on(JWKS, answer(200, &jwks_body(&[0]))),
    );
    let first = s.cache.keys(&issuer()).await.unwrap();
    let again = s.cache.clone().keys(&issuer()).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "clones share the cache");
    assert_eq!(s.counts(), (1, 1));
    s.clock.advance(DEFAULT_JWKS_TTL - Duration::from_secs(1));
    s.cache.keys(&issuer()).await.unwrap();
    assert_eq!(s.counts(), (1, 1));
    s.clock.advance(Duration::from_secs(1));
    s.cache.keys(&issuer()).await.unwrap();
    assert_eq!(s.counts(), (2, 2));
    assert_eq!(s.cache.cached_issuers(), 1);
    s.cache.invalidate(ISS);
    assert_eq!(s.cache.cached_issuers(), 0);
    s.cache.keys(&issuer()).await.unwrap();
    assert_eq!(s.counts(), (3, 3));
}

/// SC-1.4, SC-4.34: the JWKS response's Cache-Control sets the lifetime, within
/// [MIN_JWKS_TTL, MAX_JWKS_TTL]; no-store keeps the keys for the floor.
#[tokio::test]
async fn sc_4_34_cache_control_sets_the_lifetime_within_bounds() {
    for (header, lifetime) in [
        ("public, Max-Age=600", Duration::from_secs(600)),
        ("max-age=5", MIN_JWKS_TTL),
        ("no-store", MIN_JWKS_TTL),
        ("max-age=99999999", MAX_JWKS_TTL),
        ("max-age=soon", DEFAULT_JWKS_TTL),
    ] {
        let s = Setup::new(FakeServer::new().on(CONFIG, config_answer()).on(
            JWKS,
            answer_with(200, &[("cache-control", header)], &jwks_body(&[0])),
        ));
        s.cache.keys(&issuer()).await.unwrap();
        s.clock.advance(lifetime - Duration::from_secs(1));
        s.cache.keys(&issuer()).await.unwrap();
        assert_eq!(s.counts(), (1, 1), "{header}");
        s.clock.advance(Duration::from_secs(1));
        s.cache.keys(&issuer()).await.unwrap();
        assert_eq!(s.counts(), (2, 2), "{header}");
    }
    // The configured default is kept within the bounds too.
    let s = Setup::new(FakeServer::new());
    let cache = s.cache.default_ttl(Duration::from_secs(1));
    assert_eq!(cache.default_ttl_value(), MIN_JWKS_TTL);
}

/// SC-4.34: concurrent callers with a cold cache cause one fetch of each document.
#[tokio::test]
async fn sc_4_34_concurrent_cold_fetch_is_single() {
    let s = Setup::new(
        FakeServer::new()
            .on(CONFIG, config_answer())
            .on(JWKS, answer(200, &jwks_body(&[0]))),
    );
    let i = issuer();
    let (a, b, c) = tokio::join!(s.cache.keys(&i), s.cache.keys(&i), s.cache.keys(&i));
    assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
    assert!(c.is_ok());
    assert_eq!(s.counts(), (1, 1));
}

/// SC-4.34: failures are typed, name the document, and are not cached.
#[tokio::test]
async fn sc_4_34_failures_are_not_cached() {
    let s = Setup::new(
        FakeServer::new()
            .on(CONFIG, answer(503, "busy"))
            .on(CONFIG, config_answer())
            .on(JWKS, answer(200, r#"{"keys": 7}"#))
            .on(JWKS, answer(200, &jwks_body(&[0]))),
    );
    let e = s.cache.keys(&issuer()).await.unwrap_err();
    assert_eq!(e.document, KeyDocument::OpenidConfiguration);
    assert!(e.is_retryable());
    let e = s.cache.keys(&issuer()).await.unwrap_err();
    assert_eq!(e.document, KeyDocument::Jwks);
    assert_eq!(e.url, JWKS);
    assert!(matches!(e.source, KeyFetchError::Invalid { .. }));
    assert!(!e.is_retryable());
    s.cache.keys(&issuer()).await.unwrap();
    assert_eq!(s.counts(), (3, 2));
}

/// SC-4.34: a forced refetch (unknown kid) reuses the known jwks_uri, returns the new keys,
/// and is rate-limited per issuer, failed refetches included.
#[tokio::test]
async fn sc_4_34_refetch_is_rate_limited() {
    let s = Setup::new(
        FakeServer::new()
            .on(CONFIG, config_answer())
            .on(JWKS, answer(200, &jwks_body(&[0])))
            .on(JWKS, answer(200, &jwks_body(&[0, 1])))
            .on(JWKS, answer(500, "down"))
            .on(JWKS, answer(200, &jwks_body(&[0, 1, 2]))),
    );
    let i = issuer();
    let stale = s.cache.keys(&i).await.unwrap();
    let fresh = s.cache.refetch(&i, &stale).await.unwrap().unwrap();
    assert_eq!(kids(&fresh), ["k-0", "k-1"]);
    assert_eq!(
        s.counts(),
        (1, 2),
        "the configuration was not fetched again"
    );
    // Another caller still holding the stale set gets the new one without a request.
    let shared = s.cache.refetch(&i, &stale).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&shared, &fresh));
    // Within the interval, a refetch is refused without a request.
    assert!(s.cache.refetch(&i, &fresh).await.unwrap().is_none());
    assert_eq!(s.counts(), (1, 2));
    // After it, one more is made; it fails, and a failed refetch counts for the rate limit.
    s.clock.advance(DEFAULT_JWKS_REFETCH_INTERVAL);
    assert!(s.cache.refetch(&i, &fresh).await.is_err());
    assert!(s.cache.refetch(&i, &fresh).await.unwrap().is_none());
    assert_eq!(s.counts(), (1, 3));
    s.clock.advance(DEFAULT_JWKS_REFETCH_INTERVAL);
    let newest = s.cache.refetch(&i, &fresh).await.unwrap().unwrap();
    assert_eq!(kids(&newest), ["k-0", "k-1", "k-2"]);
    assert_eq!(s.counts(), (1, 4));
}

/// SC-4.34: issuers are cached apart, and so is one issuer under two insecure-HTTP policies.
#[tokio::test]
async fn sc_4_34_issuers_are_cached_apart() {
    let s = Setup::new(
        FakeServer::new()
            .on(CONFIG, config_answer())
            .on(JWKS, answer(200, &jwks_body(&[0]))),
    );
    s.cache.keys(&issuer()).await.unwrap();
    let loopback_ok = Issuer::parse(ISS, InsecureHttp::AllowLoopback).unwrap();
    s.cache.keys(&loopback_ok).await.unwrap();
    assert_eq!(s.counts(), (2, 2));
    assert_eq!(s.cache.cached_issuers(), 2);
    // P5: Debug shows settings and a count only.
    let shown = format!("{:?}", s.cache);
    assert!(
        shown.contains("cached_issuers: 2") && !shown.contains("k-0"),
        "{shown}"
    );
}

/// Clock skew: the `Date` of the OpenID configuration and JWKS responses feeds the issuer's
/// clock offset (the transport's and clock's `ServerClocks`), and nothing of another origin.
#[tokio::test]
async fn openid_and_jwks_responses_feed_the_issuers_clock_offset() {
    // The issuer's clock is five minutes ahead of the local one.
    let date = "Sun, 15 Jun 2025 15:11:40 GMT"; // NOW + 300
    let s = Setup::new(
        FakeServer::new()
            .on(
                CONFIG,
                answer_with(
                    200,
                    &[("Date", date)],
                    &json!({"issuer": ISS, "jwks_uri": JWKS}).to_string(),
                ),
            )
            .on(JWKS, answer_with(200, &[("Date", date)], &jwks_body(&[0]))),
    );
    let clocks = s.cache.server_clocks();
    let issuer_url = issuer().url().clone();
    assert_eq!(
        clocks.offset(&issuer_url),
        smart_fhir_core::ClockOffset::ZERO
    );
    s.cache.keys(&issuer()).await.unwrap();
    assert_eq!(
        clocks.offset(&issuer_url),
        smart_fhir_core::ClockOffset::from_seconds(300)
    );
    let other = url::Url::parse("https://ehr.example/fhir").unwrap();
    assert_eq!(clocks.offset(&other), smart_fhir_core::ClockOffset::ZERO);
}
