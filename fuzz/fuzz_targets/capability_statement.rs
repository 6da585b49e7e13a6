//! The CapabilityStatement fallback of discovery (SC-1.16, SC-1.17): a `/metadata` response with
//! status, headers and body fuzzed. Every endpoint read passes the endpoint URL check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_fhir_core::{check_endpoint_url, FhirBaseUrl, InsecureHttp};
use smart_fhir_discovery::{parse_capability_statement, ConfigurationSource};
use smart_fhir_fuzz::{printable, response};

fuzz_target!(|data: &[u8]| {
    let base = FhirBaseUrl::parse("https://ehr.example/fhir").expect("a valid base");
    match parse_capability_statement(&base, response(data)) {
        Ok(config) => {
            assert_eq!(config.source(), ConfigurationSource::CapabilityStatement);
            let all = [
                Some(config.token_endpoint()),
                config.authorization_endpoint(),
                config.registration_endpoint(),
                config.management_endpoint(),
                config.introspection_endpoint(),
                config.revocation_endpoint(),
            ];
            for url in all.into_iter().flatten() {
                check_endpoint_url(url, "endpoint", InsecureHttp::Deny)
                    .unwrap_or_else(|e| panic!("{url} was accepted: {e}"));
            }
            let _ = config.validate();
        }
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
});
