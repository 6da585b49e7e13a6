//! P5: the `Debug` of the token-endpoint types that hold secrets shows none of them.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use smart_fhir_core::ClientSecret;
use smart_fhir_jwt::{Algorithm, AssertionSigner, KeySpec, PrivateKey};
use smart_fhir_oauth::launch::TokenAuth;
use smart_fhir_oauth::token::parse_token_response;

/// A parsed token response (`TokenResponse`, derived `Debug`) shows no access, refresh or id
/// token, and no launch-context value.
#[test]
fn p5_token_response_debug_shows_no_token() {
    let body = r#"{"access_token":"ACCESS-SECRET-0123456789","token_type":"Bearer",
        "expires_in":300,"refresh_token":"REFRESH-SECRET-0123456789",
        "id_token":"ID-SECRET-0123456789","scope":"launch/patient patient/*.rs",
        "patient":"PATIENT-ID-0123456789"}"#;
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap();
    let parsed = parse_token_response(
        response,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        "patient/*.rs",
    )
    .unwrap();
    let printed = format!("{parsed:?} {parsed:#?}");
    for secret in ["ACCESS-SECRET", "REFRESH-SECRET", "ID-SECRET", "PATIENT-ID"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(printed.contains("TokenResponse"), "{printed}");
}

/// Each `TokenAuth` (derived `Debug`) shows the client id and no secret or assertion.
#[test]
fn p5_token_auth_debug_shows_no_secret_or_assertion() {
    let secret = ClientSecret::new("CLIENT-SECRET-0123456789");
    let key = PrivateKey::generate(KeySpec::P384).unwrap();
    let assertion = AssertionSigner::new(&key, Algorithm::ES384)
        .unwrap()
        .sign(
            "client-1",
            "https://auth.example/token",
            Duration::from_secs(60),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        )
        .unwrap();
    let printed = [
        format!(
            "{:?}",
            TokenAuth::ClientSecretBasic {
                client_id: "client-1",
                secret: &secret
            }
        ),
        format!(
            "{:#?}",
            TokenAuth::ClientSecretPost {
                client_id: "client-1",
                secret: &secret
            }
        ),
        format!(
            "{:?}",
            TokenAuth::PrivateKeyJwt {
                assertion: &assertion
            }
        ),
    ];
    for p in &printed {
        assert!(!p.contains("CLIENT-SECRET"), "{p}");
        assert!(!p.contains(assertion.secret()), "{p}");
        let signature = assertion.secret().rsplit('.').next().unwrap();
        assert!(!p.contains(&signature[..16]), "{p}");
    }
    assert!(printed[0].contains("client-1"), "{}", printed[0]);
}
