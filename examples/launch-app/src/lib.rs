//! `launch-app`: a small server-side SMART App Launch web app on `smart-fhir` and hyper 1, as a
//! starting point for your own.
//!
//! Routes:
//!
//! * `GET /launch?iss=…&launch=…` — **EHR launch**: the EHR opens this URL. `iss` is checked
//!   against the configured allow-list before anything is sent anywhere (P1); the browser is
//!   redirected to the authorization server (or gets a page that posts the authorize form).
//! * `GET /standalone[?iss=…]` — **standalone launch** against a configured server (with one
//!   server configured, `iss` may be left out; with several, a page lets the user choose).
//! * `GET /callback?code=…&state=…` — the redirect URI: completes the flow (state, PKCE, code
//!   exchange, `id_token`) and redirects to the app's own landing page, never to a URL taken
//!   from the request (P10).
//! * `GET /` — the landing page: reads the launched Patient through [`FhirClient`] with the
//!   session as its token provider (refreshed when needed) and shows the name, with everything
//!   HTML-escaped.
//! * `POST /logout` — revokes the tokens and forgets the session.
//!
//! The browser holds only a random session id in an `HttpOnly; SameSite=Lax` cookie (`Secure`
//! when the app is served over https); the tokens stay on the server, in the
//! [`AppLaunch`]'s session store (SC-4.26). Every page is sent with `Cache-Control: no-store`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use smart_fhir::core::{ClientSecret, SharedHttpClient};
use smart_fhir::oauth::AuthorizeRequest;
use smart_fhir::{
    AppLaunch, ClientAuth, FhirBaseUrl, FhirClient, HyperHttpClient, InsecureHttp, IssuerPolicy,
    LaunchClientConfig, LaunchError, SessionClient,
};
use tokio::net::TcpListener;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "launch_app_sid";

/// The scopes the app asks for unless configured otherwise. An EHR launch adds `launch`.
pub const DEFAULT_SCOPE: &str = "openid fhirUser launch/patient patient/*.rs offline_access";

/// How the app is set up.
#[derive(Debug)]
#[non_exhaustive]
pub struct Settings {
    /// The registered client id.
    pub client_id: String,
    /// The client secret of a confidential symmetric client (`client_secret_basic`); `None` for
    /// a public client.
    pub client_secret: Option<ClientSecret>,
    /// The registered redirect URI; its path must be `/callback` on this app.
    pub redirect_uri: String,
    /// The FHIR servers allowed to launch the app (the issuer allow-list, SC-4.3).
    pub issuers: Vec<FhirBaseUrl>,
    /// The scopes to request, space-separated.
    pub scope: String,
    /// Allow plain `http://` on loopback hosts (development and tests only).
    pub insecure_http: bool,
}

impl Settings {
    /// Settings with the default scope, a public client and no plain HTTP.
    pub fn new(
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        issuers: Vec<FhirBaseUrl>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
            redirect_uri: redirect_uri.into(),
            issuers,
            scope: DEFAULT_SCOPE.to_owned(),
            insecure_http: false,
        }
    }
}

