//! The routes and the extractor against a scripted SMART server (no network), with
//! `tower::ServiceExt::oneshot`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use smart_fhir::core::{Bytes, HttpError, SharedHttpClient};
use smart_fhir::{
    AppLaunch, FhirBaseUrl, HttpClient, InsecureHttp, IssuerPolicy, LaunchClientConfig,
};
use tower::ServiceExt as _;

use super::*;

const BASE: &str = "https://ehr.example/fhir";
const SECRET: &str = "AT-secret-value";
const REFRESH: &str = "RT-secret-value";

/// Discovery, token, revocation and `Patient/p1` of `https://ehr.example/fhir`.
#[derive(Debug, Default)]
struct FakeServer {
    revocations: Mutex<usize>,
    /// The discovery document names no revocation endpoint.
    without_revocation: bool,
}

#[async_trait]
impl HttpClient for FakeServer {
    async fn execute(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, HttpError> {
        let uri = request.uri().to_string();
        let body = match uri.as_str() {
            "https://ehr.example/fhir/.well-known/smart-configuration" => {
                let mut config = json!({
                    "issuer": "https://as.example",
                    "authorization_endpoint": "https://as.example/authorize",
                    "token_endpoint": "https://as.example/token",
                    "revocation_endpoint": "https://as.example/revoke",
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "code_challenge_methods_supported": ["S256"],
                    "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                        "context-ehr-patient", "context-standalone-patient", "permission-patient",
                        "permission-v2", "permission-offline"]
                });
                if self.without_revocation {
                    config
                        .as_object_mut()
                        .unwrap()
                        .remove("revocation_endpoint");
                }
                config
            }
            "https://as.example/token" => json!({
                "access_token": SECRET, "token_type": "Bearer", "expires_in": 300,
                "refresh_token": REFRESH,
                "scope": "launch patient/*.rs offline_access", "patient": "p1"
            }),
            "https://as.example/revoke" => {
                *self.revocations.lock().unwrap() += 1;
                return Ok(axum::http::Response::builder()
                    .status(200)
                    .body(Bytes::new())
                    .unwrap());
            }
            "https://ehr.example/fhir/Patient/p1" => {
                assert_eq!(
                    request.headers()["authorization"],
                    format!("Bearer {SECRET}")
                );
                json!({"resourceType": "Patient", "id": "p1",
                       "name": [{"given": ["<b>Ada</b>"], "family": "Lovelace"}]})
            }
            _ => {
                return Ok(axum::http::Response::builder()
                    .status(404)
                    .body(Bytes::new())
                    .unwrap())
            }
        };
        Ok(axum::http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
            .unwrap())
    }
}

fn smart(redirect: &str) -> (SmartLaunch, Arc<FakeServer>) {
    smart_on(FakeServer::default(), redirect)
}

fn smart_on(server: FakeServer, redirect: &str) -> (SmartLaunch, Arc<FakeServer>) {
    let server = Arc::new(server);
    let config = LaunchClientConfig::builder()
        .client_id("app")
        .redirect_uri(redirect)
        .scope("launch/patient patient/*.rs offline_access")
        .issuer_policy(IssuerPolicy::allow_list(
            [FhirBaseUrl::parse(BASE).unwrap()],
        ))
        .landing_url("https://app.example/")
        .insecure_http(InsecureHttp::AllowLoopback)
        .http_client(SharedHttpClient::from_arc(server.clone()))
        .build()
        .unwrap();
    let smart =
        SmartLaunch::new(AppLaunch::new(config), [FhirBaseUrl::parse(BASE).unwrap()]).unwrap();
    (smart, server)
}

/// The shortest app: one page that reads the patient in context.
async fn home(session: SmartSession) -> Result<Html<String>, SmartError> {
    let patient: Option<Value> = session.read_patient().await?;
    let name = patient.map(|p| p["name"][0]["given"][0].to_string());
    Ok(Html(format!(
        "<p>{}</p>{}",
        escape_html(&name.unwrap_or_default()),
        session.logout_form()
    )))
}

use smart_fhir::core::text::escape_html;

