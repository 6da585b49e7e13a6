//! SMART App Launch for [axum](https://docs.rs/axum) web apps.
//!
//! [`SmartLaunch`] wraps the library's [`AppLaunch`] flow in four routes, mounted where the
//! registered redirect URI says (its path minus `/callback`, e.g. `/smart`):
//!
//! * `GET /smart/launch?iss=…&launch=…` — **EHR launch**: `iss` is checked against the allow-list
//!   before anything is sent anywhere; the browser goes on to the authorization server.
//! * `GET /smart/login[?iss=…]` — **standalone launch** against the configured server, or one the
//!   user chose among the allowed ones.
//! * `GET /smart/callback` — completes the flow and sends the browser to the landing URL.
//! * `POST /smart/logout` — forgets the session and revokes its tokens where the server offers
//!   revocation; the page says when revocation failed.
//! * `GET /smart/start` — the page a browser without a session is sent to: launch from the EHR,
//!   or sign in.
//!
//! The browser holds only an opaque random id (256 bits) in a cookie: `HttpOnly`,
//! `SameSite=Lax`, `Path=/`, and `Secure` with the `__Host-` name prefix unless the app runs on
//! plain HTTP on a loopback address (development). Tokens stay on the server, in the flow's
//! [`SessionStore`](smart_fhir::SessionStore): in memory by default, in a file or in Redis by
//! configuration ([`SmartLaunch::from_env`]). One browser may launch in several tabs at once:
//! each authorization in flight is kept under its own `state`, so a launch never overwrites
//! another tab's; the launch completed last is the browser's signed-in session.
//!
//! Logout takes a `POST` only, refused when `Sec-Fetch-Site` says cross-site, when `Origin` is
//! not the app's, or without the session's own form token ([`SmartSession::logout_form`]).
//!
//! Handlers take a [`SmartSession`]: the launch context and a FHIR client whose tokens refresh by
//! themselves. Without a session, pages (requests that accept `text/html`) are redirected to the
//! start page and other requests get `401` with a JSON body.
//!
//! ```no_run
//! use axum::{response::Html, routing::get, Router};
//! use smart_fhir_axum::{SmartError, SmartLaunch, SmartSession};
//!
//! async fn home(session: SmartSession) -> Result<Html<String>, SmartError> {
//!     let patient: Option<serde_json::Value> = session.read_patient().await?;
//!     Ok(Html(format!(
//!         "<p>{}</p>{}",
//!         smart_fhir::core::text::escape_html(&format!("{patient:?}")),
//!         session.logout_form()
//!     )))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let smart = SmartLaunch::from_env().await?;
//! let app = Router::new()
//!     .route("/", get(home))
//!     .merge(smart.router())
//!     .with_state(smart);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Every failure is also a `tracing` event (the route, the error's kind and text, never a token,
//! code, `state` or session id).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod env;
mod pages;
mod routes;
mod session;

use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use smart_fhir::{AppLaunch, FhirBaseUrl};

pub use env::{LANDING_URL_VAR, SESSION_STORE_VAR};
pub use session::{SmartError, SmartRejection, SmartSession};

/// The session cookie's name on plain-HTTP loopback development servers.
pub const DEV_COOKIE_NAME: &str = "smart_session";
/// The session cookie's name over HTTPS (the `__Host-` prefix: host-only, `Path=/`, `Secure`).
pub const SECURE_COOKIE_NAME: &str = "__Host-smart_session";

/// The App Launch routes and the browser sessions of an axum app. Cheap to clone.
#[derive(Clone)]
pub struct SmartLaunch {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    app: AppLaunch,
    /// Where the routes live: the redirect URI's path minus `/callback` (`""` for the root).
    mount: String,
    /// The app's origin (`scheme://host[:port]`), as browsers send it in `Origin`.
    origin: String,
    secure: bool,
    cookie_name: &'static str,
    /// The servers a standalone launch may choose from.
    issuers: Vec<FhirBaseUrl>,
}

impl fmt::Debug for SmartLaunch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartLaunch")
            .field("mount", &self.inner.mount)
            .field("origin", &self.inner.origin)
            .field("secure", &self.inner.secure)
            .field("issuers", &self.inner.issuers)
            .finish_non_exhaustive()
    }
}

