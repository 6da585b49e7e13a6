//! One error type for users of the facade.

use std::error::Error as StdError;

use smart_fhir_core::{HttpError, HttpErrorKind, ProviderError, ProviderErrorKind, UrlError};
use smart_fhir_discovery::DiscoveryError;
use smart_fhir_http::{FhirError, TransportError};
use smart_fhir_jwt::JwtError;
use smart_fhir_oauth::{LaunchError, OAuthError, RevocationError};
use smart_fhir_pkce::PkceError;
use smart_fhir_scopes::ScopeError;
use smart_fhir_store::StoreError;

use crate::ConfigError;

/// Any error of the `smart-fhir` crates, with questions a caller can ask of it
/// ([`is_auth`](Error::is_auth), [`status`](Error::status), [`is_transport`](Error::is_transport),
/// [`is_timeout`](Error::is_timeout), [`oauth_error`](Error::oauth_error),
/// [`relaunch_needed`](Error::relaunch_needed)).
///
/// Each variant holds the precise error of the crate it came from, for callers who need every
/// detail; `?` converts them all. `Display` is the inner error's, and
/// [`source`](std::error::Error::source) continues its chain. Like the inner errors, it never
/// shows a token, a secret, a key or a FHIR query string.
///
/// ```no_run
/// # async fn run(fhir: smart_fhir::FhirClient) {
/// match fhir.read::<serde_json::Value>("Patient", "123").await.map_err(smart_fhir::Error::from) {
///     Ok(patient) => println!("{:?}", patient.version_id()),
///     Err(e) if e.status() == Some(404) => println!("no such patient"),
///     Err(e) if e.relaunch_needed() => println!("sign in again"),
///     Err(e) if e.is_auth() => println!("not authorized: {e}"),
///     Err(e) if e.is_timeout() => println!("timed out; try again later"),
///     Err(e) => println!("failed: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration from the environment ([`crate::Config`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A FHIR request ([`crate::FhirClient`], Bulk export).
    #[error(transparent)]
    Fhir(#[from] FhirError),
    /// A token request or a Backend Services token source.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The App Launch flow or an App Launch session.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// SMART discovery.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Keys, client assertions, JWS verification.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// A token source ([`crate::AccessTokenProvider`]) had no token.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A token or session store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport ([`crate::HttpClient`]).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A URL was refused.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The transport could not be built (TLS roots, crypto provider).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A scope could not be parsed or built.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// PKCE, `state` or nonce.
    #[error(transparent)]
    Pkce(#[from] PkceError),
    /// Token revocation.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
}

impl Error {
    /// Whether the failure is about authorization: no access token could be had (the token
    /// source failed, whatever the reason), the authorization server answered with an OAuth
    /// error, the FHIR server answered `401` or `403`, or the user must authorize again.
    pub fn is_auth(&self) -> bool {
        self.relaunch_needed()
            || self.oauth_error().is_some()
            || matches!(self.status(), Some(401 | 403))
            || self.chain().any(|e| e.is::<ProviderError>())
    }

    /// The HTTP status of the FHIR server's error answer, when that is what failed (`404`,
    /// `412`, `422`, …). Token endpoint answers are not FHIR answers: see
    /// [`oauth_error`](Self::oauth_error).
    pub fn status(&self) -> Option<u16> {
        self.chain()
            .find_map(|e| e.downcast_ref::<FhirError>())
            .and_then(FhirError::status)
            .map(|s| s.as_u16())
    }

    /// Whether the transport failed: no connection, TLS, a broken connection, a timeout, an
    /// oversized response (at any step: discovery, token request or FHIR request).
    pub fn is_transport(&self) -> bool {
        self.chain().any(|e| http_error(e).is_some())
    }

    /// Whether something took too long: a request's timeout, or a token source's load
    /// timeout.
    pub fn is_timeout(&self) -> bool {
        self.chain().any(|e| {
            http_error(e).is_some_and(|h| h.kind() == HttpErrorKind::Timeout)
                || matches!(e.downcast_ref::<OAuthError>(), Some(OAuthError::Timeout(_)))
        })
    }

    /// The OAuth error code the authorization server sent (`invalid_client`, `invalid_grant`,
    /// `invalid_scope`, or an App Launch callback's `access_denied`), if it sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        self.chain().find_map(|e| {
            if let Some(o) = e.downcast_ref::<OAuthError>() {
                return o.oauth_code().map(|c| c.as_str());
            }
            if let Some(l) = e.downcast_ref::<LaunchError>() {
                if let LaunchError::AuthorizationDenied { error, .. } = l {
                    return Some(error.as_str());
                }
                return l.oauth_code().map(|c| c.as_str());
            }
            None
        })
    }

    /// Whether the user must go through authorization again (an App Launch session without a
    /// usable refresh token, or none at all).
    pub fn relaunch_needed(&self) -> bool {
        self.chain().any(|e| {
            e.downcast_ref::<LaunchError>()
                .is_some_and(LaunchError::is_relaunch_needed)
                || e.downcast_ref::<ProviderError>()
                    .is_some_and(|p| p.kind() == ProviderErrorKind::RelaunchNeeded)
        })
    }

    /// The inner error, then its sources.
    fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        std::iter::successors(Some(self.inner()), |e: &&(dyn StdError + 'static)| {
            (*e).source()
        })
    }

    fn inner(&self) -> &(dyn StdError + 'static) {
        match self {
            Self::Config(e) => e,
            Self::Fhir(e) => e,
            Self::OAuth(e) => e,
            Self::Launch(e) => e,
            Self::Discovery(e) => e,
            Self::Jwt(e) => e,
            Self::Provider(e) => e,
            Self::Store(e) => e,
            Self::Http(e) => e,
            Self::Url(e) => e,
            Self::Transport(e) => e,
            Self::Scope(e) => e,
            Self::Pkce(e) => e,
            Self::Revocation(e) => e,
        }
    }
}

/// A transport error in a chain, also where a crate keeps it boxed or shared (errors that
/// single flight hands to every waiter are `Clone`, their causes behind an `Arc`).
fn http_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a HttpError> {
    smart_fhir_core::find_cause::<HttpError>(e)
}

#[cfg(test)]
mod tests;
