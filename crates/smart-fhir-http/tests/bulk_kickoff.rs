//! Bulk Data kick-off (SC-7.3–SC-7.10, P15) against a scripted transport.

mod bulk_support;

use std::time::Duration;

use bulk_support::{accepted, client, Fake, Reply, BASE, STATUS};
use http::Method;
use serde_json::json;
use smart_fhir_http::bulk::KickoffMethod;
use smart_fhir_http::FhirError;

fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// SC-7.3: the three kick-off endpoints.
#[tokio::test]
async fn sc_7_3_kickoff_endpoints() {
    let fake = Fake::default();
    for path in [
        "/fhir/$export",
        "/fhir/Patient/$export",
        "/fhir/Group/g-1.a/$export",
    ] {
        fake.on(Method::GET, path, accepted());
    }
    let (c, _) = client(&fake);
    for export in [
        c.bulk_export(),
        c.bulk_export().patient_level(),
        c.bulk_export().group("g-1.a"),
    ] {
        let job = export.start().await.unwrap();
        assert_eq!(job.status_url().as_str(), STATUS);
    }
    let paths: Vec<_> = fake.seen().iter().map(|s| s.path()).collect();
    assert_eq!(
        paths,
        [
            "/fhir/$export",
            "/fhir/Patient/$export",
            "/fhir/Group/g-1.a/$export"
        ]
    );
}

/// SC-7.4, SC-7.5, SC-7.6, SC-7.24: a GET kick-off carries every parameter in the query,
/// `_typeFilter` once per query with its own commas encoded, and the async headers and token.
#[tokio::test]
async fn sc_7_4_sc_7_5_sc_7_6_get_kickoff_carries_every_parameter() {
    let fake = Fake::default();
    fake.on(Method::GET, "/fhir/Group/cohort/$export", accepted());
    let (c, _) = client(&fake);
    let export = c
        .bulk_export()
        .group("cohort")
        .types(["Patient", "Observation"])
        .since("2024-01-01T00:00:00Z")
        .until("2024-02-01T00:00:00+01:00")
        .type_filter("Observation?category=laboratory,vital-signs")
        .type_filter("Patient?active=true")
        .output_format("application/fhir+ndjson")
        .elements(["id", "Patient.name"])
        .include_associated_data("LatestProvenanceResources")
        .organize_output_by("Patient")
        .allow_partial_manifests(true);
    assert_eq!(export.effective_method(), KickoffMethod::Get);
    export.start().await.unwrap();

    let req = &fake.seen()[0];
    assert_eq!(req.method, Method::GET);
    assert_eq!(req.header("accept"), Some("application/fhir+json"));
    assert_eq!(req.header("prefer"), Some("respond-async"));
    assert_eq!(req.header("authorization"), Some("Bearer tok-1"));
    assert!(req.body.is_empty());
    let raw = req.query().unwrap();
    assert!(raw.contains("_type=Patient,Observation"), "{raw}");
    assert!(
        raw.contains("_typeFilter=Observation%3Fcategory%3Dlaboratory%2Cvital-signs"),
        "the query's commas are encoded: {raw}"
    );
    let pairs = query_pairs(&raw);
    let get = |k: &str| {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("_type"), ["Patient,Observation"]);
    assert_eq!(get("_since"), ["2024-01-01T00:00:00Z"]);
    assert_eq!(get("_until"), ["2024-02-01T00:00:00+01:00"]);
    assert_eq!(
        get("_typeFilter"),
        [
            "Observation?category=laboratory,vital-signs",
            "Patient?active=true"
        ]
    );
    assert_eq!(get("_outputFormat"), ["application/fhir+ndjson"]);
    assert_eq!(get("_elements"), ["id,Patient.name"]);
    assert_eq!(get("includeAssociatedData"), ["LatestProvenanceResources"]);
    assert_eq!(get("organizeOutputBy"), ["Patient"]);
    assert_eq!(get("allowPartialManifests"), ["true"]);
}

