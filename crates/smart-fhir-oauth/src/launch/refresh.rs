//! Refreshing a session: single flight in the process, a lease in the store across processes,
//! and refresh-token rotation (SC-4.29 – SC-4.32, P12).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use smart_fhir_core::Clock;
use smart_fhir_core::RefreshToken;
use smart_fhir_pkce::State;
use smart_fhir_store::SessionStore;

use crate::error::{OAuthError, OAuthErrorCode};
use crate::launch::context::LaunchContext;
use crate::launch::error::{LaunchError, RelaunchReason};
use crate::launch::protocol::refresh_request;
use crate::launch::record::{Scrubbed, LEASE_KEY, SESSION_KEY};
use crate::launch::shared::{session_tag, LaunchCore};
use crate::launch::state::SessionState;

impl LaunchCore {
    /// A refresh of `session_id`, shared by every caller in this process that asks while it
    /// runs.
    pub(crate) async fn refresh_shared(
        self: &Arc<Self>,
        session_id: &str,
    ) -> Result<Arc<SessionState>, LaunchError> {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
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
                let core = Arc::clone(self);
                let session = session_id.to_owned();
                match tokio::spawn(async move { core.refresh(&session).await }).await {
                    Ok(result) => result.map(Arc::new),
                    Err(_) => Err(LaunchError::RefreshInterrupted),
                }
            })
            .await
            .clone();
        {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if flights
                .get(session_id)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                flights.remove(session_id);
            }
        }
        result
    }

    /// Gets a usable session: the stored one when another caller or process refreshed it
    /// already, else a refresh under the store's lease.
    async fn refresh(&self, session_id: &str) -> Result<SessionState, LaunchError> {
        let cfg = &self.config;
        let deadline = cfg.refresh_timeout;
        let session = session_tag(session_id);
        tracing::debug!(session = %session, "App Launch session refresh");
        let result = match tokio::time::timeout(deadline, self.refresh_inner(session_id)).await {
            Ok(result) => result,
            Err(_) => Err(LaunchError::Token(OAuthError::Timeout(deadline))),
        };
        if let Err(e) = &result {
            tracing::debug!(session = %session, error = %e, "App Launch session refresh failed");
        }
        result
    }

    async fn refresh_inner(&self, session_id: &str) -> Result<SessionState, LaunchError> {
        let cfg = &self.config;
        let store = &cfg.store;
        let mut step = Duration::from_millis(25);
        loop {
            let state = SessionState::load(&self.config, session_id)
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
            let holder = State::generate().map_err(LaunchError::from)?;
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
                .map_err(LaunchError::from)?;
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
        let cfg = &self.config;
        let store = &cfg.store;
        // Read again under the lease: the previous holder may have just stored a new token.
        let state = SessionState::load(&self.config, session_id)
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
        let response = self
            .exchange(request, &previous_scope, "refresh_token")
            .await;
        let mut token = match response {
            Ok(token) => token,
            Err(e) if e.oauth_code() == Some(&OAuthErrorCode::InvalidGrant) => {
                return self.refused(session_id, &state, &refresh_token).await;
            }
            Err(e) => return Err(e),
        };
        // No new refresh token: the old one stays valid (RFC 6749 §6). The identity stays that
        // of the verified launch: an id_token in a refresh response is not used.
        let rotated = token.refresh_token.is_some();
        if !rotated {
            token.refresh_token = Some(refresh_token.clone());
        }
        tracing::debug!(
            session = %session_tag(session_id),
            rotated,
            "App Launch refresh token {}",
            if rotated { "rotated" } else { "kept" }
        );
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
            .map_err(LaunchError::from)?;
        if swapped {
            return SessionState::from_value(new.0.clone());
        }
        // The session changed while the lease was held (a new launch, a sign-out, a lease that
        // expired): never resurrect it, and never keep two refresh tokens.
        let current = SessionState::load(&self.config, session_id)
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
                .map_err(LaunchError::from)?
        {
            return SessionState::from_value(new.0.clone());
        }
        Err(LaunchError::from(
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
        let cfg = &self.config;
        if let Some(current) = SessionState::load(&self.config, session_id).await? {
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
