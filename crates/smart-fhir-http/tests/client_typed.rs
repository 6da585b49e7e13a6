//! SC-8.4, SC-8.16: the client is generic over the body type: the `fhir-model` crate's R4B
//! types, the caller's own serde types and `serde_json::Value` read the same answers, and a
//! typed resource is sent as its JSON.

mod client_support;

use client_support::*;
use fhir_model::r4b::codes::BundleType;
use fhir_model::r4b::resources::{Bundle, Patient, Resource};
use serde_json::{json, Value};
use smart_fhir_http::FhirResponse;

fn smith() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "2", "lastUpdated": "2025-05-01T10:00:00.000Z", "project": "x"},
        "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
        "active": true,
        "name": [{"family": "Smith", "given": ["Jo"]}],
        "gender": "female",
        "birthDate": "1970-02-03"
    })
}

#[derive(Debug, serde::Deserialize)]
struct MyPatient {
    id: String,
    #[serde(rename = "birthDate")]
    birth_date: String,
}

/// SC-8.4: one answer read as fhir-model's `Patient`, an own type and a `Value`.
#[tokio::test]
async fn sc_8_4_read_as_fhir_model_own_type_and_value() {
    let http = FakeHttp::new([
        Reply::json(200, smith()),
        Reply::json(200, smith()),
        Reply::json(200, smith()),
    ]);
    let c = open_client(&http);
    let typed: FhirResponse<Patient> = c.read("Patient", "p1").await.unwrap();
    assert_eq!(typed.body().id.as_deref(), Some("p1"));
    assert_eq!(typed.body().active, Some(true));
    let family = typed
        .body()
        .name
        .iter()
        .flatten()
        .find_map(|n| n.family.clone());
    assert_eq!(family.as_deref(), Some("Smith"));
    let birth_date = serde_json::to_value(&typed.body().birth_date).unwrap();
    assert_eq!(birth_date, "1970-02-03");
    let mine: FhirResponse<MyPatient> = c.read("Patient", "p1").await.unwrap();
    assert_eq!(
        (mine.body().id.as_str(), mine.body().birth_date.as_str()),
        ("p1", "1970-02-03")
    );
    let value: FhirResponse = c.read("Patient", "p1").await.unwrap();
    assert_eq!(value.body()["name"][0]["family"], "Smith");
}

/// SC-8.16: a searchset answered as fhir-model's `Bundle`, its entries as its `Resource` enum.
#[tokio::test]
async fn sc_8_16_search_as_fhir_model_bundle() {
    let http = FakeHttp::new([Reply::json(200, bundle(vec![smith()], None))]);
    let c = open_client(&http);
    let found: FhirResponse<Bundle> = c.search("Patient", &[("family", "Smith")]).await.unwrap();
    assert_eq!(found.body().r#type, BundleType::Searchset);
    let ids: Vec<_> = found
        .body()
        .entry
        .iter()
        .flatten()
        .filter_map(|e| match &e.resource {
            Some(Resource::Patient(p)) => p.id.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["p1"]);
}

/// SC-8.13: a fhir-model `Patient` is sent as its FHIR JSON, and the answer read as one.
#[tokio::test]
async fn sc_8_13_create_with_a_fhir_model_patient() {
    let http = FakeHttp::new([Reply::json(201, smith())]);
    let c = open_client(&http);
    let mut new = smith();
    new.as_object_mut().unwrap().remove("id");
    let typed: Patient = serde_json::from_value(new).unwrap();
    let created = c.create::<Patient>("Patient", &typed, None).await.unwrap();
    assert_eq!(
        created.body().as_ref().and_then(|p| p.id.as_deref()),
        Some("p1")
    );
    let sent = http.only().body_json();
    assert_eq!(sent["resourceType"], "Patient");
    assert_eq!(sent["name"][0]["family"], "Smith");
    assert_eq!(sent["birthDate"], "1970-02-03");
    assert!(sent.get("id").is_none());
}
