//! Request shapes and response decoding of every FHIR interaction (SC-8), through a recording
//! fake transport.

mod client_support;

use client_support::*;
use serde::Deserialize;
use serde_json::{json, Value};
use smart_fhir_http::client::{Level, SearchParams};
use smart_fhir_http::{FhirError, FhirResponse, FhirVersion, OperationOutcome};

const FHIR_JSON: &str = "application/fhir+json";

fn assert_fhir_headers(s: &Seen, body: bool) {
    assert_eq!(s.header("accept"), Some(FHIR_JSON), "{s:?}");
    if body {
        assert_eq!(s.header("content-type"), Some(FHIR_JSON), "{s:?}");
    } else {
        assert_eq!(s.header("content-type"), None, "{s:?}");
    }
}

/// SC-8.20: capabilities is `GET [base]/metadata`, with `mode` when asked.
#[tokio::test]
async fn sc_8_20_capabilities() {
    let http = FakeHttp::new([
        Reply::json(
            200,
            json!({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}),
        ),
        Reply::json(200, json!({"resourceType": "TerminologyCapabilities"})),
    ]);
    let c = open_client(&http);
    let r: FhirResponse = c.capabilities(None).await.unwrap();
    assert_eq!(r.body()["fhirVersion"], "4.0.1");
    let _: FhirResponse = c.capabilities(Some("terminology")).await.unwrap();
    let seen = http.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, format!("{BASE}/metadata"));
    assert_eq!(seen[1].uri, format!("{BASE}/metadata?mode=terminology"));
    assert_fhir_headers(&seen[0], false);
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "no token source, no token"
    );
}

/// SC-8.4, SC-3.10: read is `GET [base]/[type]/[id]` with the bearer token; the body decodes
/// into the caller's type and the ETag is exposed.
#[tokio::test]
async fn sc_8_4_read_decodes_into_a_caller_type() {
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Patient {
        resource_type: String,
        id: String,
    }
    let http = FakeHttp::new([Reply::json(200, patient("123"))
        .header("etag", "W/\"1\"")
        .header("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT")]);
    let (c, _) = client(&http);
    let r = c.read::<Patient>("Patient", "123").await.unwrap();
    assert_eq!(r.body().resource_type, "Patient");
    assert_eq!(r.body().id, "123");
    assert_eq!(r.version_id(), Some("1"));
    assert!(r.last_modified().is_some());
    let s = http.only();
    assert_eq!(
        (s.method.as_str(), s.uri.as_str()),
        ("GET", "https://ehr.example/fhir/Patient/123")
    );
    assert_eq!(s.header("authorization"), Some("Bearer tok-1"));
    assert_fhir_headers(&s, false);
}

/// SC-8.2: the configured FHIR version sets `Accept` and `Content-Type`.
#[tokio::test]
async fn sc_8_2_fhir_version_media_types() {
    let http = FakeHttp::new([
        Reply::json(200, patient("1")),
        Reply::json(201, patient("1")),
    ]);
    let c = builder(&http)
        .fhir_version(FhirVersion::R4)
        .build()
        .unwrap();
    let _: FhirResponse = c.read("Patient", "1").await.unwrap();
    let _: FhirResponse<Option<Value>> = c.create("Patient", &patient("1"), None).await.unwrap();
    let seen = http.seen();
    assert_eq!(
        seen[0].header("accept"),
        Some("application/fhir+json; fhirVersion=4.0")
    );
    assert_eq!(
        seen[1].header("content-type"),
        Some("application/fhir+json; fhirVersion=4.0")
    );
}

/// SC-8.4: a conditional read sends `If-None-Match: W/"v"`; `304` is `None`, `200` the resource.
#[tokio::test]
async fn sc_8_4_read_if_none_match_304_and_200() {
    let http = FakeHttp::new([
        Reply::empty(304).header("etag", "W/\"3\""),
        Reply::json(200, patient("1")).header("etag", "W/\"4\""),
    ]);
    let (c, _) = client(&http);
    let r = c
        .read_if_none_match::<Value>("Patient", "1", "3")
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.body().is_none());
    let r = c
        .read_if_none_match::<Value>("Patient", "1", "W/\"3\"")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().as_ref().unwrap()["id"], "1");
    assert_eq!(r.version_id(), Some("4"));
    for s in http.seen() {
        assert_eq!(s.header("if-none-match"), Some("W/\"3\""));
    }
}