/// Why the app cannot start.
#[derive(Debug)]
pub struct SetupError(String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// The web app: routes requests to the App Launch flow and the FHIR client.
#[derive(Debug)]
pub struct App {
    launch: AppLaunch,
    http: SharedHttpClient,
    issuers: Vec<FhirBaseUrl>,
    secure_cookie: bool,
}

impl App {
    /// The app on the hyper + rustls transport.
    pub fn new(settings: Settings) -> Result<Self, SetupError> {
        let insecure = if settings.insecure_http {
            InsecureHttp::AllowLoopback
        } else {
            InsecureHttp::Deny
        };
        let http = HyperHttpClient::builder()
            .insecure_http(insecure)
            .build()
            .map_err(|e| SetupError(format!("cannot set up HTTPS: {e}")))?;
        Self::with_http_client(settings, SharedHttpClient::new(http))
    }

    /// The app on a given transport.
    pub fn with_http_client(
        settings: Settings,
        http: SharedHttpClient,
    ) -> Result<Self, SetupError> {
        let redirect = url::Url::parse(&settings.redirect_uri)
            .map_err(|e| SetupError(format!("invalid redirect URI: {e}")))?;
        if redirect.path() != "/callback" {
            return Err(SetupError(
                "the redirect URI's path must be /callback (the route that completes the flow)"
                    .into(),
            ));
        }
        // The landing page is this app's own `/`, on the redirect URI's origin.
        let landing = redirect
            .join("/")
            .map_err(|e| SetupError(format!("invalid redirect URI: {e}")))?;
        let auth = match settings.client_secret {
            Some(secret) => ClientAuth::ClientSecretBasic(secret),
            None => ClientAuth::Public,
        };
        let config = LaunchClientConfig::builder()
            .client_id(settings.client_id)
            .redirect_uri(settings.redirect_uri)
            .landing_url(landing.as_str())
            .scope(settings.scope)
            .client_auth(auth)
            .issuer_policy(IssuerPolicy::allow_list(settings.issuers.clone()))
            .insecure_http(if settings.insecure_http {
                InsecureHttp::AllowLoopback
            } else {
                InsecureHttp::Deny
            })
            .http_client(http.clone())
            .build()
            .map_err(|e| SetupError(format!("invalid App Launch settings: {e}")))?;
        Ok(Self {
            launch: AppLaunch::new(config),
            http,
            issuers: settings.issuers,
            secure_cookie: redirect.scheme() == "https",
        })
    }

    /// The App Launch flow (for tests and for apps that add routes of their own).
    pub fn app_launch(&self) -> &AppLaunch {
        &self.launch
    }

    /// Answers one request. Request bodies are never read.
    pub async fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let query = req.uri().query().unwrap_or("");
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/launch") => self.ehr_launch(query).await,
            (&Method::GET, "/standalone") => self.standalone(query).await,
            (&Method::GET, "/callback") => self.callback(session_id(req).as_deref(), query).await,
            (&Method::GET, "/") => self.home(session_id(req).as_deref()).await,
            (&Method::POST, "/logout") => self.logout(session_id(req).as_deref()).await,
            (_, "/launch" | "/standalone" | "/callback" | "/" | "/logout") => page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "<p>This method is not served here.</p>",
            ),
            _ => page(StatusCode::NOT_FOUND, "Not found", "<p>Nothing here.</p>"),
        }
    }

    async fn ehr_launch(&self, query: &str) -> Response<Full<Bytes>> {
        let (Some(iss), Some(launch)) = (param(query, "iss"), param(query, "launch")) else {
            return page(
                StatusCode::BAD_REQUEST,
                "Launch failed",
                "<p>An EHR launch needs the <code>iss</code> and <code>launch</code> parameters.</p>",
            );
        };
        // A fresh session for every launch: one browser may launch the app in several tabs, and
        // an attacker's session id planted in the cookie is never signed in.
        let Some(sid) = new_session_id() else {
            return unavailable();
        };
        match self.launch.launch(&sid, &iss, &launch).await {
            Ok(request) => self.authorize(request, &sid),
            Err(e) => launch_failed(&e),
        }
    }

    async fn standalone(&self, query: &str) -> Response<Full<Bytes>> {
        let iss = match (param(query, "iss"), self.issuers.as_slice()) {
            (Some(iss), _) => iss,
            (None, [only]) => only.as_str().to_owned(),
            (None, servers) => {
                let mut body = String::from("<p>Choose a server:</p><ul>");
                for s in servers {
                    let link = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("iss", s.as_str())
                        .finish();
                    let _ = write!(
                        body,
                        "<li><a href=\"/standalone?{}\">{}</a></li>",
                        escape(&link),
                        escape(s.as_str())
                    );
                }
                body.push_str("</ul>");
                return page(StatusCode::OK, "Sign in", &body);
            }
        };
        let Some(sid) = new_session_id() else {
            return unavailable();
        };
        match self.launch.standalone(&sid, &iss).await {
            Ok(request) => self.authorize(request, &sid),
            Err(e) => launch_failed(&e),
        }
    }

    /// Sends the browser to the authorization server with the new session's cookie.
    fn authorize(&self, request: AuthorizeRequest, sid: &str) -> Response<Full<Bytes>> {
        let mut response = match &request {
            AuthorizeRequest::Redirect(url) => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::SEE_OTHER;
                match HeaderValue::from_str(url.as_str()) {
                    Ok(v) => {
                        r.headers_mut().insert(LOCATION, v);
                    }
                    Err(_) => return unavailable(),
                }
                no_store(&mut r);
                r
            }
            // The server takes a POST and the request is long: a page that posts the form. It
            // runs one inline handler, so it gets no script-blocking policy.
            form => {
                let mut r = Response::new(Full::new(Bytes::from(
                    form.auto_submit_html().unwrap_or_default(),
                )));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                no_store(&mut r);
                r
            }
        };
        let cookie = format!(
            "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax{}",
            if self.secure_cookie { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(SET_COOKIE, v);
        }
        response
    }

    async fn callback(&self, sid: Option<&str>, query: &str) -> Response<Full<Bytes>> {
        let Some(sid) = sid else {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "<p>This browser has no session with the app (cookies blocked, or the sign-in was not started here). Launch the app again.</p>",
            );
        };
        match self.launch.callback(sid, query).await {
            Ok(launched) => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::SEE_OTHER;
                if let Ok(v) = HeaderValue::from_str(launched.landing_url.as_str()) {
                    r.headers_mut().insert(LOCATION, v);
                }
                no_store(&mut r);
                r
            }
            Err(e) => page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &format!("<p>{}</p>", escape(&error_chain(&e))),
            ),
        }
    }

    async fn home(&self, sid: Option<&str>) -> Response<Full<Bytes>> {
        let session = match sid {
            Some(sid) => self.launch.ready(sid).await,
            None => Err(LaunchError::RelaunchNeeded(
                smart_fhir::oauth::RelaunchReason::NoSession,
            )),
        };
        let session =
            match session {
                Ok(s) => s,
                Err(e) if e.is_relaunch_needed() => return page(
                    StatusCode::OK,
                    "Not signed in",
                    "<p>Launch the app from your EHR, or <a href=\"/standalone\">sign in</a>.</p>",
                ),
                Err(e) => {
                    return page(
                        StatusCode::BAD_GATEWAY,
                        "Session unavailable",
                        &format!("<p>{}</p>", escape(&error_chain(&e))),
                    )
                }
            };
        match self.patient_page(&session).await {
            Ok(body) => page(StatusCode::OK, "Patient", &body),
            Err(message) => page(
                StatusCode::BAD_GATEWAY,
                "The FHIR server failed",
                &format!("<p>{}</p>", escape(&message)),
            ),
        }
    }

    /// The body of the landing page: the patient in context, read with the session's token.
    async fn patient_page(&self, session: &SessionClient) -> Result<String, String> {
        let mut body = String::new();
        match session.patient() {
            Some(id) => {
                let fhir = FhirClient::builder(session.fhir_base())
                    .http_client(self.http.clone())
                    .auth(session.clone())
                    .build()
                    .map_err(|e| error_chain(&e))?;
                let patient = fhir
                    .read::<Value>("Patient", &id)
                    .await
                    .map_err(|e| error_chain(&e))?;
                let patient = patient.body();
                let _ = write!(
                    body,
                    "<h2 id=\"patient-name\">{}</h2><dl><dt>Patient id</dt><dd>{}</dd>",
                    escape(&patient_name(patient)),
                    escape(&id)
                );
                for (label, field) in [("Birth date", "birthDate"), ("Gender", "gender")] {
                    if let Some(v) = patient.get(field).and_then(Value::as_str) {
                        let _ = write!(body, "<dt>{label}</dt><dd>{}</dd>", escape(v));
                    }
                }
                body.push_str("</dl>");
            }
            None => body.push_str("<p>No patient in context.</p>"),
        }
        body.push_str("<dl>");
        if let Some(encounter) = session.encounter() {
            let _ = write!(body, "<dt>Encounter</dt><dd>{}</dd>", escape(&encounter));
        }
        if let Some(user) = session.user() {
            let _ = write!(
                body,
                "<dt>Signed-in user</dt><dd>{}</dd>",
                escape(user.as_str())
            );
        }
        let _ = write!(
            body,
            "<dt>Granted scopes</dt><dd>{}</dd><dt>FHIR server</dt><dd>{}</dd></dl>",
            escape(&session.granted_scopes().to_string()),
            escape(session.fhir_base().as_str())
        );
        body.push_str(
            "<form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form>",
        );
        Ok(body)
    }

    async fn logout(&self, sid: Option<&str>) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/"));
        let cookie = format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
            if self.secure_cookie { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(SET_COOKIE, v);
        }
        no_store(&mut r);
        if let Some(sid) = sid {
            // The session is forgotten whatever the revocation's outcome; a failed revocation
            // only means the tokens live until they expire.
            if let Err(e) = self.launch.logout(sid).await {
                eprintln!("launch-app: sign-out: {}", error_chain(&e));
            }
        }
        r
    }
}

