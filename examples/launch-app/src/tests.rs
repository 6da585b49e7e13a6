//! The app's routes against a scripted SMART server (no network).

use std::sync::Mutex;

use async_trait::async_trait;
use http_body_util::BodyExt;
use serde_json::json;
use smart_fhir::core::{Bytes as CoreBytes, HttpError};
use smart_fhir::HttpClient;

use super::*;

const BASE: &str = "https://ehr.example/fhir";

/// Discovery, token endpoint and `Patient/p1` of `https://ehr.example/fhir`; logs every URL.
#[derive(Debug, Default)]
struct FakeServer {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl HttpClient for FakeServer {
    async fn execute(
        &self,
        request: hyper::Request<CoreBytes>,
    ) -> Result<hyper::Response<CoreBytes>, HttpError> {
        let uri = request.uri().to_string();
        self.seen.lock().unwrap().push(uri.clone());
        let body = match uri.as_str() {
            "https://ehr.example/fhir/.well-known/smart-configuration" => json!({
                "issuer": "https://as.example",
                "authorization_endpoint": "https://as.example/authorize",
                "token_endpoint": "https://as.example/token",
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                    "context-ehr-patient", "context-standalone-patient", "permission-patient",
                    "permission-v2"]
            }),
            "https://as.example/token" => json!({
                "access_token": "AT-secret", "token_type": "Bearer", "expires_in": 300,
                "scope": "launch patient/*.rs", "patient": "p1", "need_patient_banner": true
            }),
            "https://ehr.example/fhir/Patient/p1" => {
                assert_eq!(
                    request.headers()["authorization"],
                    "Bearer AT-secret",
                    "the FHIR read carries the session's token"
                );
                json!({"resourceType": "Patient", "id": "p1", "gender": "female",
                       "name": [{"given": ["<script>alert(1)</script>"], "family": "O'Hara & Co"}]})
            }
            _ => {
                return Ok(hyper::Response::builder()
                    .status(404)
                    .body(CoreBytes::new())
                    .unwrap())
            }
        };
        Ok(hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(CoreBytes::from(body.to_string()))
            .unwrap())
    }
}

fn app() -> (App, Arc<FakeServer>) {
    let server = Arc::new(FakeServer::default());
    let mut settings = Settings::new(
        "example-app",
        "https://app.example/callback",
        vec![FhirBaseUrl::parse(BASE).unwrap()],
    );
    settings.scope = "launch/patient patient/*.rs".into();
    let app = App::with_http_client(settings, SharedHttpClient::from_arc(server.clone())).unwrap();
    (app, server)
}

fn get(target: &str, cookie: Option<&str>) -> Request<()> {
    let mut b = Request::builder().method(Method::GET).uri(target);
    if let Some(c) = cookie {
        b = b.header(COOKIE, c);
    }
    b.body(()).unwrap()
}

