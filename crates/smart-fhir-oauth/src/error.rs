use std::sync::Arc;
use std::time::Duration;

use smart_fhir_core::{HttpError, UrlError};
use smart_fhir_discovery::DiscoveryError;
use smart_fhir_jwt::JwtError;
use smart_fhir_store::StoreError;

/// The `error` code of an RFC 6749 §5.2 error response (SC-3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`: client authentication failed (SC-2.15).
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// Any other code, as the server sent it (truncated).
    Other(String),
}

impl OAuthErrorCode {
    /// The code as the server sent it, e.g. `invalid_client`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the OAuth grants. None carries a token, an assertion or a key.
///
/// `Clone`, so that one failed token request can be reported to every caller that waited for it
/// (single flight): the causes that are not `Clone` themselves are held in an [`Arc`]. A plain
/// `downcast_ref` on each `source()` link therefore sees `Arc<HttpError>`, not `HttpError`:
/// [`smart_fhir_core::find_cause`] looks through both.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The client's configuration is incomplete or wrong.
    #[error("configuration: {field}: {reason}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL was refused.
    #[error("{0}")]
    Url(#[from] UrlError),
    /// Discovery of the server's SMART configuration failed.
    #[error("SMART discovery failed")]
    Discovery(#[source] Arc<DiscoveryError>),
    /// The server does not support what this client is configured for (SC-1.13).
    #[error("the server does not fit this client")]
    Unfit(#[source] smart_fhir_discovery::FitError),
    /// Signing the client assertion failed.
    #[error("cannot sign the client assertion")]
    Assertion(#[source] JwtError),
    /// The token request could not be sent or its response not read.
    #[error("token request failed")]
    Http(#[source] Arc<HttpError>),
    /// The authorization server answered with an OAuth error (SC-3.7).
    #[error("token endpoint answered {status} {code}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Server {
        /// HTTP status.
        status: u16,
        /// The `error` code.
        code: OAuthErrorCode,
        /// `error_description`, bounded and printable.
        description: Option<String>,
        /// `error_uri`, bounded and printable.
        uri: Option<String>,
    },
    /// A non-2xx answer whose body is not an OAuth error.
    #[error("token endpoint answered {status}: {excerpt}")]
    Status {
        /// HTTP status.
        status: u16,
        /// A bounded, printable excerpt of the body.
        excerpt: String,
    },
    /// A 2xx answer that is not a usable token response.
    #[error("invalid token response (HTTP {status}): {reason}")]
    InvalidResponse {
        /// HTTP status.
        status: u16,
        /// What was wrong (never the body itself: it may carry a token).
        reason: String,
    },
    /// No token was obtained within the load timeout.
    #[error("no token within {0:?}")]
    Timeout(Duration),
    /// The token store failed.
    #[error("token store failed")]
    Store(#[source] Arc<StoreError>),
}

impl From<smart_fhir_core::LoadTimedOut> for OAuthError {
    fn from(e: smart_fhir_core::LoadTimedOut) -> Self {
        Self::Timeout(e.0)
    }
}

impl From<HttpError> for OAuthError {
    fn from(e: HttpError) -> Self {
        Self::Http(Arc::new(e))
    }
}

impl From<DiscoveryError> for OAuthError {
    fn from(e: DiscoveryError) -> Self {
        Self::Discovery(Arc::new(e))
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

impl OAuthError {
    /// Whether the server refused the client's authentication (`invalid_client`, SC-2.15).
    pub fn is_invalid_client(&self) -> bool {
        self.oauth_code() == Some(&OAuthErrorCode::InvalidClient)
    }

    /// The OAuth error code, when the server sent one.
    pub fn oauth_code(&self) -> Option<&OAuthErrorCode> {
        match self {
            Self::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub(crate) use smart_fhir_core::text::excerpt;
