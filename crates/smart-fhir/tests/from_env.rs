//! The facade end to end against the in-repo test server: a configuration read from variables
//! gives a working FHIR client, and the errors of real exchanges answer the facade's questions.
//! The variables are passed with `Config::from_vars`; the process environment is never changed.

use std::time::Duration;

use serde_json::json;
use smart_fhir::http::RetryPolicy;
use smart_fhir::jwt::KeySpec;
use smart_fhir::{Config, Error, FhirClient, PrivateKey};
use smart_fhir_testkit::{Fault, Method, Reply, TestServer};

fn vars(server: &TestServer, token_url: &str) -> Vec<(String, String)> {
    let pem = PrivateKey::generate(KeySpec::P384)
        .expect("key")
        .to_pkcs8_pem()
        .to_string();
    [
        ("SMART_FHIR_BASE", server.fhir_base()),
        ("SMART_CLIENT_ID", "env-client"),
        ("SMART_SCOPE", "system/Patient.rs"),
        ("SMART_PRIVATE_KEY", &pem),
        ("SMART_TOKEN_URL", token_url),
        ("SMART_INSECURE_HTTP", "loopback"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// SC-3.10, P7: one configuration, said once, gives a client that gets a token and reads.
#[tokio::test]
async fn a_client_from_variables_reads_with_a_token_sc_3_10() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::fhir(200, json!({"resourceType": "Patient", "id": "1"})).require_auth());
    let config = Config::from_vars(vars(&server, server.token_endpoint())).unwrap();
    let fhir = config.fhir_client().unwrap();
    let patient = fhir
        .read::<serde_json::Value>("Patient", "1")
        .await
        .unwrap();
    assert_eq!(patient.body()["id"], "1");
    assert_eq!(server.token_requests(), 1);
    server.shutdown().await;
}

/// The same through a tenant prefix, and with discovery instead of a token URL.
#[tokio::test]
async fn a_tenant_prefix_and_discovery() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/2")
        .reply(Reply::fhir(200, json!({"resourceType": "Patient", "id": "2"})).require_auth());
    let prefixed = vars(&server, "")
        .into_iter()
        .map(|(k, v)| (format!("TENANT_{k}"), v));
    let config = Config::from_vars_prefixed("TENANT", prefixed).unwrap();
    assert!(config.token_url().is_none());
    let fhir = config.fhir_client().unwrap();
    fhir.read::<serde_json::Value>("Patient", "2")
        .await
        .unwrap();
    assert_eq!(server.requests_to("/fhir/.well-known").len(), 1);
    server.shutdown().await;
}

/// SC-8.25: the FHIR server's status.
#[tokio::test]
async fn a_fhir_error_status_sc_8_25() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/404")
        .reply(Reply::operation_outcome(
            404,
            "not-found",
            "no such patient",
        ));
    let fhir = Config::from_vars(vars(&server, server.token_endpoint()))
        .unwrap()
        .fhir_client()
        .unwrap();
    let e = Error::from(
        fhir.read::<serde_json::Value>("Patient", "404")
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status(), Some(404));
    assert!(!e.is_auth() && !e.is_transport());
    server.shutdown().await;
}

/// SC-3.7, SC-2.15: the token endpoint's refusal reaches the caller of a FHIR request as an
/// authorization failure with its OAuth error code.
#[tokio::test]
async fn a_refused_client_is_auth_with_its_oauth_code_sc_3_7() {
    let server = TestServer::start().await;
    server
        .route(Method::POST, "/refuse/token")
        .reply(Reply::json(
            401,
            json!({"error": "invalid_client", "error_description": "unknown key"}),
        ));
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::fhir(
            200,
            json!({"resourceType": "Patient", "id": "1"}),
        ));
    let token_url = server.url_for("/refuse/token");
    let fhir = Config::from_vars(vars(&server, &token_url))
        .unwrap()
        .fhir_client()
        .unwrap();
    let e = Error::from(
        fhir.read::<serde_json::Value>("Patient", "1")
            .await
            .unwrap_err(),
    );
    assert!(e.is_auth(), "{e}");
    assert_eq!(e.oauth_error(), Some("invalid_client"));
    assert_eq!(e.status(), None);
    assert!(!e.relaunch_needed());
    assert!(
        server.requests_to("/fhir/Patient").is_empty(),
        "no request without a token"
    );
    server.shutdown().await;
}

/// A server that does not answer: a transport timeout.
#[tokio::test]
async fn a_hanging_server_is_a_transport_timeout() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Fault::Hang);
    let backend = Config::from_vars(vars(&server, server.token_endpoint()))
        .unwrap()
        .backend_services()
        .unwrap();
    let fhir = FhirClient::for_token_source(backend)
        .unwrap()
        .timeout(Duration::from_millis(200))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let e = Error::from(
        fhir.read::<serde_json::Value>("Patient", "1")
            .await
            .unwrap_err(),
    );
    assert!(e.is_timeout(), "{e}");
    assert!(e.is_transport());
    assert!(!e.is_auth());
    server.shutdown().await;
}