/// SC-8.5: vread is `GET [base]/[type]/[id]/_history/[vid]`.
#[tokio::test]
async fn sc_8_5_vread() {
    let http = FakeHttp::new([Reply::json(200, patient("1"))]);
    let c = open_client(&http);
    let _: FhirResponse = c.vread("Patient", "1", "2").await.unwrap();
    assert_eq!(http.only().uri, format!("{BASE}/Patient/1/_history/2"));
}

/// SC-8.4, SC-8.25: 404 and 410 are status errors carrying the OperationOutcome.
#[tokio::test]
async fn sc_8_4_not_found_and_gone_are_status_errors() {
    let http = FakeHttp::new([
        Reply::outcome(404, "not-found", "Resource Patient/9 is not known"),
        Reply::outcome(410, "deleted", "Resource was deleted"),
    ]);
    let c = open_client(&http);
    let e = c.read::<Value>("Patient", "9").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(e.outcome().unwrap().issue[0].code, "not-found");
    let e = c.read::<Value>("Patient", "9").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::GONE));
    assert_eq!(http.seen().len(), 2, "4xx is never retried");
}

/// Invalid type names and ids are refused before anything is sent, without echoing the id.
#[tokio::test]
async fn invalid_types_and_ids_are_refused_without_a_request() {
    let http = FakeHttp::new([]);
    let c = open_client(&http);
    for (t, id) in [
        ("patient", "1"),
        ("Patient/1", "1"),
        ("", "1"),
        ("Patient", "../x"),
        ("Patient", ""),
        ("Patient", "SSN 123-45"),
    ] {
        let e = c.read::<Value>(t, id).await.unwrap_err();
        assert!(matches!(e, FhirError::InvalidRequest(_)), "{t} {id}: {e}");
        assert!(!e.to_string().contains("SSN"), "{e}");
    }
    assert!(matches!(
        c.vread::<Value>("Patient", "1", "a/b").await.unwrap_err(),
        FhirError::InvalidRequest(_)
    ));
    assert!(
        matches!(
            c.update::<Value>("Patient", "1", &patient("2"), None)
                .await
                .unwrap_err(),
            FhirError::InvalidRequest(_)
        ),
        "SC-8.6: body id must equal the URL id"
    );
    assert!(
        matches!(
            c.create::<Value>("Observation", &patient("1"), None)
                .await
                .unwrap_err(),
            FhirError::InvalidRequest(_)
        ),
        "body type must match the URL type"
    );
    assert!(
        matches!(
            c.conditional_delete("Patient", &[]).await.unwrap_err(),
            FhirError::InvalidRequest(_)
        ),
        "a conditional delete without criteria would address the whole type"
    );
    assert!(matches!(
        c.batch::<Value>(&json!({"resourceType": "Bundle", "type": "transaction"}))
            .await
            .unwrap_err(),
        FhirError::InvalidRequest(_)
    ));
    assert!(matches!(
        c.operation_get::<Value>(Level::System, "bad/op", &[])
            .await
            .unwrap_err(),
        FhirError::InvalidRequest(_)
    ));
    assert!(http.seen().is_empty());
}

/// SC-8.16, SC-8.1: type search is a GET with form-encoded, ordered, repeatable parameters.
#[tokio::test]
async fn sc_8_16_search_get_encodes_parameters() {
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], None)),
        Reply::json(200, bundle(vec![], None)),
    ]);
    let (c, _) = client(&http);
    let r: FhirResponse = c
        .search(
            "Patient",
            &[
                ("name", "Zoë O'Brien"),
                ("birthdate", "ge1970"),
                ("birthdate", "lt1980"),
                ("identifier", "urn:x|MRN 1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.body()["entry"][0]["resource"]["id"], "1");
    let params = SearchParams::new()
        .add("family", "Smith")
        .count(2)
        .sort("-_lastUpdated");
    let _: FhirResponse = c.search("Patient", &params).await.unwrap();
    let seen = http.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].uri,
        format!("{BASE}/Patient?name=Zo%C3%AB+O%27Brien&birthdate=ge1970&birthdate=lt1980&identifier=urn%3Ax%7CMRN+1")
    );
    assert_eq!(
        seen[1].uri,
        format!("{BASE}/Patient?family=Smith&_count=2&_sort=-_lastUpdated")
    );
    assert_eq!(seen[0].header("authorization"), Some("Bearer tok-1"));
    assert!(seen[0].body.is_empty());
}

