//! Token introspection (SC-6.1–SC-6.4) and revocation (SC-6.5, SC-6.6) through a fake
//! `HttpClient` that records each request and answers with a canned response.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;
use smart_fhir_core::{
    AccessToken, ClientSecret, HttpClient, HttpError, HttpErrorKind, MaxResponseBytes, Url,
};
use smart_fhir_jwt::{Algorithm, AssertionSigner, KeySpec, PrivateKey, CLIENT_ASSERTION_TYPE};
use smart_fhir_oauth::{
    introspect, revoke, IntrospectionAuth, OAuthError, OAuthErrorCode, RevocationAuth,
    RevocationError, TokenTypeHint,
};

const INTROSPECT_URL: &str = "https://auth.example/oauth2/introspect";
const REVOKE_URL: &str = "https://auth.example/oauth2/revoke";
const TOKEN: &str = "the-token-under-test";

/// Records requests; answers with `status`, optional `Retry-After`, and `body`.
#[derive(Debug, Clone)]
struct Fake {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
    seen: Arc<Mutex<Vec<http::Request<Bytes>>>>,
}

impl Fake {
    fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            retry_after: None,
            body: body.to_owned(),
            seen: Arc::default(),
        }
    }

    fn request(&self) -> http::Request<Bytes> {
        let mut seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "exactly one request");
        seen.pop().unwrap()
    }
}

#[async_trait]
impl HttpClient for Fake {
    async fn execute(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        self.seen.lock().unwrap().push(req);
        let mut response = http::Response::builder().status(self.status);
        if let Some(v) = self.retry_after {
            response = response.header("Retry-After", v);
        }
        Ok(response.body(Bytes::from(self.body.clone())).unwrap())
    }
}

