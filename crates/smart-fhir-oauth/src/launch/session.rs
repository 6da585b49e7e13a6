//! A signed-in App Launch session: [`SessionClient`], with refresh, single flight and
//! refresh-token rotation (SC-4.28 – SC-4.32, P12).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::{json, Value};
use smart_fhir_core::{AccessToken, Clock, FhirBaseUrl, RefreshToken, Url};
use smart_fhir_core::{AccessTokenProvider, ProviderError, ProviderErrorKind, SharedHttpClient};
use smart_fhir_jwt::Algorithm;
use smart_fhir_pkce::State;
use smart_fhir_scopes::{ScopeDiff, ScopeSet};
use smart_fhir_store::{FhirContextItem, LaunchContext, SessionStore, StoredToken};
use tokio::sync::OnceCell;

use crate::error::{OAuthError, OAuthErrorCode};
use crate::launch::error::{LaunchError, RelaunchReason};
use crate::launch::flow::{send_token_request, AppLaunch};
use crate::launch::protocol::refresh_request;
use crate::launch::record::{Scrubbed, ServerInfo, SessionRecord, LEASE_KEY, SESSION_KEY};

/// One refresh shared by every caller of a session that arrives while it runs.
#[derive(Default)]
pub(crate) struct Flight {
    result: OnceCell<Result<Arc<SessionState>, Arc<LaunchError>>>,
}

/// A session as read from the store.
pub(crate) struct SessionState {
    /// The stored value exactly as read, for compare-and-swap.
    raw: Scrubbed,
    token: StoredToken,
    fhir_base: FhirBaseUrl,
    token_endpoint: Url,
    server: ServerInfo,
    algorithm: Option<Algorithm>,
    requested_scope: String,
    user: Option<Url>,
    user_text: Option<String>,
    context: LaunchContext,
    granted: ScopeSet,
    requested: ScopeSet,
}

impl SessionState {
    fn from_value(value: Value) -> Result<Self, LaunchError> {
        let raw = Scrubbed(value);
        let record = SessionRecord::from_value(&raw.0)?;
        let token = record.stored_token()?;
        let fhir_base = record.fhir_base()?;
        let context =
            LaunchContext::from_token_fields(&token.launch_context, fhir_base.insecure_http());
        Ok(Self {
            token_endpoint: record.token_endpoint()?,
            server: record.server(),
            algorithm: record
                .algorithm
                .as_deref()
                .and_then(|a| a.parse::<Algorithm>().ok()),
            requested_scope: record.requested_scope.clone(),
            user: record.user(),
            user_text: record.user.clone(),
            granted: ScopeSet::parse_lenient(token.scope.as_deref().unwrap_or("")).into_scopes(),
            requested: ScopeSet::parse_lenient(&record.requested_scope).into_scopes(),
            context,
            fhir_base,
            token,
            raw,
        })
    }

    /// The session of `session_id`, if one is stored.
    pub(crate) async fn load(
        app: &AppLaunch,
        session_id: &str,
    ) -> Result<Option<Self>, LaunchError> {
        let value = app
            .inner
            .config
            .store
            .get(session_id, SESSION_KEY)
            .await
            .map_err(LaunchError::Store)?;
        value.map(Self::from_value).transpose()
    }

    /// This session with `token` in place of the current one, as a stored value.
    fn with_token(&self, token: &StoredToken) -> Result<Value, LaunchError> {
        SessionRecord::new(
            token,
            &self.fhir_base,
            self.server.clone(),
            self.requested_scope.clone(),
            self.user_text.clone(),
        )?
        .to_value()
    }

    fn usable(&self, now: SystemTime, buffer: Duration) -> bool {
        let lifetime = self
            .token
            .expires_at
            .duration_since(self.token.issued_at)
            .unwrap_or(Duration::ZERO);
        !self.token.expires_within(now, buffer.min(lifetime / 2))
    }

    fn same_refresh_token(&self, other: &RefreshToken) -> bool {
        self.token
            .refresh_token
            .as_ref()
            .is_some_and(|t| t.ct_eq(other.secret()))
    }
}

