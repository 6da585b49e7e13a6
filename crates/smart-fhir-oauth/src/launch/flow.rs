//! The orchestrated App Launch flow: [`AppLaunch`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::json;
use smart_fhir_core::text::display_url;
use smart_fhir_core::{Clock, FhirBaseUrl, HttpClient, InsecureHttp, PkceCodeVerifier, Url};
use smart_fhir_discovery::{ClientProfile, LaunchKind, SmartConfiguration};
use smart_fhir_jwt::{Algorithm, AssertionSigner, ClientAssertion};
use smart_fhir_pkce::{Nonce, Pkce, State};
use smart_fhir_scopes::{LaunchScope, Scope, ScopeSet};
use smart_fhir_store::{LaunchContext, SessionStore, StoredToken};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::OAuthError;
use crate::id_token::IdTokenExpectations;
use crate::introspect::{revoke_with, RevocationAuth, TokenTypeHint};
use crate::launch::config::{ClientAuth, LaunchClientConfig, ASSERTION_LIFETIME};
use crate::launch::error::{LaunchError, RelaunchReason};
use crate::launch::protocol::{
    authorize_url, code_exchange_request, parse_callback, AuthorizeParams, TokenAuth,
};
use crate::launch::record::{
    digest, marker_key, parse_base, parse_endpoint, pending_key, PendingRecord, Scrubbed,
    ServerInfo, SessionRecord, SESSION_KEY, STATE_INDEX_SESSION,
};
use crate::launch::session::{Flight, SessionClient, SessionState};
use crate::token::parse_token_response;

/// The longest session id accepted.
const MAX_SESSION_ID: usize = 512;
/// The longest EHR `launch` parameter accepted (P15).
const MAX_LAUNCH_PARAM: usize = 4096;
/// The longest callback `state` looked up.
const MAX_STATE: usize = 512;

/// How the app sends the browser to the authorization server.
#[derive(Clone)]
#[non_exhaustive]
pub enum AuthorizeRequest {
    /// Redirect the browser (`303 See Other`, `Location`) to this URL.
    Redirect(Url),
    /// Serve a page that POSTs these form fields to `action` (SC-4.10): chosen when the server
    /// advertises `authorize-post` and the URL would be long. See
    /// [`AuthorizeRequest::auto_submit_html`].
    FormPost {
        /// The authorization endpoint.
        action: Url,
        /// The form fields, in order.
        fields: Vec<(String, String)>,
    },
}

impl fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL and the fields carry the state and nonce.
        match self {
            Self::Redirect(url) => f
                .debug_tuple("Redirect")
                .field(&format_args!("{}?[…]", display_url(url)))
                .finish(),
            Self::FormPost { action, fields } => f
                .debug_struct("FormPost")
                .field("action", &display_url(action))
                .field("fields", &fields.iter().map(|(k, _)| k).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl AuthorizeRequest {
    /// For [`FormPost`](Self::FormPost): a minimal HTML page that submits the form on load, with
    /// a button for when scripts are off or blocked by a content security policy. Every value
    /// is HTML-escaped. `None` for a redirect.
    pub fn auto_submit_html(&self) -> Option<String> {
        let Self::FormPost { action, fields } = self else {
            return None;
        };
        let mut html = String::from(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Signing in</title></head>\
             <body onload=\"document.forms[0].submit()\">",
        );
        html.push_str(&format!(
            "<form method=\"post\" action=\"{}\">",
            escape_html(action.as_str())
        ));
        for (name, value) in fields {
            html.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            ));
        }
        html.push_str("<button type=\"submit\">Continue</button></form></body></html>");
        Some(html)
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The outcome of a successful callback.
#[derive(Clone)]
#[non_exhaustive]
pub struct Launched {
    /// Where to send the user now: the configured landing URL, never a value from the request
    /// (SC-4.15, P10).
    pub landing_url: Url,
    /// The FHIR server the session is for (from the stored flow state, never from the
    /// callback; P2).
    pub fhir_base: FhirBaseUrl,
    /// The launch context (SC-4.20 – SC-4.23).
    pub context: LaunchContext,
    /// The scopes requested.
    pub requested_scopes: ScopeSet,
    /// The scopes granted (SC-5.13): may be narrower, broader or different; unknown scopes are
    /// left out.
    pub granted_scopes: ScopeSet,
    /// The signed-in user's FHIR resource (`fhirUser` of the verified `id_token`; SC-4.35).
    pub user: Option<Url>,
    /// When the access token expires.
    pub expires_at: SystemTime,
    /// Whether a refresh token was issued (SC-4.28).
    pub has_refresh_token: bool,
}

impl fmt::Debug for Launched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launched")
            .field("landing_url", &self.landing_url.as_str())
            .field("fhir_base", &self.fhir_base)
            .field("context", &self.context)
            .field("granted_scopes", &self.granted_scopes)
            .field("user", &self.user.as_ref().map(|_| "[present]"))
            .field("expires_at", &self.expires_at)
            .field("has_refresh_token", &self.has_refresh_token)
            .finish_non_exhaustive()
    }
}

