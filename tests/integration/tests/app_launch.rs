//! SMART App Launch end to end against the harness's oidc-provider and FHIR server: EHR and
//! standalone launch for every client type, the launch context, refresh-token rotation,
//! `id_token` refusals, the state and code checks, the `smart-fhir login`/`logout` commands and
//! the example web app. The browser step is a [`Browser`] that follows the redirects with a
//! cookie jar (the harness approves every authorization without a click).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use smart_fhir_core::{
    AccessToken, Clock, FixedClock, HttpClient, HttpError, InsecureHttp, SharedClock,
    SharedHttpClient, SystemClock, Url,
};
use smart_fhir_http::FhirClient;
use smart_fhir_integration_tests::*;
use smart_fhir_oauth::{
    AppLaunch, AuthorizeRequest, ClientAuth, IdTokenError, IssuerPolicy, LaunchClientConfig,
    LaunchClientConfigBuilder, LaunchError, Launched, OAuthErrorCode, RelaunchReason,
};

/// What every launch here asks for: an EHR launch adds `launch`, a standalone one keeps
/// `launch/patient`.
const SCOPE: &str = "launch/patient openid fhirUser patient/*.rs offline_access";
const LANDING: &str = "https://app.example/";

/// The four client types of SMART App Launch, as registered by `cargo xtask integration`.
const CLIENT_TYPES: [&str; 4] = ["it-public", "it-basic", "it-post", "it-jwt"];

fn client_auth(client_id: &str) -> ClientAuth {
    match client_id {
        "it-basic" => ClientAuth::ClientSecretBasic(client_secret("it-basic")),
        "it-post" => ClientAuth::ClientSecretPost(client_secret("it-post")),
        "it-jwt" => ClientAuth::private_key_jwt(key("rs384")),
        _ => ClientAuth::Public,
    }
}

fn config(client_id: &str, transport: SharedHttpClient) -> LaunchClientConfigBuilder {
    LaunchClientConfig::builder()
        .client_id(client_id)
        .redirect_uri(redirect_uri(client_id))
        .landing_url(LANDING)
        .scope(SCOPE)
        .client_auth(client_auth(client_id))
        .issuer_policy(IssuerPolicy::allow_list([base()]))
        .insecure_http(InsecureHttp::AllowLoopback)
        .http_client(transport)
}

fn app(client_id: &str) -> AppLaunch {
    AppLaunch::new(config(client_id, http()).build().expect("launch config"))
}

fn session_id() -> String {
    format!("session-{}", unique())
}

fn token_endpoint() -> String {
    format!("{}/oidc/token", origin())
}

fn first_patient() -> String {
    patient_ids().into_iter().next().expect("a seeded patient")
}

/// The browser's part: from the authorize request to the redirect URI (where nothing listens);
/// returns the callback's query.
async fn authorize(browser: &Browser, request: AuthorizeRequest, redirect: &str) -> String {
    let stop = format!("{redirect}?");
    let location = match request {
        AuthorizeRequest::Redirect(url) => browser.navigate_until(url.as_str(), &stop).await,
        AuthorizeRequest::FormPost { action, fields } => {
            let response = browser.post_form(action.as_str(), &fields).await;
            browser.follow_until(action.as_str(), response, &stop).await
        }
        other => panic!("unexpected authorize request {other:?}"),
    };
    Url::parse(&location)
        .expect("callback URL")
        .query()
        .unwrap_or("")
        .to_owned()
}

/// An EHR launch with `context` up to the callback's query.
async fn ehr_callback_query(app: &AppLaunch, sid: &str, context: &Value) -> String {
    let launch = ehr_launch_context(context).await;
    let request = app
        .launch(sid, base().as_str(), &launch)
        .await
        .expect("EHR launch");
    authorize(&Browser::new(), request, app.config().redirect_uri()).await
}

/// A standalone launch up to the callback's query.
async fn standalone_callback_query(app: &AppLaunch, sid: &str) -> String {
    let request = app
        .standalone(sid, base().as_str())
        .await
        .expect("standalone launch");
    authorize(&Browser::new(), request, app.config().redirect_uri()).await
}

async fn standalone(app: &AppLaunch, sid: &str) -> Launched {
    let query = standalone_callback_query(app, sid).await;
    app.callback(sid, &query).await.expect("callback")
}

/// Reads `Patient/<id>` through the FHIR client with the session as its token provider.
async fn read_patient(app: &AppLaunch, sid: &str, id: &str) -> Value {
    let session = app.ready(sid).await.expect("a signed-in session");
    let fhir = FhirClient::builder(session.fhir_base())
        .http_client(http())
        .auth(session)
        .build()
        .expect("FHIR client");
    fhir.read::<Value>("Patient", id)
        .await
        .expect("Patient read with the session's token")
        .into_body()
}

