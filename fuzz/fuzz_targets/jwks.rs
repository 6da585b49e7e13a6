//! A JWKS response (SC-4.34, P9): status, headers and body fuzzed, read as `parse_jwks` reads
//! it, and the body alone as `Jwks` reads it. A key set read holds at most `MAX_JWKS_KEYS`
//! usable keys, each findable by its `kid`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_fhir_discovery::parse_jwks;
use smart_fhir_fuzz::{printable, response, split_response};
use smart_fhir_jwt::{Jwks, MAX_JWKS_KEYS};

fn check(jwks: &Jwks) {
    assert!(jwks.len() <= MAX_JWKS_KEYS);
    assert_eq!(jwks.keys().count(), jwks.len());
    for key in jwks.keys() {
        if let Some(kid) = key.kid() {
            assert!(jwks.find(kid).is_some(), "kid {kid:?} not found");
        }
        if let Some(alg) = key.alg() {
            assert!(
                alg.fits(key.key_type()),
                "{alg} on a {:?} key",
                key.key_type()
            );
        }
        assert!(!key.thumbprint().is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_jwks(response(data)) {
        Ok(jwks) => check(&jwks),
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
    let (_, _, body) = split_response(data);
    match Jwks::from_slice(body) {
        Ok(jwks) => check(&jwks),
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
});