/// Why [`SmartLaunch`] cannot be set up: the message names the setting.
#[derive(Debug)]
pub struct SetupError(String);

impl SetupError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

impl SmartLaunch {
    /// The routes and sessions of `app`. The routes are mounted at the path of the configured
    /// redirect URI minus its last segment, which must be `callback`. The cookie is `Secure`
    /// when the redirect URI is `https`; a plain `http` redirect URI is accepted on a loopback
    /// host only (development). `standalone_issuers` are the servers `GET /login` offers (the
    /// first is the default); they must be allowed by the flow's issuer policy too.
    pub fn new(
        app: AppLaunch,
        standalone_issuers: impl IntoIterator<Item = FhirBaseUrl>,
    ) -> Result<Self, SetupError> {
        let redirect = url::Url::parse(app.config().redirect_uri())
            .map_err(|e| SetupError::new(format!("the redirect URI is not a URL: {e}")))?;
        let Some(mount) = redirect.path().strip_suffix("/callback") else {
            return Err(SetupError::new(
                "the redirect URI's path must end in /callback (the route that completes the launch)",
            ));
        };
        let secure = match redirect.scheme() {
            "https" => true,
            "http" if is_loopback(&redirect) => false,
            _ => {
                return Err(SetupError::new(
                    "the redirect URI must be https (plain http on a loopback host for development only)",
                ))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                mount: mount.to_owned(),
                origin: redirect.origin().ascii_serialization(),
                secure,
                cookie_name: if secure {
                    SECURE_COOKIE_NAME
                } else {
                    DEV_COOKIE_NAME
                },
                issuers: standalone_issuers.into_iter().collect(),
                app,
            }),
        })
    }

    /// The App Launch flow.
    pub fn app_launch(&self) -> &AppLaunch {
        &self.inner.app
    }

    /// Where the routes are mounted (`""` for the root, else e.g. `/smart`).
    pub fn mount(&self) -> &str {
        &self.inner.mount
    }

    /// The page a browser without a session is sent to (`<mount>/start`).
    pub fn start_path(&self) -> String {
        format!("{}/start", self.inner.mount)
    }

    /// The name of the session cookie.
    pub fn cookie_name(&self) -> &'static str {
        self.inner.cookie_name
    }

    /// The routes, already under their mount path: `merge` them into the app's router.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let m = &self.inner.mount;
        Router::new()
            .route(&format!("{m}/launch"), get(routes::launch))
            .route(&format!("{m}/login"), get(routes::login))
            .route(&format!("{m}/callback"), get(routes::callback))
            .route(&format!("{m}/logout"), post(routes::logout))
            .route(&format!("{m}/start"), get(routes::start))
            .with_state(self.clone())
    }

    /// The browser's session id from the request's cookies: 64 lowercase hex digits or nothing.
    pub(crate) fn session_id(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == self.inner.cookie_name && is_session_id(c.value()))
            .map(|c| c.value().to_owned())
    }

    /// The `Set-Cookie` value that gives the browser `sid` (or removes it, with `None`).
    pub(crate) fn session_cookie(&self, sid: Option<&str>) -> String {
        let mut c = cookie::Cookie::build((self.inner.cookie_name, sid.unwrap_or("").to_owned()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(self.inner.secure)
            .build();
        if sid.is_none() {
            c.make_removal();
        }
        c.to_string()
    }
}

impl axum::extract::FromRef<SmartLaunch> for AppLaunch {
    fn from_ref(smart: &SmartLaunch) -> Self {
        smart.inner.app.clone()
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn is_session_id(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new session id: 256 bits from the operating system's generator, as hex.
pub(crate) fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The logout form token of a session: `SHA-256` of a label and the session id, as hex. Only a
/// page that knows the (HttpOnly) session id can carry it.
pub(crate) fn logout_token(sid: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"smart-fhir-axum logout\0");
    h.update(sid.as_bytes());
    hex(&h.finalize())
}

#[cfg(test)]
mod tests;