/// SC-8.16, SC-8.17: POST `_search` sends the parameters as a form body, none in the URL, and is
/// retried like a GET.
#[tokio::test(start_paused = true)]
async fn sc_8_17_search_post_form_body_and_retried() {
    let http = FakeHttp::new([
        Reply::outcome(503, "transient", "busy"),
        Reply::json(200, bundle(vec![patient("1")], None)),
    ]);
    let (c, _) = client(&http);
    let _: FhirResponse = c
        .search_post("Patient", &[("name", "Smith"), ("birthdate", "1970-01-01")])
        .await
        .unwrap();
    let seen = http.seen();
    assert_eq!(seen.len(), 2, "a _search POST is idempotent and retried");
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.uri, format!("{BASE}/Patient/_search"));
        assert_eq!(
            s.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(s.header("accept"), Some(FHIR_JSON));
        assert_eq!(s.body_text(), "name=Smith&birthdate=1970-01-01");
    }
}

/// SC-8.16: a GET search answered `405` is sent once more as a POST `_search`, and vice versa.
#[tokio::test]
async fn sc_8_16_search_retries_with_the_other_method_on_405() {
    let http = FakeHttp::new([
        Reply::outcome(405, "not-supported", "GET search not allowed"),
        Reply::json(200, bundle(vec![], None)),
        Reply::outcome(405, "not-supported", "POST search not allowed"),
        Reply::json(200, bundle(vec![], None)),
        Reply::outcome(405, "not-supported", "no"),
        Reply::outcome(405, "not-supported", "no"),
    ]);
    let c = open_client(&http);
    let _: FhirResponse = c.search("Patient", &[("name", "x")]).await.unwrap();
    let _: FhirResponse = c.search_post("Patient", &[("name", "x")]).await.unwrap();
    let e = c
        .search::<Value>("Patient", &[("name", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::METHOD_NOT_ALLOWED));
    let seen: Vec<(String, String)> = http
        .seen()
        .into_iter()
        .map(|s| (s.method.to_string(), s.uri))
        .collect();
    let get = format!("{BASE}/Patient?name=x");
    let post = format!("{BASE}/Patient/_search");
    assert_eq!(
        seen,
        vec![
            ("GET".into(), get.clone()),
            ("POST".into(), post.clone()),
            ("POST".into(), post.clone()),
            ("GET".into(), get.clone()),
            ("GET".into(), get),
            ("POST".into(), post),
        ],
        "one switch, never a loop"
    );
}

/// SC-8.16: system and compartment searches.
#[tokio::test]
async fn sc_8_16_system_and_compartment_search() {
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![], None)),
        Reply::json(200, bundle(vec![], None)),
        Reply::json(200, bundle(vec![], None)),
    ]);
    let c = open_client(&http);
    let _: FhirResponse = c
        .search_system(&[("_type", "Patient,Observation")])
        .await
        .unwrap();
    let _: FhirResponse = c
        .search_compartment(
            "Patient",
            "123",
            Some("Observation"),
            &[("code", "29463-7")],
        )
        .await
        .unwrap();
    let _: FhirResponse = c
        .search_compartment("Patient", "123", None, &[])
        .await
        .unwrap();
    let uris: Vec<String> = http.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        uris,
        vec![
            format!("{BASE}?_type=Patient%2CObservation"),
            format!("{BASE}/Patient/123/Observation?code=29463-7"),
            format!("{BASE}/Patient/123/*"),
        ]
    );
}

