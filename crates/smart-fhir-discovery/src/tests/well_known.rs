use std::error::Error as _;
use std::time::Duration;

use smart_fhir_core::{FhirBaseUrl, InsecureHttp, MaxResponseBytes, RequestTimeout, UrlError};

use super::*;
use crate::*;

#[test]
fn sc_1_1_to_1_3_request_is_a_get_with_accept_json_and_a_size_bound() {
    let b = base("https://ehr.example/apis/fhir/");
    let r = smart_configuration_request(&b).unwrap();
    assert_eq!(r.method(), http::Method::GET);
    assert_eq!(
        r.uri(),
        "https://ehr.example/apis/fhir/.well-known/smart-configuration"
    );
    assert_eq!(r.headers()["Accept"], "application/json");
    assert!(r.body().is_empty());
    assert_eq!(
        r.extensions().get::<MaxResponseBytes>(),
        Some(&MaxResponseBytes(DEFAULT_MAX_RESPONSE_BYTES))
    );
    assert_eq!(DEFAULT_MAX_RESPONSE_BYTES, 1024 * 1024);
    assert!(r.extensions().get::<RequestTimeout>().is_none());

    let options = DiscoveryOptions::default()
        .max_response_bytes(4096)
        .timeout(Duration::from_secs(7));
    let r = smart_configuration_request_with(&b, &options).unwrap();
    assert_eq!(
        r.extensions().get::<MaxResponseBytes>(),
        Some(&MaxResponseBytes(4096))
    );
    assert_eq!(
        r.extensions().get::<RequestTimeout>(),
        Some(&RequestTimeout(Duration::from_secs(7)))
    );
    // The root base gets no double slash (SC-1.2).
    let root = smart_configuration_request(&base("https://ehr.example/")).unwrap();
    assert_eq!(
        root.uri(),
        "https://ehr.example/.well-known/smart-configuration"
    );
}

#[test]
fn an_unrepresentable_url_is_an_error_not_a_panic() {
    let long = format!("https://ehr.example/{}", "a".repeat(70_000));
    let b = FhirBaseUrl::parse(&long).unwrap();
    assert!(matches!(
        smart_configuration_request(&b),
        Err(DiscoveryError::InvalidRequest { .. })
    ));
}

#[test]
fn sc_1_7_every_field_of_a_full_epic_style_configuration_is_read() {
    let b = base(EPIC_BASE);
    let c = parse_smart_configuration(&b, ok_json(EPIC_WELL_KNOWN)).unwrap();
    let oauth = "https://fhir.epic.example/interconnect-fhir-oauth/oauth2";
    assert_eq!(c.source(), ConfigurationSource::WellKnown);
    assert_eq!(c.base(), &b);
    assert_eq!(
        c.source_url().as_str(),
        format!("{EPIC_BASE}/.well-known/smart-configuration")
    );
    assert_eq!(c.issuer(), Some(oauth));
    assert!(c
        .jwks_uri()
        .unwrap()
        .as_str()
        .ends_with("/PublicKeys/530005/OIDC"));
    assert_eq!(
        c.authorization_endpoint().unwrap().as_str(),
        format!("{oauth}/authorize")
    );
    assert_eq!(c.token_endpoint().as_str(), format!("{oauth}/token"));
    assert_eq!(c.token_endpoint_as_advertised(), format!("{oauth}/token"));
    assert_eq!(
        c.token_endpoint_auth_methods_supported().unwrap(),
        [
            "client_secret_post",
            "client_secret_basic",
            "private_key_jwt"
        ]
    );
    assert_eq!(
        c.token_endpoint_auth_signing_alg_values_supported()
            .unwrap(),
        ["RS384", "ES384"]
    );
    assert_eq!(
        c.registration_endpoint().unwrap().as_str(),
        format!("{oauth}/register")
    );
    assert!(c
        .smart_app_state_endpoint()
        .unwrap()
        .as_str()
        .ends_with("/R4/Basic"));
    let assoc = c.associated_endpoints().unwrap();
    assert_eq!(assoc.len(), 2);
    assert!(assoc[0].url.as_str().ends_with("/api/FHIR/DSTU2"));
    assert_eq!(
        assoc[0].capabilities,
        [Capability::LaunchEhr, Capability::ContextEhrPatient]
    );
    assert!(assoc[1].capabilities.is_empty());
    assert_eq!(
        c.user_access_brand_bundle().unwrap().as_str(),
        "https://fhir.epic.example/brands/bundle.json"
    );
    assert_eq!(
        c.user_access_brand_identifier().unwrap()["system"],
        "urn:ietf:rfc:3986"
    );
    assert_eq!(c.scopes_supported().unwrap().len(), 9);
    assert_eq!(c.response_types_supported().unwrap(), ["code"]);
    assert_eq!(
        c.management_endpoint().unwrap().as_str(),
        "https://mychart.epic.example/MyChart/Manage"
    );
    assert_eq!(
        c.introspection_endpoint().unwrap().as_str(),
        format!("{oauth}/introspect")
    );
    assert_eq!(
        c.revocation_endpoint().unwrap().as_str(),
        format!("{oauth}/revoke")
    );
    assert_eq!(c.grant_types_supported().unwrap().len(), 3);
    assert_eq!(c.code_challenge_methods_supported().unwrap(), ["S256"]);
    let caps = c.capabilities().unwrap();
    assert_eq!(caps.len(), 22);
    for known in Capability::KNOWN {
        assert!(c.supports(known.clone()), "{known}");
    }
    assert!(c.relative_endpoints().is_empty());
    assert_eq!(c.smart_service_declared(), None);
    let v = c.validate();
    assert!(v.is_valid(), "{:?}", v.errors());
    assert!(v.warnings().is_empty(), "{:?}", v.warnings());
}

