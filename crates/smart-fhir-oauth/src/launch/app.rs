//! [`AppLaunch`]: the orchestrated flow, its signed-in sessions and sign-out.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use smart_fhir_store::SessionStore;

use crate::introspect::{revoke_with, TokenTypeHint};
use crate::launch::config::LaunchClientConfig;
use crate::launch::error::{LaunchError, RelaunchReason};
use crate::launch::record::{Scrubbed, SessionRecord, SESSION_KEY};
use crate::launch::session::SessionClient;
use crate::launch::shared::{check_session_id, session_tag, LaunchCore};
use crate::launch::state::SessionState;

/// The App Launch flow of a server-side web app (SMART App Launch 2.2, SC-4): EHR and
/// standalone launch, the callback with the code exchange, and signed-in sessions that refresh
/// themselves.
///
/// State lives in the configured [`SessionStore`](smart_fhir_store::SessionStore), keyed by the application's session id
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
    pub(crate) inner: Arc<LaunchCore>,
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
            inner: Arc::new(LaunchCore::new(config)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LaunchClientConfig {
        &self.inner.config
    }

    /// The signed-in session of `session_id`: an access-token provider for the FHIR client that
    /// refreshes itself, with the launch context. Fails with
    /// [`LaunchError::RelaunchNeeded`] when there is none.
    pub async fn ready(&self, session_id: &str) -> Result<SessionClient, LaunchError> {
        check_session_id(session_id)?;
        let state = SessionState::load(&self.inner.config, session_id)
            .await?
            .ok_or(LaunchError::RelaunchNeeded(RelaunchReason::NoSession))?;
        Ok(SessionClient::new(
            Arc::clone(&self.inner),
            session_id.to_owned(),
            state,
        ))
    }

    /// Signs the session out: deletes everything stored under `session_id` (tokens and any
    /// authorization in flight), then, when the server has a `revocation_endpoint`, revokes the
    /// refresh token and the access token there (SC-6.5, SC-6.6; RFC 7009) with the client's
    /// authentication.
    ///
    /// The outcome says what happened at the server: [`LogoutOutcome::Revoked`], or
    /// [`LogoutOutcome::NotRevocable`] when the server names no revocation endpoint (the tokens
    /// then stay valid at the server until they expire: tell the user), or
    /// [`LogoutOutcome::NoSession`]. The session is gone locally whatever the revocation's
    /// outcome; a revocation that fails after that is [`LaunchError::Revocation`] (the tokens
    /// may stay valid at the server until they expire).
    pub async fn logout(&self, session_id: &str) -> Result<LogoutOutcome, LaunchError> {
        check_session_id(session_id)?;
        tracing::debug!(session = %session_tag(session_id), "App Launch sign-out");
        let cfg = &self.inner.config;
        let stored = cfg
            .store
            .get(session_id, SESSION_KEY)
            .await
            .map_err(LaunchError::from)?
            .map(Scrubbed);
        cfg.store
            .delete_session(session_id)
            .await
            .map_err(LaunchError::from)?;
        let Some(stored) = stored else {
            return Ok(LogoutOutcome::NoSession);
        };
        let record = SessionRecord::from_value(&stored.0)?;
        let token = record.stored_token()?;
        let Some(endpoint) = record.revocation_endpoint() else {
            tracing::debug!(
                session = %session_tag(session_id),
                "App Launch sign-out: the server has no revocation endpoint; the tokens stay valid until they expire"
            );
            return Ok(LogoutOutcome::NotRevocable {
                access_token_expires_at: token.expires_at,
                had_refresh_token: token.refresh_token.is_some(),
            });
        };
        let server = record.server();
        let algorithm = server.algorithm.as_deref().and_then(|a| a.parse().ok());
        let mut revocations = Vec::new();
        if let Some(refresh) = &token.refresh_token {
            revocations.push((refresh.secret(), TokenTypeHint::RefreshToken));
        }
        revocations.push((token.access_token.secret(), TokenTypeHint::AccessToken));
        for (secret, hint) in revocations {
            let auth = self
                .inner
                .revocation_auth(&server.token_endpoint, algorithm)?;
            revoke_with(&cfg.http, &endpoint, secret, hint, &auth, cfg.insecure)
                .await
                .map_err(LaunchError::from)?;
        }
        Ok(LogoutOutcome::Revoked)
    }
}

/// What [`AppLaunch::logout`] did at the server, once the session was deleted here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutOutcome {
    /// The tokens were revoked at the server's revocation endpoint (RFC 7009): the refresh
    /// token, if there was one, then the access token.
    Revoked,
    /// The server names no revocation endpoint: the tokens were deleted here, but they stay
    /// valid at the server until they expire.
    NotRevocable {
        /// When the access token expires.
        access_token_expires_at: SystemTime,
        /// Whether a refresh token was held too (it may stay valid for much longer).
        had_refresh_token: bool,
    },
    /// No signed-in session was stored under this session id: there was nothing to revoke.
    NoSession,
}

impl LogoutOutcome {
    /// Whether tokens may still be valid at the server.
    pub fn tokens_stay_valid(&self) -> bool {
        matches!(self, Self::NotRevocable { .. })
    }
}

impl fmt::Display for LogoutOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Revoked => "the tokens were revoked at the server",
            Self::NotRevocable { .. } => {
                "the server has no revocation endpoint: the tokens were deleted here but stay \
                 valid at the server until they expire"
            }
            Self::NoSession => "there was no signed-in session",
        })
    }
}
