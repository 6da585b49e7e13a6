//! Refreshing a session: single flight in the process, a lease in the store across processes,
//! and refresh-token rotation (SC-4.29 – SC-4.32, P12).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use smart_fhir_core::{Clock, Expiring, RefreshToken};
use smart_fhir_store::{acquire_or_wait, Acquired, LeaseOptions, SessionStore, SessionStoreLease};

use crate::error::{OAuthError, OAuthErrorCode};
use crate::launch::context::LaunchContext;
use crate::launch::error::{LaunchError, RelaunchReason};
use crate::launch::protocol::refresh_request;
use crate::launch::record::{Scrubbed, LEASE_KEY, SESSION_KEY};
use crate::launch::shared::{session_tag, LaunchCore};
use crate::launch::state::SessionState;

impl LaunchCore {
    /// A refresh of `session_id`, shared by every caller in this process that asks while it
    /// runs (the one expiring cache, used for single flight alone).
    pub(crate) async fn refresh_shared(
        self: &Arc<Self>,
        session_id: &str,
    ) -> Result<Arc<SessionState>, LaunchError> {
        let core = Arc::clone(self);
        let session = session_id.to_owned();
        self.refreshes
            .get_or_load(&session_id.to_owned(), move || async move {
                // The refresh runs in a task of its own: a caller that gives up (a dropped
                // request; when every caller has, the cache drops the load) must not abandon a
                // refresh whose new refresh token the server may already have issued, nor leave
                // the store lease held until it expires (P12).
                match tokio::spawn(async move { core.refresh(&session).await }).await {
                    // Not kept in memory: already due for renewal, it goes to this load's
                    // waiters only.
                    Ok(result) => result.map(|state| Expiring::new(Arc::new(state), UNIX_EPOCH)),
                    Err(_) => Err(LaunchError::RefreshInterrupted),
                }
            })
            .await
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

    /// Cross-process single flight through the one lease protocol of `smart-fhir-store`:
    /// whoever holds the session's lease refreshes; the others wait for its result in the
    /// store. A holder that dies leaves a lease that expires.
    async fn refresh_inner(&self, session_id: &str) -> Result<SessionState, LaunchError> {
        let cfg = &self.config;
        let lease = SessionStoreLease::new(cfg.store.clone(), session_id, LEASE_KEY);
        let options = LeaseOptions {
            ttl: cfg.refresh_timeout,
            max_wait: cfg.refresh_timeout,
        };
        let ready = || async {
            let state = SessionState::load(&self.config, session_id)
                .await?
                .ok_or(LaunchError::RelaunchNeeded(RelaunchReason::NoSession))?;
            if state.usable(cfg.clock.now(), cfg.refresh_buffer) {
                return Ok(Some(state));
            }
            if state.token.refresh_token.is_none() {
                return Err(LaunchError::RelaunchNeeded(RelaunchReason::NoRefreshToken));
            }
            Ok(None)
        };
        match acquire_or_wait(&lease, options, ready).await? {
            Acquired::Ready(state) => Ok(state),
            Acquired::Held(guard) => {
                let result = self.refresh_holding_lease(session_id).await;
                // Released once the new session is stored (or the refresh failed), and only if
                // it is still ours.
                guard.release().await;
                result
            }
            Acquired::WaitedOut => {
                Err(LaunchError::Token(OAuthError::Timeout(cfg.refresh_timeout)))
            }
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
                return self.refused(session_id, &state, &refresh_token, &e).await;
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
        error: &LaunchError,
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
        Err(LaunchError::RelaunchNeeded(refusal(error, sent)))
    }
}

/// The server's reason for refusing `sent`, for the user: its code, and its description
/// (already bounded and printable) without any copy of the refresh token itself.
fn refusal(error: &LaunchError, sent: &RefreshToken) -> RelaunchReason {
    let (code, description) = match error.oauth_error() {
        Some(OAuthError::Server {
            code, description, ..
        }) => (code.clone(), description.clone()),
        _ => (OAuthErrorCode::InvalidGrant, None),
    };
    let description = description.map(|d| redact(d, sent.secret()));
    RelaunchReason::RefreshRefused { code, description }
}

/// `description` without any copy of `secret`, whole or cut short at the end (the description
/// was bounded before it reached here, so a copy near its end may have lost its tail).
fn redact(description: String, secret: &str) -> String {
    /// A shorter tail is as likely to be a word of the text as a piece of the token.
    const MIN_CUT_PREFIX: usize = 8;
    if secret.is_empty() {
        return description;
    }
    let mut d = description.replace(secret, "[redacted]");
    let cut = (MIN_CUT_PREFIX..secret.len())
        .rev()
        .filter(|&k| secret.is_char_boundary(k))
        .find(|&k| d.ends_with(&secret[..k]));
    if let Some(k) = cut {
        d.truncate(d.len() - k);
        d.push_str("[redacted]");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::redact;

    const SECRET: &str = "rt-0123456789abcdefghijklmnopqrstuvwxyz";

    /// P5: the refresh token the server echoes in its refusal is never shown, whole or cut short
    /// by the description's bound.
    #[test]
    fn p5_refusal_description_never_shows_the_refresh_token() {
        let whole = redact(format!("token {SECRET} was revoked"), SECRET);
        assert_eq!(whole, "token [redacted] was revoked");
        let tail = redact(format!("refused: {}", &SECRET[..20]), SECRET);
        assert_eq!(tail, "refused: [redacted]");
        assert!(!tail.contains(&SECRET[..8]));
        let short = redact("refused: rt-0".to_owned(), SECRET);
        assert_eq!(short, "refused: rt-0", "a short tail is kept");
        assert_eq!(redact("plain".to_owned(), ""), "plain");
    }
}
