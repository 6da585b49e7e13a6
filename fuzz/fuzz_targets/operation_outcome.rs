//! FHIR error bodies: a non-2xx response read as `FhirError::from_response` reads it, with the
//! body's `OperationOutcome` (status and body fuzzed). The error's `Display` and the outcome's
//! summary show no control character and stay bounded; an outcome reads back from its JSON.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use smart_fhir_fuzz::{printable, split_response};
use smart_fhir_http::client::RequestLine;
use smart_fhir_http::{FhirError, OperationOutcome};

fuzz_target!(|data: &[u8]| {
    let (status, _, body) = split_response(data);
    let body = Bytes::copy_from_slice(body);
    if let Some(outcome) = OperationOutcome::from_body(&body) {
        let summary = outcome.summary();
        assert!(printable(&summary), "{summary:?}");
        let _ = outcome.is_transient();
        let json = serde_json::to_value(&outcome).expect("an outcome serializes");
        let mut json = json.as_object().cloned().unwrap_or_default();
        json.insert("resourceType".into(), "OperationOutcome".into());
        let again =
            OperationOutcome::from_body(serde_json::Value::Object(json).to_string().as_bytes())
                .expect("an outcome's JSON reads back");
        assert_eq!(again, outcome);
    }
    let uri = http::Uri::from_static("https://ehr.example/fhir/Patient/1?name=secret");
    let line = RequestLine::new(&http::Method::GET, &uri);
    let error = FhirError::from_response(line, status, &body);
    let shown = error.to_string();
    assert!(printable(&shown), "{shown:?}");
    assert!(!shown.contains("name=secret"), "the query shows: {shown}");
    assert!(shown.len() < 4096, "{} bytes", shown.len());
    if let Some(outcome) = error.outcome() {
        assert_eq!(Some(outcome), OperationOutcome::from_body(&body).as_ref());
    }
});