fn encounter_context(patient: &str) -> Value {
    json!({
        "patient": patient,
        "encounter": "enc-7",
        "fhirContext": [
            {"reference": "Observation/obs-1"},
            {"reference": "DiagnosticReport/dr-2", "role": "https://example.org/roles/source"}
        ],
        "need_patient_banner": false,
        "smart_style_url": "https://ehr.example/style/v1.json",
        "intent": "reconcile-medications",
        "tenant": "tenant-a",
        "extra": {
            "authorization_details": [{"type": "smart_on_fhir", "locations": [base().as_str()]}],
            "org.example.flag": true
        }
    })
}

/// SC-4.2, SC-4.5, SC-4.7, SC-4.9, SC-4.18, SC-4.20 – SC-4.22, SC-4.35, SC-2.18, SC-2.21,
/// SC-2.22, SC-6.5, SC-6.6: an EHR launch for each client type (public, client_secret_basic,
/// client_secret_post, private_key_jwt) gets the whole launch context and the user, reads the
/// Patient with the session's token, and signing out revokes the token at the server.
#[tokio::test]
async fn sc_4_2_ehr_launch_each_client_type_with_context_read_and_logout() {
    let patient = first_patient();
    for client in CLIENT_TYPES {
        let app = app(client);
        let sid = session_id();
        let exchanges = code_exchanges(client).await;
        let query = ehr_callback_query(&app, &sid, &encounter_context(&patient)).await;
        let launched = app.callback(&sid, &query).await.expect("callback");
        assert_eq!(code_exchanges(client).await, exchanges + 1, "{client}");

        assert_eq!(launched.landing_url.as_str(), LANDING, "P10");
        assert_eq!(launched.fhir_base, base(), "P2");
        let ctx = &launched.context;
        assert_eq!(ctx.patient.as_deref(), Some(patient.as_str()), "{client}");
        assert_eq!(ctx.encounter.as_deref(), Some("enc-7"));
        assert_eq!(ctx.fhir_context.len(), 2, "{client}");
        assert_eq!(
            ctx.fhir_context[0].reference.as_deref(),
            Some("Observation/obs-1")
        );
        assert_eq!(ctx.fhir_context[0].role_or_default(), "launch");
        assert_eq!(
            ctx.fhir_context[1].role.as_deref(),
            Some("https://example.org/roles/source")
        );
        assert_eq!(ctx.need_patient_banner, Some(false));
        assert_eq!(
            ctx.smart_style_url.as_ref().map(Url::as_str),
            Some("https://ehr.example/style/v1.json")
        );
        assert_eq!(ctx.intent.as_deref(), Some("reconcile-medications"));
        assert_eq!(ctx.tenant.as_deref(), Some("tenant-a"));
        assert_eq!(ctx.authorization_details.as_ref().map(Vec::len), Some(1));
        assert_eq!(ctx.extra.get("org.example.flag"), Some(&json!(true)));
        assert!(ctx.issues.is_empty(), "{:?}", ctx.issues);
        let user = launched.user.clone().expect("fhirUser from the id_token");
        assert!(
            user.as_str()
                .starts_with(&format!("{}/Practitioner/", base())),
            "{client}: {user}"
        );
        let granted = launched.granted_scopes.to_string();
        assert!(granted.contains("patient/*.rs"), "{client}: {granted}");
        assert!(granted.split(' ').any(|s| s == "launch"), "{granted}");
        assert!(launched.has_refresh_token, "offline_access (SC-4.28)");

        let body = read_patient(&app, &sid, &patient).await;
        assert_eq!(body["id"], patient.as_str(), "{client}");

        // Sign-out revokes at the revocation endpoint with the client's authentication.
        let session = app.ready(&sid).await.expect("session");
        let token = session.access_token().await.expect("token");
        assert_eq!(
            fhir_get(&format!("Patient/{patient}"), Some(&token))
                .await
                .0,
            200
        );
        app.logout(&sid).await.expect("logout revokes");
        let (status, _) = fhir_get(&format!("Patient/{patient}"), Some(&token)).await;
        assert_eq!(status, 401, "{client}: the revoked token is refused");
        let gone = app.ready(&sid).await.unwrap_err();
        assert_eq!(gone.relaunch_reason(), Some(RelaunchReason::NoSession));
    }
}

