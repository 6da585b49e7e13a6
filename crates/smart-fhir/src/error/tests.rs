//! Tests of the questions [`Error`] answers, on errors as the crates build them.

use std::error::Error as _;
use std::time::Duration;

use smart_fhir_core::http::{Method, StatusCode, Uri};
use smart_fhir_core::Bytes;
use smart_fhir_http::client::RequestLine;
use smart_fhir_oauth::{OAuthErrorCode, RelaunchReason};

use super::*;

fn line() -> RequestLine {
    let uri: Uri = "https://ehr.example/fhir/Patient/1".parse().unwrap();
    RequestLine::new(&Method::GET, &uri)
}

fn http(kind: HttpErrorKind) -> HttpError {
    let uri: Uri = "https://ehr.example/fhir/Patient?name=Smith"
        .parse()
        .unwrap();
    HttpError::new(kind, &uri, "it failed")
}

fn fhir_status(status: u16) -> Error {
    Error::from(FhirError::from_response(
        line(),
        StatusCode::from_u16(status).unwrap(),
        &Bytes::from_static(br#"{"resourceType":"OperationOutcome","issue":[]}"#),
    ))
}

fn oauth_server(code: OAuthErrorCode) -> OAuthError {
    OAuthError::Server {
        status: 400,
        code,
        description: None,
        uri: None,
    }
}

/// A FHIR request that had no token because `cause` left the token source without one, as the
/// FHIR client reports it.
fn no_token(kind: ProviderErrorKind, cause: impl Into<smart_fhir_core::BoxError>) -> Error {
    Error::from(FhirError::Auth {
        request: line(),
        source: ProviderError::new(kind, "no token").with_source(cause),
    })
}

#[test]
fn status_is_the_fhir_servers_sc_8_25() {
    assert_eq!(fhir_status(404).status(), Some(404));
    assert_eq!(fhir_status(412).status(), Some(412));
    assert!(!fhir_status(404).is_auth());
    assert!(!fhir_status(500).is_transport());
    // A token endpoint's answer is not a FHIR status.
    assert_eq!(
        Error::from(oauth_server(OAuthErrorCode::InvalidClient)).status(),
        None
    );
    assert_eq!(Error::from(http(HttpErrorKind::Connect)).status(), None);
}

/// SC-8.26: a FHIR server's refusal is an authorization failure.
#[test]
fn a_401_or_403_is_auth_sc_8_26() {
    assert!(fhir_status(401).is_auth());
    assert!(fhir_status(403).is_auth());
    assert!(!fhir_status(401).relaunch_needed());
}

#[test]
fn no_token_is_auth_and_keeps_the_cause_reachable() {
    let e = no_token(
        ProviderErrorKind::Rejected,
        oauth_server(OAuthErrorCode::InvalidClient),
    );
    assert!(e.is_auth());
    assert_eq!(e.oauth_error(), Some("invalid_client"));
    assert_eq!(e.status(), None);
    assert!(!e.is_transport());
    assert!(!e.relaunch_needed());
    assert!(Error::from(ProviderError::new(ProviderErrorKind::Other, "x")).is_auth());
}

/// SC-3.7: the OAuth error code, from a token request or from an App Launch callback.
#[test]
fn oauth_error_is_the_servers_code_sc_3_7() {
    let e = Error::from(oauth_server(OAuthErrorCode::Other(
        "temporarily_unavailable".into(),
    )));
    assert_eq!(e.oauth_error(), Some("temporarily_unavailable"));
    assert!(e.is_auth());

    let refresh = Error::from(LaunchError::Token(oauth_server(
        OAuthErrorCode::InvalidGrant,
    )));
    assert_eq!(refresh.oauth_error(), Some("invalid_grant"));

    let denied = Error::from(LaunchError::AuthorizationDenied {
        error: "access_denied".into(),
        description: Some("the user said no".into()),
        uri: None,
    });
    assert_eq!(denied.oauth_error(), Some("access_denied"));
    assert!(denied.is_auth());

    let revocation = Error::from(RevocationError::Failed(oauth_server(
        OAuthErrorCode::InvalidClient,
    )));
    assert_eq!(revocation.oauth_error(), Some("invalid_client"));

    assert_eq!(fhir_status(401).oauth_error(), None);
    assert_eq!(
        Error::from(OAuthError::Timeout(Duration::from_secs(1))).oauth_error(),
        None
    );
}

/// SC-4.28: a session that cannot refresh needs a new launch, also when the FHIR client reports
/// it.
#[test]
fn relaunch_needed_directly_and_through_the_fhir_client_sc_4_28() {
    let direct = Error::from(LaunchError::RelaunchNeeded(RelaunchReason::NoRefreshToken));
    assert!(direct.relaunch_needed());
    assert!(direct.is_auth());

    let via_fhir = no_token(
        ProviderErrorKind::RelaunchNeeded,
        LaunchError::RelaunchNeeded(RelaunchReason::RefreshRefused {
            code: OAuthErrorCode::InvalidGrant,
            description: None,
        }),
    );
    assert!(via_fhir.relaunch_needed());
    assert!(via_fhir.is_auth());

    // The provider's kind alone says so too (a token source of the caller's own).
    let kind_only = Error::from(ProviderError::new(ProviderErrorKind::RelaunchNeeded, "x"));
    assert!(kind_only.relaunch_needed());
    assert!(!Error::from(LaunchError::UnknownState).relaunch_needed());
}

#[test]
fn transport_and_timeout_at_every_step() {
    let timeout = Error::from(FhirError::Http {
        request: line(),
        source: Box::new(http(HttpErrorKind::Timeout)),
    });
    assert!(timeout.is_transport());
    assert!(timeout.is_timeout());
    assert!(!timeout.is_auth());

    let discovery = Error::from(DiscoveryError::Http {
        url: "https://ehr.example/fhir/.well-known/smart-configuration".into(),
        source: http(HttpErrorKind::Connect),
    });
    assert!(discovery.is_transport());
    assert!(!discovery.is_timeout());

    let token = no_token(
        ProviderErrorKind::Unavailable,
        OAuthError::from(http(HttpErrorKind::Tls)),
    );
    assert!(token.is_transport());
    assert!(token.is_auth(), "no token is an authorization failure too");

    let load = Error::from(OAuthError::Timeout(Duration::from_secs(30)));
    assert!(load.is_timeout());
    assert!(!load.is_transport());

    assert!(!fhir_status(504).is_timeout());
    assert!(Error::from(http(HttpErrorKind::Io)).is_transport());
}

#[test]
fn configuration_errors_answer_no_to_every_question() {
    let e = Error::from(ConfigError::Missing {
        var: "SMART_CLIENT_ID".into(),
        alternative: None,
    });
    assert!(!e.is_auth() && !e.is_transport() && !e.is_timeout() && !e.relaunch_needed());
    assert_eq!((e.status(), e.oauth_error()), (None, None));
    assert_eq!(e.to_string(), "SMART_CLIENT_ID is not set");
}

/// P5: the facade shows the inner error's text, which names the host and never the query.
#[test]
fn display_is_the_inner_errors_and_source_continues_its_chain_p5() {
    let inner = FhirError::Http {
        request: line(),
        source: Box::new(http(HttpErrorKind::Connect)),
    };
    let shown = inner.to_string();
    let inner_source = inner.source().map(ToString::to_string);
    let e = Error::from(inner);
    assert_eq!(e.to_string(), shown);
    assert_eq!(e.source().map(ToString::to_string), inner_source);
    assert!(!shown.contains("Smith"), "{shown}");

    let no_token = no_token(
        ProviderErrorKind::Rejected,
        oauth_server(OAuthErrorCode::InvalidClient),
    );
    let chain: Vec<String> =
        std::iter::successors(Some(&no_token as &dyn std::error::Error), |e| (*e).source())
            .map(ToString::to_string)
            .collect();
    assert_eq!(chain.len(), 3, "{chain:?}");
    assert!(chain[2].contains("invalid_client"), "{chain:?}");
}

/// Every crate error converts with `?`.
#[test]
fn every_crate_error_converts() {
    fn convert<E: Into<Error>>(e: E) -> Error {
        e.into()
    }
    let errors = [
        convert(smart_fhir_core::FhirBaseUrl::parse("ftp://x").unwrap_err()),
        convert(smart_fhir_scopes::ScopeSet::parse("patient/Patient.rx").unwrap_err()),
        convert(smart_fhir_jwt::PrivateKey::from_pem("not a key").unwrap_err()),
        convert(StoreError::backend_message("down")),
        convert(
            smart_fhir_http::HyperHttpClient::builder()
                .tls_roots(smart_fhir_http::Roots::Only)
                .build()
                .unwrap_err(),
        ),
        convert(PkceError::Length {
            kind: smart_fhir_pkce::ValueKind::State,
            len: 1,
            min: 22,
            max: 128,
        }),
    ];
    assert!(matches!(errors[0], Error::Url(_)));
    assert!(matches!(errors[1], Error::Scope(_)));
    assert!(matches!(errors[2], Error::Jwt(_)));
    assert!(matches!(errors[3], Error::Store(_)));
    assert!(matches!(errors[4], Error::Transport(_)));
    assert!(matches!(errors[5], Error::Pkce(_)));
    assert!(errors.iter().all(|e| !e.is_auth() && !e.is_transport()));
}