fn app(smart: &SmartLaunch) -> Router {
    Router::new()
        .route("/", get(home))
        .merge(smart.router())
        .with_state(smart.clone())
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Vec<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let set_cookie = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        location,
        set_cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get_req(uri: &str, cookie: Option<&str>, accept_html: bool) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if accept_html {
        b = b.header(header::ACCEPT, "text/html,application/xhtml+xml");
    }
    b.body(Body::empty()).unwrap()
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

const LAUNCH: &str = "/smart/launch?iss=https%3A%2F%2Fehr.example%2Ffhir&launch=L-1";

/// The `name=value` of a `Set-Cookie`.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

/// Launches and completes the callback; returns the cookie `name=value`.
async fn signed_in(app: &Router) -> String {
    let r = send(app, get_req(LAUNCH, None, true)).await;
    let cookie = cookie_pair(&r.set_cookie[0]);
    let state = query_param(r.location.as_deref().unwrap(), "state");
    let cb = send(
        app,
        get_req(
            &format!("/smart/callback?code=c1&state={state}"),
            Some(&cookie),
            true,
        ),
    )
    .await;
    assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.body);
    cookie
}

/// SC-4.2, SC-4.26, P10: an EHR launch sets an opaque session cookie (`__Host-`, HttpOnly,
/// Secure, SameSite=Lax, Path=/) and redirects to the authorization server; the callback lands
/// on the configured landing URL; the extractor reads the patient with the session's token,
/// which no response ever carries.
#[tokio::test]
async fn sc_4_26_ehr_launch_cookie_callback_and_extractor() {
    let (smart, _) = smart("https://app.example/smart/callback");
    let app = app(&smart);
    let r = send(&app, get_req(LAUNCH, None, true)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let location = r.location.clone().unwrap();
    assert!(location.starts_with("https://as.example/authorize?"));
    assert_eq!(query_param(&location, "launch"), "L-1");
    assert_eq!(r.set_cookie.len(), 1);
    let set_cookie = &r.set_cookie[0];
    let pair = cookie_pair(set_cookie);
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, SECURE_COOKIE_NAME);
    assert!(is_session_id(value), "{value}");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }

    let state = query_param(&location, "state");
    let cb = send(
        &app,
        get_req(
            &format!("/smart/callback?code=c1&state={state}"),
            Some(&pair),
            true,
        ),
    )
    .await;
    assert_eq!(cb.status, StatusCode::SEE_OTHER);
    assert_eq!(cb.location.as_deref(), Some("https://app.example/"));

    let page = send(&app, get_req("/", Some(&pair), true)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("&lt;b&gt;Ada&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("action=\"/smart/logout\""));
    assert!(page.body.contains(&logout_token(value)));
    for reply in [&r, &cb, &page] {
        for text in [&reply.body, &reply.set_cookie.join(" ")] {
            assert!(!text.contains(SECRET) && !text.contains(REFRESH));
        }
        assert!(!reply.location.clone().unwrap_or_default().contains(SECRET));
    }
}

