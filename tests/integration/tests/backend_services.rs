//! Backend Services end to end against a real authorization server (oidc-provider) and a real
//! FHIR engine (the Medplum router), both run by the harness.

use std::sync::Arc;
use std::time::Duration;

use smart_fhir_core::{AccessToken, Clock, SystemClock};
use smart_fhir_integration_tests::*;
use smart_fhir_jwt::Algorithm;
use smart_fhir_oauth::{BackendServices, PrivateKeyJwt};
use smart_fhir_store::{MemoryTokenStore, SharedTokenStore, StoredToken, TokenStore};

fn source(client_id: &str, key_name: &str, scope: &str) -> BackendServices {
    BackendServices::builder()
        .fhir_base(base())
        .client_id(client_id)
        .scope(scope)
        .private_key(key(key_name))
        .http_client(http())
        .build()
        .expect("backend services")
}

async fn read_patient(token: &AccessToken) -> (u16, serde_json::Value) {
    let id = patient_ids().into_iter().next().expect("a seeded patient");
    fhir_get(&format!("Patient/{id}"), Some(token)).await
}

/// SC-2.7, SC-3.2, SC-3.4, SC-3.10: an RS384-signed assertion gets a token (discovered token
/// endpoint), which reads a Patient.
#[tokio::test]
async fn sc_2_7_rs384_token_then_fhir_read() {
    let backend = source(
        "it-rs384",
        "rs384",
        "system/Patient.rs system/Observation.rs",
    );
    let token = backend.token().await.expect("token");
    assert_eq!(token.token_type.to_ascii_lowercase(), "bearer");
    assert!(token.expires_at > SystemClock.now());
    let granted = token.scope.clone().unwrap_or_default();
    assert!(granted.contains("system/Patient.rs"), "granted: {granted}");
    assert!(backend.missing_scopes().await.expect("diff").is_empty());
    assert!(backend.resolved_token_endpoint().is_some());
    let (status, body) = read_patient(&token.access_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resourceType"], "Patient");
}

/// SC-2.7, SC-2.8: ES384 (P-384) works the same.
#[tokio::test]
async fn sc_2_7_es384_token_then_fhir_read() {
    let backend = BackendServices::builder()
        .fhir_base(base())
        .client_id("it-es384")
        .scope("system/Patient.rs")
        .private_key(PrivateKeyJwt::new(key("es384")).algorithm(Algorithm::ES384))
        .http_client(http())
        .build()
        .expect("backend services");
    let token = backend.access_token().await.expect("token");
    let (status, body) = read_patient(&token).await;
    assert_eq!(status, 200, "{body}");
}

/// SC-2.2, SC-2.9: a client registered by JWKS URL, which the authorization server fetches from
/// the test; the assertion names it in `jku`.
#[tokio::test]
async fn sc_2_9_client_registered_by_jwks_url_with_jku() {
    let jwks = std::fs::read_to_string(jwks_file()).expect("jwks");
    let server = serve_json(jwks_port(), jwks).await;
    let jku = format!("http://127.0.0.1:{}/jwks.json", jwks_port());
    let backend = BackendServices::builder()
        .fhir_base(base())
        .client_id("it-jku")
        .scope("system/Patient.rs")
        .private_key(PrivateKeyJwt::new(key("jku-rs384")).jku(jku))
        .http_client(http())
        .build()
        .expect("backend services");
    let token = backend.access_token().await.expect("token");
    assert!(
        server.hits() >= 1,
        "the server fetched the JWKS from its URL"
    );
    let (status, _) = read_patient(&token).await;
    assert_eq!(status, 200);
}

/// SC-2.15, SC-3.7: a key the server does not know → a typed `invalid_client`.
#[tokio::test]
async fn sc_2_15_unregistered_key_is_invalid_client() {
    let backend = source("it-unregistered", "unregistered", "system/Patient.rs");
    let err = backend.token().await.expect_err("must be refused");
    assert!(err.is_invalid_client(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("invalid_client"), "{text}");
}

/// Single flight, SC-3.9: 10,000 concurrent callers on an empty cache → exactly one token
/// request, counted by the server, and every caller gets that token; later callers reuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_10000_callers_empty_cache_one_token_request() {
    let client = "it-single-flight";
    let before = token_requests(client).await;
    let backend = source(client, "rs384", "system/Patient.rs");
    let tokens = concurrent_tokens(&backend, 10_000).await;
    let after = token_requests(client).await;
    assert_eq!(after - before, 1, "token requests for 10,000 callers");
    eprintln!(
        "single flight (empty cache): 10000 callers -> {} token request(s)",
        after - before
    );
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "all callers got the same token"
    );
    for _ in 0..100 {
        backend.access_token().await.expect("cached");
    }
    assert_eq!(
        token_requests(client).await - before,
        1,
        "cached token reused (SC-3.9)"
    );
}