/// SC-4.4, SC-4.9, SC-4.23, SC-5.13: a standalone launch for each client type: `launch` is not
/// requested, the patient picked at sign-in arrives (`launch/patient`), a patient-facing
/// request signs in as that Patient, and the FHIR read works.
#[tokio::test]
async fn sc_4_4_standalone_launch_each_client_type_then_fhir_read() {
    let patient = first_patient();
    for client in CLIENT_TYPES {
        let app = app(client);
        let sid = session_id();
        let launched = standalone(&app, &sid).await;
        assert!(
            !launched
                .requested_scopes
                .to_string()
                .split(' ')
                .any(|s| s == "launch"),
            "{client}: {}",
            launched.requested_scopes
        );
        assert_eq!(launched.context.patient.as_deref(), Some(patient.as_str()));
        assert_eq!(launched.context.encounter, None, "not requested, not sent");
        let user = launched.user.expect("fhirUser");
        assert_eq!(
            user.as_str(),
            format!("{}/Patient/{patient}", base()),
            "{client}"
        );
        let body = read_patient(&app, &sid, &patient).await;
        assert_eq!(body["resourceType"], "Patient");
        let session = app.ready(&sid).await.expect("session");
        assert!(
            session.scope_difference().missing().is_empty(),
            "{client}: {:?}",
            session.scope_difference()
        );
    }
}

/// SC-4.34: an `id_token` signed with ES384 (the client's registered
/// `id_token_signed_response_alg`) is verified with the issuer's ES384 key.
#[tokio::test]
async fn sc_4_34_es384_id_token_is_verified() {
    let tap = TokenTap::new();
    let app = AppLaunch::new(
        config("it-public-es384", tap.shared())
            .build()
            .expect("config"),
    );
    let sid = session_id();
    let launched = standalone(&app, &sid).await;
    assert!(launched.user.is_some());
    let id_token = tap.responses()[0]["id_token"]
        .as_str()
        .expect("an id_token")
        .to_owned();
    assert_eq!(jwt_part(&id_token, 0)["alg"], "ES384");
}

/// SC-4.28 – SC-4.32, P12: every refresh rotates the refresh token; the client replaces it and
/// never sends one twice (the server's per-client count equals the client's own); concurrent
/// callers share one refresh; the old refresh token, replayed directly, is refused by the
/// server, which then revokes the grant, and the session asks for a new launch.
#[tokio::test]
async fn sc_4_32_refresh_rotation_old_token_refused_and_never_resent() {
    let client = "it-rotation";
    let tap = TokenTap::new();
    let app = AppLaunch::new(config(client, tap.shared()).build().expect("config"));
    let sid = session_id();
    let refreshes_before = refresh_requests(client).await;
    standalone(&app, &sid).await;
    let first_refresh_token = tap.responses()[0]["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let patient = first_patient();

    let session = app.ready(&sid).await.expect("session");
    let mut previous = session.access_token().await.expect("token");
    for round in 0..2 {
        // The FHIR server refused the token (as after a 401): the next call refreshes, once,
        // however many callers ask at the same time.
        session.token_rejected(&previous).await;
        let callers = (0..4).map(|_| {
            let s = session.clone();
            tokio::spawn(async move { s.access_token().await })
        });
        let mut tokens = Vec::new();
        for c in callers {
            tokens.push(c.await.expect("task").expect("refreshed token"));
        }
        assert!(
            tokens.iter().all(|t| t.ct_eq(tokens[0].secret())),
            "one refresh for all callers"
        );
        assert!(
            !tokens[0].ct_eq(previous.secret()),
            "round {round}: a new token"
        );
        let (status, _) = fhir_get(&format!("Patient/{patient}"), Some(&tokens[0])).await;
        assert_eq!(status, 200);
        previous = tokens[0].clone();
    }

    let sent: Vec<String> = tap
        .requests()
        .iter()
        .filter(|r| form_value(r, "grant_type").as_deref() == Some("refresh_token"))
        .map(|r| form_value(r, "refresh_token").expect("refresh_token sent"))
        .collect();
    assert_eq!(sent.len(), 2, "one refresh per round");
    assert_eq!(sent[0], first_refresh_token);
    assert_ne!(sent[1], sent[0], "the rotated token replaced the old one");
    assert_eq!(
        refresh_requests(client).await,
        refreshes_before + 2,
        "the server saw exactly the client's refreshes"
    );

    // The first refresh token, replayed by hand: refused, and the grant is revoked.
    let (status, body) = raw_token_request(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &first_refresh_token),
        ("client_id", client),
    ])
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (status, _) = fhir_get(&format!("Patient/{patient}"), Some(&previous)).await;
    assert_eq!(status, 401, "the grant's access tokens are revoked");

    // The client's next refresh uses its newest token (never the old one) and learns that a
    // new launch is needed.
    session.token_rejected(&previous).await;
    let e = session.access_token().await.unwrap_err();
    assert!(
        e.relaunch_reason().is_some_and(|r| r.is_refresh_refused()),
        "{e}"
    );
    let sent_after: Vec<String> = tap
        .requests()
        .iter()
        .filter_map(|r| form_value(r, "refresh_token"))
        .collect();
    assert_eq!(sent_after.len(), 3);
    let mut unique_tokens = sent_after.clone();
    unique_tokens.sort();
    unique_tokens.dedup();
    assert_eq!(unique_tokens.len(), 3, "no refresh token sent twice");
    assert_eq!(refresh_requests(client).await, refreshes_before + 4);
}

