//! URL handling (P15): `FhirBaseUrl` (both insecure-HTTP policies), the endpoint check, an
//! issuer, relative URLs joined to a base, a Bulk manifest file URL and a FHIR client's
//! request URLs. What is accepted is https (or http on loopback when allowed), without
//! credentials or fragment; a base displays in a form that parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_fhir_core::{check_endpoint_url, is_loopback_host, FhirBaseUrl, InsecureHttp, Url};
use smart_fhir_discovery::Issuer;

fn acceptable(url: &Url, insecure: InsecureHttp) {
    match url.scheme() {
        "https" => {}
        "http" => {
            assert_eq!(insecure, InsecureHttp::AllowLoopback, "{url}");
            assert!(url.host().as_ref().is_some_and(is_loopback_host), "{url}");
        }
        other => panic!("scheme {other} accepted: {url}"),
    }
    assert!(url.host().is_some(), "{url}");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{url}"
    );
    assert!(url.fragment().is_none(), "{url}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for insecure in [InsecureHttp::Deny, InsecureHttp::AllowLoopback] {
        if let Ok(base) = FhirBaseUrl::parse_with(text, insecure) {
            acceptable(base.url(), insecure);
            assert!(base.url().query().is_none());
            assert!(!base.as_str().ends_with('/'), "{}", base.as_str());
            let again = FhirBaseUrl::parse_with(base.as_str(), insecure)
                .expect("a base's text parses back");
            assert_eq!(again, base);
            let well_known = base.smart_configuration_url();
            assert!(base.contains(&well_known), "{well_known}");
            assert!(base.same_origin(&base.metadata_url()));
            if let Ok(joined) = base.join("Patient/1") {
                assert!(base.same_origin(&joined), "{joined}");
            }
        }
        if let Ok(url) = Url::parse(text) {
            if check_endpoint_url(&url, "endpoint", insecure).is_ok() {
                acceptable(&url, insecure);
            }
        }
        if let Ok(issuer) = Issuer::parse(text, insecure) {
            acceptable(issuer.url(), insecure);
            let config = issuer.openid_configuration_url();
            assert_eq!(config.origin(), issuer.url().origin(), "{config}");
            assert!(config.path().ends_with("/.well-known/openid-configuration"));
        }
    }
    let base = FhirBaseUrl::parse("https://ehr.example/fhir").expect("a base");
    if let Ok(joined) = base.join(text) {
        let _ = base.contains(&joined);
    }
    // A relative reference resolved against the base, as discovery resolves endpoints.
    if let Ok(resolved) = base.url().join(text) {
        if check_endpoint_url(&resolved, "endpoint", InsecureHttp::Deny).is_ok() {
            acceptable(&resolved, InsecureHttp::Deny);
        }
    }
});