fn form(req: &http::Request<Bytes>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.body())
        .into_owned()
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn assert_form_post(req: &http::Request<Bytes>, url: &str) {
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri(), url);
    assert_eq!(
        req.headers()["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(req.headers()["accept"], "application/json");
    assert!(req.extensions().get::<MaxResponseBytes>().is_some());
}

fn basic(req: &http::Request<Bytes>) -> String {
    let value = &req.headers()["authorization"];
    assert!(
        value.is_sensitive(),
        "Authorization must be marked sensitive"
    );
    let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
    String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

async fn introspect_with(
    fake: &Fake,
    auth: &IntrospectionAuth,
) -> Result<smart_fhir_oauth::Introspection, OAuthError> {
    introspect(
        fake,
        &url(INTROSPECT_URL),
        TOKEN,
        Some(TokenTypeHint::AccessToken),
        auth,
    )
    .await
}

/// SC-6.1, SC-6.2: the request is a form POST with the token and hint, authenticated with the
/// bearer token (a sensitive header).
#[tokio::test]
async fn sc_6_2_bearer_request_shape() {
    let fake = Fake::new(200, r#"{"active": false}"#);
    introspect_with(
        &fake,
        &IntrospectionAuth::Bearer(AccessToken::new("my-own-token")),
    )
    .await
    .unwrap();
    let req = fake.request();
    assert_form_post(&req, INTROSPECT_URL);
    assert_eq!(req.headers()["authorization"], "Bearer my-own-token");
    assert!(req.headers()["authorization"].is_sensitive());
    assert_eq!(
        form(&req),
        pairs(&[("token", TOKEN), ("token_type_hint", "access_token")])
    );
}

/// SC-6.1: Basic authentication and no authentication.
#[tokio::test]
async fn sc_6_1_basic_and_no_auth() {
    let fake = Fake::new(200, r#"{"active": false}"#);
    introspect_with(
        &fake,
        &IntrospectionAuth::Basic {
            client_id: "rs:1".into(),
            secret: ClientSecret::new("s3cr&t"),
        },
    )
    .await
    .unwrap();
    assert_eq!(basic(&fake.request()), "rs%3A1:s3cr%26t");

    let fake = Fake::new(200, r#"{"active": false}"#);
    introspect(
        &fake,
        &url(INTROSPECT_URL),
        TOKEN,
        None,
        &IntrospectionAuth::None,
    )
    .await
    .unwrap();
    let req = fake.request();
    assert!(req.headers().get("authorization").is_none());
    assert_eq!(form(&req), pairs(&[("token", TOKEN)]));
}

/// SC-6.3: an active token's members are typed; launch context and extensions are kept.
#[tokio::test]
async fn sc_6_3_active_token_is_parsed_whole() {
    let body = json!({
        "active": true,
        "scope": "launch/patient patient/Observation.rs openid fhirUser",
        "client_id": "smart-app",
        "username": "jo",
        "token_type": "Bearer",
        "exp": 1_750_000_600u64,
        "iat": 1_750_000_000u64,
        "nbf": 1_750_000_000u64,
        "sub": "u-42",
        "aud": ["https://ehr.example/fhir", "other"],
        "iss": "https://auth.example/oauth2",
        "jti": "j-1",
        "fhirUser": "Practitioner/pr-1",
        "patient": "p-7",
        "encounter": "e-3",
        "fhirContext": [{"reference": "DiagnosticReport/dr-1"}],
        "need_patient_banner": false,
        "x-vendor": {"a": 1}
    });
    let fake = Fake::new(200, &body.to_string());
    let r = introspect_with(&fake, &IntrospectionAuth::None)
        .await
        .unwrap();
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    assert!(r.active);
    assert_eq!(
        r.scopes().collect::<Vec<_>>(),
        [
            "launch/patient",
            "patient/Observation.rs",
            "openid",
            "fhirUser"
        ]
    );
    assert_eq!(r.client_id.as_deref(), Some("smart-app"));
    assert_eq!(r.username.as_deref(), Some("jo"));
    assert_eq!(r.token_type.as_deref(), Some("Bearer"));
    assert_eq!(r.expires_at, Some(at(1_750_000_600)));
    assert_eq!(r.issued_at, Some(at(1_750_000_000)));
    assert_eq!(r.not_before, Some(at(1_750_000_000)));
    assert_eq!(r.subject.as_deref(), Some("u-42"));
    assert_eq!(r.audiences, ["https://ehr.example/fhir", "other"]);
    assert_eq!(r.issuer.as_deref(), Some("https://auth.example/oauth2"));
    assert_eq!(r.jti.as_deref(), Some("j-1"));
    assert_eq!(r.fhir_user.as_deref(), Some("Practitioner/pr-1"));
    assert_eq!(r.patient(), Some("p-7"));
    assert_eq!(r.encounter(), Some("e-3"));
    assert_eq!(
        r.fhir_context(),
        Some(&[json!({"reference": "DiagnosticReport/dr-1"})][..])
    );
    assert_eq!(r.extra["need_patient_banner"], json!(false));
    assert_eq!(r.extra["x-vendor"], json!({"a": 1}));
    // Standard members are not repeated in `extra`.
    assert!(!r.extra.contains_key("scope") && !r.extra.contains_key("active"));
    assert!(r.is_active_at(at(1_750_000_599)));
    assert!(!r.is_active_at(at(1_750_000_600)));
}

/// SC-6.4: `{"active": false}` alone is accepted; whatever else an inactive answer carries is
/// dropped.
#[tokio::test]
async fn sc_6_4_inactive_token() {
    for body in [
        r#"{"active": false}"#,
        r#"{"active": false, "scope": "patient/*.cruds", "patient": "p-1", "exp": "junk"}"#,
    ] {
        let fake = Fake::new(200, body);
        let r = introspect_with(&fake, &IntrospectionAuth::None)
            .await
            .unwrap();
        assert!(!r.active, "{body}");
        assert!(r.scope.is_none() && r.patient().is_none() && r.extra.is_empty());
        assert!(!r.is_active_at(SystemTime::UNIX_EPOCH));
    }
}

/// SC-6.3: broken or hostile bodies are typed errors that never quote the token.
#[tokio::test]
async fn sc_6_3_garbage_bodies_are_errors() {
    for (status, body, expect) in [
        (200, "", "truncated"),
        (200, "not json", "not valid JSON"),
        (200, "<html>login</html>", "HTML"),
        (200, "[true]", "not a JSON object"),
        (200, r#"{"scope": "a"}"#, "no `active`"),
        (200, r#"{"active": "true"}"#, "not a boolean"),
        (200, r#"{"active": 1}"#, "not a boolean"),
        (
            200,
            r#"{"active": true, "exp": "soon"}"#,
            "`exp` is not a number",
        ),
        (200, r#"{"active": true, "aud": 7}"#, "`aud`"),
        (
            200,
            r#"{"active": true, "client_id": 7}"#,
            "`client_id` is not a string",
        ),
    ] {
        let fake = Fake::new(status, body);
        let e = introspect_with(&fake, &IntrospectionAuth::None)
            .await
            .unwrap_err();
        let shown = e.to_string();
        assert!(
            matches!(e, OAuthError::InvalidResponse { .. }),
            "{body}: {e:?}"
        );
        assert!(shown.contains(expect), "{body}: {shown}");
        assert!(!shown.contains(TOKEN));
    }
}

/// SC-6.2: an OAuth error or an unauthorised answer is a typed error.
#[tokio::test]
async fn sc_6_2_errors_are_typed() {
    let fake = Fake::new(401, r#"{"error": "invalid_client"}"#);
    let e = introspect_with(&fake, &IntrospectionAuth::None)
        .await
        .unwrap_err();
    assert!(e.is_invalid_client(), "{e:?}");

    let fake = Fake::new(200, r#"{"error": "invalid_request"}"#);
    let e = introspect_with(&fake, &IntrospectionAuth::None)
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidRequest));

    let fake = Fake::new(403, "");
    assert!(matches!(
        introspect_with(&fake, &IntrospectionAuth::None).await,
        Err(OAuthError::Status { status: 403, .. })
    ));
}

async fn revoke_with(
    fake: &Fake,
    hint: TokenTypeHint,
    auth: &RevocationAuth,
) -> Result<(), RevocationError> {
    revoke(fake, &url(REVOKE_URL), TOKEN, hint, auth).await
}

/// SC-6.6, SC-2.22: a public client sends its client_id in the body and no authentication.
#[tokio::test]
async fn sc_6_6_public_client_request_shape() {
    let fake = Fake::new(200, "");
    revoke_with(
        &fake,
        TokenTypeHint::RefreshToken,
        &RevocationAuth::Public {
            client_id: "smart-app".into(),
        },
    )
    .await
    .unwrap();
    let req = fake.request();
    assert_form_post(&req, REVOKE_URL);
    assert!(req.headers().get("authorization").is_none());
    assert_eq!(
        form(&req),
        pairs(&[
            ("token", TOKEN),
            ("token_type_hint", "refresh_token"),
            ("client_id", "smart-app")
        ])
    );
}

/// SC-6.6, SC-2.18, SC-2.19: client_secret_basic: a sensitive Basic header, nothing about the
/// client in the body.
#[tokio::test]
async fn sc_6_6_basic_request_shape() {
    let fake = Fake::new(200, "");
    revoke_with(
        &fake,
        TokenTypeHint::AccessToken,
        &RevocationAuth::Basic {
            client_id: "smart app".into(),
            secret: ClientSecret::new("pa:ss"),
        },
    )
    .await
    .unwrap();
    let req = fake.request();
    assert_eq!(basic(&req), "smart+app:pa%3Ass");
    assert_eq!(
        form(&req),
        pairs(&[("token", TOKEN), ("token_type_hint", "access_token")])
    );
}

/// SC-6.6, SC-2.21: client_secret_post: id and secret in the body.
#[tokio::test]
async fn sc_6_6_post_request_shape() {
    let fake = Fake::new(200, "");
    revoke_with(
        &fake,
        TokenTypeHint::RefreshToken,
        &RevocationAuth::Post {
            client_id: "smart-app".into(),
            secret: ClientSecret::new("s3cret"),
        },
    )
    .await
    .unwrap();
    let req = fake.request();
    assert!(req.headers().get("authorization").is_none());
    assert_eq!(
        form(&req),
        pairs(&[
            ("token", TOKEN),
            ("token_type_hint", "refresh_token"),
            ("client_id", "smart-app"),
            ("client_secret", "s3cret")
        ])
    );
}

/// SC-6.6, SC-2.13: private_key_jwt: the assertion and its type in the body.
#[tokio::test]
async fn sc_6_6_private_key_jwt_request_shape() {
    let key = PrivateKey::generate(KeySpec::P384).unwrap();
    let assertion = AssertionSigner::new(&key, Algorithm::ES384)
        .unwrap()
        .sign(
            "smart-app",
            "https://auth.example/oauth2/token",
            Duration::from_secs(60),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        )
        .unwrap();
    let expected_assertion = assertion.secret().to_owned();
    let fake = Fake::new(200, "");
    revoke_with(
        &fake,
        TokenTypeHint::RefreshToken,
        &RevocationAuth::PrivateKeyJwt {
            client_id: "smart-app".into(),
            assertion,
        },
    )
    .await
    .unwrap();
    let req = fake.request();
    assert!(req.headers().get("authorization").is_none());
    assert_eq!(
        form(&req),
        pairs(&[
            ("token", TOKEN),
            ("token_type_hint", "refresh_token"),
            ("client_id", "smart-app"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &expected_assertion)
        ])
    );
}

/// SC-6.6: 200 is success, with any body (a server answers 200 for unknown tokens too).
#[tokio::test]
async fn sc_6_6_200_is_success_whatever_the_body() {
    for body in ["", "{}", "<html>ok</html>"] {
        let fake = Fake::new(200, body);
        revoke_with(
            &fake,
            TokenTypeHint::AccessToken,
            &RevocationAuth::Public {
                client_id: "smart-app".into(),
            },
        )
        .await
        .unwrap();
    }
}

/// SC-6.6: 503 is a typed, retryable error carrying Retry-After.
#[tokio::test]
async fn sc_6_6_503_is_retryable() {
    let mut fake = Fake::new(503, "try later");
    fake.retry_after = Some("120");
    let e = revoke_with(
        &fake,
        TokenTypeHint::AccessToken,
        &RevocationAuth::Public {
            client_id: "smart-app".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            RevocationError::Unavailable {
                status: 503,
                retry_after: Some(d)
            } if d == Duration::from_secs(120)
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
}

/// SC-6.6: other failures are typed and not retryable; the OAuth error code is kept.
#[tokio::test]
async fn sc_6_6_other_failures_are_typed() {
    let public = RevocationAuth::Public {
        client_id: "smart-app".into(),
    };
    let fake = Fake::new(400, r#"{"error": "unsupported_token_type"}"#);
    let e = revoke_with(&fake, TokenTypeHint::AccessToken, &public)
        .await
        .unwrap_err();
    match &e {
        RevocationError::Failed(inner) => assert_eq!(
            inner.oauth_code(),
            Some(&OAuthErrorCode::Other("unsupported_token_type".into()))
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!e.is_retryable());

    let fake = Fake::new(401, r#"{"error": "invalid_client"}"#);
    let e = revoke_with(&fake, TokenTypeHint::AccessToken, &public)
        .await
        .unwrap_err();
    assert!(matches!(&e, RevocationError::Failed(inner) if inner.is_invalid_client()));

    let fake = Fake::new(500, "<html>boom</html>");
    let e = revoke_with(&fake, TokenTypeHint::AccessToken, &public)
        .await
        .unwrap_err();
    assert!(matches!(
        &e,
        RevocationError::Failed(OAuthError::Status { status: 500, .. })
    ));
    assert!(!e.is_retryable());
}

/// A transient transport failure is retryable; no request is sent for an empty token.
#[tokio::test]
async fn transport_failures_and_empty_tokens() {
    #[derive(Debug)]
    struct Down;
    #[async_trait]
    impl HttpClient for Down {
        async fn execute(
            &self,
            req: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            Err(HttpError::new(HttpErrorKind::Timeout, req.uri(), "slow"))
        }
    }
    let public = RevocationAuth::Public {
        client_id: "smart-app".into(),
    };
    let e = revoke(
        &Down,
        &url(REVOKE_URL),
        TOKEN,
        TokenTypeHint::AccessToken,
        &public,
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");

    let fake = Fake::new(200, "");
    assert!(revoke(
        &fake,
        &url(REVOKE_URL),
        "",
        TokenTypeHint::AccessToken,
        &public
    )
    .await
    .is_err());
    assert!(fake.seen.lock().unwrap().is_empty());
}

/// P5: the authentication's Debug output hides secrets and tokens.
#[test]
fn p5_auth_debug_is_redacted() {
    let shown = format!(
        "{:?} {:?} {:?}",
        IntrospectionAuth::Bearer(AccessToken::new("bearer-secret")),
        IntrospectionAuth::Basic {
            client_id: "id".into(),
            secret: ClientSecret::new("basic-secret")
        },
        RevocationAuth::Post {
            client_id: "id".into(),
            secret: ClientSecret::new("post-secret")
        }
    );
    for secret in ["bearer-secret", "basic-secret", "post-secret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
