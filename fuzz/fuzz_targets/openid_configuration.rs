//! An issuer's `.well-known/openid-configuration` response (SC-4.34): status, headers and body
//! fuzzed. A configuration read names exactly the expected issuer and an acceptable `jwks_uri`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_fhir_core::{check_endpoint_url, InsecureHttp};
use smart_fhir_discovery::{parse_openid_configuration, Issuer};
use smart_fhir_fuzz::{printable, response};

fuzz_target!(|data: &[u8]| {
    let issuer = Issuer::parse("https://auth.example", InsecureHttp::Deny).expect("an issuer");
    match parse_openid_configuration(&issuer, response(data)) {
        Ok(config) => {
            assert_eq!(config.issuer, issuer.as_str());
            check_endpoint_url(&config.jwks_uri, "jwks_uri", InsecureHttp::Deny)
                .expect("an accepted jwks_uri passes the check");
        }
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
});
