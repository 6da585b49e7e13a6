//! A signed-in App Launch session: [`SessionClient`], an access-token provider that refreshes
//! itself (the refresh is in `refresh.rs`).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use smart_fhir_core::{AccessToken, Clock, FhirBaseUrl, Url};
use smart_fhir_core::{AccessTokenProvider, ProviderError, ProviderErrorKind, SharedHttpClient};
use smart_fhir_scopes::{ScopeDiff, ScopeSet};
use smart_fhir_store::SessionStore;

use crate::error::OAuthErrorCode;
use crate::launch::context::{FhirContextItem, LaunchContext};
use crate::launch::error::LaunchError;
use crate::launch::record::{Scrubbed, SESSION_KEY};
use crate::launch::shared::LaunchCore;
use crate::launch::state::SessionState;

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
    core: Arc<LaunchCore>,
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
    pub(crate) fn new(core: Arc<LaunchCore>, session_id: String, state: SessionState) -> Self {
        Self {
            inner: Arc::new(SessionInner {
                core,
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
        let cfg = &self.inner.core.config;
        let state = self.current();
        if state.usable(cfg.clock.now(), cfg.refresh_buffer) {
            return Ok(state.token.access_token.clone());
        }
        let fresh = self
            .inner
            .core
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
        let cfg = &self.inner.core.config;
        let session_id = &self.inner.session_id;
        let Ok(Some(stored)) = SessionState::load(cfg, session_id).await else {
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
            SessionState::load(cfg, session_id).await.ok().flatten()
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
        Some(&self.inner.core.config.http)
    }
}