/// SC-7.4, SC-7.8: `patient` forces a POST of a `Parameters` resource; lenient handling is
/// asked for in `Prefer`.
#[tokio::test]
async fn sc_7_4_sc_7_8_patient_forces_post_parameters() {
    let fake = Fake::default();
    fake.on(Method::POST, "/fhir/Patient/$export", accepted());
    let (c, _) = client(&fake);
    let export = c
        .bulk_export()
        .patient_level()
        .types(["Observation"])
        .since("2024-01-01T00:00:00.5Z")
        .type_filter("Observation?code=1,2")
        .patient_reference("123")
        .patient_reference("Patient/abc")
        .include_associated_data("RelevantProvenanceResources")
        .lenient(true);
    assert_eq!(export.effective_method(), KickoffMethod::Post);
    export.start().await.unwrap();

    let req = &fake.seen()[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.query(), None);
    assert_eq!(req.header("content-type"), Some("application/fhir+json"));
    assert_eq!(req.header("accept"), Some("application/fhir+json"));
    assert_eq!(
        req.header("prefer"),
        Some("respond-async, handling=lenient")
    );
    assert_eq!(
        req.body_json(),
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "_since", "valueInstant": "2024-01-01T00:00:00.5Z"},
            {"name": "_type", "valueString": "Observation"},
            {"name": "_typeFilter", "valueString": "Observation?code=1,2"},
            {"name": "patient", "valueReference": {"reference": "Patient/123"}},
            {"name": "patient", "valueReference": {"reference": "Patient/abc"}},
            {"name": "includeAssociatedData", "valueCode": "RelevantProvenanceResources"}
        ]})
    );
}

/// SC-7.4: POST can be chosen without `patient`.
#[tokio::test]
async fn sc_7_4_post_on_request() {
    let fake = Fake::default();
    fake.on(Method::POST, "/fhir/$export", accepted());
    let (c, _) = client(&fake);
    c.bulk_export()
        .method(KickoffMethod::Post)
        .start()
        .await
        .unwrap();
    assert_eq!(
        fake.seen()[0].body_json(),
        json!({"resourceType": "Parameters", "parameter": []})
    );
}

/// Malformed parameters fail before anything is sent.
#[tokio::test]
async fn invalid_parameters_are_refused_before_sending() {
    let fake = Fake::default();
    let (c, _) = client(&fake);
    let cases = [
        c.bulk_export().group("a/b"),
        c.bulk_export().types(["Patient,Observation"]),
        c.bulk_export().since("2024-01-01"),
        c.bulk_export().until("yesterday"),
        c.bulk_export().type_filter("category=laboratory"),
        c.bulk_export()
            .patient_reference("1")
            .method(KickoffMethod::Post),
        c.bulk_export()
            .patient_level()
            .patient_reference("1")
            .method(KickoffMethod::Get),
        c.bulk_export().patient_level().patient_reference("Group/1"),
        c.bulk_export().elements(["a,b"]),
    ];
    for export in cases {
        let e = export.start().await.unwrap_err();
        assert!(matches!(e, FhirError::InvalidRequest(_)), "{export:?}: {e}");
    }
    assert!(fake.seen().is_empty());
}

/// SC-7.9, P15: a relative `Content-Location` is resolved against the kick-off URL and
/// checked; one that is missing, plain HTTP or another scheme is refused.
#[tokio::test]
async fn sc_7_9_p15_content_location_is_required_and_checked() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        "/fhir/$export",
        Reply::status(202).header("content-location", "status/7"),
    );
    let (c, _) = client(&fake);
    let job = c.bulk_export().start().await.unwrap();
    assert_eq!(job.status_url().as_str(), format!("{BASE}/status/7"));

    for (location, expect) in [
        (None, "Content-Location"),
        (Some("http://evil.example/status"), "http"),
        (Some("ftp://ehr.example/status"), "https"),
        (Some("https://user:pw@ehr.example/status"), "credentials"),
    ] {
        let fake = Fake::default();
        let mut reply = Reply::status(202);
        if let Some(l) = location {
            reply = reply.header("content-location", l);
        }
        fake.on(Method::GET, "/fhir/$export", reply);
        let (c, _) = client(&fake);
        let e = c.bulk_export().start().await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains(expect), "{location:?}: {text}");
        assert!(!text.contains("pw"), "{text}");
    }
}