/// SC-8.13, SC-8.22: create is a POST of the JSON body with the default `Prefer`; the response
/// body and `Location` are exposed; a `return=minimal` answer has no body.
#[tokio::test]
async fn sc_8_13_create_and_prefer() {
    let http = FakeHttp::new([
        Reply::json(201, patient("new"))
            .header("location", &format!("{BASE}/Patient/new/_history/1"))
            .header("etag", "W/\"1\""),
        Reply::empty(201).header("location", &format!("{BASE}/Patient/n2/_history/1")),
    ]);
    let (c, _) = client(&http);
    let c = c.with_prefer(Some("return=representation")).unwrap();
    let body = json!({"resourceType": "Patient", "name": [{"family": "Smith"}]});
    let r = c.create::<Value>("Patient", &body, None).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.body().as_ref().unwrap()["id"], "new");
    assert_eq!(
        r.location(),
        Some("https://ehr.example/fhir/Patient/new/_history/1")
    );
    let minimal = c.with_prefer(Some("return=minimal")).unwrap();
    let r = minimal
        .create::<Value>("Patient", &body, None)
        .await
        .unwrap();
    assert!(r.body().is_none(), "SC-8.22: return=minimal has no body");
    let seen = http.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, format!("{BASE}/Patient"));
    assert_fhir_headers(&seen[0], true);
    assert_eq!(seen[0].header("prefer"), Some("return=representation"));
    assert_eq!(seen[0].header("if-none-exist"), None);
    assert_eq!(seen[0].body_json(), body);
    assert_eq!(seen[1].header("prefer"), Some("return=minimal"));
}

/// SC-8.22: the builder's `Prefer` goes on writes, not on reads or deletes; `with_prefer(None)`
/// removes it.
#[tokio::test]
async fn sc_8_22_default_prefer_only_on_writes() {
    let http = FakeHttp::new([
        Reply::json(200, patient("1")),
        Reply::json(200, patient("1")),
        Reply::empty(204),
        Reply::json(201, patient("1")),
    ]);
    let c = builder(&http)
        .prefer("return=representation")
        .build()
        .unwrap();
    let _: FhirResponse = c.read("Patient", "1").await.unwrap();
    let _: FhirResponse<Option<Value>> =
        c.update("Patient", "1", &patient("1"), None).await.unwrap();
    c.delete("Patient", "1").await.unwrap();
    let _: FhirResponse<Option<Value>> = c
        .with_prefer(None)
        .unwrap()
        .create("Patient", &patient("1"), None)
        .await
        .unwrap();
    let prefer: Vec<Option<String>> = http
        .seen()
        .iter()
        .map(|s| s.header("prefer").map(str::to_owned))
        .collect();
    assert_eq!(
        prefer,
        vec![None, Some("return=representation".into()), None, None]
    );
}

/// SC-8.14: a conditional create sends `If-None-Exist`; `200` (already there) is not an error.
#[tokio::test]
async fn sc_8_14_conditional_create() {
    let http = FakeHttp::new([Reply::json(200, patient("existing"))]);
    let c = open_client(&http);
    let r = c
        .create::<Value>("Patient", &patient("x"), Some("identifier=urn:mrn|MRN-1"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().as_ref().unwrap()["id"], "existing");
    assert_eq!(
        http.only().header("if-none-exist"),
        Some("identifier=urn:mrn|MRN-1")
    );
}

/// SC-8.6, SC-8.7: update is a PUT to `[type]/[id]`; `If-Match` carries a weak ETag built from
/// a version id, or the ETag as given; a 412 is a status error.
#[tokio::test]
async fn sc_8_7_update_with_if_match() {
    let http = FakeHttp::new([
        Reply::json(200, patient("1")).header("etag", "W/\"2\""),
        Reply::outcome(412, "conflict", "Version mismatch"),
        Reply::json(201, patient("1")),
    ]);
    let c = open_client(&http);
    let r = c
        .update::<Value>("Patient", "1", &patient("1"), Some("1"))
        .await
        .unwrap();
    assert_eq!(r.version_id(), Some("2"));
    let e = c
        .update::<Value>("Patient", "1", &patient("1"), Some("W/\"1\""))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::PRECONDITION_FAILED));
    let r = c
        .update::<Value>("Patient", "1", &patient("1"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "SC-8.6: update as create");
    let seen = http.seen();
    assert_eq!(seen.len(), 3, "412 is not retried");
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].uri, format!("{BASE}/Patient/1"));
    assert_fhir_headers(&seen[0], true);
    assert_eq!(seen[0].header("if-match"), Some("W/\"1\""));
    assert_eq!(seen[1].header("if-match"), Some("W/\"1\""));
    assert_eq!(seen[2].header("if-match"), None);
    assert_eq!(seen[0].body_json(), patient("1"));
}