/// SC-4.26: on plain HTTP on a loopback host (development) the cookie is not `Secure` and has
/// no `__Host-` prefix; a redirect URI whose path does not end in `/callback` is refused.
#[test]
fn sc_4_26_loopback_development_cookie_and_setup_errors() {
    let (smart, _) = smart("http://127.0.0.1:8080/callback");
    assert_eq!(smart.mount(), "");
    assert_eq!(smart.cookie_name(), DEV_COOKIE_NAME);
    let c = smart.session_cookie(Some(&"a".repeat(64)));
    assert!(!c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Lax"));
    let removal = smart.session_cookie(None);
    assert!(removal.contains("Max-Age=0"), "{removal}");

    let config = |redirect: &str| {
        LaunchClientConfig::builder()
            .client_id("app")
            .redirect_uri(redirect)
            .scope("patient/*.rs")
            .issuer_policy(IssuerPolicy::allow_list(
                [FhirBaseUrl::parse(BASE).unwrap()],
            ))
            .landing_url("https://app.example/")
            .http_client(SharedHttpClient::new(FakeServer::default()))
            .build()
            .unwrap()
    };
    for bad in ["https://app.example/smart/return", "https://app.example/"] {
        let e = SmartLaunch::new(AppLaunch::new(config(bad)), []).unwrap_err();
        assert!(e.to_string().contains("redirect URI"), "{bad}: {e}");
    }
}

/// SC-4.13, P3: two launches in two tabs of one browser (one cookie) keep both authorizations
/// in flight: the second does not overwrite the first, whose callback completes.
#[tokio::test]
async fn sc_4_13_two_tabs_do_not_overwrite_each_others_launch() {
    let (smart, _) = smart("https://app.example/smart/callback");
    let app = app(&smart);
    let first = send(&app, get_req(LAUNCH, None, true)).await;
    let cookie = cookie_pair(&first.set_cookie[0]);
    let second = send(&app, get_req(LAUNCH, Some(&cookie), true)).await;
    assert_eq!(
        cookie_pair(&second.set_cookie[0]),
        cookie,
        "the browser's session is kept"
    );
    let state1 = query_param(first.location.as_deref().unwrap(), "state");
    let state2 = query_param(second.location.as_deref().unwrap(), "state");
    assert_ne!(state1, state2);
    for state in [state1, state2] {
        let cb = send(
            &app,
            get_req(
                &format!("/smart/callback?code=c&state={state}"),
                Some(&cookie),
                true,
            ),
        )
        .await;
        assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.body);
    }
}

/// SC-4.13, SC-4.14, SC-4.3: the error pages of a failed launch (state of another browser,
/// user denied, unknown issuer) are plain and escaped, and name neither the state nor a
/// token.
#[tokio::test]
async fn sc_4_14_error_pages_are_escaped_and_name_no_secret() {
    let (smart, _) = smart("https://app.example/smart/callback");
    let app = app(&smart);
    let r = send(&app, get_req(LAUNCH, None, true)).await;
    let state = query_param(r.location.as_deref().unwrap(), "state");
    let other = format!("{}={}", SECURE_COOKIE_NAME, "b".repeat(64));
    let mismatch = send(
        &app,
        get_req(
            &format!("/smart/callback?code=c&state={state}"),
            Some(&other),
            true,
        ),
    )
    .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert!(
        mismatch.body.contains("state mismatch"),
        "{}",
        mismatch.body
    );
    assert!(!mismatch.body.contains(&state));

    let cookie = cookie_pair(&r.set_cookie[0]);
    let denied = send(
        &app,
        get_req(
            &format!(
                "/smart/callback?error=access_denied&error_description=%3Cscript%3Ex%3C%2Fscript%3E&state={state}"
            ),
            Some(&cookie),
            true,
        ),
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);
    assert!(denied.body.contains("&lt;script&gt;") && !denied.body.contains("<script>"));
    assert!(!denied.body.contains(&state));

    let unknown = send(
        &app,
        get_req(
            "/smart/launch?iss=https%3A%2F%2Fevil.example%2F%3Cscript%3E&launch=x",
            None,
            true,
        ),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    assert!(!unknown.body.contains("<script>"), "{}", unknown.body);
    assert!(
        unknown.set_cookie.is_empty(),
        "no session for a refused launch"
    );

    let missing = send(&app, get_req("/smart/launch?iss=x", None, true)).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
}

fn logout_req(cookie: &str, csrf: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post("/smart/logout")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(format!("csrf={csrf}"))).unwrap()
}