/// SC-4.29, SC-2.13: confidential clients authenticate their refreshes too (private_key_jwt
/// with a fresh assertion, client_secret_basic, client_secret_post), and the refreshed token
/// reads FHIR data.
#[tokio::test]
async fn sc_4_29_refresh_with_each_confidential_client() {
    let patient = first_patient();
    for client in ["it-jwt", "it-basic", "it-post"] {
        let app = app(client);
        let sid = session_id();
        standalone(&app, &sid).await;
        let before = refresh_requests(client).await;
        let session = app.ready(&sid).await.expect("session");
        let old = session.access_token().await.expect("token");
        session.token_rejected(&old).await;
        let new = session.access_token().await.expect("refreshed");
        assert!(!new.ct_eq(old.secret()), "{client}");
        assert_eq!(refresh_requests(client).await, before + 1, "{client}");
        let (status, _) = fhir_get(&format!("Patient/{patient}"), Some(&new)).await;
        assert_eq!(status, 200, "{client}");
    }
}

/// SC-4.33, SC-4.34, P9: an `id_token` whose payload was changed after signing is refused
/// (signature), and no session is stored.
#[tokio::test]
async fn sc_4_33_tampered_id_token_is_refused() {
    let tap = TokenTap::new();
    tap.rewrite_id_token(|token| {
        let mut claims = jwt_part(token, 1);
        claims["sub"] = json!("Practitioner/someone-else");
        let parts: Vec<&str> = token.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        )
    });
    let app = AppLaunch::new(config("it-public", tap.shared()).build().expect("config"));
    let sid = session_id();
    let query = standalone_callback_query(&app, &sid).await;
    let e = app.callback(&sid, &query).await.unwrap_err();
    assert!(
        matches!(&e, LaunchError::IdToken(inner) if matches!(**inner, IdTokenError::Signature(_))),
        "{e:?}"
    );
    assert!(
        app.ready(&sid).await.is_err(),
        "no session after a refused id_token"
    );
}

/// SC-4.33: an expired `id_token` is refused. The harness issues one with a lifetime of 1 s
/// (`/_harness/token-settings`); the client's clock is set 2 minutes ahead, beyond the 60 s
/// leeway (no waiting). Clock-skew correction is off: with it, the server's `Date` would undo
/// the 2 minutes (`clock_skew.rs` and the unit tests cover expiry with correction on).
#[tokio::test]
async fn sc_4_33_expired_id_token_is_refused() {
    let settings = admin_json(http::Method::GET, "/_harness/token-settings", None).await;
    let ttl = settings["idTokenTtl"].as_u64().expect("idTokenTtl");
    admin_json(
        http::Method::POST,
        "/_harness/token-settings",
        Some(&json!({"idTokenTtl": 1})),
    )
    .await;
    let clock = FixedClock::new(SystemClock.now() + Duration::from_secs(120));
    let app = AppLaunch::new(
        config("it-public", http())
            .clock(SharedClock::new(clock))
            .clock_skew_correction(false)
            .build()
            .expect("config"),
    );
    let sid = session_id();
    let query = standalone_callback_query(&app, &sid).await;
    let result = app.callback(&sid, &query).await;
    admin_json(
        http::Method::POST,
        "/_harness/token-settings",
        Some(&json!({"idTokenTtl": ttl})),
    )
    .await;
    let e = result.unwrap_err();
    assert!(
        matches!(&e, LaunchError::IdToken(inner) if matches!(**inner, IdTokenError::Expired { .. })),
        "{e:?}"
    );
}

/// SC-4.33: a genuine `id_token` issued to another client (`aud` = `it-basic`), put in place of
/// this client's, is refused for its audience.
#[tokio::test]
async fn sc_4_33_id_token_for_another_audience_is_refused() {
    let other = TokenTap::new();
    let other_app = AppLaunch::new(config("it-basic", other.shared()).build().expect("config"));
    standalone(&other_app, &session_id()).await;
    let foreign = other.responses()[0]["id_token"]
        .as_str()
        .expect("an id_token")
        .to_owned();
    assert_eq!(jwt_part(&foreign, 1)["aud"], "it-basic");

    let tap = TokenTap::new();
    tap.rewrite_id_token(move |_| foreign.clone());
    let app = AppLaunch::new(config("it-post", tap.shared()).build().expect("config"));
    let sid = session_id();
    let query = standalone_callback_query(&app, &sid).await;
    let e = app.callback(&sid, &query).await.unwrap_err();
    assert!(
        matches!(&e, LaunchError::IdToken(inner) if matches!(**inner, IdTokenError::Audience { .. })),
        "{e:?}"
    );
}

