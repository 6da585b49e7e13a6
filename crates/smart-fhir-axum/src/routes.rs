//! The route handlers: launch, login, callback, logout, start.

use std::collections::HashMap;

use axum::extract::{Form, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use smart_fhir::core::text::{error_chain, escape_html};
use smart_fhir::oauth::{AuthorizeRequest, LogoutOutcome};
use smart_fhir::LaunchError;
use subtle::ConstantTimeEq as _;

use crate::pages::{no_store, p, page, see_other};
use crate::{logout_token, new_session_id, SmartLaunch};

/// The first value of `name` in a query string.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// `GET <mount>/launch?iss=…&launch=…`: the EHR launch.
pub(crate) async fn launch(
    State(smart): State<SmartLaunch>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query.as_deref();
    let (Some(iss), Some(launch)) = (param(q, "iss"), param(q, "launch")) else {
        tracing::warn!(
            route = "launch",
            "SMART EHR launch refused: the iss or launch parameter is missing"
        );
        return page(
            StatusCode::BAD_REQUEST,
            "Launch failed",
            &p("An EHR launch needs the iss and launch parameters. Launch the app from your EHR again."),
        );
    };
    let Some(sid) = browser_session(&smart, &headers) else {
        return unavailable();
    };
    match smart.inner.app.launch(&sid, &iss, &launch).await {
        Ok(request) => authorize(&smart, request, &sid),
        Err(e) => launch_failed("launch", &smart, &e),
    }
}

/// `GET <mount>/login[?iss=…]`: a standalone launch.
pub(crate) async fn login(
    State(smart): State<SmartLaunch>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let iss = match (
        param(query.as_deref(), "iss"),
        smart.inner.issuers.as_slice(),
    ) {
        (Some(iss), _) => iss,
        (None, [only]) => only.as_str().to_owned(),
        (None, []) => {
            tracing::warn!(
                route = "login",
                "SMART standalone launch refused: no server configured"
            );
            return page(
                StatusCode::NOT_FOUND,
                "Sign-in unavailable",
                &p("This app has no server to sign in to. Launch it from your EHR."),
            );
        }
        (None, servers) => return choose_server(&smart, servers),
    };
    let Some(sid) = browser_session(&smart, &headers) else {
        return unavailable();
    };
    match smart.inner.app.standalone(&sid, &iss).await {
        Ok(request) => authorize(&smart, request, &sid),
        Err(e) => launch_failed("login", &smart, &e),
    }
}

fn choose_server(smart: &SmartLaunch, servers: &[smart_fhir::FhirBaseUrl]) -> Response {
    let mut body = String::from("<p>Choose a server:</p><ul>");
    for s in servers {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("iss", s.as_str())
            .finish();
        body.push_str(&format!(
            "<li><a href=\"{}/login?{}\">{}</a></li>",
            escape_html(smart.mount()),
            escape_html(&q),
            escape_html(s.as_str())
        ));
    }
    body.push_str("</ul>");
    page(StatusCode::OK, "Sign in", &body)
}

/// The browser's session id: the one its cookie names (so that launches in several tabs keep
/// their authorizations in flight side by side, each under its own `state`), else a new one;
/// `None` when the system has no randomness to give.
fn browser_session(smart: &SmartLaunch, headers: &HeaderMap) -> Option<String> {
    if let Some(sid) = smart.session_id(headers) {
        return Some(sid);
    }
    new_session_id()
        .map_err(|e| tracing::error!(error = %e, "SMART launch: no random session id"))
        .ok()
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        &p("Try again."),
    )
}

/// Sends the browser to the authorization server with the session cookie.
fn authorize(smart: &SmartLaunch, request: AuthorizeRequest, sid: &str) -> Response {
    let mut response = match &request {
        AuthorizeRequest::Redirect(url) => see_other(url.as_str()),
        // The server takes a POST and the request is long: a page that posts the form.
        form => {
            let mut r = form.auto_submit_html().unwrap_or_default().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            no_store(&mut r);
            r
        }
    };
    set_cookie(&mut response, &smart.session_cookie(Some(sid)));
    response
}

fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `GET <mount>/callback?code=…&state=…`.
pub(crate) async fn callback(
    State(smart): State<SmartLaunch>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(sid) = smart.session_id(&headers) else {
        tracing::warn!(
            route = "callback",
            "SMART callback refused: the browser sent no session cookie"
        );
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &p("This browser has no session with the app (cookies blocked, or the sign-in was not started here). Launch the app again."),
        );
    };
    match smart
        .inner
        .app
        .callback(&sid, query.as_deref().unwrap_or(""))
        .await
    {
        Ok(launched) => {
            tracing::info!(route = "callback", "SMART launch completed");
            see_other(launched.landing_url.as_str())
        }
        Err(e) => launch_failed("callback", &smart, &e),
    }
}

