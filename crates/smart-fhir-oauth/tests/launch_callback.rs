//! The App Launch callback: state checks (SC-4.13, P3), error callbacks (SC-4.14), RFC 9207
//! `iss` (SC-4.17, P2), the code exchange for each client type (SC-4.18, SC-2.18 – SC-2.22),
//! the token response and launch context (SC-4.19 – SC-4.23), the `id_token` (SC-4.33 –
//! SC-4.35) and the landing URL (P10).

mod launch_support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use launch_support::*;
use serde_json::{json, Value};
use smart_fhir_core::ClientSecret;
use smart_fhir_jwt::{verify, Algorithm, Jwks};
use smart_fhir_oauth::{
    AppLaunch, AuthorizeRequest, ClientAuth, LaunchError, OAuthErrorCode, RelaunchReason,
};

async fn launched(app: &AppLaunch, session: &str) -> AuthorizeRequest {
    app.launch(session, BASE, "launch-123").await.unwrap()
}

fn with_state(req: &AuthorizeRequest, rest: &str) -> String {
    let state = params(req)["state"].clone();
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("state", &state);
    format!("{}&{rest}", q.finish())
}

/// SC-4.13, P3, P4: a state is used once; the replay fails without a second exchange.
#[tokio::test]
async fn p3_replayed_state_is_refused() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let query = callback_query(&req, "code-1");
    app.callback("sess-1", &query).await.unwrap();
    let e = app.callback("sess-1", &query).await.unwrap_err();
    assert!(matches!(e, LaunchError::UnknownState), "{e:?}");
    assert_eq!(s.server.token_requests().len(), 1);
}

/// SC-4.6, SC-4.13, P3: a state started in another session is refused in this one, and stays
/// usable in its own.
#[tokio::test]
async fn p3_state_from_another_session_is_refused() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "victim").await;
    let query = callback_query(&req, "code-1");
    let e = app.callback("attacker", &query).await.unwrap_err();
    assert!(matches!(e, LaunchError::StateMismatch), "{e:?}");
    assert!(s.server.token_requests().is_empty());
    app.callback("victim", &query).await.unwrap();
}

/// SC-4.13: a forged or missing state is refused before any exchange; Display shows neither the
/// state nor the code (P5).
#[tokio::test]
async fn sc_4_13_forged_or_missing_state() {
    let s = Setup::new();
    let app = s.app();
    let _ = launched(&app, "sess-1").await;
    let e = app
        .callback("sess-1", "code=SECRET-CODE&state=FORGED-STATE-VALUE")
        .await
        .unwrap_err();
    assert!(matches!(e, LaunchError::UnknownState), "{e:?}");
    let shown = format!("{} {e:?}", chain(&e));
    assert!(
        !shown.contains("SECRET-CODE") && !shown.contains("FORGED-STATE"),
        "{shown}"
    );
    let e = app.callback("sess-1", "code=c").await.unwrap_err();
    assert!(matches!(e, LaunchError::InvalidCallback { .. }), "{e:?}");
    let e = app
        .callback("sess-1", &format!("code=c&state={}", "x".repeat(600)))
        .await
        .unwrap_err();
    assert!(matches!(e, LaunchError::UnknownState), "{e:?}");
    assert!(s.server.token_requests().is_empty());
}