/// SC-4.6, SC-4.13, P3: a state from another session, a forged state and a replayed state are
/// refused with typed errors, before any code exchange; the victim's own callback still works
/// once.
#[tokio::test]
async fn p3_state_from_another_session_forged_or_replayed_is_refused() {
    let client = "it-public";
    let app = app(client);
    let victim = session_id();
    let query = standalone_callback_query(&app, &victim).await;
    let exchanges = code_exchanges(client).await;

    let e = app.callback(&session_id(), &query).await.unwrap_err();
    assert!(matches!(e, LaunchError::StateMismatch), "{e:?}");

    let code = form_value(&query, "code").expect("code");
    let forged = format!("code={code}&state=forged-state-value");
    let e = app.callback(&victim, &forged).await.unwrap_err();
    assert!(matches!(e, LaunchError::UnknownState), "{e:?}");
    assert_eq!(
        code_exchanges(client).await,
        exchanges,
        "nothing was exchanged"
    );

    app.callback(&victim, &query)
        .await
        .expect("the right session, once");
    let e = app.callback(&victim, &query).await.unwrap_err();
    assert!(matches!(e, LaunchError::UnknownState), "replayed: {e:?}");
    assert_eq!(code_exchanges(client).await, exchanges + 1);
}

/// SC-4.18, P4: a code is exchanged once. Reused through the library (with a new state) the
/// server refuses it with `invalid_grant`, a typed error; replayed by hand with the original
/// verifier it is refused as well, and the server revokes the tokens of the first exchange.
#[tokio::test]
async fn p4_reused_code_is_refused_by_the_server() {
    let client = "it-public";
    let tap = TokenTap::new();
    let app = AppLaunch::new(config(client, tap.shared()).build().expect("config"));
    let sid = session_id();
    let query = standalone_callback_query(&app, &sid).await;
    app.callback(&sid, &query).await.expect("first exchange");
    let token = app
        .ready(&sid)
        .await
        .expect("session")
        .access_token()
        .await
        .expect("token");
    let patient = first_patient();
    assert_eq!(
        fhir_get(&format!("Patient/{patient}"), Some(&token))
            .await
            .0,
        200
    );
    let code = form_value(&query, "code").expect("code");

    // Through the library: a new flow's state with the old code.
    let sid2 = session_id();
    let query2 = standalone_callback_query(&app, &sid2).await;
    let state2 = form_value(&query2, "state").expect("state");
    let reused = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &code)
        .append_pair("state", &state2)
        .finish();
    let e = app.callback(&sid2, &reused).await.unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant), "{e:?}");

    // By hand: the first exchange's request, verifier and all, sent again.
    let first = tap.requests()[0].clone();
    assert_eq!(form_value(&first, "code").as_deref(), Some(code.as_str()));
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(first.as_bytes())
        .into_owned()
        .collect();
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, body) = raw_token_request(&pairs).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        fhir_get(&format!("Patient/{patient}"), Some(&token))
            .await
            .0,
        401,
        "the first exchange's tokens are revoked"
    );
}

/// SC-4.3, P1: an EHR launch naming an issuer that is not allowed (or a standalone launch to
/// one) fails with `IssuerNotAllowed`, and not a single request leaves the process.
#[tokio::test]
async fn p1_unknown_issuer_is_refused_without_a_connection() {
    let counter = CountingHttp::new();
    let app = AppLaunch::new(
        config("it-public", SharedHttpClient::from_arc(counter.clone()))
            .build()
            .expect("config"),
    );
    let sid = session_id();
    for iss in [
        format!("{}/other-fhir", origin()),
        "http://127.0.0.1:9/fhir".to_owned(),
        "https://evil.example/fhir".to_owned(),
        format!("{}?x=1", base()),
    ] {
        let e = app.launch(&sid, &iss, "any").await.unwrap_err();
        assert!(
            matches!(e, LaunchError::IssuerNotAllowed { .. }),
            "{iss}: {e:?}"
        );
        let e = app.standalone(&sid, &iss).await.unwrap_err();
        assert!(
            matches!(e, LaunchError::IssuerNotAllowed { .. }),
            "{iss}: {e:?}"
        );
    }
    assert_eq!(counter.count(), 0, "{:?}", counter.urls());
    // The allowed issuer does go out.
    app.standalone(&sid, base().as_str())
        .await
        .expect("allowed");
    assert!(counter.count() > 0);
}

/// SC-4.14: an error callback (here the server refuses an unknown `launch` id) is a typed
/// `AuthorizationDenied` with the server's error code.
#[tokio::test]
async fn sc_4_14_error_callback_is_typed() {
    let app = app("it-public");
    let sid = session_id();
    let request = app
        .launch(&sid, base().as_str(), "no-such-launch")
        .await
        .expect("launch request");
    let query = authorize(&Browser::new(), request, app.config().redirect_uri()).await;
    let e = app.callback(&sid, &query).await.unwrap_err();
    match e {
        LaunchError::AuthorizationDenied { error, .. } => assert_eq!(error, "invalid_request"),
        other => panic!("expected AuthorizationDenied, got {other:?}"),
    }
}

