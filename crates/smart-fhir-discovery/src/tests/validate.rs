use super::*;
use crate::*;

fn config(doc: &str) -> SmartConfiguration {
    SmartConfiguration::from_json(&base("https://ehr.example/fhir"), doc.as_bytes()).unwrap()
}

#[test]
fn sc_1_7_required_fields_are_reported_for_well_known() {
    let c = config(r#"{"token_endpoint": "https://ehr.example/token"}"#);
    let v = c.validate();
    assert!(!v.is_valid());
    for field in [
        "grant_types_supported",
        "capabilities",
        "code_challenge_methods_supported",
    ] {
        let issue = ValidationIssue::MissingRequired { field };
        // Without an advertised code flow, missing PKCE methods is only a warning.
        if field == "code_challenge_methods_supported" {
            assert!(v.warnings().contains(&issue), "{field}");
        } else {
            assert!(v.errors().contains(&issue), "{field}");
        }
    }
    match v.into_result() {
        Err(e @ DiscoveryError::Invalid { .. }) => {
            let text = e.to_string();
            assert!(text.contains("`grant_types_supported`"), "{text}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn sc_1_11_plain_pkce_is_an_error_when_the_code_flow_is_advertised() {
    let c = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "authorization_endpoint": "https://ehr.example/authorize",
            "grant_types_supported": ["authorization_code"],
            "capabilities": ["launch-standalone", "client-public"],
            "code_challenge_methods_supported": ["plain"]}"#,
    );
    let v = c.validate();
    assert_eq!(
        v.errors(),
        [
            ValidationIssue::PkceS256Missing {
                offered: vec!["plain".into()]
            },
            ValidationIssue::PkcePlainAdvertised
        ]
    );
    // S256 alongside plain is still an error: the IG forbids listing plain.
    let both = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "authorization_endpoint": "https://ehr.example/authorize",
            "grant_types_supported": ["authorization_code"],
            "capabilities": ["launch-ehr"],
            "code_challenge_methods_supported": ["S256", "plain"]}"#,
    );
    assert_eq!(
        both.validate().errors(),
        [ValidationIssue::PkcePlainAdvertised]
    );
}

#[test]
fn sc_1_11_pkce_rules_are_warnings_for_backend_only_servers() {
    let c = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["client-confidential-asymmetric"]}"#,
    );
    let v = c.validate();
    assert!(v.is_valid(), "{:?}", v.errors());
    assert_eq!(
        v.warnings(),
        [ValidationIssue::MissingRequired {
            field: "code_challenge_methods_supported"
        }]
    );
}

#[test]
fn sc_1_11_launch_capabilities_need_an_authorization_endpoint() {
    let c = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "grant_types_supported": ["authorization_code"],
            "capabilities": ["launch-ehr", "launch-standalone", "client-public"],
            "code_challenge_methods_supported": ["S256"]}"#,
    );
    assert_eq!(
        c.validate().errors(),
        [
            ValidationIssue::AuthorizationEndpointMissing {
                capability: Capability::LaunchEhr
            },
            ValidationIssue::AuthorizationEndpointMissing {
                capability: Capability::LaunchStandalone
            }
        ]
    );
    match c.require_authorization_endpoint() {
        Err(DiscoveryError::MissingField { field, url }) => {
            assert_eq!(field, "authorization_endpoint");
            assert_eq!(
                url,
                "https://ehr.example/fhir/.well-known/smart-configuration"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let epic = SmartConfiguration::from_json(&base(EPIC_BASE), EPIC_WELL_KNOWN.as_bytes()).unwrap();
    assert!(epic
        .require_authorization_endpoint()
        .unwrap()
        .as_str()
        .ends_with("/oauth2/authorize"));
}

#[test]
fn sc_1_7_openid_connect_needs_issuer_and_jwks_uri() {
    let c = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["sso-openid-connect"],
            "code_challenge_methods_supported": ["S256"]}"#,
    );
    assert_eq!(
        c.validate().errors(),
        [
            ValidationIssue::OpenIdFieldMissing { field: "issuer" },
            ValidationIssue::OpenIdFieldMissing { field: "jwks_uri" }
        ]
    );
    let bad_issuer = config(
        r#"{"token_endpoint": "https://ehr.example/token", "issuer": "ehr.example",
            "jwks_uri": "https://ehr.example/jwks",
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["sso-openid-connect"],
            "code_challenge_methods_supported": ["S256"]}"#,
    );
    assert!(matches!(
        bad_issuer.validate().errors(),
        [ValidationIssue::InvalidIssuer { .. }]
    ));
    // Without OpenID Connect a broken issuer is only a warning, and parsing never failed.
    let no_oidc = config(
        r#"{"token_endpoint": "https://ehr.example/token", "issuer": "http://ehr.example",
            "grant_types_supported": ["client_credentials"],
            "capabilities": [], "code_challenge_methods_supported": ["S256"]}"#,
    );
    let v = no_oidc.validate();
    assert!(v.is_valid());
    assert!(matches!(
        v.warnings(),
        [ValidationIssue::InvalidIssuer { .. }]
    ));
    assert_eq!(no_oidc.issuer(), Some("http://ehr.example"));
}