/// SC-8.8: conditional update is a PUT to `[type]?criteria`.
#[tokio::test]
async fn sc_8_8_conditional_update() {
    let http = FakeHttp::new([Reply::json(201, patient("n"))]);
    let c = open_client(&http);
    let body =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]});
    let r = c
        .conditional_update::<Value>("Patient", &[("identifier", "urn:mrn|7")], &body)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s = http.only();
    assert_eq!(s.method, "PUT");
    assert_eq!(s.uri, format!("{BASE}/Patient?identifier=urn%3Amrn%7C7"));
    assert_eq!(s.body_json(), body);
}

/// SC-8.9, SC-8.10: JSON Patch uses `application/json-patch+json`; FHIRPath Patch the FHIR
/// media type; `If-Match` when given; conditional patch targets `[type]?criteria`.
#[tokio::test]
async fn sc_8_9_patch_json_fhirpath_and_conditional() {
    let http = FakeHttp::new([
        Reply::json(200, patient("1")),
        Reply::json(200, patient("1")),
        Reply::json(200, patient("1")),
        Reply::outcome(422, "processing", "test operation failed"),
    ]);
    let c = builder(&http)
        .prefer("return=representation")
        .build()
        .unwrap();
    let patch = json!([{"op": "replace", "path": "/active", "value": false}]);
    let _: FhirResponse<Option<Value>> = c
        .patch_json("Patient", "1", &patch, Some("3"))
        .await
        .unwrap();
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.active"},
        {"name": "value", "valueBoolean": false}]}]});
    let _: FhirResponse<Option<Value>> = c
        .patch_fhirpath("Patient", "1", &params, None)
        .await
        .unwrap();
    let _: FhirResponse<Option<Value>> = c
        .conditional_patch_json("Patient", &[("identifier", "urn:mrn|7")], &patch)
        .await
        .unwrap();
    let e = c
        .patch_json::<Value>(
            "Patient",
            "1",
            &json!([{"op": "test", "path": "/active", "value": true}]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::UNPROCESSABLE_ENTITY));
    let seen = http.seen();
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(seen[0].uri, format!("{BASE}/Patient/1"));
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/json-patch+json")
    );
    assert_eq!(seen[0].header("accept"), Some(FHIR_JSON));
    assert_eq!(seen[0].header("if-match"), Some("W/\"3\""));
    assert_eq!(seen[0].header("prefer"), Some("return=representation"));
    assert_eq!(seen[0].body_json(), patch);
    assert_eq!(seen[1].header("content-type"), Some(FHIR_JSON));
    assert_eq!(seen[1].header("if-match"), None);
    assert_eq!(seen[1].body_json(), params);
    assert_eq!(
        seen[2].uri,
        format!("{BASE}/Patient?identifier=urn%3Amrn%7C7")
    );
    assert_eq!(
        seen[2].header("content-type"),
        Some("application/json-patch+json")
    );
}

/// SC-8.11, SC-8.12: delete and conditional delete; the OperationOutcome body is exposed; a
/// 204 has none; 409 is a status error.
#[tokio::test]
async fn sc_8_11_delete_and_conditional_delete() {
    let http = FakeHttp::new([
        Reply::outcome(200, "informational", "Deleted"),
        Reply::empty(204),
        Reply::outcome(409, "conflict", "referenced by Observation/1"),
    ]);
    let c = open_client(&http);
    let r = c.delete("Patient", "1").await.unwrap();
    assert_eq!(r.status(), 200);
    let o: &OperationOutcome = r.body().as_ref().unwrap();
    assert_eq!(o.issue[0].code, "informational");
    let r = c
        .conditional_delete("Patient", &[("identifier", "urn:mrn|7")])
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.body().is_none());
    let e = c.delete("Patient", "2").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::CONFLICT));
    let seen = http.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("DELETE", "https://ehr.example/fhir/Patient/1")
    );
    assert_eq!(
        seen[1].uri,
        format!("{BASE}/Patient?identifier=urn%3Amrn%7C7")
    );
    assert_fhir_headers(&seen[0], false);
}

