use super::*;
use crate::*;

fn epic() -> SmartConfiguration {
    SmartConfiguration::from_json(&base(EPIC_BASE), EPIC_WELL_KNOWN.as_bytes()).unwrap()
}

fn cerner() -> SmartConfiguration {
    SmartConfiguration::from_json(&base(CERNER_BASE), CERNER_WELL_KNOWN.as_bytes()).unwrap()
}

fn config(doc: &str) -> SmartConfiguration {
    SmartConfiguration::from_json(&base("https://ehr.example/fhir"), doc.as_bytes()).unwrap()
}

#[test]
fn sc_1_13_backend_services_fit_picks_the_clients_first_listed_algorithm() {
    let fit = epic()
        .check_fit(&ClientProfile::backend_services(["ES384", "RS384"]))
        .unwrap();
    assert_eq!(fit.auth_method, "private_key_jwt");
    assert_eq!(fit.signing_algorithm.as_deref(), Some("ES384"));
    assert!(fit.notes.is_empty());

    // The server only takes RS384: the intersection decides.
    let fit = cerner()
        .check_fit(&ClientProfile::backend_services(["ES384", "RS384"]))
        .unwrap();
    assert_eq!(fit.signing_algorithm.as_deref(), Some("RS384"));
}

#[test]
fn sc_1_13_no_common_algorithm_names_both_sides() {
    let e = cerner()
        .check_fit(&ClientProfile::backend_services(["ES384"]))
        .unwrap_err();
    assert_eq!(
        e,
        FitError::NoCommonSigningAlgorithm {
            client: vec!["ES384".into()],
            offered: vec!["RS384".into()]
        }
    );
    assert_eq!(
        e.to_string(),
        "no common signing algorithm: the client can sign with ES384 and the server accepts RS384"
    );
    assert_eq!(
        epic().check_fit(&ClientProfile::backend_services(Vec::<String>::new())),
        Err(FitError::NoClientAlgorithms)
    );
}

#[test]
fn sc_1_13_unlisted_algorithms_prefer_rs384_or_es384_with_a_note() {
    let fit = config(MINIMAL_BACKEND)
        .check_fit(&ClientProfile::backend_services([
            "RS256", "RS384", "ES384",
        ]))
        .unwrap();
    assert_eq!(fit.signing_algorithm.as_deref(), Some("RS384"));
    assert_eq!(
        fit.notes,
        [
            FitNote::AuthMethodsNotListed,
            FitNote::SigningAlgorithmsNotListed
        ]
    );
    let fit = config(MINIMAL_BACKEND)
        .check_fit(&ClientProfile::backend_services(["PS384"]))
        .unwrap();
    assert_eq!(fit.signing_algorithm.as_deref(), Some("PS384"));
}

#[test]
fn sc_1_13_grant_auth_method_and_capability_failures_name_what_is_offered() {
    let no_cc = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "authorization_endpoint": "https://ehr.example/authorize",
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "capabilities": ["launch-ehr", "client-confidential-symmetric"],
            "code_challenge_methods_supported": ["S256"]}"#,
    );
    let e = no_cc
        .check_fit(&ClientProfile::backend_services(["RS384"]))
        .unwrap_err();
    assert_eq!(
        e,
        FitError::GrantNotSupported {
            grant: "client_credentials",
            offered: vec!["authorization_code".into()]
        }
    );
    assert!(e.to_string().contains("(offers: authorization_code)"));

    let pkj_unlisted = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "capabilities": ["client-confidential-asymmetric"]}"#,
    );
    assert_eq!(
        pkj_unlisted.check_fit(&ClientProfile::backend_services(["RS384"])),
        Err(FitError::AuthMethodNotSupported {
            method: "private_key_jwt",
            offered: vec!["client_secret_basic".into(), "client_secret_post".into()]
        })
    );

    let no_asym_capability = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "capabilities": ["client-confidential-symmetric"]}"#,
    );
    assert_eq!(
        no_asym_capability.check_fit(&ClientProfile::backend_services(["RS384"])),
        Err(FitError::CapabilityMissing {
            capability: Capability::ClientConfidentialAsymmetric,
            needed_for: "private_key_jwt authentication"
        })
    );
}