/// A signed-in App Launch session: an [`AccessTokenProvider`] for the FHIR client, with the
/// launch context and the signed-in user.
///
/// * The access token is refreshed a buffer before it expires (SC-4.29) with the client's
///   authentication; a public client sends its `client_id` (SC-4.30).
/// * One refresh per session at a time in this process, however many callers wait (single
///   flight), and across processes a lease in the session store.
/// * A rotated refresh token replaces the old one atomically in the store
///   ([`SessionStore::compare_and_swap`]); the old one is never sent again (SC-4.32, P12).
/// * Launch context in a refresh response replaces the stored one (SC-4.31).
/// * With no refresh token, or one the server refuses (`invalid_grant`), the error is
///   [`ProviderErrorKind::RelaunchNeeded`] / [`LaunchError::RelaunchNeeded`]; a refused
///   session is deleted.
///
/// Cheap to clone. `Debug` shows no token and no patient data.
#[derive(Clone)]
pub struct SessionClient {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    app: AppLaunch,
    session_id: String,
    /// The session's FHIR server, fixed at launch (refreshes never change it).
    fhir_base: FhirBaseUrl,
    state: RwLock<Arc<SessionState>>,
}

impl fmt::Debug for SessionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.current();
        f.debug_struct("SessionClient")
            .field("fhir_base", &state.fhir_base)
            .field("token", &state.token)
            .field("context", &state.context)
            .finish_non_exhaustive()
    }
}

impl SessionClient {
    pub(crate) fn new(app: AppLaunch, session_id: String, state: SessionState) -> Self {
        Self {
            inner: Arc::new(SessionInner {
                app,
                session_id,
                fhir_base: state.fhir_base.clone(),
                state: RwLock::new(Arc::new(state)),
            }),
        }
    }

    fn current(&self) -> Arc<SessionState> {
        Arc::clone(&self.inner.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_current(&self, state: Arc<SessionState>) {
        *self.inner.state.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The FHIR server of this session.
    pub fn fhir_base(&self) -> FhirBaseUrl {
        self.inner.fhir_base.clone()
    }

    /// The whole launch context.
    pub fn context(&self) -> LaunchContext {
        self.current().context.clone()
    }

    /// The id of the patient in context.
    pub fn patient(&self) -> Option<String> {
        self.current().context.patient.clone()
    }

    /// The id of the encounter in context.
    pub fn encounter(&self) -> Option<String> {
        self.current().context.encounter.clone()
    }

    /// The `fhirContext` items (SC-4.21).
    pub fn fhir_context(&self) -> Vec<FhirContextItem> {
        self.current().context.fhir_context.clone()
    }

    /// Whether the app must show a patient banner.
    pub fn need_patient_banner(&self) -> Option<bool> {
        self.current().context.need_patient_banner
    }

    /// The signed-in user's FHIR resource (`fhirUser` of the verified `id_token`; SC-4.35).
    pub fn user(&self) -> Option<Url> {
        self.current().user.clone()
    }

    /// The scopes granted with the current token (SC-5.13).
    pub fn granted_scopes(&self) -> ScopeSet {
        self.current().granted.clone()
    }

    /// The scopes requested at launch.
    pub fn requested_scopes(&self) -> ScopeSet {
        self.current().requested.clone()
    }

    /// How the granted scopes differ from the requested ones (SC-5.13).
    pub fn scope_difference(&self) -> ScopeDiff {
        let state = self.current();
        state.requested.difference(&state.granted)
    }

    /// When the current access token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.current().token.expires_at
    }

    /// A usable access token, refreshed first when it is about to expire.
    pub async fn access_token(&self) -> Result<AccessToken, LaunchError> {
        let cfg = &self.inner.app.inner.config;
        let state = self.current();
        if state.usable(cfg.clock.now(), cfg.refresh_buffer) {
            return Ok(state.token.access_token.clone());
        }
        let fresh = self
            .inner
            .app
            .refresh_shared(&self.inner.session_id)
            .await?;
        let token = fresh.token.access_token.clone();
        self.set_current(fresh);
        Ok(token)
    }

    /// Reports that the FHIR server refused `token`: it is marked expired in the store (if it is
    /// still the session's token), so the next [`access_token`](Self::access_token) refreshes.
    /// A report about a token already replaced changes nothing but this client's copy.
    pub async fn token_rejected(&self, token: &AccessToken) {
        let app = &self.inner.app;
        let cfg = &app.inner.config;
        let session_id = &self.inner.session_id;
        let Ok(Some(stored)) = SessionState::load(app, session_id).await else {
            return;
        };
        if !stored.token.access_token.ct_eq(token.secret()) {
            // Refreshed meanwhile: catch up if this client still holds the refused token.
            if self.current().token.access_token.ct_eq(token.secret()) {
                self.set_current(Arc::new(stored));
            }
            return;
        }
        let mut expired = stored.token.clone();
        expired.expires_at = expired.issued_at;
        let Ok(new) = stored.with_token(&expired).map(Scrubbed) else {
            return;
        };
        // Compare-and-swap: a token refreshed meanwhile stays.
        let swapped = cfg
            .store
            .compare_and_swap(
                session_id,
                SESSION_KEY,
                Some(&stored.raw.0),
                new.0.clone(),
                cfg.session_ttl,
            )
            .await
            .unwrap_or(false);
        let latest = if swapped {
            SessionState::from_value(new.0.clone()).ok()
        } else {
            SessionState::load(app, session_id).await.ok().flatten()
        };
        if let Some(latest) = latest {
            self.set_current(Arc::new(latest));
        }
    }
}

#[async_trait]
impl AccessTokenProvider for SessionClient {
    async fn access_token(&self) -> Result<AccessToken, ProviderError> {
        SessionClient::access_token(self).await.map_err(|e| {
            let kind = if e.is_relaunch_needed() {
                ProviderErrorKind::RelaunchNeeded
            } else if matches!(
                e.oauth_code(),
                Some(OAuthErrorCode::InvalidClient | OAuthErrorCode::UnauthorizedClient)
            ) {
                ProviderErrorKind::Rejected
            } else {
                ProviderErrorKind::Unavailable
            };
            ProviderError::new(kind, "cannot get an App Launch access token").with_source(e)
        })
    }

    async fn token_rejected(&self, token: &AccessToken) {
        SessionClient::token_rejected(self, token).await;
    }

    fn fhir_base(&self) -> Option<&FhirBaseUrl> {
        Some(&self.inner.fhir_base)
    }

    fn http_client(&self) -> Option<&SharedHttpClient> {
        Some(&self.inner.app.inner.config.http)
    }
}

impl AppLaunch {
    /// A refresh of `session_id`, shared by every caller in this process that asks while it
    /// runs.
    async fn refresh_shared(&self, session_id: &str) -> Result<Arc<SessionState>, LaunchError> {
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(session_id.to_owned()).or_default().clone()
        };
        // `get_or_init` runs one initialiser at a time; if the caller running it is cancelled,
        // the next waiter takes over.
        let result = flight
            .result
            .get_or_init(|| async {
                // The refresh runs in a task of its own: a caller that gives up (a dropped
                // request) must not abandon a refresh whose new refresh token the server may
                // already have issued, nor leave the store lease held until it expires (P12).
                let app = self.clone();
                let session = session_id.to_owned();
                match tokio::spawn(async move { app.refresh(&session).await }).await {
                    Ok(result) => result.map(Arc::new).map_err(Arc::new),
                    Err(_) => Err(Arc::new(LaunchError::RefreshInterrupted)),
                }
            })
            .await
            .clone();
        {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            if flights
                .get(session_id)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                flights.remove(session_id);
            }
        }
        result.map_err(LaunchError::Shared)
    }