/// SC-4.10, SC-1.12: with `authorize-post` advertised and a long request, the authorize request
/// is a form POST, which the server takes.
#[tokio::test]
async fn sc_4_10_authorize_by_form_post() {
    let app = AppLaunch::new(
        config("it-public", http())
            .authorize_post_threshold(1)
            .build()
            .expect("config"),
    );
    let sid = session_id();
    let request = app.standalone(&sid, base().as_str()).await.expect("launch");
    let fields = match &request {
        AuthorizeRequest::FormPost { fields, .. } => fields.clone(),
        other => panic!("expected a form post, got {other:?}"),
    };
    assert!(fields
        .iter()
        .any(|(k, v)| k == "code_challenge_method" && v == "S256"));
    let html = request.auto_submit_html().expect("a form page");
    assert!(html.contains("method=\"post\""));
    let query = authorize(&Browser::new(), request, app.config().redirect_uri()).await;
    let launched = app.callback(&sid, &query).await.expect("callback");
    assert_eq!(launched.context.patient, Some(first_patient()));
}

// ---------------------------------------------------------------------------------------------
// `smart-fhir login` / `logout`.

/// Runs `smart-fhir login` with `args` and `env`, answers the browser step from the URL it
/// prints, and returns its stdout once it exited successfully.
async fn cli_login(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(cli_bin());
    cmd.arg("login")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run smart-fhir login");
    let stdout = child.stdout.take().expect("stdout");
    // stderr is read as it comes, so that a full pipe never blocks the CLI.
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut url_tx = Some(url_tx);
        let mut rest = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match url_tx.take() {
                Some(tx) if line.starts_with("http") => {
                    let _ = tx.send(line);
                }
                other => {
                    url_tx = other;
                    rest.push(line);
                }
            }
        }
        rest.join("\n")
    });
    let url = tokio::time::timeout(Duration::from_secs(60), url_rx)
        .await
        .expect("the CLI prints the authorize URL")
        .expect("the authorize URL line");
    assert!(
        url.starts_with(&format!("{}/oidc/auth?", origin())),
        "the line is the authorize URL itself"
    );
    // The browser follows the redirects to the CLI's loopback listener, which answers.
    let (last, page) = Browser::new().navigate(&url).await;
    assert!(
        last.starts_with("http://127.0.0.1:"),
        "ends at the loopback listener"
    );
    let html = String::from_utf8_lossy(page.body()).into_owned();
    assert_eq!(page.status(), 200, "{html}");
    assert!(html.contains("You are signed in"), "{html}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("wait task")
        .expect("login exits");
    let out = reader.join().expect("reader");
    let errors = errors.join().expect("stderr reader");
    assert!(status.success(), "login failed: {out}\n{errors}");
    out
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(cli_bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run smart-fhir")
}

/// Every string under a key named `name` in a JSON document.
fn strings_named(v: &Value, name: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) if k == name => out.push(s.clone()),
                    other => strings_named(other, name, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| strings_named(i, name, out)),
        _ => {}
    }
}