/// The App Launch flow of a server-side web app (SMART App Launch 2.2, SC-4): EHR and
/// standalone launch, the callback with the code exchange, and signed-in sessions that refresh
/// themselves.
///
/// State lives in the configured [`SessionStore`], keyed by the application's session id
/// (typically an unguessable id in an `HttpOnly`, `Secure`, `SameSite=Lax` cookie), so any
/// number of processes can share it. One signed-in session is kept per session id: an app that
/// lets one browser launch several times at once (several EHR tabs) gives each launch its own
/// session id. Session ids are 1 to 512 bytes without control characters; the prefix
/// `smart-fhir:` is reserved.
///
/// Cheap to clone; clones share everything.
///
/// ```no_run
/// # async fn run(http: smart_fhir_core::SharedHttpClient) -> Result<(), Box<dyn std::error::Error>> {
/// use smart_fhir_core::FhirBaseUrl;
/// use smart_fhir_oauth::{AppLaunch, AuthorizeRequest, IssuerPolicy, LaunchClientConfig};
///
/// let app = AppLaunch::new(
///     LaunchClientConfig::builder()
///         .client_id("my-app")
///         .redirect_uri("https://app.example/callback")
///         .scope("launch openid fhirUser offline_access patient/*.rs")
///         .issuer_policy(IssuerPolicy::allow_list([FhirBaseUrl::parse("https://ehr.example/fhir")?]))
///         .landing_url("https://app.example/")
///         .http_client(http)
///         .build()?,
/// );
///
/// // GET /launch?iss=…&launch=… with the session cookie "s-123":
/// match app.launch("s-123", "https://ehr.example/fhir", "xyz").await? {
///     AuthorizeRequest::Redirect(url) => println!("303 to {url}"),
///     form => println!("{}", form.auto_submit_html().unwrap_or_default()),
/// }
///
/// // GET /callback?code=…&state=…:
/// let launched = app.callback("s-123", "code=abc&state=def").await?;
/// println!("patient {:?}; go to {}", launched.context.patient, launched.landing_url);
///
/// // Any later request: an access-token provider for the FHIR client.
/// let session = app.ready("s-123").await?;
/// println!("{:?}", session.patient());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AppLaunch {
    pub(crate) inner: Arc<AppInner>,
}

pub(crate) struct AppInner {
    pub(crate) config: LaunchClientConfig,
    /// Refreshes in progress in this process, by session id (single flight).
    pub(crate) flights: Mutex<HashMap<String, Arc<Flight>>>,
}