#[test]
fn grant_types_and_signing_algorithms_are_checked() {
    let c = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "grant_types_supported": ["password"],
            "token_endpoint_auth_signing_alg_values_supported": ["HS256"],
            "capabilities": [], "code_challenge_methods_supported": ["S256"]}"#,
    );
    let v = c.validate();
    assert_eq!(
        v.errors(),
        [ValidationIssue::NoSmartGrantType {
            offered: vec!["password".into()]
        }]
    );
    assert_eq!(
        v.warnings(),
        [ValidationIssue::NoRecommendedSigningAlgorithm {
            offered: vec!["HS256".into()]
        }]
    );
    assert!(v.warnings()[0]
        .to_string()
        .contains("neither RS384 nor ES384"));
}

#[test]
fn sc_1_10_capability_sets_of_real_world_shapes() {
    let epic = SmartConfiguration::from_json(&base(EPIC_BASE), EPIC_WELL_KNOWN.as_bytes()).unwrap();
    assert_eq!(epic.capability_sets(), CapabilitySet::ALL);
    let sandbox =
        SmartConfiguration::from_json(&base(SANDBOX_BASE), SANDBOX_WELL_KNOWN.as_bytes()).unwrap();
    assert_eq!(
        sandbox.capability_sets(),
        [
            CapabilitySet::PatientStandalone,
            CapabilitySet::ClinicianStandalone
        ]
    );
    let minimal = config(MINIMAL_BACKEND);
    assert!(minimal.capability_sets().is_empty());
}

#[test]
fn sc_1_14_v1_scopes_only_when_only_permission_v1_is_advertised() {
    let cerner =
        SmartConfiguration::from_json(&base(CERNER_BASE), CERNER_WELL_KNOWN.as_bytes()).unwrap();
    assert!(cerner.prefers_v1_scopes());
    let epic = SmartConfiguration::from_json(&base(EPIC_BASE), EPIC_WELL_KNOWN.as_bytes()).unwrap();
    assert!(!epic.prefers_v1_scopes());
    assert!(!config(MINIMAL_BACKEND).prefers_v1_scopes());
}

#[test]
fn sc_1_12_authorize_post_is_read_from_capabilities() {
    let epic = SmartConfiguration::from_json(&base(EPIC_BASE), EPIC_WELL_KNOWN.as_bytes()).unwrap();
    assert!(epic.supports_authorize_post());
    let cerner =
        SmartConfiguration::from_json(&base(CERNER_BASE), CERNER_WELL_KNOWN.as_bytes()).unwrap();
    assert!(!cerner.supports_authorize_post());
    // Cerner-style whitespace-separated scopes_supported is split.
    assert_eq!(cerner.scopes_supported().unwrap().len(), 7);
    assert_eq!(
        cerner.extra()["tenant"],
        "ec2458f2-1e24-41c8-b71b-0e701af7583d"
    );
}
