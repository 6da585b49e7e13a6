//! The token endpoint checking `private_key_jwt` client assertions (feature `jwt`).
#![cfg(feature = "jwt")]

use std::time::Duration;

use serde_json::{json, Value};
use smart_fhir_core::{http, Bytes, Clock, FixedClock, HttpClient, InsecureHttp};
use smart_fhir_http::HyperHttpClient;
use smart_fhir_jwt::{Algorithm, AssertionSigner, KeySpec, PrivateKey, CLIENT_ASSERTION_TYPE};
use smart_fhir_testkit::{TestServer, TestkitError};

fn token_request(server: &TestServer, assertion: &str) -> http::Request<Bytes> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", "system/*.rs")
        .append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
        .append_pair("client_assertion", assertion)
        .finish();
    http::Request::post(server.token_endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from(form))
        .unwrap()
}

#[tokio::test]
async fn verifies_signature_audience_and_replay_sc_2_10_sc_2_11_p8_p11() {
    let server = TestServer::start().await;
    let key = PrivateKey::generate(KeySpec::for_algorithm(Algorithm::RS384)).unwrap();
    server.verify_client_assertions(&key.public_jwks()).unwrap();
    let clock = FixedClock::at_unix(1_750_000_000);
    server.set_clock(clock.clone());
    let signer = AssertionSigner::new(&key, Algorithm::RS384).unwrap();
    let client = HyperHttpClient::builder()
        .insecure_http(InsecureHttp::AllowLoopback)
        .build()
        .unwrap();
    let lifetime = Duration::from_secs(300);

    let good = signer
        .sign("client-1", server.token_endpoint(), lifetime, clock.now())
        .unwrap();
    let r = client
        .execute(token_request(&server, good.secret()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body["access_token"], "tok-1");

    // The same assertion again: a replayed jti.
    let r = client
        .execute(token_request(&server, good.secret()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body["error"], "invalid_client");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("jti"), "{description}");
    assert!(!description.contains(good.secret()));

    // An assertion for the FHIR base instead of the token endpoint (P8).
    let wrong_aud = signer
        .sign("client-1", server.fhir_base(), lifetime, clock.now())
        .unwrap();
    let r = client
        .execute(token_request(&server, wrong_aud.secret()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // An expired one, once the server's clock has moved on.
    let soon_old = signer
        .sign(
            "client-1",
            server.token_endpoint(),
            Duration::from_secs(60),
            clock.now(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(600));
    let r = client
        .execute(token_request(&server, soon_old.secret()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(server.tokens_issued(), 1);
    assert_eq!(server.token_requests(), 4);
}

#[tokio::test]
async fn an_unusable_jwks_is_an_error() {
    let server = TestServer::start().await;
    let e = server
        .verify_client_assertions(&json!({"keys": "not a list"}))
        .unwrap_err();
    assert!(matches!(e, TestkitError::InvalidJwks { .. }), "{e}");
}
