//! The end of the flow: the callback, the code exchange and the launch context (SC-4.13 –
//! SC-4.23, SC-4.33 – SC-4.35).

use std::fmt;
use std::time::SystemTime;

use smart_fhir_core::{FhirBaseUrl, PkceCodeVerifier, Url};
use smart_fhir_jwt::Algorithm;
use smart_fhir_scopes::ScopeSet;
use smart_fhir_store::SessionStore;
use subtle::ConstantTimeEq;

use crate::error::excerpt;
use crate::id_token::IdTokenExpectations;
use crate::launch::app::AppLaunch;
use crate::launch::context::LaunchContext;
use crate::launch::error::LaunchError;
use crate::launch::protocol::{code_exchange_request, parse_callback};
use crate::launch::record::{
    digest, marker_key, parse_base, parse_endpoint, pending_key, scrub, PendingRecord, ServerInfo,
    SessionRecord, SESSION_KEY, STATE_INDEX_SESSION,
};
use crate::launch::shared::{check_session_id, session_tag};

/// The longest callback `state` looked up.
const MAX_STATE: usize = 512;

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

impl AppLaunch {
    /// Completes the authorization when the browser comes back to the redirect URI; `query` is
    /// the raw query string of that request.
    ///
    /// In order: the `state` is looked up and compared in constant time, only in the session
    /// that started the flow (SC-4.13, P3); an RFC 9207 `iss` must be the authorization
    /// server's issuer (SC-4.17, P2); an error callback becomes
    /// [`LaunchError::AuthorizationDenied`] (SC-4.14); a callback with a code consumes the
    /// `state` — once only — and the code is exchanged with the stored PKCE verifier and the
    /// client's authentication at the stored token endpoint (SC-4.18); the token response and
    /// launch context are read whole (SC-4.19 – SC-4.23); an `id_token` is verified with the
    /// stored nonce (SC-4.33 – SC-4.35). The session is then stored and the configured landing
    /// URL returned (P10).
    ///
    /// Only a callback that goes on to the code exchange consumes the authorization in flight.
    /// A malformed callback, one with a wrong or missing `iss`, and an error callback leave it
    /// in place, within its time to live, for the authorization server's own callback: the
    /// `state` is in the authorize URL, which others may have seen (another local user, a
    /// browser extension), and nothing authenticates such a callback, so it must not be able to
    /// end the sign-in (an error callback is still reported as the error it is).
    pub async fn callback(&self, session_id: &str, query: &str) -> Result<Launched, LaunchError> {
        check_session_id(session_id)?;
        let session = session_tag(session_id);
        tracing::debug!(session = %session, "App Launch callback");
        let cfg = &self.inner.config;
        let cb = parse_callback(query)?;
        let state = cb
            .state
            .as_ref()
            .ok_or_else(|| LaunchError::InvalidCallback {
                reason: "the `state` parameter is missing".to_owned(),
            })?;
        let pending = self.find_pending(session_id, state).await?;

        // RFC 9207: the issuer of the response is the authorization server's; the FHIR base
        // always comes from the stored record (P2).
        match (&cb.iss, &pending.issuer) {
            (Some(got), Some(expected)) if got == expected => {}
            (Some(got), expected) => {
                return Err(LaunchError::IssuerMismatch {
                    expected: expected.clone(),
                    got: Some(excerpt(got.as_bytes())),
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
        // The one step that happens once per authorization: whoever consumes the state
        // exchanges the code; a concurrent callback finds it gone.
        self.consume_pending(session_id, state).await?;

        let base = parse_base(&pending.fhir_base, pending.insecure_loopback)?;
        let token_endpoint = parse_endpoint(&pending.token_endpoint, pending.insecure_loopback)?;
        let algorithm = pending
            .algorithm
            .as_deref()
            .and_then(|a| a.parse::<Algorithm>().ok());
        let verifier = PkceCodeVerifier::new(pending.verifier.as_str());
        let assertion = self.inner.assertion(&pending.token_endpoint, algorithm)?;
        let request = code_exchange_request(
            &token_endpoint,
            code,
            &pending.redirect_uri,
            &verifier,
            self.inner.token_auth(assertion.as_ref()),
        )
        .map_err(LaunchError::Token)?;
        drop(assertion);
        let token = self
            .inner
            .exchange(request, &pending.scope, "authorization_code")
            .await?;

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
                    .map_err(LaunchError::from)?;
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
            .map_err(LaunchError::from)?;

        tracing::debug!(
            session = %session,
            granted_scopes = token.scope.as_deref().map_or(0, |s| s.split_whitespace().count()),
            refresh_token = token.refresh_token.is_some(),
            "App Launch code exchanged; session stored"
        );
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

    /// Finds the authorization in flight that `state` names, in this session, without
    /// consuming it.
    async fn find_pending(
        &self,
        session_id: &str,
        state: &str,
    ) -> Result<PendingRecord, LaunchError> {
        if state.is_empty() || state.len() > MAX_STATE {
            return Err(LaunchError::UnknownState);
        }
        let store = &self.inner.config.store;
        let session_hash = digest(session_id);
        let Some(value) = store
            .get(session_id, &pending_key(state))
            .await
            .map_err(LaunchError::from)?
        else {
            // Not in this session: tell a state of another session from an unknown one.
            let owner = store
                .get(STATE_INDEX_SESSION, &marker_key(state))
                .await
                .map_err(LaunchError::from)?;
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
        let mut value = value;
        let record = PendingRecord::from_value(&value);
        scrub(&mut value);
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

    /// Consumes the authorization in flight that `state` names (found by
    /// [`find_pending`](Self::find_pending)): atomically, so that of two callbacks only one
    /// goes on to the code exchange.
    async fn consume_pending(&self, session_id: &str, state: &str) -> Result<(), LaunchError> {
        let store = &self.inner.config.store;
        let Some(mut value) = store
            .take(session_id, &pending_key(state))
            .await
            .map_err(LaunchError::from)?
        else {
            return Err(LaunchError::UnknownState);
        };
        scrub(&mut value);
        // The marker has done its job; if it cannot be removed it expires by itself.
        let _ = store.delete(STATE_INDEX_SESSION, &marker_key(state)).await;
        Ok(())
    }
}