/// SC-4.14: an error callback is typed; it leaves the state in place (anyone who saw the
/// authorize URL can send one), so the server's own callback still completes the sign-in.
#[tokio::test]
async fn sc_4_14_error_callback_is_typed_and_leaves_the_state() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let e = app
        .callback(
            "sess-1",
            &with_state(
                &req,
                "error=access_denied&error_description=The+user+said+no&error_uri=https%3A%2F%2Fauth.example%2Fhelp",
            ),
        )
        .await
        .unwrap_err();
    match &e {
        LaunchError::AuthorizationDenied {
            error,
            description,
            uri,
        } => {
            assert_eq!(error, "access_denied");
            assert_eq!(description.as_deref(), Some("The user said no"));
            assert_eq!(uri.as_deref(), Some("https://auth.example/help"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "authorization failed: access_denied: The user said no"
    );
    assert!(s.server.token_requests().is_empty());
    app.callback("sess-1", &callback_query(&req, "code-1"))
        .await
        .unwrap();
    assert_eq!(s.server.token_requests().len(), 1);
}

/// SC-4.13, P3: a callback that repeats the right `state` but is malformed, names another
/// issuer or carries an error does not end the sign-in: the state stays for the server's own
/// callback, which is then used once.
#[tokio::test]
async fn p3_bad_callbacks_with_the_right_state_leave_it_for_the_real_one() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    for rest in [
        "code=",
        "nothing=here",
        "code=c&iss=https%3A%2F%2Fattacker.example",
        "error=access_denied",
        "error=server_error&code=c",
    ] {
        assert!(
            app.callback("sess-1", &with_state(&req, rest))
                .await
                .is_err(),
            "{rest}"
        );
    }
    // Repeated parameters are refused before the state is even looked up.
    let state = params(&req)["state"].clone();
    assert!(app
        .callback("sess-1", &format!("code=c&state={state}&state={state}"))
        .await
        .is_err());
    assert!(s.server.token_requests().is_empty());
    let query = callback_query(&req, "code-1");
    app.callback("sess-1", &query).await.unwrap();
    let e = app.callback("sess-1", &query).await.unwrap_err();
    assert!(matches!(e, LaunchError::UnknownState), "{e:?}");
    assert_eq!(s.server.token_requests().len(), 1);
}

/// SC-4.17, P2: an RFC 9207 `iss` other than the authorization server's issuer is refused (no
/// exchange; the state stays for the server's own callback); a matching one is accepted and
/// never used as the FHIR base.
#[tokio::test]
async fn p2_rfc9207_iss_is_checked_and_never_the_fhir_base() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let e = app
        .callback(
            "sess-1",
            &with_state(&req, "code=c&iss=https%3A%2F%2Fattacker.example"),
        )
        .await
        .unwrap_err();
    match &e {
        LaunchError::IssuerMismatch { expected, got } => {
            assert_eq!(expected.as_deref(), Some(ISSUER));
            assert_eq!(got.as_deref(), Some("https://attacker.example"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(s.server.token_requests().is_empty());

    let req = launched(&app, "sess-1").await;
    let ok = app
        .callback(
            "sess-1",
            &with_state(&req, "code=c&iss=https%3A%2F%2Fauth.example"),
        )
        .await
        .unwrap();
    assert_eq!(ok.fhir_base.as_str(), BASE);
    assert_eq!(s.server.token_requests()[0].uri, TOKEN_URL);
}

/// SC-4.17: when the server promises the `iss` parameter, a callback without it is refused.
#[tokio::test]
async fn sc_4_17_missing_iss_refused_when_promised() {
    let s = Setup::new();
    s.server.edit_config(|c| {
        c["authorization_response_iss_parameter_supported"] = json!(true);
    });
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let e = app
        .callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LaunchError::IssuerMismatch { got: None, .. }),
        "{e:?}"
    );
}

/// SC-4.18, SC-2.22: a public client exchanges the code with `client_id` in the body and no
/// authentication.
#[tokio::test]
async fn sc_2_22_public_client_exchange() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    app.callback("sess-1", &callback_query(&req, "the-code"))
        .await
        .unwrap();
    let r = &s.server.token_requests()[0];
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(
        r.names(),
        [
            "grant_type",
            "code",
            "redirect_uri",
            "code_verifier",
            "client_id"
        ]
    );
    assert_eq!(r.field("grant_type"), Some("authorization_code"));
    assert_eq!(r.field("code"), Some("the-code"));
    assert_eq!(r.field("redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(r.field("client_id"), Some(CLIENT_ID));
    assert!(r.authorization.is_none());
}

/// SC-2.18, SC-2.19: `client_secret_basic` with an id and a secret holding `:` and `%`: both are
/// form-encoded before they are joined; nothing of them goes in the body.
#[tokio::test]
async fn sc_2_19_client_secret_basic_exchange() {
    let s = Setup::new();
    let app = AppLaunch::new(
        s.builder()
            .client_id("my:app")
            .client_auth(ClientAuth::ClientSecretBasic(ClientSecret::new(
                "s3:cr%t é",
            )))
            .build()
            .unwrap(),
    );
    let req = launched(&app, "sess-1").await;
    app.callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap();
    let r = &s.server.token_requests()[0];
    let header = r.authorization.as_deref().unwrap();
    let decoded = String::from_utf8(
        STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, "my%3Aapp:s3%3Acr%25t+%C3%A9");
    assert_eq!(
        r.names(),
        ["grant_type", "code", "redirect_uri", "code_verifier"]
    );
}

/// SC-2.21: `client_secret_post` sends `client_id` and `client_secret` in the body.
#[tokio::test]
async fn sc_2_21_client_secret_post_exchange() {
    let s = Setup::new();
    let app = s.app_with(ClientAuth::ClientSecretPost(ClientSecret::new("s3cret")));
    let req = launched(&app, "sess-1").await;
    app.callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap();
    let r = &s.server.token_requests()[0];
    assert!(r.authorization.is_none());
    assert_eq!(r.field("client_id"), Some(CLIENT_ID));
    assert_eq!(r.field("client_secret"), Some("s3cret"));
}

fn jwt_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// SC-2.9 – SC-2.13, P8: `private_key_jwt` sends a fresh assertion whose `aud` is the token
/// endpoint, signed with the algorithm the server accepts.
#[tokio::test]
async fn sc_2_10_private_key_jwt_exchange() {
    let s = Setup::new();
    let app = s.app_with(ClientAuth::private_key_jwt(client_key().clone()));
    for session in ["sess-1", "sess-2"] {
        let req = launched(&app, session).await;
        app.callback(session, &callback_query(&req, "c"))
            .await
            .unwrap();
    }
    let requests = s.server.token_requests();
    let mut jtis = Vec::new();
    for r in &requests {
        assert!(r.authorization.is_none());
        assert!(r.field("client_id").is_none());
        assert_eq!(
            r.field("client_assertion_type"),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        let jwt = r.field("client_assertion").unwrap();
        let header = jwt_part(jwt, 0);
        assert_eq!(header["alg"], "ES384");
        assert_eq!(header["kid"], "client-1");
        let claims = jwt_part(jwt, 1);
        assert_eq!(claims["iss"], CLIENT_ID);
        assert_eq!(claims["sub"], CLIENT_ID);
        assert_eq!(claims["aud"], TOKEN_URL);
        assert!(claims["exp"].as_u64().unwrap() <= NOW + 300);
        let jwks = Jwks::from_value(&client_key().public_jwks()).unwrap();
        assert!(verify(jwt, &jwks, &[Algorithm::ES384]).is_ok());
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(jtis[0], jtis[1], "SC-2.11: a fresh jti per request");
}

/// SC-4.19 – SC-4.23, P10: the whole token response and launch context are read, unknown
/// members kept; the landing URL is the configured one whatever the callback carries.
#[tokio::test]
async fn sc_4_20_launch_context_and_landing_url() {
    let s = Setup::new();
    s.server.on_token(|_, _| {
        (
            200,
            json!({
                "access_token": "at-1", "token_type": "bearer", "expires_in": 900,
                "scope": "launch patient/Observation.rs openid",
                "refresh_token": "rt-1",
                "patient": "pat-123", "encounter": "enc-9",
                "fhirContext": [
                    {"reference": "DiagnosticReport/dr-1"},
                    {"canonical": "https://forms.example/Questionnaire/q|2", "type": "Questionnaire"},
                    {"identifier": {"system": "urn:oid:1.2.3", "value": "A-1"}, "type": "ImagingStudy",
                     "role": "https://example.org/role/primary"}
                ],
                "need_patient_banner": false,
                "smart_style_url": "https://ehr.example/style/v1.json",
                "intent": "reconcile-medications",
                "tenant": "tenant-7",
                "authorization_details": [{"type": "smart_on_fhir", "locations": [BASE]}],
                "org.example.unsolicited": {"x": [1, 2]}
            }),
        )
    });
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let query = format!(
        "{}&redirect=https%3A%2F%2Fevil.example&landing_url=https%3A%2F%2Fevil.example",
        callback_query(&req, "c")
    );
    let l = app.callback("sess-1", &query).await.unwrap();
    assert_eq!(l.landing_url.as_str(), LANDING_URL);
    assert_eq!(l.fhir_base.as_str(), BASE);
    let c = &l.context;
    assert_eq!(c.patient.as_deref(), Some("pat-123"));
    assert_eq!(c.encounter.as_deref(), Some("enc-9"));
    assert_eq!(c.fhir_context.len(), 3);
    assert_eq!(
        c.fhir_context[0].reference.as_deref(),
        Some("DiagnosticReport/dr-1")
    );
    assert_eq!(c.fhir_context[0].role_or_default(), "launch");
    assert_eq!(
        c.fhir_context[1].resource_type.as_deref(),
        Some("Questionnaire")
    );
    assert_eq!(
        c.fhir_context[2].role.as_deref(),
        Some("https://example.org/role/primary")
    );
    assert_eq!(
        c.fhir_context[2].identifier.as_ref().unwrap()["value"],
        "A-1"
    );
    assert_eq!(c.need_patient_banner, Some(false));
    assert_eq!(
        c.smart_style_url.as_ref().unwrap().as_str(),
        "https://ehr.example/style/v1.json"
    );
    assert_eq!(c.intent.as_deref(), Some("reconcile-medications"));
    assert_eq!(c.tenant.as_deref(), Some("tenant-7"));
    assert_eq!(
        c.authorization_details.as_ref().unwrap()[0]["locations"][0],
        BASE
    );
    assert_eq!(c.extra["org.example.unsolicited"], json!({"x": [1, 2]}));
    assert!(c.issues.is_empty());
    assert_eq!(
        l.granted_scopes.to_string(),
        "launch patient/Observation.rs openid"
    );
    assert!(l.has_refresh_token);
    assert!(l.user.is_none());
    assert_eq!(
        l.expires_at,
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(NOW + 900)
    );
    let printed = format!("{l:?}");
    assert!(
        !printed.contains("pat-123") && !printed.contains("at-1"),
        "{printed}"
    );

    // The session is stored with the same context.
    let session = app.ready("sess-1").await.unwrap();
    assert_eq!(session.patient().as_deref(), Some("pat-123"));
    assert_eq!(session.encounter().as_deref(), Some("enc-9"));
    assert_eq!(session.fhir_context().len(), 3);
    assert_eq!(session.need_patient_banner(), Some(false));
}

/// SC-4.23: context that was asked for may be absent.
#[tokio::test]
async fn sc_4_23_absent_context_is_fine() {
    let s = Setup::new();
    s.server.on_token(|_, _| {
        (
            200,
            json!({"access_token": "at", "token_type": "Bearer", "expires_in": 60}),
        )
    });
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let l = app
        .callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap();
    assert!(l.context.is_empty());
    assert!(!l.has_refresh_token);
}

/// P15: a patient id that is not a FHIR id is refused, not passed on.
#[tokio::test]
async fn p15_unreadable_patient_is_refused() {
    let s = Setup::new();
    s.server.on_token(|_, _| {
        (
            200,
            json!({"access_token": "at", "token_type": "Bearer", "patient": "../Practitioner/x"}),
        )
    });
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let e = app
        .callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, LaunchError::InvalidLaunchContext { .. }),
        "{e:?}"
    );
    assert!(!e.to_string().contains("Practitioner"));
    assert!(matches!(
        app.ready("sess-1").await.unwrap_err().relaunch_reason(),
        Some(RelaunchReason::NoSession)
    ));
}

/// SC-4.18, P4: a code the server refuses (reused, expired) is a typed token error.
#[tokio::test]
async fn p4_refused_code_is_a_typed_error() {
    let s = Setup::new();
    s.server.on_token(|_, _| {
        (
            400,
            json!({"error": "invalid_grant", "error_description": "code already used"}),
        )
    });
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let e = app
        .callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant));
    assert!(chain(&e).contains("code already used"));
}

fn id_token_claims(nonce: &str) -> Value {
    json!({
        "iss": ISSUER, "sub": "user-1", "aud": CLIENT_ID, "exp": NOW + 300, "iat": NOW - 5,
        "nonce": nonce, "fhirUser": "Practitioner/pr-1"
    })
}

/// SC-4.33 – SC-4.35: the `id_token` is verified with the nonce of this flow; `fhirUser`
/// relative to the FHIR base is resolved and kept.
#[tokio::test]
async fn sc_4_33_id_token_verified_with_the_stored_nonce() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let nonce = params(&req)["nonce"].clone();
    let token = id_token(&id_token_claims(&nonce));
    s.server.on_token(move |n, _| {
        let mut body = token_body(n);
        body["id_token"] = json!(token);
        (200, body)
    });
    let l = app
        .callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap();
    assert_eq!(
        l.user.as_ref().map(|u| u.as_str()),
        Some("https://ehr.example/fhir/Practitioner/pr-1")
    );
    let session = app.ready("sess-1").await.unwrap();
    assert_eq!(
        session.user().map(|u| u.to_string()).as_deref(),
        Some("https://ehr.example/fhir/Practitioner/pr-1")
    );
}

/// SC-4.33: an `id_token` with another flow's nonce is refused and nothing is stored.
#[tokio::test]
async fn sc_4_33_id_token_with_wrong_nonce_is_refused() {
    let s = Setup::new();
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let token = id_token(&id_token_claims("another-flows-nonce"));
    s.server.on_token(move |n, _| {
        let mut body = token_body(n);
        body["id_token"] = json!(token);
        (200, body)
    });
    let e = app
        .callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap_err();
    assert!(matches!(e, LaunchError::IdToken(_)), "{e:?}");
    assert!(app.ready("sess-1").await.unwrap_err().is_relaunch_needed());
}

/// SC-4.18: the token request is not redirected.
#[tokio::test]
async fn token_endpoint_redirect_is_refused() {
    let s = Setup::new();
    s.server.on_token(|_, _| (302, json!({})));
    let app = s.app();
    let req = launched(&app, "sess-1").await;
    let e = app
        .callback("sess-1", &callback_query(&req, "c"))
        .await
        .unwrap_err();
    assert!(chain(&e).contains("redirect"), "{}", chain(&e));
}
