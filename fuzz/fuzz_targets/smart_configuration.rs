//! A `.well-known/smart-configuration` response (SC-1.1–1.5, P15): status, headers and body
//! fuzzed. A configuration that is read has only endpoints that pass the endpoint URL check,
//! and its JSON form reads back to the same endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_fhir_core::{check_endpoint_url, FhirBaseUrl, InsecureHttp, Url};
use smart_fhir_discovery::{parse_smart_configuration, SmartConfiguration};
use smart_fhir_fuzz::{printable, response};

fn endpoints(config: &SmartConfiguration) -> Vec<Url> {
    let mut all = vec![config.token_endpoint().clone()];
    all.extend(
        [
            config.authorization_endpoint(),
            config.jwks_uri(),
            config.registration_endpoint(),
            config.management_endpoint(),
            config.introspection_endpoint(),
            config.revocation_endpoint(),
            config.smart_app_state_endpoint(),
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    all
}

fuzz_target!(|data: &[u8]| {
    for (base, insecure) in [
        ("https://ehr.example/fhir", InsecureHttp::Deny),
        ("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback),
    ] {
        let base = FhirBaseUrl::parse_with(base, insecure).expect("a valid base");
        match parse_smart_configuration(&base, response(data)) {
            Ok(config) => {
                for url in endpoints(&config) {
                    check_endpoint_url(&url, "endpoint", insecure)
                        .unwrap_or_else(|e| panic!("{url} was accepted: {e}"));
                }
                let validation = config.validate();
                let _ = validation.is_valid();
                let _ = config.capability_sets();
                let json = config.to_json();
                let again =
                    parse_smart_configuration(&base, http::Response::new(json.to_string().into()))
                        .expect("the JSON form of a configuration reads back");
                assert_eq!(endpoints(&again), endpoints(&config));
            }
            Err(e) => assert!(printable(&e.to_string()), "{e}"),
        }
    }
});
