//! A ready FHIR client from a token source (feature `fhir-client`): bound to the token source's
//! server, on its transport; and the App Launch shortcuts on a [`SessionClient`].

mod launch_support;

use launch_support::*;
use serde_json::{json, Value};
use smart_fhir_core::{FhirBaseUrl, StaticTokenProvider};
use smart_fhir_http::FhirClient;
use smart_fhir_oauth::{BackendServices, SessionClient};

fn backend(s: &Setup) -> BackendServices {
    BackendServices::builder()
        .fhir_base(FhirBaseUrl::parse(BASE).unwrap())
        .client_id("backend-1")
        .scope("system/Patient.rs")
        .private_key(client_key().clone())
        .token_endpoint(TOKEN_URL)
        .http_client(s.http.clone())
        .clock(s.clock.clone())
        .build()
        .unwrap()
}

async fn session(s: &Setup, claims: Option<fn(&str) -> Value>) -> SessionClient {
    let app = s.app();
    let req = app.launch("sess-1", BASE, "launch-1").await.unwrap();
    if let Some(claims) = claims {
        let token = id_token(&claims(&params(&req)["nonce"]));
        s.server.on_token(move |n, _| {
            let mut body = token_body(n);
            body["id_token"] = json!(token);
            (200, body)
        });
    }
    app.callback("sess-1", &callback_query(&req, "code-1"))
        .await
        .unwrap();
    app.ready("sess-1").await.unwrap()
}

/// P6: a FHIR client built from Backend Services for server A refuses to be built for server
/// B; `fhir_client()` is for A.
#[tokio::test]
async fn p6_backend_fhir_client_is_bound_to_its_server() {
    let s = Setup::new();
    let backend = backend(&s);
    let fhir = backend.fhir_client().unwrap();
    assert_eq!(fhir.base(), backend.fhir_base());
    let other = FhirBaseUrl::parse("https://other.example/fhir").unwrap();
    let err = FhirClient::builder(other)
        .auth(backend.clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("other.example"), "{err}");
    assert_eq!(s.server.total(), 0, "nothing was sent");
}

/// SC-8 (one HTTP pool): `fhir_client()` sends its requests, and the token request, through the
/// token source's own transport, with the token source's token.
#[tokio::test]
async fn fhir_client_shares_the_token_sources_transport() {
    let s = Setup::new();
    let fhir = backend(&s).fhir_client().unwrap();
    let patient = fhir.read::<Value>("Patient", "p-7").await.unwrap();
    assert_eq!(patient.body()["id"], "p-7");
    let reads = s.server.requests_to(&format!("{BASE}/Patient/p-7"));
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].authorization.as_deref(), Some("Bearer at-1"));
    assert_eq!(s.server.token_requests().len(), 1);
}

/// SC-4.20, SC-4.23: the session's context Patient is read with its own FHIR client; an
/// Encounter the context does not name is `None`, without a request.
#[tokio::test]
async fn sc_4_20_session_reads_the_context_patient() {
    let s = Setup::new();
    let session = session(&s, None).await;
    let fhir = session.fhir_client().unwrap();
    assert_eq!(fhir.base(), &session.fhir_base());
    let patient = session
        .read_patient::<Value>(&fhir)
        .await
        .unwrap()
        .expect("a patient in context");
    assert_eq!(patient.body()["id"], "pat-123");
    let reads = s.server.requests_to(&format!("{BASE}/Patient/pat-123"));
    assert_eq!(reads[0].authorization.as_deref(), Some("Bearer at-1"));
    let before = s.server.total();
    assert!(session
        .read_encounter::<Value>(&fhir)
        .await
        .unwrap()
        .is_none());
    assert!(session.read_user::<Value>(&fhir).await.unwrap().is_none());
    assert_eq!(s.server.total(), before);
}

/// SC-4.35: the signed-in user is read from its `fhirUser` under the session's server.
#[tokio::test]
async fn sc_4_35_session_reads_the_user() {
    let s = Setup::new();
    let session = session(
        &s,
        Some(|nonce| {
            json!({
                "iss": ISSUER, "sub": "user-1", "aud": CLIENT_ID, "exp": NOW + 300,
                "iat": NOW - 5, "nonce": nonce, "fhirUser": "Practitioner/pr-1"
            })
        }),
    )
    .await;
    let fhir = session.fhir_client().unwrap();
    let user = session
        .read_user::<Value>(&fhir)
        .await
        .unwrap()
        .expect("a user");
    assert_eq!(user.body()["resourceType"], "Practitioner");
    assert_eq!(user.body()["id"], "pr-1");
}

/// SC-4.27, P6: the shortcuts refuse a FHIR client for another server, without any request:
/// the session's ids mean nothing there, and its user must not be fetched from elsewhere.
#[tokio::test]
async fn p6_shortcuts_refuse_a_client_for_another_server() {
    let s = Setup::new();
    let session = session(&s, None).await;
    let elsewhere = FhirClient::builder(FhirBaseUrl::parse("https://other.example/fhir").unwrap())
        .http_client(s.http.clone())
        .auth(StaticTokenProvider::new(smart_fhir_core::AccessToken::new(
            "other",
        )))
        .build()
        .unwrap();
    let before = s.server.total();
    let err = session.read_patient::<Value>(&elsewhere).await.unwrap_err();
    assert!(err.to_string().contains("another server"), "{err}");
    assert!(session.read_user::<Value>(&elsewhere).await.is_err());
    assert_eq!(s.server.total(), before);
}