    /// Gets a usable session: the stored one when another caller or process refreshed it
    /// already, else a refresh under the store's lease.
    async fn refresh(&self, session_id: &str) -> Result<SessionState, LaunchError> {
        let cfg = &self.inner.config;
        let deadline = cfg.refresh_timeout;
        match tokio::time::timeout(deadline, self.refresh_inner(session_id)).await {
            Ok(result) => result,
            Err(_) => Err(LaunchError::Token(OAuthError::Timeout(deadline))),
        }
    }

    async fn refresh_inner(&self, session_id: &str) -> Result<SessionState, LaunchError> {
        let cfg = &self.inner.config;
        let store = &cfg.store;
        let mut step = Duration::from_millis(25);
        loop {
            let state = SessionState::load(self, session_id)
                .await?
                .ok_or(LaunchError::RelaunchNeeded(RelaunchReason::NoSession))?;
            if state.usable(cfg.clock.now(), cfg.refresh_buffer) {
                return Ok(state);
            }
            if state.token.refresh_token.is_none() {
                return Err(LaunchError::RelaunchNeeded(RelaunchReason::NoRefreshToken));
            }
            // Cross-process single flight: whoever holds the lease refreshes; the others wait
            // for its result in the store. A holder that dies leaves a lease that expires.
            let holder = State::generate().map_err(LaunchError::Random)?;
            let lease = json!({ "holder": holder.as_str() });
            let acquired = store
                .compare_and_swap(
                    session_id,
                    LEASE_KEY,
                    None,
                    lease.clone(),
                    cfg.refresh_timeout,
                )
                .await
                .map_err(LaunchError::Store)?;
            if !acquired {
                tokio::time::sleep(step).await;
                step = (step * 2).min(Duration::from_millis(500));
                continue;
            }
            let result = self.refresh_holding_lease(session_id).await;
            // Release the lease only if it is still ours; a zero time-to-live removes it.
            let _ = store
                .compare_and_swap(
                    session_id,
                    LEASE_KEY,
                    Some(&lease),
                    Value::Null,
                    Duration::ZERO,
                )
                .await;
            return result;
        }
    }

