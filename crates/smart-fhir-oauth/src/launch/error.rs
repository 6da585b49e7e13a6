//! The error type of the App Launch flow.

use std::fmt;
use std::sync::Arc;

use smart_fhir_discovery::{DiscoveryError, FitError};
use smart_fhir_jwt::JwtError;
use smart_fhir_pkce::PkceError;
use smart_fhir_store::StoreError;

use crate::error::{excerpt, OAuthError, OAuthErrorCode};
use crate::id_token::IdTokenError;
use crate::introspect::RevocationError;
use crate::launch::context::LaunchContextIssue;

/// Why an App Launch session cannot go on without sending the user through authorization again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelaunchReason {
    /// No signed-in session is stored under this session id (never launched, expired, or
    /// signed out).
    NoSession,
    /// The access token expired and the server issued no refresh token (SC-4.28: ask for
    /// `offline_access` or `online_access` to get one).
    NoRefreshToken,
    /// The server refused the refresh token (`invalid_grant`: expired, revoked or already used),
    /// with the reason it gave.
    RefreshRefused {
        /// The server's RFC 6749 §5.2 `error` code.
        code: OAuthErrorCode,
        /// The server's `error_description`: bounded, printable, and with any copy of the
        /// refresh token that was sent replaced by `[redacted]`.
        description: Option<String>,
    },
}

impl RelaunchReason {
    /// Whether the server refused the refresh token.
    pub fn is_refresh_refused(&self) -> bool {
        matches!(self, Self::RefreshRefused { .. })
    }
}

