//! The App Launch shortcuts: the context's Patient and Encounter, and the signed-in user.

use serde_json::{json, Map, Value};
use smart_fhir_core::StaticTokenProvider;
use smart_fhir_core::{AccessToken, FhirBaseUrl, InsecureHttp};
use smart_fhir_http::FhirClient;
use smart_fhir_store::LaunchContext;
use smart_fhir_testkit::{Method, Reply, TestServer};
use url::Url;

fn context(fields: Value) -> LaunchContext {
    let map: Map<String, Value> = serde_json::from_value(fields).unwrap();
    LaunchContext::from_token_fields(&map, InsecureHttp::AllowLoopback)
}

fn client(server: &TestServer) -> FhirClient {
    FhirClient::builder(
        FhirBaseUrl::parse_with(server.fhir_base(), InsecureHttp::AllowLoopback).unwrap(),
    )
    .auth(StaticTokenProvider::new(AccessToken::new("tok-x")))
    .build()
    .unwrap()
}

/// SC-4.20, SC-4.23: the context's Patient and Encounter are read; an absent one is `None`.
#[tokio::test]
async fn sc_4_20_reads_the_context_patient_and_encounter() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/p1")
        .reply(Reply::fhir(
            200,
            json!({"resourceType": "Patient", "id": "p1"}),
        ));
    server
        .route(Method::GET, "/fhir/Encounter/e1")
        .reply(Reply::fhir(
            200,
            json!({"resourceType": "Encounter", "id": "e1"}),
        ));
    let fhir = client(&server);
    let ctx = context(json!({"patient": "p1", "encounter": "e1"}));
    let p = fhir
        .read_context_patient::<Value>(&ctx)
        .await
        .unwrap()
        .expect("a patient");
    assert_eq!(p.body()["id"], "p1");
    let e = fhir
        .read_context_encounter::<Value>(&ctx)
        .await
        .unwrap()
        .expect("an encounter");
    assert_eq!(e.body()["id"], "e1");
    let empty = context(json!({}));
    assert!(fhir
        .read_context_patient::<Value>(&empty)
        .await
        .unwrap()
        .is_none());
    assert!(fhir
        .read_context_encounter::<Value>(&empty)
        .await
        .unwrap()
        .is_none());
}

/// SC-4.35, SC-4.27, P6: the user is read from its fhirUser URL under the base; a fhirUser on
/// another server is refused without any request.
#[tokio::test]
async fn sc_4_35_reads_the_user_and_never_follows_another_server() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Practitioner/dr1")
        .reply(Reply::fhir(
            200,
            json!({"resourceType": "Practitioner", "id": "dr1"}),
        ));
    let fhir = client(&server);
    let user = Url::parse(&format!("{}/Practitioner/dr1", server.fhir_base())).unwrap();
    let r = fhir.read_user::<Value>(&user).await.unwrap();
    assert_eq!(r.body()["id"], "dr1");
    let auth = server.requests_to("/fhir/Practitioner/dr1")[0]
        .header("authorization")
        .map(str::to_owned);
    assert_eq!(auth.as_deref(), Some("Bearer tok-x"));

    server.clear_requests();
    for foreign in [
        "https://elsewhere.example/fhir/Practitioner/dr1".to_owned(),
        format!("{}/other/Practitioner/dr1", server.url()),
        format!("{}/Practitioner", server.fhir_base()),
    ] {
        let err = fhir
            .read_user::<Value>(&Url::parse(&foreign).unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("fhirUser"), "{foreign}: {err}");
    }
    assert!(server.requests().is_empty());
}