#[test]
fn sc_2_20_backend_services_refuse_symmetric_authentication() {
    let profile = ClientProfile::new(
        GrantKind::ClientCredentials,
        ClientAuthMethod::ClientSecretBasic,
    );
    assert_eq!(
        epic().check_fit(&profile),
        Err(FitError::BackendServicesNeedPrivateKeyJwt {
            method: "client_secret_basic"
        })
    );
}

#[test]
fn sc_1_13_app_launch_fits_for_public_and_confidential_clients() {
    let sandbox =
        SmartConfiguration::from_json(&base(SANDBOX_BASE), SANDBOX_WELL_KNOWN.as_bytes()).unwrap();
    let public =
        ClientProfile::authorization_code(ClientAuthMethod::None).launch(LaunchKind::Standalone);
    let fit = sandbox.check_fit(&public).unwrap();
    assert_eq!(fit.auth_method, "none");
    assert_eq!(fit.signing_algorithm, None);
    assert!(fit.notes.is_empty());

    let secret = ClientProfile::authorization_code(ClientAuthMethod::ClientSecretBasic)
        .launch(LaunchKind::Standalone);
    assert_eq!(
        sandbox.check_fit(&secret).unwrap().auth_method,
        "client_secret_basic"
    );

    // The sandbox shape has no EHR launch.
    let ehr = ClientProfile::authorization_code(ClientAuthMethod::None).launch(LaunchKind::Ehr);
    assert_eq!(
        sandbox.check_fit(&ehr),
        Err(FitError::CapabilityMissing {
            capability: Capability::LaunchEhr,
            needed_for: "an EHR launch"
        })
    );
    // client_secret_post is not listed there.
    let post = ClientProfile::authorization_code(ClientAuthMethod::ClientSecretPost);
    assert!(matches!(
        sandbox.check_fit(&post),
        Err(FitError::AuthMethodNotSupported {
            method: "client_secret_post",
            ..
        })
    ));
}

#[test]
fn sc_1_11_code_flow_needs_authorization_endpoint_and_s256() {
    let no_authorize = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "grant_types_supported": ["authorization_code"],
            "capabilities": ["client-public"],
            "code_challenge_methods_supported": ["S256"]}"#,
    );
    let public = ClientProfile::authorization_code(ClientAuthMethod::None);
    assert_eq!(
        no_authorize.check_fit(&public),
        Err(FitError::AuthorizationEndpointMissing)
    );

    let plain_only = config(
        r#"{"token_endpoint": "https://ehr.example/token",
            "authorization_endpoint": "https://ehr.example/authorize",
            "grant_types_supported": ["authorization_code"],
            "capabilities": ["client-public"],
            "code_challenge_methods_supported": ["plain"]}"#,
    );
    let e = plain_only.check_fit(&public).unwrap_err();
    assert_eq!(
        e,
        FitError::PkceS256NotSupported {
            offered: vec!["plain".into()]
        }
    );
    assert!(e.to_string().contains("plain is never used"));
    // Through `?`, a fit error becomes a DiscoveryError with the same message.
    let wrapped: DiscoveryError = e.clone().into();
    assert_eq!(wrapped.to_string(), e.to_string());
}

#[test]
fn sc_1_13_capability_statement_source_fits_with_notes() {
    let c = parse_capability_statement(&base(HAPI_BASE), ok_json(HAPI_R4_METADATA)).unwrap();
    let fit = c
        .check_fit(
            &ClientProfile::authorization_code(ClientAuthMethod::ClientSecretPost)
                .launch(LaunchKind::Ehr),
        )
        .unwrap();
    assert_eq!(
        fit.notes,
        [
            FitNote::GrantTypesNotListed,
            FitNote::AuthMethodsNotListed,
            FitNote::CapabilitiesUnknown,
            FitNote::PkceMethodsNotListed
        ]
    );
    let fit = c
        .check_fit(&ClientProfile::backend_services(["ES384"]))
        .unwrap();
    assert_eq!(fit.signing_algorithm.as_deref(), Some("ES384"));
    assert!(fit.notes.contains(&FitNote::SigningAlgorithmsNotListed));
}