/// SC-8.19: history at instance, type and system level, with `_count`/`_since`.
#[tokio::test]
async fn sc_8_19_history_levels() {
    let hist = json!({"resourceType": "Bundle", "type": "history", "entry": []});
    let http = FakeHttp::new([
        Reply::json(200, hist.clone()),
        Reply::json(200, hist.clone()),
        Reply::json(200, hist),
    ]);
    let c = open_client(&http);
    let _: FhirResponse = c
        .history_instance(
            "Patient",
            "1",
            &SearchParams::new().count(10).since("2024-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
    let _: FhirResponse = c.history_type("Patient", &[]).await.unwrap();
    let _: FhirResponse = c.history_system(&[("_at", "2024")]).await.unwrap();
    let uris: Vec<String> = http.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        uris,
        vec![
            format!("{BASE}/Patient/1/_history?_count=10&_since=2024-01-01T00%3A00%3A00Z"),
            format!("{BASE}/Patient/_history"),
            format!("{BASE}/_history?_at=2024"),
        ]
    );
}

/// SC-8.21: batch and transaction are a POST of the Bundle to the base; neither is retried on
/// a 5xx (entries may create).
#[tokio::test]
async fn sc_8_21_batch_and_transaction() {
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/1"}}]});
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
         "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]});
    let http = FakeHttp::new([
        Reply::json(
            200,
            json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "404 Not Found"}}]}),
        ),
        Reply::outcome(500, "exception", "boom"),
    ]);
    let c = builder(&http).prefer("return=minimal").build().unwrap();
    let r: FhirResponse = c.batch(&batch).await.unwrap();
    assert_eq!(r.body()["type"], "batch-response");
    let e = c.transaction::<Value>(&tx).await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::INTERNAL_SERVER_ERROR));
    let seen = http.seen();
    assert_eq!(seen.len(), 2, "a transaction is not retried");
    for (s, body) in seen.iter().zip([&batch, &tx]) {
        assert_eq!(s.method, "POST");
        assert_eq!(s.uri, BASE);
        assert_fhir_headers(s, true);
        assert_eq!(s.header("prefer"), Some("return=minimal"));
        assert_eq!(&s.body_json(), body);
    }
}

/// Named operations at every level, by GET and by POST.
#[tokio::test]
async fn operations_get_and_post_at_every_level() {
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], None)),
        Reply::json(
            200,
            json!({"resourceType": "OperationOutcome", "issue": []}),
        ),
        Reply::json(200, json!({"resourceType": "Parameters"})),
    ]);
    let c = open_client(&http);
    let _: FhirResponse = c
        .operation_get(
            Level::Instance("Patient", "1"),
            "$everything",
            &[("_count", "5")],
        )
        .await
        .unwrap();
    let _: FhirResponse = c
        .operation_post(Level::Type("Patient"), "validate", &patient("1"))
        .await
        .unwrap();
    let _: FhirResponse = c
        .operation_post(
            Level::System,
            "$convert",
            &json!({"resourceType": "Parameters"}),
        )
        .await
        .unwrap();
    let seen = http.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        (
            "GET",
            "https://ehr.example/fhir/Patient/1/$everything?_count=5"
        )
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].uri.as_str()),
        ("POST", "https://ehr.example/fhir/Patient/$validate")
    );
    assert_fhir_headers(&seen[1], true);
    assert_eq!(seen[1].body_json(), patient("1"));
    assert_eq!(seen[2].uri, format!("{BASE}/$convert"));
}

/// `get` reads any relative path, e.g. a version or the metadata.
#[tokio::test]
async fn get_any_relative_path() {
    let http = FakeHttp::new([Reply::json(200, patient("1"))]);
    let c = open_client(&http);
    let _: FhirResponse = c.get("Patient/1/_history/2").await.unwrap();
    assert_eq!(http.only().uri, format!("{BASE}/Patient/1/_history/2"));
}

/// SC-8.24: a 2xx body that is not JSON is a decode error naming the request, without the body.
#[tokio::test]
async fn sc_8_24_undecodable_bodies() {
    let http = FakeHttp::new([
        Reply::text(200, "<html>secret patient Smith</html>"),
        Reply::empty(200),
    ]);
    let c = open_client(&http);
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert!(matches!(e, FhirError::Decode { .. }), "{e}");
    let s = e.to_string();
    assert!(s.contains("GET /fhir/Patient/1"), "{s}");
    assert!(!s.contains("Smith"), "{s}");
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert!(
        matches!(e, FhirError::Decode { .. }),
        "an empty read is an error: {e}"
    );
}