/// SC-4.4, SC-4.26, SC-6.5: `smart-fhir login` (public client, RFC 8252 loopback redirect on a
/// free port) completes against the harness, prints the grant (no token), saves the session
/// with mode 0600 under `$XDG_STATE_HOME`; `get --session` reads with it; `logout` revokes the
/// token at the server and deletes the file.
#[tokio::test]
async fn cli_login_then_fhir_get_with_the_session_then_logout() {
    let state = tempfile::tempdir().expect("temp dir");
    let state_home = state.path().to_str().expect("utf-8").to_owned();
    let env = [("XDG_STATE_HOME", state_home.as_str())];
    let b = base().to_string();
    let patient = first_patient();
    let out = cli_login(
        &[
            "--fhir-base",
            &b,
            "--client-id",
            "it-login",
            "--insecure-http",
            "--timeout",
            "120",
        ],
        &env,
    )
    .await;
    assert!(
        out.contains("granted scope:") && out.contains("patient/*.rs"),
        "{out}"
    );
    assert!(out.contains(&format!("patient:        {patient}")), "{out}");
    assert!(
        out.contains(&format!("user:           {b}/Patient/{patient}")),
        "{out}"
    );
    assert!(out.contains("refresh token:  yes"), "{out}");

    let file = state.path().join("smart-fhir").join("session.json");
    let text = std::fs::read_to_string(&file).expect("the session file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let mut tokens = Vec::new();
    strings_named(
        &serde_json::from_str(&text).expect("JSON"),
        "access_token",
        &mut tokens,
    );
    let token = AccessToken::new(tokens.first().expect("a saved access token").clone());
    assert!(!out.contains(token.secret()), "no token printed");

    let got = cli(
        &[
            "get",
            &format!("Patient/{patient}"),
            "--session",
            "--insecure-http",
        ],
        &env,
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let body: Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(body["id"], patient.as_str());

    let wrong = cli(
        &[
            "get",
            "metadata",
            "--session",
            "--insecure-http",
            "--fhir-base",
            "http://127.0.0.1:9/fhir",
        ],
        &env,
    );
    assert_eq!(
        wrong.status.code(),
        Some(1),
        "a session is for its own server"
    );

    let bye = cli(&["logout", "--insecure-http"], &env);
    assert!(
        bye.status.success(),
        "{}",
        String::from_utf8_lossy(&bye.stderr)
    );
    assert!(!file.exists(), "the session file is deleted");
    let (status, _) = fhir_get(&format!("Patient/{patient}"), Some(&token)).await;
    assert_eq!(status, 401, "logout revoked the token");

    let after = cli(&["get", "metadata", "--session", "--insecure-http"], &env);
    assert_eq!(after.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&after.stderr).contains("smart-fhir login"));
}

/// SC-2.18, P5: a confidential client's `login` takes its secret from the environment variable
/// named by `--client-secret-env`; neither the file nor the output holds the secret; a later
/// `get` works with the session, and `logout` needs the variable again to revoke.
#[tokio::test]
async fn cli_login_confidential_client_secret_from_env() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("s.json");
    let file_arg = file.to_str().expect("utf-8").to_owned();
    let secret = client_secret("it-login-basic");
    let env = [("IT_LOGIN_SECRET", secret.secret())];
    let b = base().to_string();
    let out = cli_login(
        &[
            "--fhir-base",
            &b,
            "--client-id",
            "it-login-basic",
            "--client-secret-env",
            "IT_LOGIN_SECRET",
            "--scope",
            "launch/patient patient/Patient.rs offline_access",
            "--session-file",
            &file_arg,
            "--insecure-http",
        ],
        &env,
    )
    .await;
    assert!(!out.contains(secret.secret()));
    assert!(
        out.contains("user:           (none)"),
        "no openid, no user: {out}"
    );
    let text = std::fs::read_to_string(&file).expect("the session file");
    assert!(!text.contains(secret.secret()), "the secret is not saved");
    assert!(text.contains("IT_LOGIN_SECRET"), "its variable's name is");

    let patient = first_patient();
    let got = cli(
        &[
            "get",
            &format!("Patient/{patient}"),
            "--session-file",
            &file_arg,
            "--insecure-http",
        ],
        &env,
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );

    // Without the variable, logout cannot authenticate the revocation: it says which variable
    // to set and keeps the session; with it, it revokes and deletes.
    let no_secret = cli(
        &["logout", "--session-file", &file_arg, "--insecure-http"],
        &[],
    );
    assert_eq!(no_secret.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("IT_LOGIN_SECRET"));
    assert!(file.exists());
    let bye = cli(
        &["logout", "--session-file", &file_arg, "--insecure-http"],
        &env,
    );
    assert!(
        bye.status.success(),
        "{}",
        String::from_utf8_lossy(&bye.stderr)
    );
    assert!(!file.exists());
}

// ---------------------------------------------------------------------------------------------
// The example web app.

