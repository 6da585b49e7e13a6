//! Errors of OpenID configuration and JWKS fetching.

use std::fmt;
use std::sync::Arc;

use smart_fhir_core::{HttpError, UrlError};

/// Which document was being fetched when key discovery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyDocument {
    /// `{issuer}/.well-known/openid-configuration`.
    OpenidConfiguration,
    /// The JWKS at the configuration's `jwks_uri`.
    Jwks,
}

impl fmt::Display for KeyDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenidConfiguration => "OpenID configuration",
            Self::Jwks => "JWKS",
        })
    }
}

/// Why the OpenID configuration or the JWKS could not be obtained.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFetchError {
    /// The request could not be built.
    #[error("cannot build the request: {reason}")]
    Request {
        /// Why.
        reason: String,
    },
    /// The transport failed.
    #[error("the request failed")]
    Http(#[source] Arc<HttpError>),
    /// The server answered with a status other than 2xx (redirects are not followed).
    #[error("HTTP {status}: {excerpt}")]
    Status {
        /// The status code.
        status: u16,
        /// A bounded, printable excerpt of the body.
        excerpt: String,
    },
    /// The document is not what it should be.
    #[error("{reason}")]
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration's `jwks_uri` was refused (not https, or plain http where not allowed).
    #[error("the jwks_uri was refused")]
    JwksUri(#[source] UrlError),
}

impl KeyFetchError {
    /// Whether the same fetch could succeed later: a transient transport failure, a 5xx or a
    /// 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http(e) => e.is_transient(),
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A failed fetch of an issuer's OpenID configuration or JWKS: which document, from where, and
/// why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot get the issuer's {document} from {url}")]
#[non_exhaustive]
pub struct KeyDiscoveryError {
    /// Which document.
    pub document: KeyDocument,
    /// Its URL, without credentials, query or fragment.
    pub url: String,
    /// What went wrong.
    #[source]
    pub source: KeyFetchError,
}

impl KeyDiscoveryError {
    pub(crate) fn new(document: KeyDocument, url: &url::Url, source: KeyFetchError) -> Self {
        Self {
            document,
            url: smart_fhir_core::text::display_url(url),
            source,
        }
    }

    /// Whether the same fetch could succeed later (see [`KeyFetchError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.source.is_retryable()
    }
}