/// Serves `app` on `listener` until the task is dropped. Each connection is served on its own
/// task; a failed accept (e.g. too many open files) is logged and the loop goes on.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("launch-app: accept: {e}");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(&req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The session id from the request's cookie: 64 lowercase hex digits, or nothing. Other
/// cookies (and malformed values of ours) are ignored.
pub fn session_id<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && is_session_id(value))
        .map(|(_, value)| value.to_owned())
}

fn is_session_id(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new session id: 256 bits from the operating system's generator, as hex.
fn new_session_id() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    let mut id = String::with_capacity(64);
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    Some(id)
}

/// The first value of `name` in a query string.
fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A person's name as written in a FHIR Patient: the first `name`'s `text`, else its `given`
/// names and `family`.
pub fn patient_name(patient: &Value) -> String {
    let Some(name) = patient
        .get("name")
        .and_then(Value::as_array)
        .and_then(|n| n.first())
    else {
        return "(no name)".to_owned();
    };
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return text.to_owned();
    }
    let mut parts: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(family) = name.get("family").and_then(Value::as_str) {
        parts.push(family);
    }
    if parts.is_empty() {
        "(no name)".to_owned()
    } else {
        parts.join(" ")
    }
}

// The library's one HTML escaper and one error-chain line: an example shows what users call.
use smart_fhir::core::text::error_chain;
/// HTML-escapes text for element content and quoted attribute values.
pub use smart_fhir::core::text::escape_html as escape;

fn launch_failed(e: &LaunchError) -> Response<Full<Bytes>> {
    let status = match e {
        LaunchError::IssuerNotAllowed { .. } => StatusCode::FORBIDDEN,
        LaunchError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    page(
        status,
        "Launch failed",
        &format!("<p>{}</p>", escape(&error_chain(e))),
    )
}

fn unavailable() -> Response<Full<Bytes>> {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "<p>Try again.</p>",
    )
}

fn no_store(r: &mut Response<Full<Bytes>>) {
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// A page; `body` is HTML that the caller escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The pages run no script and load nothing.
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; form-action 'self'"),
    );
    no_store(&mut r);
    r
}

#[cfg(test)]
mod tests;
