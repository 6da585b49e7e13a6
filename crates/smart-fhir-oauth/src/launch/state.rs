//! A signed-in session as the session store holds it.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use smart_fhir_core::{FhirBaseUrl, RefreshToken, Url};
use smart_fhir_jwt::Algorithm;
use smart_fhir_scopes::ScopeSet;
use smart_fhir_store::{SessionStore, StoredToken};

use crate::launch::config::LaunchClientConfig;
use crate::launch::context::LaunchContext;
use crate::launch::error::LaunchError;
use crate::launch::record::{Scrubbed, ServerInfo, SessionRecord, SESSION_KEY};

/// A session as read from the store.
pub(crate) struct SessionState {
    /// The stored value exactly as read, for compare-and-swap.
    pub(crate) raw: Scrubbed,
    pub(crate) token: StoredToken,
    pub(crate) fhir_base: FhirBaseUrl,
    pub(crate) token_endpoint: Url,
    pub(crate) server: ServerInfo,
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) requested_scope: String,
    pub(crate) user: Option<Url>,
    pub(crate) user_text: Option<String>,
    pub(crate) context: LaunchContext,
    pub(crate) granted: ScopeSet,
    pub(crate) requested: ScopeSet,
}

impl SessionState {
    pub(crate) fn from_value(value: Value) -> Result<Self, LaunchError> {
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
        config: &LaunchClientConfig,
        session_id: &str,
    ) -> Result<Option<Self>, LaunchError> {
        let value = config
            .store
            .get(session_id, SESSION_KEY)
            .await
            .map_err(LaunchError::from)?;
        value.map(Self::from_value).transpose()
    }

    /// This session with `token` in place of the current one, as a stored value.
    pub(crate) fn with_token(&self, token: &StoredToken) -> Result<Value, LaunchError> {
        SessionRecord::new(
            token,
            &self.fhir_base,
            self.server.clone(),
            self.requested_scope.clone(),
            self.user_text.clone(),
        )?
        .to_value()
    }

    pub(crate) fn usable(&self, now: SystemTime, buffer: Duration) -> bool {
        let lifetime = self
            .token
            .expires_at
            .duration_since(self.token.issued_at)
            .unwrap_or(Duration::ZERO);
        !self.token.expires_within(now, buffer.min(lifetime / 2))
    }

    pub(crate) fn same_refresh_token(&self, other: &RefreshToken) -> bool {
        self.token
            .refresh_token
            .as_ref()
            .is_some_and(|t| t.ct_eq(other.secret()))
    }
}
