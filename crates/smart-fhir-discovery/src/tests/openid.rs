//! OpenID configuration: the issuer URL rules, the request, and the parse (SC-4.34, P7).

use serde_json::json;
use smart_fhir_core::{HttpErrorKind, InsecureHttp, MaxResponseBytes, RequestTimeout};

use super::{answer, FakeServer};
use crate::{
    fetch_openid_configuration, openid_configuration_request, parse_openid_configuration, Issuer,
    KeyDocument, KeyFetchError, KEY_FETCH_TIMEOUT, MAX_OPENID_CONFIGURATION_BYTES,
};

const ISS: &str = "https://auth.example/oauth2";

fn issuer() -> Issuer {
    Issuer::parse(ISS, InsecureHttp::Deny).unwrap()
}

fn response(status: u16, body: String) -> http::Response<bytes::Bytes> {
    let mut r = http::Response::new(bytes::Bytes::from(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

#[test]
fn openid_configuration_url_never_doubles_slashes() {
    for (issuer, expected) in [
        (
            "https://a.example",
            "https://a.example/.well-known/openid-configuration",
        ),
        (
            "https://a.example/",
            "https://a.example/.well-known/openid-configuration",
        ),
        (
            "https://a.example/realms/x/",
            "https://a.example/realms/x/.well-known/openid-configuration",
        ),
    ] {
        let issuer = Issuer::parse(issuer, InsecureHttp::Deny).unwrap();
        assert_eq!(issuer.openid_configuration_url().as_str(), expected);
    }
}

/// SC-4.34, P15: a bodiless GET for JSON, bounded and with a time limit.
#[test]
fn sc_4_34_request_is_a_bounded_json_get() {
    let request = openid_configuration_request(&issuer()).unwrap();
    assert_eq!(request.method(), http::Method::GET);
    assert_eq!(
        request.uri(),
        "https://auth.example/oauth2/.well-known/openid-configuration"
    );
    assert_eq!(request.headers()["accept"], "application/json");
    assert_eq!(
        request.extensions().get::<MaxResponseBytes>(),
        Some(&MaxResponseBytes(MAX_OPENID_CONFIGURATION_BYTES))
    );
    assert_eq!(
        request.extensions().get::<RequestTimeout>(),
        Some(&RequestTimeout(KEY_FETCH_TIMEOUT))
    );
}

/// P7, P15: the issuer and jwks_uri are checked against the insecure-HTTP policy.
#[test]
fn p7_issuer_and_jwks_uri_policy() {
    assert!(Issuer::parse("http://auth.example", InsecureHttp::AllowLoopback).is_err());
    assert!(Issuer::parse("http://127.0.0.1:9000", InsecureHttp::Deny).is_err());
    assert!(Issuer::parse("http://127.0.0.1:9000", InsecureHttp::AllowLoopback).is_ok());
    assert!(Issuer::parse("https://a.example/?x=1", InsecureHttp::Deny).is_err());
    assert!(Issuer::parse("not a url", InsecureHttp::Deny).is_err());
    let doc = |jwks: &str| json!({"issuer": ISS, "jwks_uri": jwks}).to_string();
    let loopback_ok = Issuer::parse(ISS, InsecureHttp::AllowLoopback).unwrap();
    assert!(matches!(
        parse_openid_configuration(&loopback_ok, response(200, doc("http://keys.example/jwks"))),
        Err(KeyFetchError::JwksUri(_))
    ));
    assert!(matches!(
        parse_openid_configuration(&issuer(), response(200, doc("/jwks"))),
        Err(KeyFetchError::JwksUri(_))
    ));
    let config =
        parse_openid_configuration(&issuer(), response(200, doc("https://keys.example/jwks")))
            .unwrap();
    assert_eq!(config.jwks_uri.as_str(), "https://keys.example/jwks");
    assert_eq!(config.issuer, ISS);
}

/// SC-4.34: the configuration's issuer must be exactly the expected one; a document without
/// issuer or jwks_uri, or that is not a JSON object, is refused.
#[test]
fn sc_4_34_invalid_documents_are_refused() {
    for bad in [
        json!({"issuer": "https://other.example", "jwks_uri": "https://k.example/j"}).to_string(),
        json!({"issuer": format!("{ISS}/"), "jwks_uri": "https://k.example/j"}).to_string(),
        json!({"jwks_uri": "https://k.example/j"}).to_string(),
        json!({"issuer": ISS}).to_string(),
        "[]".to_owned(),
        "<html>".to_owned(),
    ] {
        assert!(
            matches!(
                parse_openid_configuration(&issuer(), response(200, bad.clone())),
                Err(KeyFetchError::Invalid { .. })
            ),
            "{bad}"
        );
    }
    // An impostor's issuer is quoted bounded and printable.
    let long = format!("https://evil.example/\n{}", "x".repeat(1000));
    let e = parse_openid_configuration(
        &issuer(),
        response(
            200,
            json!({"issuer": long, "jwks_uri": "https://k/j"}).to_string(),
        ),
    )
    .unwrap_err();
    let shown = e.to_string();
    assert!(shown.len() < 600 && !shown.contains('\n'), "{shown}");
    // Redirects are not followed; other statuses keep a clean excerpt.
    for status in [301, 404, 503] {
        assert!(matches!(
            parse_openid_configuration(&issuer(), response(status, "<html>\n</html>".into())),
            Err(KeyFetchError::Status { status: s, excerpt }) if s == status && excerpt == "<html> </html>"
        ));
    }
    let huge = format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(MAX_OPENID_CONFIGURATION_BYTES)
    );
    assert!(matches!(
        parse_openid_configuration(&issuer(), response(200, huge)),
        Err(KeyFetchError::Invalid { reason }) if reason.contains("larger than")
    ));
}

/// SC-4.34: the fetch names the document and its URL in errors; a transport failure is
/// retryable.
#[tokio::test]
async fn sc_4_34_fetch_errors_name_the_document() {
    let url = "https://auth.example/oauth2/.well-known/openid-configuration";
    let server = FakeServer::new().on(url, answer(404, "nope"));
    let e = fetch_openid_configuration(&server, &issuer())
        .await
        .unwrap_err();
    assert_eq!(e.document, KeyDocument::OpenidConfiguration);
    assert_eq!(
        e.to_string(),
        format!("cannot get the issuer's OpenID configuration from {url}")
    );
    assert!(!e.is_retryable());
    let server = FakeServer::new().on(url, super::Answer::TransportError);
    let e = fetch_openid_configuration(&server, &issuer())
        .await
        .unwrap_err();
    assert!(matches!(&e.source, KeyFetchError::Http(h) if h.kind() == HttpErrorKind::Connect));
    assert!(e.is_retryable());
    let server = FakeServer::new().on(
        url,
        answer(
            200,
            &json!({"issuer": ISS, "jwks_uri": "https://auth.example/oauth2/jwks"}).to_string(),
        ),
    );
    let config = fetch_openid_configuration(&server, &issuer())
        .await
        .unwrap();
    assert_eq!(config.jwks_uri.as_str(), "https://auth.example/oauth2/jwks");
    assert_eq!(server.count(), 1);
}
