//! The extractor: a signed-in session with its launch context and FHIR client.

use std::fmt;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;
use smart_fhir::core::text::{error_chain, escape_html};
use smart_fhir::oauth::{FhirContextItem, LaunchContext};
use smart_fhir::{FhirClient, SessionClient};

use crate::pages::{p, page, see_other};
use crate::{logout_token, SmartLaunch};

/// A signed-in browser session: the launch context and a FHIR client for the session's server
/// whose tokens refresh by themselves (and rotate, in whatever store the app configured).
///
/// As an extractor it needs [`SmartLaunch`] from the router's state (`with_state(smart)`, or
/// `FromRef` for an app state that holds one). Without a usable session it rejects with
/// [`SmartRejection`]: a redirect to the start page for pages, `401` with JSON otherwise.
#[derive(Clone)]
pub struct SmartSession {
    session: SessionClient,
    fhir: FhirClient,
    smart: SmartLaunch,
    html: bool,
    logout_token: String,
}

impl fmt::Debug for SmartSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl SmartSession {
    /// The launch context (`patient`, `encounter`, `fhirContext`, …).
    pub fn context(&self) -> LaunchContext {
        self.session.context()
    }

    /// The id of the Patient in context.
    pub fn patient(&self) -> Option<String> {
        self.session.patient()
    }

    /// The id of the Encounter in context.
    pub fn encounter(&self) -> Option<String> {
        self.session.encounter()
    }

    /// The `fhirContext` items.
    pub fn fhir_context(&self) -> Vec<FhirContextItem> {
        self.session.fhir_context()
    }

    /// The signed-in user (`fhirUser` of the verified `id_token`).
    pub fn user(&self) -> Option<url::Url> {
        self.session.user()
    }

    /// A FHIR client for the session's server with its self-refreshing tokens.
    pub fn fhir(&self) -> &FhirClient {
        &self.fhir
    }

    /// The library's session: scopes, expiry, the token source.
    pub fn session(&self) -> &SessionClient {
        &self.session
    }

    /// Reads the Patient in context; `None` when the launch gave none.
    pub async fn read_patient<T: DeserializeOwned>(&self) -> Result<Option<T>, SmartError> {
        match self.session.read_patient::<T>(&self.fhir).await {
            Ok(r) => Ok(r.map(|r| r.into_body())),
            Err(e) => Err(self.error(e)),
        }
    }

    /// `e` as a [`SmartError`] that knows this request: a failure that needs a new launch
    /// becomes a redirect to the start page for a page, `401` with JSON otherwise.
    pub fn error(&self, e: impl Into<smart_fhir::Error>) -> SmartError {
        SmartError {
            inner: e.into(),
            relaunch: Some(SmartRejection::relaunch(&self.smart, self.html)),
        }
    }

    /// The form token logout needs: put it in a hidden `csrf` field of a `POST` form to
    /// `<mount>/logout`, or use [`logout_form`](Self::logout_form).
    pub fn logout_token(&self) -> &str {
        &self.logout_token
    }

    /// A sign-out button: a `POST` form to `<mount>/logout` with the session's form token.
    pub fn logout_form(&self) -> String {
        format!(
            "<form method=\"post\" action=\"{}/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
            escape_html(self.smart.mount()),
            escape_html(&self.logout_token)
        )
    }
}

/// Whether the request is a page load (its `Accept` names HTML).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

impl<S> FromRequestParts<S> for SmartSession
where
    SmartLaunch: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = SmartRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let smart = SmartLaunch::from_ref(state);
        let html = wants_html(&parts.headers);
        let Some(sid) = smart.session_id(&parts.headers) else {
            tracing::debug!("SMART session: no session cookie; a launch is needed");
            return Err(SmartRejection::relaunch(&smart, html));
        };
        let session = match smart.inner.app.ready(&sid).await {
            Ok(s) => s,
            Err(e) if e.is_relaunch_needed() => {
                tracing::debug!(error = %error_chain(&e), "SMART session: a launch is needed");
                return Err(SmartRejection::relaunch(&smart, html));
            }
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "SMART session unavailable");
                return Err(SmartRejection::Unavailable { html });
            }
        };
        let fhir = session.fhir_client().map_err(|e| {
            tracing::error!(error = %error_chain(&e), "SMART session: no FHIR client");
            SmartRejection::Unavailable { html }
        })?;
        Ok(Self {
            logout_token: logout_token(&sid),
            session,
            fhir,
            smart,
            html,
        })
    }
}

/// Why [`SmartSession`] could not be extracted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SmartRejection {
    /// No session, or one that needs a new launch: pages are redirected to `start`, other
    /// requests get `401` with `{"error": "relaunch_needed", "launch": start}`.
    Relaunch {
        /// The start page's path.
        start: String,
        /// Whether the request was a page load.
        html: bool,
    },
    /// The session store failed: `503`.
    Unavailable {
        /// Whether the request was a page load.
        html: bool,
    },
}

impl SmartRejection {
    fn relaunch(smart: &SmartLaunch, html: bool) -> Self {
        Self::Relaunch {
            start: smart.start_path(),
            html,
        }
    }
}

impl IntoResponse for SmartRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Relaunch { start, html: true } => see_other(&start),
            Self::Relaunch { start, html: false } => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "relaunch_needed", "launch": start})),
            )
                .into_response(),
            Self::Unavailable { html: true } => page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Session unavailable",
                &p("The app cannot reach its session store. Try again."),
            ),
            Self::Unavailable { html: false } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "session_unavailable"})),
            )
                .into_response(),
        }
    }
}

/// A handler's failure: any library error. As a response: when the session needs a new launch
/// (the refresh token expired or was refused), what [`SmartRejection::Relaunch`] answers (with
/// errors made by [`SmartSession::error`] or its methods; others answer `401` with JSON); any
/// other error `502` with a plain page naming the error (never a token). Also a `tracing`
/// event.
#[derive(Debug)]
pub struct SmartError {
    inner: smart_fhir::Error,
    relaunch: Option<SmartRejection>,
}

impl SmartError {
    /// The library error.
    pub fn get_ref(&self) -> &smart_fhir::Error {
        &self.inner
    }
}

impl fmt::Display for SmartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl<E: Into<smart_fhir::Error>> From<E> for SmartError {
    fn from(e: E) -> Self {
        Self {
            inner: e.into(),
            relaunch: None,
        }
    }
}

impl IntoResponse for SmartError {
    fn into_response(self) -> Response {
        let chain = error_chain(&self.inner);
        if self.inner.relaunch_needed() {
            tracing::info!(error = %chain, "SMART session needs a new launch");
            return match self.relaunch {
                Some(r) => r.into_response(),
                None => (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "relaunch_needed"})),
                )
                    .into_response(),
            };
        }
        tracing::warn!(error = %chain, "SMART request failed");
        page(
            StatusCode::BAD_GATEWAY,
            "The FHIR server failed",
            &p(&chain),
        )
    }
}