impl fmt::Debug for AppLaunch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppLaunch")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AppLaunch {
    /// The flow for this configuration.
    pub fn new(config: LaunchClientConfig) -> Self {
        Self {
            inner: Arc::new(AppInner {
                config,
                flights: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LaunchClientConfig {
        &self.inner.config
    }

    /// Starts an EHR launch (SC-4.2): `iss` and `launch` are the query parameters the EHR
    /// opened the app's launch URL with.
    ///
    /// `iss` is checked against the issuer policy before any network request (SC-4.3, P1).
    /// Then the server's SMART configuration is discovered and checked to fit this client
    /// (SC-1.13); a fresh `state`, PKCE verifier and (with `openid`) nonce are stored with the
    /// session and the issuer (SC-4.6, SC-4.8, P3, P4); and the authorize request is returned
    /// with `launch` echoed exactly (SC-4.5). `launch` is added to the scopes if missing
    /// (SC-4.9).
    pub async fn launch(
        &self,
        session_id: &str,
        iss: &str,
        launch: &str,
    ) -> Result<AuthorizeRequest, LaunchError> {
        check_session_id(session_id)?;
        check_launch_param(launch)?;
        let base = self
            .inner
            .config
            .issuers
            .check(iss, self.inner.config.insecure)?;
        self.start(session_id, base, Some(launch)).await
    }

    /// Starts a standalone launch (SC-4.4) against `fhir_base`, the server the user chose.
    /// The base is checked against the issuer policy like an EHR launch's `iss`; plain `launch`
    /// is left out of the scopes (there is no launch to name).
    pub async fn standalone(
        &self,
        session_id: &str,
        fhir_base: &str,
    ) -> Result<AuthorizeRequest, LaunchError> {
        check_session_id(session_id)?;
        let base = self
            .inner
            .config
            .issuers
            .check(fhir_base, self.inner.config.insecure)?;
        self.start(session_id, base, None).await
    }

    async fn start(
        &self,
        session_id: &str,
        base: FhirBaseUrl,
        launch: Option<&str>,
    ) -> Result<AuthorizeRequest, LaunchError> {
        let cfg = &self.inner.config;
        let server = cfg
            .discovery
            .get(&base)
            .await
            .map_err(LaunchError::Discovery)?;
        let authorization_endpoint = server
            .require_authorization_endpoint()
            .map_err(LaunchError::Discovery)?
            .clone();
        let algorithm = self.check_fit(&server, launch.is_some())?;
        let scope = self.scope_for(&server, launch.is_some())?;

        let state = State::generate().map_err(LaunchError::Random)?;
        let pkce = Pkce::new().map_err(LaunchError::Random)?;
        let nonce = if scope.has_openid() {
            Some(Nonce::generate().map_err(LaunchError::Random)?)
        } else {
            None
        };
        let scope_text = scope.to_string();
        let session_hash = digest(session_id);
        let record = PendingRecord {
            v: 1,
            state: Zeroizing::new(state.as_str().to_owned()),
            session: session_hash.clone(),
            fhir_base: base.as_str().to_owned(),
            insecure_loopback: base.insecure_http() == InsecureHttp::AllowLoopback,
            issuer: server.issuer().map(str::to_owned),
            iss_required: server
                .extra()
                .get("authorization_response_iss_parameter_supported")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            token_endpoint: server.token_endpoint_as_advertised().to_owned(),
            revocation_endpoint: server.revocation_endpoint().map(|u| u.to_string()),
            algorithm: algorithm.map(|a| a.to_string()),
            verifier: Zeroizing::new(pkce.verifier().secret().to_owned()),
            nonce: nonce
                .as_ref()
                .map(|n| Zeroizing::new(n.as_str().to_owned())),
            scope: scope_text.clone(),
            redirect_uri: cfg.redirect_uri.clone(),
        };
        let store = &cfg.store;
        store
            .put(
                session_id,
                &pending_key(state.as_str()),
                record.to_value()?,
                cfg.pending_ttl,
            )
            .await
            .map_err(LaunchError::Store)?;
        store
            .put(
                STATE_INDEX_SESSION,
                &marker_key(state.as_str()),
                json!({ "session": session_hash }),
                cfg.pending_ttl,
            )
            .await
            .map_err(LaunchError::Store)?;

        let mut params = AuthorizeParams::new(
            authorization_endpoint,
            cfg.client_id.clone(),
            cfg.redirect_uri.clone(),
            scope_text,
            &state,
            &base,
            pkce.challenge().clone(),
        );
        if let Some(launch) = launch {
            params = params.launch(launch);
        }
        if let Some(nonce) = &nonce {
            params = params.nonce(nonce);
        }
        let url = authorize_url(&params);
        if server.supports_authorize_post() && url.as_str().len() > cfg.authorize_post_threshold {
            return Ok(AuthorizeRequest::FormPost {
                action: params.authorization_endpoint().clone(),
                fields: params
                    .fields()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            });
        }
        Ok(AuthorizeRequest::Redirect(url))
    }

    /// The fit check (SC-1.13) and, for `private_key_jwt`, the signing algorithm.
    fn check_fit(
        &self,
        server: &SmartConfiguration,
        ehr: bool,
    ) -> Result<Option<Algorithm>, LaunchError> {
        let cfg = &self.inner.config;
        let first = cfg.algorithms.first().copied();
        if cfg.skip_fit_check {
            return Ok(first);
        }
        let kind = if ehr {
            LaunchKind::Ehr
        } else {
            LaunchKind::Standalone
        };
        let profile = ClientProfile::authorization_code(cfg.auth_method()).launch(kind);
        let fit = server.check_fit(&profile).map_err(LaunchError::Unfit)?;
        Ok(fit
            .signing_algorithm
            .and_then(|name| cfg.algorithms.iter().copied().find(|a| a.as_str() == name))
            .or(first))
    }

    /// The scopes to send: `launch` added for an EHR launch, removed for a standalone one
    /// (SC-4.9); v1 syntax when the server only knows v1 (SC-1.14).
    fn scope_for(&self, server: &SmartConfiguration, ehr: bool) -> Result<ScopeSet, LaunchError> {
        let mut scopes = self.inner.config.scopes.clone();
        let launch = Scope::Launch(LaunchScope::Ehr);
        if ehr {
            scopes.insert(launch);
        } else {
            scopes.remove(&launch);
        }
        if server.prefers_v1_scopes() {
            scopes = scopes.to_v1().map_err(|e| LaunchError::Scopes {
                reason: e.to_string(),
            })?;
        }
        if scopes.is_empty() {
            return Err(LaunchError::Scopes {
                reason: "no scope left to request".to_owned(),
            });
        }
        Ok(scopes)
    }

    /// Completes the authorization when the browser comes back to the redirect URI; `query` is
    /// the raw query string of that request.
    ///
    /// In order: the `state` is looked up, consumed and compared in constant time — once only,
    /// and only in the session that started the flow (SC-4.13, P3); an RFC 9207 `iss` must be
    /// the authorization server's issuer (SC-4.17, P2); an error callback becomes
    /// [`LaunchError::AuthorizationDenied`] (SC-4.14); the code is exchanged with the stored
    /// PKCE verifier and the client's authentication at the stored token endpoint (SC-4.18);
    /// the token response and launch context are read whole (SC-4.19 – SC-4.23); an `id_token`
    /// is verified with the stored nonce (SC-4.33 – SC-4.35). The session is then stored and
    /// the configured landing URL returned (P10).
    pub async fn callback(&self, session_id: &str, query: &str) -> Result<Launched, LaunchError> {
        check_session_id(session_id)?;
        let cfg = &self.inner.config;
        let cb = parse_callback(query)?;
        let state = cb
            .state
            .as_ref()
            .ok_or_else(|| LaunchError::InvalidCallback {
                reason: "the `state` parameter is missing".to_owned(),
            })?;
        let pending = self.take_pending(session_id, state).await?;

        // RFC 9207: the issuer of the response is the authorization server's; the FHIR base
        // always comes from the stored record (P2).
        match (&cb.iss, &pending.issuer) {
            (Some(got), Some(expected)) if got == expected => {}
            (Some(got), expected) => {
                return Err(LaunchError::IssuerMismatch {
                    expected: expected.clone(),
                    got: Some(crate::error::excerpt(got.as_bytes())),
                })
            }
            (None, expected) if pending.iss_required => {
                return Err(LaunchError::IssuerMismatch {
                    expected: expected.clone(),
                    got: None,
                })
            }
            (None, _) => {}
        }
        if let Some(error) = &cb.error {
            return Err(LaunchError::denied(
                error,
                cb.error_description.as_deref(),
                cb.error_uri.as_deref(),
            ));
        }
        let code = cb
            .code
            .as_ref()
            .filter(|c| !c.secret().is_empty())
            .ok_or_else(|| LaunchError::InvalidCallback {
                reason: "the `code` parameter is missing".to_owned(),
            })?;

        let base = parse_base(&pending.fhir_base, pending.insecure_loopback)?;
        let token_endpoint = parse_endpoint(&pending.token_endpoint, pending.insecure_loopback)?;
        let algorithm = pending
            .algorithm
            .as_deref()
            .and_then(|a| a.parse::<Algorithm>().ok());
        let verifier = PkceCodeVerifier::new(pending.verifier.as_str());
        let assertion = self.assertion(&pending.token_endpoint, algorithm)?;
        let request = code_exchange_request(
            &token_endpoint,
            code,
            &pending.redirect_uri,
            &verifier,
            self.token_auth(assertion.as_ref()),
        )
        .map_err(LaunchError::Token)?;
        drop(assertion);
        let token = send_token_request(&cfg.http, request, cfg.clock.now(), &pending.scope).await?;

        let context = LaunchContext::from_token_fields(&token.launch_context, base.insecure_http());
        if context.has_identity_issues() {
            return Err(LaunchError::InvalidLaunchContext {
                issues: context.issues.clone(),
            });
        }
        let user = match &token.id_token {
            Some(id_token) => {
                let issuer = pending
                    .issuer
                    .as_deref()
                    .ok_or(LaunchError::IdTokenUnverifiable {
                        reason: "the server's SMART configuration names no issuer",
                    })?;
                let expected = IdTokenExpectations {
                    issuer,
                    client_id: &cfg.client_id,
                    nonce: pending.nonce.as_ref().map(|n| n.as_str()),
                    fhir_base: &base,
                };
                let claims = cfg
                    .id_tokens
                    .verify(id_token, &expected)
                    .await
                    .map_err(LaunchError::IdToken)?;
                claims.fhir_user
            }
            None => None,
        };

        let server = ServerInfo {
            issuer: pending.issuer.clone(),
            token_endpoint: pending.token_endpoint.clone(),
            revocation_endpoint: pending.revocation_endpoint.clone(),
            algorithm: pending.algorithm.clone(),
        };
        let record = SessionRecord::new(
            &token,
            &base,
            server,
            pending.scope.clone(),
            user.as_ref().map(|u| u.to_string()),
        )?;
        cfg.store
            .put(session_id, SESSION_KEY, record.to_value()?, cfg.session_ttl)
            .await
            .map_err(LaunchError::Store)?;

        Ok(Launched {
            landing_url: cfg.landing_url.clone(),
            fhir_base: base,
            requested_scopes: ScopeSet::parse_lenient(&pending.scope).into_scopes(),
            granted_scopes: ScopeSet::parse_lenient(token.scope.as_deref().unwrap_or(""))
                .into_scopes(),
            context,
            user,
            expires_at: token.expires_at,
            has_refresh_token: token.refresh_token.is_some(),
        })
    }

    /// Finds and consumes the authorization in flight that `state` names, in this session.
    async fn take_pending(
        &self,
        session_id: &str,
        state: &str,
    ) -> Result<PendingRecord, LaunchError> {
        if state.is_empty() || state.len() > MAX_STATE {
            return Err(LaunchError::UnknownState);
        }
        let store = &self.inner.config.store;
        let session_hash = digest(session_id);
        let marker = marker_key(state);
        let Some(value) = store
            .take(session_id, &pending_key(state))
            .await
            .map_err(LaunchError::Store)?
        else {
            // Not in this session: tell a state of another session from an unknown one.
            let owner = store
                .get(STATE_INDEX_SESSION, &marker)
                .await
                .map_err(LaunchError::Store)?;
            let other = owner
                .as_ref()
                .and_then(|o| o.get("session"))
                .and_then(serde_json::Value::as_str)
                .is_some_and(|owner| !bool::from(owner.as_bytes().ct_eq(session_hash.as_bytes())));
            return Err(if other {
                LaunchError::StateMismatch
            } else {
                LaunchError::UnknownState
            });
        };
        // The marker has done its job; if it cannot be removed it expires by itself.
        let _ = store.delete(STATE_INDEX_SESSION, &marker).await;
        let mut value = value;
        let record = PendingRecord::from_value(&value);
        crate::launch::record::scrub(&mut value);
        let record = record?;
        // The key is a hash of the state; compare the state itself too, in constant time.
        if !bool::from(record.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(LaunchError::UnknownState);
        }
        if !bool::from(record.session.as_bytes().ct_eq(session_hash.as_bytes())) {
            return Err(LaunchError::StateMismatch);
        }
        Ok(record)
    }

    /// A fresh client assertion for `private_key_jwt` (SC-2.11), `aud` = the token endpoint as
    /// the server advertised it (SC-2.10, P8); `None` for other methods.
    pub(crate) fn assertion(
        &self,
        token_endpoint: &str,
        algorithm: Option<Algorithm>,
    ) -> Result<Option<ClientAssertion>, LaunchError> {
        let cfg = &self.inner.config;
        let ClientAuth::PrivateKeyJwt { key, kid, jku, .. } = &cfg.auth else {
            return Ok(None);
        };
        let alg = algorithm
            .filter(|a| cfg.algorithms.contains(a))
            .or_else(|| cfg.algorithms.first().copied())
            .ok_or_else(|| LaunchError::config("client_auth", "no signing algorithm"))?;
        let mut builder = AssertionSigner::builder(key, alg).insecure_http(cfg.insecure);
        if let Some(kid) = kid {
            builder = builder.kid(kid.clone());
        }
        if let Some(jku) = jku {
            builder = builder.jku(jku.clone());
        }
        let signer = builder.build().map_err(LaunchError::Assertion)?;
        signer
            .sign(
                &cfg.client_id,
                token_endpoint,
                ASSERTION_LIFETIME,
                cfg.clock.now(),
            )
            .map(Some)
            .map_err(LaunchError::Assertion)
    }

    /// The token-request authentication of this client.
    pub(crate) fn token_auth<'a>(
        &'a self,
        assertion: Option<&'a ClientAssertion>,
    ) -> TokenAuth<'a> {
        let cfg = &self.inner.config;
        match (&cfg.auth, assertion) {
            (ClientAuth::ClientSecretBasic(secret), _) => TokenAuth::ClientSecretBasic {
                client_id: &cfg.client_id,
                secret,
            },
            (ClientAuth::ClientSecretPost(secret), _) => TokenAuth::ClientSecretPost {
                client_id: &cfg.client_id,
                secret,
            },
            (ClientAuth::PrivateKeyJwt { .. }, Some(assertion)) => {
                TokenAuth::PrivateKeyJwt { assertion }
            }
            _ => TokenAuth::Public {
                client_id: &cfg.client_id,
            },
        }
    }

    /// The signed-in session of `session_id`: an access-token provider for the FHIR client that
    /// refreshes itself, with the launch context. Fails with
    /// [`LaunchError::RelaunchNeeded`] when there is none.
    pub async fn ready(&self, session_id: &str) -> Result<SessionClient, LaunchError> {
        check_session_id(session_id)?;
        let state = SessionState::load(self, session_id)
            .await?
            .ok_or(LaunchError::RelaunchNeeded(RelaunchReason::NoSession))?;
        Ok(SessionClient::new(
            self.clone(),
            session_id.to_owned(),
            state,
        ))
    }

    /// Signs the session out: deletes everything stored under `session_id` (tokens and any
    /// authorization in flight), then, when the server has a `revocation_endpoint`, revokes the
    /// refresh token and the access token there (SC-6.5, SC-6.6; RFC 7009) with the client's
    /// authentication.
    ///
    /// The session is gone locally whatever the revocation's outcome; an error after that is
    /// [`LaunchError::Revocation`] (the tokens may stay valid at the server until they expire).
    pub async fn logout(&self, session_id: &str) -> Result<(), LaunchError> {
        check_session_id(session_id)?;
        let cfg = &self.inner.config;
        let stored = cfg
            .store
            .get(session_id, SESSION_KEY)
            .await
            .map_err(LaunchError::Store)?
            .map(Scrubbed);
        cfg.store
            .delete_session(session_id)
            .await
            .map_err(LaunchError::Store)?;
        let Some(stored) = stored else {
            return Ok(());
        };
        let record = SessionRecord::from_value(&stored.0)?;
        let Some(endpoint) = record.revocation_endpoint() else {
            return Ok(());
        };
        let token = record.stored_token()?;
        let server = record.server();
        let algorithm = server.algorithm.as_deref().and_then(|a| a.parse().ok());
        let mut revocations = Vec::new();
        if let Some(refresh) = &token.refresh_token {
            revocations.push((refresh.secret(), TokenTypeHint::RefreshToken));
        }
        revocations.push((token.access_token.secret(), TokenTypeHint::AccessToken));
        for (secret, hint) in revocations {
            let auth = self.revocation_auth(&server.token_endpoint, algorithm)?;
            revoke_with(&cfg.http, &endpoint, secret, hint, &auth, cfg.insecure)
                .await
                .map_err(LaunchError::Revocation)?;
        }
        Ok(())
    }

    /// The client's authentication at the revocation endpoint: as at the token endpoint (RFC
    /// 7009 §2.1), with a fresh assertion for each request.
    fn revocation_auth(
        &self,
        token_endpoint: &str,
        algorithm: Option<Algorithm>,
    ) -> Result<RevocationAuth, LaunchError> {
        let cfg = &self.inner.config;
        let client_id = cfg.client_id.clone();
        Ok(match &cfg.auth {
            ClientAuth::Public => RevocationAuth::Public { client_id },
            ClientAuth::ClientSecretBasic(secret) => RevocationAuth::Basic {
                client_id,
                secret: secret.clone(),
            },
            ClientAuth::ClientSecretPost(secret) => RevocationAuth::Post {
                client_id,
                secret: secret.clone(),
            },
            ClientAuth::PrivateKeyJwt { .. } => match self.assertion(token_endpoint, algorithm)? {
                Some(assertion) => RevocationAuth::PrivateKeyJwt {
                    client_id,
                    assertion,
                },
                None => RevocationAuth::Public { client_id },
            },
        })
    }
}

/// Sends a token request and reads the response (no redirects followed).
pub(crate) async fn send_token_request(
    http: &dyn HttpClient,
    request: http::Request<Bytes>,
    now_before: SystemTime,
    requested_scope: &str,
) -> Result<StoredToken, LaunchError> {
    let response = http
        .execute(request)
        .await
        .map_err(|e| LaunchError::Token(OAuthError::Http(e)))?;
    if response.status().is_redirection() {
        return Err(LaunchError::Token(OAuthError::Status {
            status: response.status().as_u16(),
            excerpt: "the token endpoint redirected; redirects are not followed for token requests"
                .to_owned(),
        }));
    }
    // Expiry is counted from before the request was sent, so it is never later than the
    // server's.
    parse_token_response(response, now_before, requested_scope)
        .map(|r| r.token)
        .map_err(LaunchError::Token)
}

fn check_session_id(session_id: &str) -> Result<(), LaunchError> {
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID {
        return Err(LaunchError::input(
            "session id",
            format!("must be 1 to {MAX_SESSION_ID} bytes"),
        ));
    }
    if session_id.chars().any(char::is_control) {
        return Err(LaunchError::input(
            "session id",
            "contains control characters",
        ));
    }
    if session_id.starts_with("smart-fhir:") {
        return Err(LaunchError::input(
            "session id",
            "the prefix `smart-fhir:` is reserved",
        ));
    }
    Ok(())
}

fn check_launch_param(launch: &str) -> Result<(), LaunchError> {
    if launch.is_empty() || launch.len() > MAX_LAUNCH_PARAM {
        return Err(LaunchError::input(
            "launch parameter",
            format!("must be 1 to {MAX_LAUNCH_PARAM} bytes"),
        ));
    }
    if launch.chars().any(char::is_control) {
        return Err(LaunchError::input(
            "launch parameter",
            "contains control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_page_escapes_values() {
        let req = AuthorizeRequest::FormPost {
            action: Url::parse("https://as.example/authorize?a=1&b=2").unwrap(),
            fields: vec![("scope".into(), "\"><script>x</script>".into())],
        };
        let html = req.auto_submit_html().unwrap();
        assert!(html.contains("action=\"https://as.example/authorize?a=1&amp;b=2\""));
        assert!(html.contains("&quot;&gt;&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(
            AuthorizeRequest::Redirect(Url::parse("https://x.example").unwrap())
                .auto_submit_html()
                .is_none()
        );
    }

    #[test]
    fn debug_hides_state() {
        let req = AuthorizeRequest::Redirect(
            Url::parse("https://as.example/authorize?state=SECRET-STATE").unwrap(),
        );
        assert!(!format!("{req:?}").contains("SECRET-STATE"));
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(check_session_id("abc").is_ok());
        assert!(check_session_id("").is_err());
        assert!(check_session_id("a\nb").is_err());
        assert!(check_session_id("smart-fhir:launch:states").is_err());
        assert!(check_session_id(&"a".repeat(513)).is_err());
    }
}