/// Single flight on an expired cache: a stored token past its expiry is never handed out; one
/// token request replaces it for all 10,000 callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_10000_callers_expired_cache_one_token_request() {
    let client = "it-single-flight-expired";
    let store = SharedTokenStore::new(MemoryTokenStore::new());
    let backend = BackendServices::builder()
        .fhir_base(base())
        .client_id(client)
        .scope("system/Patient.rs")
        .private_key(key("rs384"))
        .http_client(http())
        .token_store(store.clone())
        .build()
        .expect("backend services");
    let past = SystemClock.now() - Duration::from_secs(3600);
    let expired = StoredToken::new(
        AccessToken::new("expired-token"),
        past,
        past + Duration::from_secs(300),
    );
    store
        .set(backend.store_key(), expired)
        .await
        .expect("seed the store");
    let before = token_requests(client).await;
    let tokens = concurrent_tokens(&backend, 10_000).await;
    let after = token_requests(client).await;
    assert_eq!(after - before, 1, "token requests for 10,000 callers");
    eprintln!(
        "single flight (expired cache): 10000 callers -> {} token request(s)",
        after - before
    );
    assert!(tokens
        .iter()
        .all(|t| t == &tokens[0] && t != "expired-token"));
    let (status, _) = read_patient(&AccessToken::new(tokens[0].clone())).await;
    assert_eq!(status, 200);
}

async fn concurrent_tokens(backend: &BackendServices, n: usize) -> Vec<String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let b = backend.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            b.access_token().await.map(|t| t.secret().to_owned())
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("task").expect("every caller gets the token"));
    }
    out
}

/// SC-3.8, SC-8.26: a token the FHIR server rejects (401) is dropped and renewed once; the new
/// token works; the old one is never handed out again.
#[tokio::test]
async fn sc_3_8_rejected_token_is_renewed_once() {
    let client = "it-renew";
    let backend = source(client, "rs384", "system/Patient.rs");
    let before = token_requests(client).await;
    let first = backend.access_token().await.expect("token");
    assert_eq!(read_patient(&first).await.0, 200);
    revoke_all().await;
    let (status, _) = read_patient(&first).await;
    assert_eq!(status, 401, "the harness now refuses the old token");
    // What a FHIR client does on 401: report the token, get another, retry once.
    smart_fhir_core::AccessTokenProvider::token_rejected(&backend, &first).await;
    let second = backend.access_token().await.expect("renewed token");
    assert_ne!(second.secret(), first.secret());
    assert_eq!(read_patient(&second).await.0, 200);
    assert_eq!(
        token_requests(client).await - before,
        2,
        "exactly one renewal"
    );
    // Reporting the old token again must not drop the new one.
    smart_fhir_core::AccessTokenProvider::token_rejected(&backend, &first).await;
    let third = backend.access_token().await.expect("token");
    assert_eq!(third.secret(), second.secret());
    assert_eq!(token_requests(client).await - before, 2);
}

/// SC-3.12, SC-5.13: the server grants less than asked (it drops scopes it does not know); the
/// difference is reported, and the server refuses what the grant does not cover.
#[tokio::test]
async fn sc_5_13_narrower_grant_is_reported_and_enforced() {
    let backend = source(
        "it-rs384",
        "rs384",
        "system/Observation.rs system/MedicationRequest.rs",
    );
    let token = backend.access_token().await.expect("token");
    let missing = backend.missing_scopes().await.expect("difference");
    assert_eq!(missing.to_string(), "system/MedicationRequest.rs");
    let (status, _) = read_patient(&token).await;
    assert_eq!(
        status, 403,
        "an Observation scope does not cover a Patient read"
    );
}
