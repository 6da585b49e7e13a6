//! The tracing events of whole discovery and key-fetch flows, captured at TRACE: they say what
//! was fetched (origin, path, status, duration) and whether a cache hit, and never carry a
//! query string or a body (P5).

use std::sync::{Arc, Mutex};

use serde_json::json;
use smart_fhir_core::{FixedClock, InsecureHttp, SharedClock, SharedHttpClient};
use smart_fhir_jwt::{KeySpec, PrivateKey};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use super::*;
use crate::*;

/// Records every event as `LEVEL message key=value …`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `flow` on a current-thread runtime with `Capture` as the subscriber; returns the lines.
fn captured<F: std::future::Future<Output = ()>>(flow: impl FnOnce() -> F) -> Vec<String> {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        // The caches bound their loads with Tokio's timer.
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(flow());
    });
    let lines = capture.0.lock().unwrap().clone();
    lines
}

fn one<'a>(lines: &'a [String], needles: &[&str]) -> &'a String {
    let found: Vec<&String> = lines
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect();
    assert_eq!(found.len(), 1, "{needles:?} in {lines:#?}");
    found[0]
}

/// SC-1.16, P5: discovery with the CapabilityStatement fallback, then a cache hit: each fetch
/// and the fallback are events with origin, path, status and duration; the cache says miss,
/// then hit; no body text appears.
#[test]
fn p5_discovery_flow_events() {
    let server = Arc::new(
        FakeServer::new()
            .on(
                &well_known(HAPI_BASE),
                answer(404, "<html>secret-page</html>"),
            )
            .on(&metadata(HAPI_BASE), answer(200, HAPI_R4_METADATA)),
    );
    let lines = captured(|| async {
        let client: Arc<dyn HttpClient> = server.clone();
        let cache = DiscoveryCache::builder(SharedHttpClient::from_arc(client))
            .clock(SharedClock::new(FixedClock::at_unix(1_700_000_000)))
            .build();
        let b = base(HAPI_BASE);
        cache.get(&b).await.unwrap();
        cache.get(&b).await.unwrap();
    });
    one(
        &lines,
        &["cache=miss", "origin=https://hapi.example", "path=/fhir"],
    );
    one(&lines, &["cache=hit", "origin=https://hapi.example"]);
    let fetched = one(&lines, &["document=SMART configuration", "status=404"]);
    assert!(
        fetched.contains("path=/fhir/.well-known/smart-configuration"),
        "{fetched}"
    );
    assert!(fetched.contains("duration_ms="), "{fetched}");
    one(&lines, &["INFO", "falling back", "reason=HTTP 404"]);
    one(
        &lines,
        &[
            "document=CapabilityStatement",
            "status=200",
            "path=/fhir/metadata",
        ],
    );
    for line in &lines {
        assert!(
            !line.contains("secret-page") && !line.contains("resourceType"),
            "{line}"
        );
    }
}

/// SC-4.34, P5: the key flow (configuration, JWKS, hit, forced refetch, rate-limited refetch)
/// as events; a `jwks_uri` query string never appears, nor any key material.
#[test]
fn p5_key_flow_events() {
    const ISS: &str = "https://auth.example/oauth2";
    let jwks_uri = "https://auth.example/oauth2/jwks?tenant=SECRET-TENANT";
    let key = PrivateKey::generate(KeySpec::P256)
        .unwrap()
        .with_kid("k-1")
        .unwrap();
    let jwks = key.public_jwks().to_string();
    let server = Arc::new(
        FakeServer::new()
            .on(
                "https://auth.example/oauth2/.well-known/openid-configuration",
                answer(
                    200,
                    &json!({"issuer": ISS, "jwks_uri": jwks_uri}).to_string(),
                ),
            )
            .on(jwks_uri, answer(200, &jwks)),
    );
    let lines = captured(|| async {
        let client: Arc<dyn HttpClient> = server.clone();
        let cache = JwksCache::new(
            SharedHttpClient::from_arc(client),
            SharedClock::new(FixedClock::at_unix(1_700_000_000)),
        );
        let issuer = Issuer::parse(ISS, InsecureHttp::Deny).unwrap();
        let first = cache.keys(&issuer).await.unwrap();
        cache.keys(&issuer).await.unwrap();
        let second = cache.refetch(&issuer, &first).await.unwrap().unwrap();
        assert!(cache.refetch(&issuer, &second).await.unwrap().is_none());
    });
    one(&lines, &["cache=miss", "path=/oauth2"]);
    one(&lines, &["cache=hit", "path=/oauth2"]);
    one(&lines, &["document=OpenID configuration", "status=200"]);
    let fetches: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("document=JWKS"))
        .collect();
    assert_eq!(fetches.len(), 2, "{lines:#?}");
    assert!(fetches[0].contains("path=/oauth2/jwks "), "{}", fetches[0]);
    one(&lines, &["INFO", "unknown kid: refetching"]);
    one(&lines, &["refetch skipped"]);
    let x = key.public_jwk()["x"].as_str().unwrap().to_owned();
    for line in &lines {
        assert!(!line.contains("SECRET") && !line.contains('?'), "{line}");
        assert!(!line.contains(&x) && !line.contains("kty"), "{line}");
    }
}
