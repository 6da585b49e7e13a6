//! P6, SC-3.11: no credential of any kind goes to another origin.

use bytes::Bytes;
use serde_json::json;
use smart_fhir_core::StaticTokenProvider;
use smart_fhir_core::{AccessToken, FhirBaseUrl, InsecureHttp};
use smart_fhir_http::{FhirClient, RequestOptions};
use smart_fhir_testkit::{Method, Reply, TestServer};

/// P6: a request the caller sends to another origin loses `Authorization`, `Proxy-Authorization`
/// and `Cookie`, and gets no token; the same request to the base's origin keeps them.
#[tokio::test]
async fn p6_credentials_never_reach_another_origin() {
    let home = TestServer::start().await;
    let other = TestServer::start().await;
    for s in [&home, &other] {
        s.route(Method::GET, "/fhir/Patient/1").reply(Reply::fhir(
            200,
            json!({"resourceType": "Patient", "id": "1"}),
        ));
    }
    let fhir = FhirClient::builder(
        FhirBaseUrl::parse_with(home.fhir_base(), InsecureHttp::AllowLoopback).unwrap(),
    )
    .auth(StaticTokenProvider::new(AccessToken::new("tok-home")))
    .build()
    .unwrap();
    for server in [&home, &other] {
        let req = http::Request::get(format!("{}/Patient/1", server.fhir_base()))
            .header("authorization", "Basic c2VjcmV0")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("cookie", "session=secret")
            .body(Bytes::new())
            .unwrap();
        let resp = fhir.send(req, &RequestOptions::default()).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let at_other = &other.requests_to("/fhir/Patient/1")[0];
    for name in ["authorization", "proxy-authorization", "cookie"] {
        assert!(
            at_other.header(name).is_none(),
            "{name} reached another origin"
        );
    }
    let at_home = &home.requests_to("/fhir/Patient/1")[0];
    assert_eq!(at_home.header("authorization"), Some("Bearer tok-home"));
    assert_eq!(at_home.header("cookie"), Some("session=secret"));
}