#[test]
fn sc_1_6_sc_1_9_unknown_fields_are_kept_and_unknown_capabilities_accepted() {
    let c = parse_smart_configuration(&base(EPIC_BASE), ok_json(EPIC_WELL_KNOWN)).unwrap();
    assert_eq!(c.extra().len(), 2);
    assert_eq!(c.extra()["epic_version"], "November 2024");
    assert!(c.extra().contains_key("dpop_signing_alg_values_supported"));
    assert!(!c.extra().contains_key("token_endpoint"));
    assert!(c.supports(Capability::from("context-passthrough-banner")));
    assert!(c.supports(Capability::Unknown(
        "http://sdo.example.org/example-new-capability".into()
    )));
    assert!(!c.supports(Capability::from("not-advertised")));
}

#[test]
fn sc_1_7_minimal_configuration_parses_and_optional_fields_are_none() {
    let c = parse_smart_configuration(&base("https://bulk.example/fhir"), ok_json(MINIMAL_BACKEND))
        .unwrap();
    assert_eq!(
        c.token_endpoint().as_str(),
        "https://bulk.example/auth/token"
    );
    assert_eq!(c.issuer(), None);
    assert_eq!(c.jwks_uri(), None);
    assert_eq!(c.authorization_endpoint(), None);
    assert_eq!(c.token_endpoint_auth_methods_supported(), None);
    assert_eq!(c.associated_endpoints(), None);
    assert_eq!(c.user_access_brand_identifier(), None);
    assert_eq!(c.scopes_supported(), None);
    assert!(c.extra().is_empty());
    assert!(c.validate().is_valid());
    assert!(c.capability_sets().is_empty());
}