async fn text(r: Response<Full<Bytes>>) -> String {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn set_cookie(r: &Response<Full<Bytes>>) -> String {
    r.headers()[SET_COOKIE].to_str().unwrap().to_owned()
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// SC-4.2, SC-4.5, SC-4.13, SC-4.26, P10: EHR launch → authorize redirect with a fresh
/// session cookie (HttpOnly, SameSite=Lax, Secure on https, no token) → callback → the app's own
/// landing page → the patient read with the session's token, HTML-escaped.
#[tokio::test]
async fn sc_4_26_ehr_launch_to_patient_page() {
    let (app, _) = app();
    let r = app
        .handle(&get(
            "/launch?iss=https%3A%2F%2Fehr.example%2Ffhir&launch=L-1",
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://as.example/authorize?"),
        "{location}"
    );
    assert_eq!(query_param(&location, "launch"), "L-1");
    assert_eq!(query_param(&location, "aud"), BASE);
    let cookie = set_cookie(&r);
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let sid = pair.split_once('=').unwrap().1.to_owned();
    assert!(is_session_id(&sid), "{sid}");

    // The callback, with other cookies around ours.
    let state = query_param(&location, "state");
    let jar = format!("_session=abc; {pair}; other=1");
    let r = app
        .handle(&get(
            &format!("/callback?code=c1&state={state}"),
            Some(&jar),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "https://app.example/");
    assert!(
        r.headers().get(SET_COOKIE).is_none(),
        "the cookie never carries a token"
    );

    let r = app.handle(&get("/", Some(&jar))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = text(r).await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; O&#39;Hara &amp; Co"),
        "{html}"
    );
    assert!(!html.contains("<script>"));
    assert!(!html.contains("AT-secret"));
    assert!(csp.contains("default-src 'none'"));
}

/// SC-4.3, P1: an issuer that is not on the allow-list is refused before any request.
#[tokio::test]
async fn p1_unknown_issuer_is_refused_without_a_request() {
    let (app, server) = app();
    let r = app
        .handle(&get(
            "/launch?iss=https%3A%2F%2Fevil.example%2Ffhir&launch=x",
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let r = app
        .handle(&get(
            "/standalone?iss=https%3A%2F%2Fevil.example%2Ffhir",
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(server.seen.lock().unwrap().is_empty());
}

/// SC-4.6, SC-4.13, P3: a callback in another browser's session (or without one) is refused,
/// and the right one still works afterwards only once.
#[tokio::test]
async fn p3_callback_is_bound_to_the_session() {
    let (app, _) = app();
    let r = app.handle(&get("/standalone", None)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        !location.contains("launch=")
            && !query_param(&location, "scope")
                .split(' ')
                .any(|s| s == "launch")
    );
    let own = set_cookie(&r).split(';').next().unwrap().to_owned();
    let state = query_param(&location, "state");
    let target = format!("/callback?code=c&state={state}");

    let r = app.handle(&get(&target, None)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("no session"));

    let other = format!("{SESSION_COOKIE}={}", "a".repeat(64));
    let r = app.handle(&get(&target, Some(&other))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("another session"));

    let r = app.handle(&get(&target, Some(&own))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = app.handle(&get(&target, Some(&own))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a state is used once");
}

#[tokio::test]
async fn other_routes_and_bad_requests() {
    let (app, _) = app();
    let r = app.handle(&get("/", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains("Not signed in"));
    let r = app.handle(&get("/launch?iss=x", None)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app.handle(&get("/nope", None)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let post = Request::builder()
        .method(Method::POST)
        .uri("/launch")
        .body(())
        .unwrap();
    assert_eq!(
        app.handle(&post).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let logout = Request::builder()
        .method(Method::POST)
        .uri("/logout")
        .body(())
        .unwrap();
    let r = app.handle(&logout).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&r).contains("Max-Age=0"));
}

#[test]
fn session_cookie_is_picked_among_others_and_checked() {
    let id = "0123456789abcdef".repeat(4);
    let req = get(
        "/",
        Some(&format!("a=1; {SESSION_COOKIE}=bad; {SESSION_COOKIE}={id}")),
    );
    assert_eq!(session_id(&req), Some(id.clone()));
    for bad in [
        format!("{SESSION_COOKIE}={}", id.to_uppercase()),
        format!("{SESSION_COOKIE}={}", &id[1..]),
        format!("x{SESSION_COOKIE}={id}"),
        "garbage".to_owned(),
    ] {
        assert_eq!(session_id(&get("/", Some(&bad))), None, "{bad}");
    }
    let a = new_session_id().unwrap();
    assert!(is_session_id(&a));
    assert_ne!(a, new_session_id().unwrap());
}

#[test]
fn names_and_escaping() {
    assert_eq!(
        patient_name(&json!({"name": [{"text": "Ann Lee"}]})),
        "Ann Lee"
    );
    assert_eq!(
        patient_name(&json!({"name": [{"given": ["Ann", "B"], "family": "Lee"}]})),
        "Ann B Lee"
    );
    assert_eq!(patient_name(&json!({"name": []})), "(no name)");
    assert_eq!(patient_name(&json!({})), "(no name)");
    assert_eq!(
        escape("<a href=\"x\">'&"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
    );
}

#[test]
fn settings_are_checked() {
    let http = SharedHttpClient::new(FakeServer::default());
    let bad_path = Settings::new(
        "c",
        "https://app.example/cb",
        vec![FhirBaseUrl::parse(BASE).unwrap()],
    );
    assert!(App::with_http_client(bad_path, http.clone()).is_err());
    let plain = Settings::new(
        "c",
        "http://127.0.0.1:9/callback",
        vec![FhirBaseUrl::parse(BASE).unwrap()],
    );
    assert!(
        App::with_http_client(plain, http.clone()).is_err(),
        "P7: http needs the opt-in"
    );
    let mut dev = Settings::new(
        "c",
        "http://127.0.0.1:9/callback",
        vec![FhirBaseUrl::parse(BASE).unwrap()],
    );
    dev.insecure_http = true;
    let app = App::with_http_client(dev, http).unwrap();
    assert!(!app.secure_cookie);
}
