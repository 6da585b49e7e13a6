//! The token-response parser's handling of an OAuth error sent with a success status: it is
//! reported as the server's error, with its code, not as an unreadable token response
//! (SC-3.7, SC-4.19).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use smart_fhir_oauth::token::parse_token_response;
use smart_fhir_oauth::{OAuthError, OAuthErrorCode};

fn ok_response(body: &str) -> http::Response<Bytes> {
    http::Response::builder()
        .status(200)
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// SC-3.7: a 200 whose body is an RFC 6749 §5.2 error is that error, code and description kept.
#[test]
fn error_body_with_200_is_the_servers_error_sc_3_7() {
    let err = parse_token_response(
        ok_response(r#"{"error":"invalid_grant","error_description":"code expired"}"#),
        now(),
        "system/*.rs",
    )
    .unwrap_err();
    match &err {
        OAuthError::Server {
            status,
            code,
            description,
            ..
        } => {
            assert_eq!(*status, 200);
            assert_eq!(*code, OAuthErrorCode::InvalidGrant);
            assert_eq!(description.as_deref(), Some("code expired"));
        }
        other => panic!("not the server's error: {other:?}"),
    }
    assert_eq!(err.oauth_code(), Some(&OAuthErrorCode::InvalidGrant));
}

/// SC-4.19: a body that is neither a token response nor an OAuth error stays an invalid
/// response, and a good token response is still accepted.
#[test]
fn non_error_bodies_are_not_taken_for_server_errors_sc_4_19() {
    let err =
        parse_token_response(ok_response(r#"{"token_type":"Bearer"}"#), now(), "").unwrap_err();
    assert!(
        matches!(err, OAuthError::InvalidResponse { status: 200, .. }),
        "{err:?}"
    );
    let ok = parse_token_response(
        ok_response(r#"{"access_token":"at-1","token_type":"bearer","expires_in":300}"#),
        now(),
        "system/*.rs",
    )
    .unwrap();
    assert_eq!(ok.token.access_token.secret(), "at-1");
}
