use std::error::Error as _;

use super::*;
use crate::*;

const FHIR_ACCEPT: &str =
    "application/fhir+json, application/json+fhir;q=0.9, application/json;q=0.8";

#[test]
fn sc_1_16_metadata_request_asks_for_fhir_json() {
    let r = capability_statement_request(&base(HAPI_BASE)).unwrap();
    assert_eq!(r.method(), http::Method::GET);
    assert_eq!(r.uri(), "https://hapi.example/fhir/metadata");
    assert_eq!(r.headers()["accept"], FHIR_ACCEPT);
    assert!(r.extensions().get::<MaxResponseBytes>().is_some());
}

#[tokio::test]
async fn sc_1_16_sc_1_17_404_falls_back_to_a_versioned_oauth_uris_extension() {
    let server = FakeServer::new()
        .on(
            &well_known(HAPI_BASE),
            answer(404, r#"{"resourceType":"OperationOutcome"}"#),
        )
        .on(&metadata(HAPI_BASE), answer(200, HAPI_R4_METADATA));
    let c = discover(&server, &base(HAPI_BASE)).await.unwrap();
    assert_eq!(
        server.seen(),
        [
            (well_known(HAPI_BASE), "application/json".to_owned()),
            (metadata(HAPI_BASE), FHIR_ACCEPT.to_owned())
        ]
    );
    assert_eq!(c.source(), ConfigurationSource::CapabilityStatement);
    assert_eq!(c.source_url().as_str(), metadata(HAPI_BASE));
    assert_eq!(c.smart_service_declared(), Some(true));
    assert_eq!(
        c.token_endpoint().as_str(),
        "https://hapi.example/oauth/token"
    );
    assert_eq!(
        c.token_endpoint_as_advertised(),
        "https://hapi.example/oauth/token"
    );
    assert_eq!(
        c.authorization_endpoint().unwrap().as_str(),
        "https://hapi.example/oauth/authorize"
    );
    assert_eq!(
        c.registration_endpoint().unwrap().as_str(),
        "https://hapi.example/oauth/register"
    );
    assert_eq!(
        c.management_endpoint().unwrap().as_str(),
        "https://hapi.example/oauth/manage"
    );
    assert_eq!(
        c.introspection_endpoint().unwrap().as_str(),
        "https://hapi.example/oauth/introspect"
    );
    // valueUrl is accepted as well as valueUri.
    assert_eq!(
        c.revocation_endpoint().unwrap().as_str(),
        "https://hapi.example/oauth/revoke"
    );
    // Capabilities and the other lists are unknown, not empty.
    assert_eq!(c.capabilities(), None);
    assert_eq!(c.grant_types_supported(), None);
    assert_eq!(c.code_challenge_methods_supported(), None);
    assert!(!c.supports(Capability::LaunchEhr));
    assert!(c.capability_sets().is_empty());
    let v = c.validate();
    assert!(v.is_valid(), "{:?}", v.errors());
    assert_eq!(v.warnings(), [ValidationIssue::CapabilitiesUnknown]);
}

#[test]
fn sc_1_16_stu3_with_the_older_service_system() {
    let r = ok_json(STU3_METADATA);
    let c = parse_capability_statement(&base("https://stu3.example/baseDstu3"), r).unwrap();
    assert_eq!(c.smart_service_declared(), Some(true));
    assert_eq!(
        c.token_endpoint().as_str(),
        "https://stu3.example/oauth/token"
    );
    assert_eq!(c.revocation_endpoint(), None);
}

#[test]
fn sc_1_16_dstu2_conformance_with_relative_value_url_and_no_service_code() {
    let c = parse_capability_statement(&base(DSTU2_BASE), ok_json(DSTU2_CONFORMANCE)).unwrap();
    assert_eq!(c.smart_service_declared(), Some(false));
    // `../../oauth2/token` against https://dstu2.example/api/FHIR/DSTU2 (SC-1.5).
    assert_eq!(
        c.token_endpoint().as_str(),
        "https://dstu2.example/oauth2/token"
    );
    assert_eq!(
        c.token_endpoint_as_advertised(),
        "https://dstu2.example/oauth2/token"
    );
    assert_eq!(c.relative_endpoints(), ["token_endpoint"]);
    assert!(c
        .validate()
        .warnings()
        .contains(&ValidationIssue::RelativeEndpoint {
            field: "token_endpoint".into()
        }));
}

#[test]
fn p15_fallback_endpoints_are_checked_too() {
    let doc = HAPI_R4_METADATA.replace(
        "\"valueUri\": \"https://hapi.example/oauth/authorize\"",
        "\"valueUri\": \"javascript:alert(1)\"",
    );
    match parse_capability_statement(&base(HAPI_BASE), ok_json(&doc)) {
        Err(DiscoveryError::InvalidEndpoint { field, .. }) => {
            assert_eq!(field, "rest[0].security.extension[1].extension[1].valueUri")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn sc_1_16_fallback_without_oauth_uris_is_a_typed_error() {
    let plain_metadata = r#"{"resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "security": {"cors": true}}]}"#;
    let server = FakeServer::new()
        .on(&well_known(HAPI_BASE), answer(404, "Not Found"))
        .on(&metadata(HAPI_BASE), answer(200, plain_metadata));
    let e = discover(&server, &base(HAPI_BASE)).await.unwrap_err();
    match &e {
        DiscoveryError::NoConfiguration {
            url,
            reason,
            fallback,
        } => {
            assert_eq!(url, &well_known(HAPI_BASE));
            assert_eq!(reason, "HTTP 404");
            assert!(matches!(**fallback, DiscoveryError::NoOAuthUris { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("HTTP 404"));
    assert!(e
        .source()
        .unwrap()
        .to_string()
        .contains("declares no SMART oauth-uris extension"));
}

#[test]
fn sc_1_16_oauth_uris_without_token_is_missing_field() {
    let doc = STU3_METADATA.replace("\"url\": \"token\"", "\"url\": \"tokenx\"");
    match parse_capability_statement(&base("https://stu3.example/fhir"), ok_json(&doc)) {
        Err(DiscoveryError::MissingField { field, .. }) => assert_eq!(field, "oauth-uris `token`"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn other_resources_are_not_capability_statements() {
    let outcome = r#"{"resourceType": "OperationOutcome", "issue": []}"#;
    match parse_capability_statement(&base(HAPI_BASE), ok_json(outcome)) {
        Err(DiscoveryError::NotCapabilityStatement { found, .. }) => {
            assert_eq!(found, "OperationOutcome")
        }
        other => panic!("unexpected {other:?}"),
    }
    let xml = "<?xml version=\"1.0\"?><CapabilityStatement xmlns=\"http://hl7.org/fhir\"/>";
    assert!(matches!(
        parse_capability_statement(&base(HAPI_BASE), ok_json(xml)),
        Err(DiscoveryError::NotJson {
            kind: BodyKind::Xml,
            ..
        })
    ));
}

#[tokio::test]
async fn sc_1_16_410_and_an_html_200_fall_back_too() {
    for first in [
        answer(410, ""),
        answer(405, ""),
        answer_with(
            200,
            &[("content-type", "text/html")],
            "<!doctype html><html><body><div id=\"app\"></div></body></html>",
        ),
    ] {
        let server = FakeServer::new()
            .on(&well_known(HAPI_BASE), first)
            .on(&metadata(HAPI_BASE), answer(200, HAPI_R4_METADATA));
        let c = discover(&server, &base(HAPI_BASE)).await.unwrap();
        assert_eq!(c.source(), ConfigurationSource::CapabilityStatement);
        assert_eq!(server.count(), 2);
    }
}

#[tokio::test]
async fn auth_errors_outages_and_broken_json_do_not_fall_back() {
    for (status, body) in [
        (401, "{\"error\":\"unauthorized\"}"),
        (403, "Forbidden"),
        (500, "Internal Server Error"),
        (503, "<html>Service Unavailable</html>"),
    ] {
        let server = FakeServer::new()
            .on(&well_known(HAPI_BASE), answer(status, body))
            .on(&metadata(HAPI_BASE), answer(200, HAPI_R4_METADATA));
        match discover(&server, &base(HAPI_BASE)).await {
            Err(DiscoveryError::Status { status: s, .. }) => assert_eq!(s, status),
            other => panic!("{status}: unexpected {other:?}"),
        }
        assert_eq!(server.count(), 1, "{status}");
    }
    let server = FakeServer::new()
        .on(&well_known(HAPI_BASE), answer(200, "{\"token_endpoint\": "))
        .on(&metadata(HAPI_BASE), answer(200, HAPI_R4_METADATA));
    assert!(matches!(
        discover(&server, &base(HAPI_BASE)).await,
        Err(DiscoveryError::InvalidJson { .. })
    ));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn the_fallback_can_be_disabled() {
    let server = FakeServer::new()
        .on(&well_known(HAPI_BASE), answer(404, "Not Found"))
        .on(&metadata(HAPI_BASE), answer(200, HAPI_R4_METADATA));
    let options = DiscoveryOptions::default().fallback_to_metadata(false);
    assert!(matches!(
        discover_with(&server, &base(HAPI_BASE), &options).await,
        Err(DiscoveryError::Status { status: 404, .. })
    ));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_failing_metadata_request_is_the_source_of_no_configuration() {
    let server = FakeServer::new()
        .on(&well_known(HAPI_BASE), answer(404, ""))
        .on(&metadata(HAPI_BASE), Answer::TransportError);
    match discover(&server, &base(HAPI_BASE)).await {
        Err(DiscoveryError::NoConfiguration { fallback, .. }) => {
            assert!(matches!(*fallback, DiscoveryError::Http { .. }))
        }
        other => panic!("unexpected {other:?}"),
    }
}