/// SC-4.2, SC-4.26, P10: the example app (`examples/launch-app`, a confidential client) is
/// launched by the EHR: `/launch` sets an HttpOnly session cookie and redirects to the
/// authorization server; the browser comes back to `/callback`, lands on `/`, and the page shows
/// the launched patient's name, read from the FHIR server with the session's token.
#[tokio::test]
async fn example_app_ehr_launch_shows_the_patient() {
    let redirect = redirect_uri("it-example");
    let addr = Url::parse(&redirect).expect("redirect URI");
    let port = addr.port().expect("a port");
    let mut settings = launch_app::Settings::new("it-example", redirect.clone(), vec![base()]);
    settings.client_secret = Some(client_secret("it-example"));
    settings.insecure_http = true;
    let app = Arc::new(launch_app::App::new(settings).expect("the example app"));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the example's port");
    let server = tokio::spawn(launch_app::serve(listener, app));

    let patient = first_patient();
    let expected = {
        let reader = fhir_client("it-fhir", "system/Patient.rs");
        let p = reader
            .read::<Value>("Patient", &patient)
            .await
            .expect("Patient")
            .into_body();
        launch_app::escape(&launch_app::patient_name(&p))
    };
    let launch =
        ehr_launch_context(&json!({"patient": patient, "need_patient_banner": true})).await;
    let app_origin = format!("http://127.0.0.1:{port}");
    let start = format!(
        "{app_origin}/launch?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("iss", base().as_str())
            .append_pair("launch", &launch)
            .finish()
    );
    let browser = Browser::new();
    let first = browser.get(&start).await;
    assert_eq!(first.status(), 303);
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.starts_with(&format!("{}=", launch_app::SESSION_COOKIE)),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let (last, page) = browser
        .follow(start.clone(), first, |_| false)
        .await
        .expect("followed");
    assert_eq!(last, format!("{app_origin}/"), "the app's own landing page");
    let html = String::from_utf8_lossy(page.body()).into_owned();
    assert_eq!(page.status(), 200, "{html}");
    assert!(
        html.contains(&format!("<h2 id=\"patient-name\">{expected}</h2>")),
        "{html}"
    );
    assert!(html.contains(&patient));
    assert!(
        browser
            .cookie("127.0.0.1", launch_app::SESSION_COOKIE)
            .is_some(),
        "the browser holds the session cookie"
    );
    assert!(tokens_in(&html).is_empty(), "no token on the page");

    // Signing out: the session is gone.
    let req = http::Request::post(format!("{app_origin}/logout"))
        .body(Bytes::new())
        .expect("request");
    assert_eq!(browser.send(req).await.status(), 303);
    let (_, page) = browser.navigate(&format!("{app_origin}/")).await;
    assert!(String::from_utf8_lossy(page.body()).contains("Not signed in"));
    server.abort();
}

/// JWT-looking strings (three base64url parts) in a page: an access or ID token leaked there.
fn tokens_in(html: &str) -> Vec<String> {
    html.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|w| w.split('.').count() == 3 && w.len() > 100)
        .map(|w| w.chars().take(12).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn code_exchanges(client_id: &str) -> u64 {
    stats().await["code_exchanges_by_client"][client_id]
        .as_u64()
        .unwrap_or(0)
}

async fn refresh_requests(client_id: &str) -> u64 {
    stats().await["refresh_requests_by_client"][client_id]
        .as_u64()
        .unwrap_or(0)
}

/// A form field's value (the first) in a query string or form body.
fn form_value(form: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(form.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The decoded header (`0`) or payload (`1`) of a compact JWS.
fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWS part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// A form POST to the token endpoint, as the test itself; the status and the JSON answer.
async fn raw_token_request(fields: &[(&str, &str)]) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish();
    let req = http::Request::post(token_endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(Bytes::from(body))
        .expect("request");
    let resp = http().execute(req).await.expect("token request");
    (
        resp.status().as_u16(),
        serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
    )
}

type Rewrite = Box<dyn Fn(&str) -> String + Send + Sync>;

/// A transport that records the token endpoint's requests and responses, and can replace the
/// `id_token` in its responses.
struct TokenTap {
    inner: SharedHttpClient,
    token_url: String,
    requests: Mutex<Vec<String>>,
    responses: Mutex<Vec<Value>>,
    rewrite: Mutex<Option<Rewrite>>,
}

impl std::fmt::Debug for TokenTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTap").finish_non_exhaustive()
    }
}

impl TokenTap {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: http(),
            token_url: token_endpoint(),
            requests: Mutex::new(Vec::new()),
            responses: Mutex::new(Vec::new()),
            rewrite: Mutex::new(None),
        })
    }

    fn shared(self: &Arc<Self>) -> SharedHttpClient {
        SharedHttpClient::from_arc(self.clone())
    }

    fn rewrite_id_token(&self, f: impl Fn(&str) -> String + Send + Sync + 'static) {
        *self.rewrite.lock().expect("lock") = Some(Box::new(f));
    }

    /// The token requests' form bodies, in order.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }

    /// The token responses as the server sent them, in order.
    fn responses(&self) -> Vec<Value> {
        self.responses.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl HttpClient for TokenTap {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        if request.uri().to_string() != self.token_url {
            return self.inner.execute(request).await;
        }
        self.requests
            .lock()
            .expect("lock")
            .push(String::from_utf8_lossy(request.body()).into_owned());
        let response = self.inner.execute(request).await?;
        let Ok(mut body) = serde_json::from_slice::<Value>(response.body()) else {
            return Ok(response);
        };
        self.responses.lock().expect("lock").push(body.clone());
        let rewritten = {
            let rewrite = self.rewrite.lock().expect("lock");
            match (rewrite.as_ref(), body["id_token"].as_str()) {
                (Some(f), Some(token)) => Some(f(token)),
                _ => None,
            }
        };
        let Some(new_token) = rewritten else {
            return Ok(response);
        };
        body["id_token"] = json!(new_token);
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(http::header::CONTENT_LENGTH);
        Ok(http::Response::from_parts(
            parts,
            Bytes::from(body.to_string()),
        ))
    }
}