/// SC-7.9: an error status with an OperationOutcome fails the kick-off with the outcome; a
/// synchronous 200 is refused.
#[tokio::test]
async fn sc_7_9_error_status_and_outcome() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        "/fhir/$export",
        Reply::outcome(400, "not-supported", "_typeFilter is not supported"),
    );
    let (c, _) = client(&fake);
    let e = c
        .bulk_export()
        .type_filter("Patient?active=true")
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400));
    assert_eq!(e.outcome().unwrap().issue[0].code, "not-supported");
    let text = e.to_string();
    assert!(text.contains("_typeFilter is not supported"), "{text}");
    assert!(
        !text.contains("active=true"),
        "no query in messages: {text}"
    );

    let fake = Fake::default();
    fake.on(Method::GET, "/fhir/$export", Reply::json(200, json!({})));
    let (c, _) = client(&fake);
    let e = c.bulk_export().start().await.unwrap_err();
    assert!(matches!(e, FhirError::Bulk { .. }), "{e}");
}

/// SC-7.10: 429 at kick-off waits `Retry-After` and sends the kick-off again (also a POST).
#[tokio::test(start_paused = true)]
async fn sc_7_10_kickoff_429_waits_retry_after_and_retries() {
    let fake = Fake::default();
    fake.on(
        Method::POST,
        "/fhir/Patient/$export",
        Reply::outcome(429, "throttled", "slow down").header("retry-after", "7"),
    )
    .on(Method::POST, "/fhir/Patient/$export", accepted());
    let (c, _) = client(&fake);
    let job = c
        .bulk_export()
        .patient_level()
        .patient_reference("1")
        .start()
        .await
        .unwrap();
    assert_eq!(job.status_url().as_str(), STATUS);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(7));
    assert_eq!(seen[0].body, seen[1].body);
}

/// SC-7.10: retries are bounded; a `Retry-After` beyond the limit is not waited for.
#[tokio::test(start_paused = true)]
async fn sc_7_10_kickoff_429_is_bounded() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        "/fhir/$export",
        Reply::outcome(429, "throttled", "busy").header("retry-after", "1"),
    );
    let (c, _) = client(&fake);
    let e = c.bulk_export().max_retries(2).start().await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(429));
    assert_eq!(fake.seen().len(), 3);

    let fake = Fake::default();
    fake.on(
        Method::GET,
        "/fhir/$export",
        Reply::status(429).header("retry-after", "3600"),
    );
    let (c, _) = client(&fake);
    let started = tokio::time::Instant::now();
    let e = c
        .bulk_export()
        .max_retry_after(Duration::from_secs(60))
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(429));
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// A kick-off answered `401` is sent once more with a renewed token (SC-8.26 via `send`).
#[tokio::test]
async fn kickoff_renews_a_rejected_token_once() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        "/fhir/$export",
        accepted().require_token("tok-2"),
    );
    let (c, tokens) = client(&fake);
    c.bulk_export().start().await.unwrap();
    assert_eq!(tokens.rejected(), ["tok-1"]);
    let auth: Vec<_> = fake
        .seen()
        .iter()
        .map(|s| s.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer tok-1", "Bearer tok-2"]);
}

/// A saved status URL can be resumed, and is checked (P15).
#[tokio::test]
async fn resume_from_a_status_url_p15() {
    let fake = Fake::default();
    let (c, _) = client(&fake);
    assert_eq!(c.bulk_job(STATUS).unwrap().status_url().as_str(), STATUS);
    assert!(c.bulk_job("http://ehr.example/status").is_err());
    assert!(c.bulk_job("not a url").is_err());
}
