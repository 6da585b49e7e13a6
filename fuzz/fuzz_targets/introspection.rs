//! Token introspection and revocation responses (SC-6.2–SC-6.4): status, headers and body
//! fuzzed. An accepted introspection has the RFC 7662 types; an inactive one carries nothing
//! else; errors show no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use smart_fhir_fuzz::{printable, response};
use smart_fhir_oauth::{parse_introspection_response, parse_revocation_response};

fuzz_target!(|data: &[u8]| {
    let response = response(data);
    let body = response.body().clone();
    match parse_introspection_response(response) {
        Ok(found) => {
            let doc: Value = serde_json::from_slice(&body).expect("an accepted body is JSON");
            assert_eq!(
                doc.get("active").and_then(Value::as_bool),
                Some(found.active)
            );
            if !found.active {
                assert!(found.scope.is_none() && found.subject.is_none());
                assert!(found.expires_at.is_none() && found.audiences.is_empty());
            }
            for name in found.extra.keys() {
                assert_ne!(name, "active");
            }
        }
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
    if let Err(e) = parse_revocation_response(smart_fhir_fuzz::response(data)) {
        assert!(printable(&e.to_string()), "{e}");
    }
});