/// The error page of a failed launch: plain, escaped, naming no secret (the library's errors
/// carry none), with a `tracing` event.
fn launch_failed(route: &'static str, smart: &SmartLaunch, e: &LaunchError) -> Response {
    let chain = error_chain(e);
    tracing::warn!(route, error = %chain, "SMART launch failed");
    let again = format!(
        "<p><a href=\"{}\">Start again</a></p>",
        escape_html(&smart.start_path())
    );
    let (status, title, text) = match e {
        LaunchError::AuthorizationDenied { .. } => (
            StatusCode::FORBIDDEN,
            "Sign-in was denied",
            format!("The authorization server did not grant access ({chain})."),
        ),
        LaunchError::StateMismatch | LaunchError::UnknownState => (
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in does not belong to this browser session, was already used or has expired (state mismatch).".to_owned(),
        ),
        LaunchError::IssuerNotAllowed { .. } => (
            StatusCode::FORBIDDEN,
            "Launch refused",
            format!("The launching server is not one this app trusts ({chain})."),
        ),
        LaunchError::InvalidInput { .. } | LaunchError::InvalidCallback { .. } => {
            (StatusCode::BAD_REQUEST, "Launch failed", chain)
        }
        _ => (StatusCode::BAD_GATEWAY, "Launch failed", chain),
    };
    page(status, title, &format!("{}{again}", p(&text)))
}

/// `POST <mount>/logout` with the form field `csrf`.
pub(crate) async fn logout(
    State(smart): State<SmartLaunch>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(why) = cross_site(&smart, &headers) {
        tracing::warn!(route = "logout", reason = why, "SMART logout refused");
        return page(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            &p("This sign-out request did not come from the app's own page."),
        );
    }
    let start = format!(
        "<p><a href=\"{}\">Launch again</a></p>",
        escape_html(&smart.start_path())
    );
    let Some(sid) = smart.session_id(&headers) else {
        let mut r = page(
            StatusCode::OK,
            "Signed out",
            &format!("{}{start}", p("You were not signed in.")),
        );
        set_cookie(&mut r, &smart.session_cookie(None));
        return r;
    };
    let expected = logout_token(&sid);
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        tracing::warn!(
            route = "logout",
            reason = "form token",
            "SMART logout refused"
        );
        return page(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            &p("This sign-out form is not from your session. Reload the app's page and sign out there."),
        );
    }
    let (status, text) = match smart.inner.app.logout(&sid).await {
        Ok(LogoutOutcome::NotRevocable { .. }) => (
            StatusCode::OK,
            "You are signed out of this app. The server offers no way to revoke tokens: they were deleted here, but stay valid at the server until they expire.".to_owned(),
        ),
        Ok(LogoutOutcome::NoSession) => (
            StatusCode::OK,
            "You are signed out. This app held no tokens for your session.".to_owned(),
        ),
        Ok(_) => (
            StatusCode::OK,
            "You are signed out. The session is gone from this app, and its tokens were revoked at the server.".to_owned(),
        ),
        Err(e @ LaunchError::Revocation(_)) => {
            tracing::warn!(route = "logout", error = %error_chain(&e), "SMART token revocation failed");
            (
                StatusCode::OK,
                "You are signed out of this app, but the server could not revoke the tokens: they stay valid there until they expire.".to_owned(),
            )
        }
        Err(e) => {
            tracing::error!(route = "logout", error = %error_chain(&e), "SMART logout failed");
            (
                StatusCode::BAD_GATEWAY,
                format!("The session could not be removed: {}", error_chain(&e)),
            )
        }
    };
    let mut r = page(status, "Signed out", &format!("{}{start}", p(&text)));
    set_cookie(&mut r, &smart.session_cookie(None));
    r
}

/// Why a state-changing request is refused as cross-site, if it is: `Sec-Fetch-Site` other than
/// `same-origin` (or `none`, a request the user made), or an `Origin` other than the app's.
fn cross_site(smart: &SmartLaunch, headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return Some("Sec-Fetch-Site");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if origin.to_str().ok() != Some(smart.inner.origin.as_str()) {
            return Some("Origin");
        }
    }
    None
}

/// `GET <mount>/start`: where a browser without a session is sent.
pub(crate) async fn start(State(smart): State<SmartLaunch>) -> Response {
    let mut body = p("You are not signed in to this app. Launch it from your EHR, or sign in.");
    if !smart.inner.issuers.is_empty() {
        body.push_str(&format!(
            "<p><a id=\"sign-in\" href=\"{}/login\">Sign in</a></p>",
            escape_html(smart.mount())
        ));
    }
    page(StatusCode::OK, "Launch the app", &body)
}