impl fmt::Display for RelaunchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSession => f.write_str("no signed-in session"),
            Self::NoRefreshToken => {
                f.write_str("the access token expired and there is no refresh token")
            }
            Self::RefreshRefused { code, description } => {
                write!(f, "the server refused the refresh token ({code}")?;
                if let Some(description) = description {
                    write!(f, ": {description}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Errors of the App Launch flow ([`AppLaunch`](crate::AppLaunch)).
///
/// No variant's `Display` shows an authorization code, a token, a PKCE verifier, a `state`, a
/// nonce or a client secret; values sent by a server or a browser are shown bounded and with
/// control characters replaced.
///
/// `Clone`, so that one failed refresh can be reported to every caller that waited for it
/// (single flight): the causes that are not `Clone` themselves are held in an [`Arc`]. A plain
/// `downcast_ref` on each `source()` link therefore sees `Arc<HttpError>`, not `HttpError`:
/// [`smart_fhir_core::find_cause`] looks through both.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The configuration is incomplete or wrong.
    #[error("configuration: {field}: {reason}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A value the application passed in (a session id, a `launch` parameter) is unusable.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which value.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The EHR launch's `iss` (or the standalone FHIR base) is not on the issuer allow-list;
    /// nothing was sent to it (SC-4.3, P1).
    #[error("issuer {iss:?} is not allowed")]
    IssuerNotAllowed {
        /// The refused issuer, bounded and printable.
        iss: String,
    },
    /// The callback's `state` matches no authorization in flight for this session: forged,
    /// expired, or already used (SC-4.13, P3).
    #[error("unknown, expired or already used state")]
    UnknownState,
    /// The callback's `state` belongs to an authorization started by another session (SC-4.6,
    /// P3).
    #[error("the state belongs to another session")]
    StateMismatch,
    /// The callback is malformed (no `code`, a repeated parameter, an oversized query).
    #[error("invalid callback: {reason}")]
    InvalidCallback {
        /// What is wrong, without parameter values.
        reason: String,
    },
    /// The authorization server redirected back with an error (SC-4.14).
    #[error("authorization failed: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    AuthorizationDenied {
        /// The `error` code, e.g. `access_denied`, bounded and printable.
        error: String,
        /// `error_description`, bounded and printable.
        description: Option<String>,
        /// `error_uri`, bounded and printable.
        uri: Option<String>,
    },
    /// The callback's RFC 9207 `iss` is not the authorization server's issuer, or is missing
    /// where the server promised it (SC-4.17, P2).
    #[error("the callback's issuer {} does not match the authorization server's issuer {}", show(.got), show(.expected))]
    IssuerMismatch {
        /// The issuer from discovery, if the server published one.
        expected: Option<String>,
        /// The callback's `iss`, bounded and printable; `None` when it was missing.
        got: Option<String>,
    },
    /// Discovery of the server's SMART configuration failed.
    #[error("SMART discovery failed")]
    Discovery(#[source] Arc<DiscoveryError>),
    /// The server does not support what this client is configured for (SC-1.13).
    #[error("the server does not fit this client")]
    Unfit(#[source] FitError),
    /// The requested scopes cannot be written in the syntax the server understands (SC-1.14).
    #[error("the scopes cannot be sent to this server: {reason}")]
    Scopes {
        /// Why.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("cannot generate state, nonce or PKCE verifier")]
    Random(#[source] Arc<PkceError>),
    /// Signing the client assertion failed.
    #[error("cannot sign the client assertion")]
    Assertion(#[source] JwtError),
    /// The code exchange or the refresh failed (transport, OAuth error, invalid response).
    #[error("token request failed")]
    Token(#[source] OAuthError),
    /// The `id_token` was refused (SC-4.33 – SC-4.35).
    #[error("the id_token was refused")]
    IdToken(#[source] Arc<IdTokenError>),
    /// An `id_token` came back but cannot be checked.
    #[error("the id_token cannot be verified: {reason}")]
    IdTokenUnverifiable {
        /// Why.
        reason: &'static str,
    },
    /// The token response names the resources in context (`patient`, `encounter`,
    /// `fhirContext`) in a form that cannot be read (P15).
    #[error("the launch context cannot be read: {}", issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidLaunchContext {
        /// What could not be read.
        issues: Vec<LaunchContextIssue>,
    },
    /// The user must go through authorization again.
    #[error("a new launch is needed: {0}")]
    RelaunchNeeded(RelaunchReason),
    /// Revoking the tokens at sign-out failed (the session was deleted locally).
    #[error("token revocation failed")]
    Revocation(#[source] Arc<RevocationError>),
    /// The session store failed.
    #[error("session store failed")]
    Store(#[source] Arc<StoreError>),
    /// The refresh task ended without a result (its runtime shut down, or it panicked).
    #[error("the token refresh was interrupted")]
    RefreshInterrupted,
}

impl LaunchError {
    /// Why a new launch is needed, if that is what this error means.
    pub fn relaunch_reason(&self) -> Option<RelaunchReason> {
        match self {
            Self::RelaunchNeeded(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Whether the user must go through authorization again.
    pub fn is_relaunch_needed(&self) -> bool {
        self.relaunch_reason().is_some()
    }

    /// The error of a failed token request.
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match self {
            Self::Token(e) => Some(e),
            _ => None,
        }
    }

    /// The OAuth error code of a failed token request, if the server sent one.
    pub fn oauth_code(&self) -> Option<&OAuthErrorCode> {
        self.oauth_error().and_then(OAuthError::oauth_code)
    }

    /// An [`AuthorizationDenied`](Self::AuthorizationDenied) from the callback's parameters,
    /// bounded and printable.
    pub(crate) fn denied(error: &str, description: Option<&str>, uri: Option<&str>) -> Self {
        Self::AuthorizationDenied {
            error: excerpt(error.as_bytes()),
            description: description.map(|d| excerpt(d.as_bytes())),
            uri: uri.map(|u| excerpt(u.as_bytes())),
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn input(what: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            what,
            reason: reason.into(),
        }
    }
}

impl From<smart_fhir_core::LoadTimedOut> for LaunchError {
    fn from(e: smart_fhir_core::LoadTimedOut) -> Self {
        Self::Token(crate::error::OAuthError::Timeout(e.0))
    }
}

macro_rules! from_shared {
    ($($variant:ident($error:ty)),* $(,)?) => {$(
        impl From<$error> for LaunchError {
            fn from(e: $error) -> Self {
                Self::$variant(Arc::new(e))
            }
        }
    )*};
}

from_shared!(
    Discovery(DiscoveryError),
    Random(PkceError),
    IdToken(IdTokenError),
    Revocation(RevocationError),
    Store(StoreError),
);

fn show(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "(none)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_bounded_and_printable() {
        let long = format!("access_denied{}\u{1b}[31m", "x".repeat(5000));
        let e = LaunchError::denied(&long, Some("user said\nno"), None);
        let shown = e.to_string();
        assert!(shown.len() < 600, "{}", shown.len());
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\n'),
            "{shown:?}"
        );
    }

    /// P12: every caller of a shared refresh gets the same answer, a clone of its error.
    #[test]
    fn relaunch_reason_survives_a_clone() {
        let refused = RelaunchReason::RefreshRefused {
            code: OAuthErrorCode::InvalidGrant,
            description: Some("token expired".into()),
        };
        let e = LaunchError::RelaunchNeeded(refused.clone()).clone();
        assert_eq!(e.relaunch_reason(), Some(refused));
        assert_eq!(
            e.to_string(),
            "a new launch is needed: the server refused the refresh token (invalid_grant: token expired)"
        );
        assert!(e.is_relaunch_needed());
        assert!(!LaunchError::UnknownState.is_relaunch_needed());
    }

    #[test]
    fn issuer_mismatch_names_both_sides() {
        let e = LaunchError::IssuerMismatch {
            expected: Some("https://as.example".into()),
            got: None,
        };
        assert_eq!(
            e.to_string(),
            "the callback's issuer (none) does not match the authorization server's issuer \"https://as.example\""
        );
    }
}