#[test]
fn sc_1_6_leniencies_null_empty_and_lone_strings() {
    let doc = r#"{
        "token_endpoint": " https://ehr.example/token ",
        "authorization_endpoint": null,
        "registration_endpoint": "",
        "issuer": null,
        "grant_types_supported": "client_credentials",
        "capabilities": ["client-confidential-asymmetric", null, "", " permission-v2 "],
        "code_challenge_methods_supported": "S256",
        "scopes_supported": "system/*.rs  openid",
        "response_types_supported": "code id_token",
        "associated_endpoints": {"url": "https://ehr.example/other/fhir", "capabilities": "launch-ehr"},
        "user_access_brand_identifier": null
    }"#;
    let c = parse_smart_configuration(&base("https://ehr.example/fhir"), ok_json(doc)).unwrap();
    assert_eq!(c.token_endpoint().as_str(), "https://ehr.example/token");
    assert_eq!(c.authorization_endpoint(), None);
    assert_eq!(c.registration_endpoint(), None);
    assert_eq!(c.grant_types_supported().unwrap(), ["client_credentials"]);
    assert_eq!(
        c.capabilities().unwrap(),
        [
            Capability::ClientConfidentialAsymmetric,
            Capability::PermissionV2
        ]
    );
    assert_eq!(c.code_challenge_methods_supported().unwrap(), ["S256"]);
    assert_eq!(c.scopes_supported().unwrap(), ["system/*.rs", "openid"]);
    assert_eq!(c.response_types_supported().unwrap(), ["code id_token"]);
    let assoc = c.associated_endpoints().unwrap();
    assert_eq!(assoc.len(), 1);
    assert_eq!(assoc[0].capabilities, [Capability::LaunchEhr]);
}

#[test]
fn sc_1_5_relative_endpoints_resolve_like_new_url_rel_base() {
    // A base without a trailing slash loses its last segment: `new URL("auth/token",
    // "https://ehr.example/apis/fhir")` is https://ehr.example/apis/auth/token.
    let doc = r#"{
        "token_endpoint": "auth/token",
        "authorization_endpoint": "/oauth/authorize",
        "introspection_endpoint": "../introspect",
        "revocation_endpoint": "//auth.ehr.example/revoke",
        "associated_endpoints": [{"url": "dstu2", "capabilities": []}],
        "grant_types_supported": ["authorization_code"],
        "capabilities": ["launch-standalone", "client-public"],
        "code_challenge_methods_supported": ["S256"]
    }"#;
    let c =
        parse_smart_configuration(&base("https://ehr.example/apis/fhir"), ok_json(doc)).unwrap();
    assert_eq!(
        c.token_endpoint().as_str(),
        "https://ehr.example/apis/auth/token"
    );
    assert_eq!(
        c.token_endpoint_as_advertised(),
        "https://ehr.example/apis/auth/token"
    );
    assert_eq!(
        c.authorization_endpoint().unwrap().as_str(),
        "https://ehr.example/oauth/authorize"
    );
    assert_eq!(
        c.introspection_endpoint().unwrap().as_str(),
        "https://ehr.example/introspect"
    );
    assert_eq!(
        c.revocation_endpoint().unwrap().as_str(),
        "https://auth.ehr.example/revoke"
    );
    assert_eq!(
        c.associated_endpoints().unwrap()[0].url.as_str(),
        "https://ehr.example/apis/dstu2"
    );
    assert_eq!(
        c.relative_endpoints(),
        [
            "token_endpoint",
            "authorization_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
            "associated_endpoints[0].url"
        ]
    );
    let v = c.validate();
    assert!(v.is_valid());
    assert!(v.warnings().contains(&ValidationIssue::RelativeEndpoint {
        field: "token_endpoint".into()
    }));
}

#[test]
fn sc_2_10_token_endpoint_as_advertised_keeps_the_servers_spelling() {
    let doc = r#"{"token_endpoint": "https://EHR.example:443/oauth2/token"}"#;
    let c =
        SmartConfiguration::from_json(&base("https://ehr.example/fhir"), doc.as_bytes()).unwrap();
    assert_eq!(
        c.token_endpoint().as_str(),
        "https://ehr.example/oauth2/token"
    );
    assert_eq!(
        c.token_endpoint_as_advertised(),
        "https://EHR.example:443/oauth2/token"
    );
}

fn endpoint_error(base_url: FhirBaseUrl, token: &str) -> DiscoveryError {
    let doc = format!(
        r#"{{"token_endpoint": "https://ehr.example/token", "authorization_endpoint": "{token}"}}"#
    );
    SmartConfiguration::from_json(&base_url, doc.as_bytes()).unwrap_err()
}