/// SC-6.5, SC-4.26: logout refuses cross-site requests (`Sec-Fetch-Site`, `Origin`) and a
/// missing or wrong form token, leaving the session signed in; with the session's token it
/// revokes the tokens, removes the cookie and the session: pages are then redirected to the
/// start page and API requests get 401 with JSON.
#[tokio::test]
async fn sc_6_5_logout_csrf_revocation_and_relaunch() {
    let (smart, server) = smart("https://app.example/smart/callback");
    let app = app(&smart);
    let cookie = signed_in(&app).await;
    let sid = cookie.split_once('=').unwrap().1.to_owned();
    let token = logout_token(&sid);
    for (csrf, headers) in [
        (token.as_str(), vec![("sec-fetch-site", "cross-site")]),
        (token.as_str(), vec![("sec-fetch-site", "same-site")]),
        (token.as_str(), vec![("origin", "https://evil.example")]),
        ("", vec![("origin", "https://app.example")]),
        ("0000", vec![]),
    ] {
        let r = send(&app, logout_req(&cookie, csrf, &headers)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(*server.revocations.lock().unwrap(), 0);
        let still = send(&app, get_req("/", Some(&cookie), true)).await;
        assert_eq!(still.status, StatusCode::OK, "still signed in");
    }
    let r = send(
        &app,
        logout_req(
            &cookie,
            &token,
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://app.example"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("revoked"), "{}", r.body);
    assert!(r.set_cookie[0].contains("Max-Age=0"));
    assert_eq!(
        *server.revocations.lock().unwrap(),
        2,
        "refresh and access token"
    );

    let page = send(&app, get_req("/", Some(&cookie), true)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/smart/start"));
    let api = send(&app, get_req("/", Some(&cookie), false)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(body["error"], "relaunch_needed");
    assert_eq!(body["launch"], "/smart/start");
    let none = send(&app, get_req("/", None, false)).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);

    let start = send(&app, get_req("/smart/start", None, true)).await;
    assert!(start.body.contains("href=\"/smart/login\""));
}

/// SC-6.5: on a server without a revocation endpoint, the logout page says that the tokens
/// stay valid at the server until they expire, not that they were revoked.
#[tokio::test]
async fn sc_6_5_logout_page_says_when_tokens_stay_valid() {
    let (smart, server) = smart_on(
        FakeServer {
            without_revocation: true,
            ..FakeServer::default()
        },
        "https://app.example/smart/callback",
    );
    let app = app(&smart);
    let cookie = signed_in(&app).await;
    let sid = cookie.split_once('=').unwrap().1.to_owned();
    let r = send(
        &app,
        logout_req(
            &cookie,
            &logout_token(&sid),
            &[("origin", "https://app.example")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains("stay valid at the server until they expire"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("were revoked"), "{}", r.body);
    assert_eq!(*server.revocations.lock().unwrap(), 0);
    assert!(r.set_cookie[0].contains("Max-Age=0"));
}

/// SC-4.4: `GET /login` starts a standalone launch against the configured server (no
/// `launch` parameter), and refuses a server off the allow-list.
#[tokio::test]
async fn sc_4_4_standalone_login() {
    let (smart, _) = smart("https://app.example/smart/callback");
    let app = app(&smart);
    let r = send(&app, get_req("/smart/login", None, true)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let location = r.location.unwrap();
    assert_eq!(query_param(&location, "aud"), BASE);
    assert!(!location.contains("launch="));
    let refused = send(
        &app,
        get_req(
            "/smart/login?iss=https%3A%2F%2Fother.example%2Ffhir",
            None,
            true,
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

/// The session store from `SMART_SESSION_STORE` (read by the facade's `Config`, the one parser):
/// memory by default, a file created on first use, and an error naming the variable when the
/// value is not understood.
#[tokio::test]
async fn session_store_from_the_environment() {
    let base = [
        ("SMART_FHIR_BASE", "https://ehr.example/fhir".to_owned()),
        ("SMART_CLIENT_ID", "app".to_owned()),
    ];
    let config = |store: Option<String>| {
        smart_fhir::Config::from_vars(
            base.iter()
                .cloned()
                .chain(store.map(|s| (SESSION_STORE_VAR, s))),
        )
    };
    assert!(config(None).unwrap().session_store().unwrap().is_none());
    assert!(config(Some("memory".into()))
        .unwrap()
        .session_store()
        .unwrap()
        .is_none());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let store = config(Some(format!("file:{}", path.display())))
        .unwrap()
        .session_store()
        .unwrap();
    assert!(store.is_some());
    assert!(path.exists());
    let e = config(Some("mongodb://x".into())).unwrap_err();
    assert!(e.to_string().contains(SESSION_STORE_VAR), "{e}");
}
