//! The issuer check of a SMART configuration, rule by rule, so that a broken rule is noticed
//! (SC-1.7, SC-4.33, P9).

use smart_fhir_core::FhirBaseUrl;
use smart_fhir_discovery::{SmartConfiguration, ValidationIssue};

fn openid_config(issuer: &str) -> SmartConfiguration {
    let doc = format!(
        r#"{{"token_endpoint": "https://ehr.example/token", "issuer": "{issuer}",
            "jwks_uri": "https://ehr.example/jwks",
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["sso-openid-connect"],
            "code_challenge_methods_supported": ["S256"]}}"#
    );
    let base = FhirBaseUrl::parse("https://ehr.example/fhir").unwrap();
    SmartConfiguration::from_json(&base, doc.as_bytes()).unwrap()
}

/// SC-1.7, P9: an OpenID Connect issuer with a query string is refused (issuers are compared
/// as strings with an `id_token`'s `iss`, and OpenID Connect forbids a query), while the same
/// issuer without one is accepted.
#[test]
fn issuer_with_a_query_is_an_error_sc_1_7_p9() {
    let v = openid_config("https://ehr.example/issuer?tenant=1").validate();
    assert!(
        matches!(
            v.errors(),
            [ValidationIssue::InvalidIssuer { reason, .. }] if reason == "carries a query"
        ),
        "{:?}",
        v.errors()
    );
    let v = openid_config("https://ehr.example/issuer").validate();
    assert!(v.is_valid(), "{:?}", v.errors());
    assert!(v.warnings().is_empty(), "{:?}", v.warnings());
}