#[test]
fn p15_hostile_or_insecure_endpoints_are_refused() {
    let b = || base("https://ehr.example/fhir");
    match endpoint_error(b(), "javascript:alert(document.cookie)") {
        DiscoveryError::InvalidEndpoint { field, reason } => {
            assert_eq!(field, "authorization_endpoint");
            assert!(matches!(reason, UrlError::Scheme { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
    for bad in [
        "http://ehr.example/authorize",
        "http://localhost/authorize",
        "data:text/html,hi",
        "https://user:pw@ehr.example/authorize",
        "https://ehr.example/authorize#frag",
        "https://[::1/authorize",
    ] {
        assert!(
            matches!(
                endpoint_error(b(), bad),
                DiscoveryError::InvalidEndpoint { .. }
            ),
            "{bad}"
        );
    }
    // The base's policy applies: loopback http is fine when the base opted in ...
    let dev =
        FhirBaseUrl::parse_with("http://localhost:8080/fhir", InsecureHttp::AllowLoopback).unwrap();
    let doc = r#"{"token_endpoint": "http://localhost:8080/auth/token",
                  "authorization_endpoint": "auth/authorize"}"#;
    let c = SmartConfiguration::from_json(&dev, doc.as_bytes()).unwrap();
    assert_eq!(
        c.authorization_endpoint().unwrap().as_str(),
        "http://localhost:8080/auth/authorize"
    );
    // ... but not http to a remote host even then.
    assert!(matches!(
        endpoint_error(dev, "http://ehr.example/authorize"),
        DiscoveryError::InvalidEndpoint { .. }
    ));
}

#[test]
fn html_bodies_are_not_json_whatever_the_status_or_content_type() {
    let b = base("https://ehr.example/fhir");
    let page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>...</body></html>";
    let mut r = ok_json(page);
    r.headers_mut()
        .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
    let e = parse_smart_configuration(&b, r).unwrap_err();
    match &e {
        DiscoveryError::NotJson { kind, excerpt, url } => {
            assert_eq!(*kind, BodyKind::Html);
            assert!(excerpt.contains("<title>Sign in</title>"));
            assert_eq!(
                url,
                "https://ehr.example/fhir/.well-known/smart-configuration"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        e.to_string().contains("is not JSON (looks like HTML)"),
        "{e}"
    );
    // An empty 200.
    assert!(matches!(
        parse_smart_configuration(&b, ok_json("")),
        Err(DiscoveryError::NotJson {
            kind: BodyKind::Empty,
            ..
        })
    ));
}

#[test]
fn content_type_is_not_required_to_be_json() {
    let mut r = ok_json(MINIMAL_BACKEND);
    r.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    assert!(parse_smart_configuration(&base("https://bulk.example/fhir"), r).is_ok());
}

#[test]
fn truncated_json_is_a_typed_error_with_position() {
    let cut = &EPIC_WELL_KNOWN[..EPIC_WELL_KNOWN.len() / 2];
    match parse_smart_configuration(&base(EPIC_BASE), ok_json(cut)) {
        Err(DiscoveryError::InvalidJson { detail, .. }) => {
            assert!(detail.contains("truncated"), "{detail}");
            assert!(detail.contains("line"), "{detail}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn wrong_types_name_the_field_path() {
    let b = base("https://ehr.example/fhir");
    let cases = [
        (r#"{"token_endpoint": 42}"#, "token_endpoint", "a string"),
        (
            r#"{"token_endpoint": "https://e.example/t", "capabilities": ["launch-ehr", 7]}"#,
            "capabilities[1]",
            "a string",
        ),
        (
            r#"{"token_endpoint": "https://e.example/t", "grant_types_supported": {"a": 1}}"#,
            "grant_types_supported",
            "an array of strings",
        ),
        (
            r#"{"token_endpoint": "https://e.example/t", "associated_endpoints": [{"url": ["x"]}]}"#,
            "associated_endpoints[0].url",
            "a string",
        ),
        (
            r#"{"token_endpoint": "https://e.example/t", "user_access_brand_identifier": "urn:x"}"#,
            "user_access_brand_identifier",
            "an object",
        ),
        (r#"["token_endpoint"]"#, "(document)", "a JSON object"),
    ];
    for (doc, path, expected_type) in cases {
        match parse_smart_configuration(&b, ok_json(doc)) {
            Err(DiscoveryError::WrongType {
                field, expected, ..
            }) => {
                assert_eq!(field, path, "{doc}");
                assert_eq!(expected, expected_type, "{doc}");
            }
            other => panic!("{doc}: unexpected {other:?}"),
        }
    }
}

#[test]
fn sc_1_7_missing_token_endpoint_is_a_typed_error() {
    for doc in [
        r#"{"authorization_endpoint": "https://e.example/a"}"#,
        r#"{"token_endpoint": null}"#,
        r#"{"token_endpoint": "  "}"#,
        r#"{"associated_endpoints": [{"capabilities": []}], "token_endpoint": "https://e.example/t"}"#,
    ] {
        match parse_smart_configuration(&base("https://e.example/fhir"), ok_json(doc)) {
            Err(DiscoveryError::MissingField { field, .. }) => {
                assert!(
                    field == "token_endpoint" || field == "associated_endpoints[0].url",
                    "{doc}"
                )
            }
            other => panic!("{doc}: unexpected {other:?}"),
        }
    }
}

#[test]
fn server_errors_keep_status_and_a_short_clean_excerpt() {
    let body = format!(
        "{{\"error\":\"internal\",\n\"trace\":\"{}\"}}\u{0}\u{1b}[31m",
        "x".repeat(1000)
    );
    let mut r = ok_json(&body);
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    match parse_smart_configuration(&base("https://ehr.example/fhir"), r) {
        Err(DiscoveryError::Status {
            status,
            excerpt,
            url,
        }) => {
            assert_eq!(status, 500);
            assert!(
                excerpt.starts_with("{\"error\":\"internal\", \"trace\""),
                "{excerpt}"
            );
            assert!(excerpt.chars().count() <= 201);
            assert!(!excerpt.chars().any(char::is_control));
            assert_eq!(
                url,
                "https://ehr.example/fhir/.well-known/smart-configuration"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn redirects_are_not_followed_and_the_location_loses_its_query() {
    let mut r = ok_json("");
    *r.status_mut() = http::StatusCode::FOUND;
    r.headers_mut().insert(
        "Location",
        "/login?next=%2Fpatient%2F123&session=abc".parse().unwrap(),
    );
    let e = parse_smart_configuration(&base("https://ehr.example/fhir"), r).unwrap_err();
    match &e {
        DiscoveryError::Redirect {
            status, location, ..
        } => {
            assert_eq!(*status, 302);
            assert_eq!(location.as_deref(), Some("https://ehr.example/login"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!e.to_string().contains("session"));
}

#[tokio::test]
async fn discover_reads_well_known_with_one_request() {
    let server = FakeServer::new().on(&well_known(SANDBOX_BASE), answer(200, SANDBOX_WELL_KNOWN));
    let c = discover(&server, &base(SANDBOX_BASE)).await.unwrap();
    assert_eq!(c.source(), ConfigurationSource::WellKnown);
    assert_eq!(
        c.token_endpoint().as_str(),
        "https://launch.smarthealthit.example/v/r4/auth/token"
    );
    assert_eq!(
        server.seen(),
        [(well_known(SANDBOX_BASE), "application/json".to_owned())]
    );
}

#[tokio::test]
async fn transport_errors_are_wrapped_with_the_source_and_do_not_fall_back() {
    let server = FakeServer::new().on(&well_known(SANDBOX_BASE), Answer::TransportError);
    let e = discover(&server, &base(SANDBOX_BASE)).await.unwrap_err();
    match &e {
        DiscoveryError::Http { url, source } => {
            assert_eq!(url, &well_known(SANDBOX_BASE));
            assert!(source.is_transient());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.source().is_some());
    assert_eq!(server.count(), 1);
}