    async fn refresh_holding_lease(&self, session_id: &str) -> Result<SessionState, LaunchError> {
        let cfg = &self.inner.config;
        let store = &cfg.store;
        // Read again under the lease: the previous holder may have just stored a new token.
        let state = SessionState::load(self, session_id)
            .await?
            .ok_or(LaunchError::RelaunchNeeded(RelaunchReason::NoSession))?;
        if state.usable(cfg.clock.now(), cfg.refresh_buffer) {
            return Ok(state);
        }
        let Some(refresh_token) = state.token.refresh_token.clone() else {
            return Err(LaunchError::RelaunchNeeded(RelaunchReason::NoRefreshToken));
        };
        let assertion = self.assertion(&state.server.token_endpoint, state.algorithm)?;
        let request = refresh_request(
            &state.token_endpoint,
            &refresh_token,
            None,
            self.token_auth(assertion.as_ref()),
        )
        .map_err(LaunchError::Token)?;
        drop(assertion);
        let previous_scope = state.token.scope.clone().unwrap_or_default();
        let response =
            send_token_request(&cfg.http, request, cfg.clock.now(), &previous_scope).await;
        let mut token = match response {
            Ok(token) => token,
            Err(e) if e.oauth_code() == Some(&OAuthErrorCode::InvalidGrant) => {
                return self.refused(session_id, &state, &refresh_token).await;
            }
            Err(e) => return Err(e),
        };
        // No new refresh token: the old one stays valid (RFC 6749 §6). The identity stays that
        // of the verified launch: an id_token in a refresh response is not used.
        if token.refresh_token.is_none() {
            token.refresh_token = Some(refresh_token.clone());
        }
        token.id_token = state.token.id_token.clone();
        // A refresh response may carry the launch context again (SC-4.31); when it carries
        // none, or none that names its resources readably, the launch's context stays. A member
        // it leaves out keeps its launch value: absent context is not withdrawn context (SC-4.23).
        let context = LaunchContext::from_token_fields(
            &token.launch_context,
            state.fhir_base.insecure_http(),
        );
        if token.launch_context.is_empty() || context.has_identity_issues() {
            token.launch_context = state.token.launch_context.clone();
        } else {
            let mut merged = state.token.launch_context.clone();
            merged.extend(std::mem::take(&mut token.launch_context));
            token.launch_context = merged;
        }
        let new = Scrubbed(state.with_token(&token)?);
        let swapped = store
            .compare_and_swap(
                session_id,
                SESSION_KEY,
                Some(&state.raw.0),
                new.0.clone(),
                cfg.session_ttl,
            )
            .await
            .map_err(LaunchError::Store)?;
        if swapped {
            return SessionState::from_value(new.0.clone());
        }
        // The session changed while the lease was held (a new launch, a sign-out, a lease that
        // expired): never resurrect it, and never keep two refresh tokens.
        let current = SessionState::load(self, session_id)
            .await?
            .ok_or(LaunchError::RelaunchNeeded(RelaunchReason::NoSession))?;
        if current.usable(cfg.clock.now(), cfg.refresh_buffer) {
            return Ok(current);
        }
        if current.same_refresh_token(&refresh_token)
            && store
                .compare_and_swap(
                    session_id,
                    SESSION_KEY,
                    Some(&current.raw.0),
                    new.0.clone(),
                    cfg.session_ttl,
                )
                .await
                .map_err(LaunchError::Store)?
        {
            return SessionState::from_value(new.0.clone());
        }
        Err(LaunchError::Store(
            smart_fhir_store::StoreError::backend_message("the session changed during a refresh"),
        ))
    }

    /// The server refused the refresh token. If another process rotated it meanwhile, use its
    /// result; otherwise the session is dead: delete it (if unchanged) and ask for a relaunch.
    async fn refused(
        &self,
        session_id: &str,
        state: &SessionState,
        sent: &RefreshToken,
    ) -> Result<SessionState, LaunchError> {
        let cfg = &self.inner.config;
        if let Some(current) = SessionState::load(self, session_id).await? {
            if !current.same_refresh_token(sent)
                && current.usable(cfg.clock.now(), cfg.refresh_buffer)
            {
                return Ok(current);
            }
        }
        let _ = cfg
            .store
            .compare_and_swap(
                session_id,
                SESSION_KEY,
                Some(&state.raw.0),
                Value::Null,
                Duration::ZERO,
            )
            .await;
        Err(LaunchError::RelaunchNeeded(RelaunchReason::RefreshRefused))
    }
}
