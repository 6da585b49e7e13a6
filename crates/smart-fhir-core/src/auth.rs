use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{AccessToken, FhirBaseUrl, SharedHttpClient};
use async_trait::async_trait;

/// A boxed error that can cross threads: the cause chained behind a [`ProviderError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the FHIR client asks for an access token before each request.
///
/// Implementations cache: [`AccessTokenProvider::access_token`] must be cheap while the cached
/// token is good, and renew it (once, however many callers wait) when it is about to expire.
#[async_trait]
pub trait AccessTokenProvider: Send + Sync + fmt::Debug {
    /// A token to send as `Authorization: Bearer <token>` (SC-3.10).
    async fn access_token(&self) -> Result<AccessToken, ProviderError>;

    /// Reports that the server refused `token` (a `401` with `invalid_token`), so that it is
    /// dropped and the next [`AccessTokenProvider::access_token`] renews it (SC-3.8, SC-8.26).
    ///
    /// Implementations drop the cached token only if it is still `token`, so a report that
    /// arrives late never discards a newer token. There is no result: the caller can do nothing
    /// about a failure here, and the next `access_token` call reports any real problem.
    async fn token_rejected(&self, token: &AccessToken);

    /// The FHIR server this source's tokens are for, when it knows: a FHIR client for another
    /// server refuses to use it, since where credentials go is a security property.
    /// `None` (the default) for a source bound to no server, such as a token obtained elsewhere.
    fn fhir_base(&self) -> Option<&FhirBaseUrl> {
        None
    }

    /// The transport this source talks to its server with, when it has one: a FHIR client built
    /// from the source shares it (one connection pool).
    fn http_client(&self) -> Option<&SharedHttpClient> {
        None
    }
}

/// A cheaply cloneable, shared [`AccessTokenProvider`].
#[derive(Debug, Clone)]
pub struct SharedAccessTokenProvider(Arc<dyn AccessTokenProvider>);

impl SharedAccessTokenProvider {
    /// Wraps a provider; an already shared one is not wrapped again.
    pub fn new(provider: impl AccessTokenProvider + 'static) -> Self {
        if let Some(shared) = (&provider as &dyn std::any::Any).downcast_ref::<Self>() {
            return shared.clone();
        }
        Self(Arc::new(provider))
    }

    /// Wraps an already shared provider.
    pub fn from_arc(provider: Arc<dyn AccessTokenProvider>) -> Self {
        Self(provider)
    }
}

// The methods are written out instead of `async fn`: an `async fn` here would box a second
// future around the inner provider's before every FHIR request.
impl AccessTokenProvider for SharedAccessTokenProvider {
    fn access_token<'a, 'f>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = Result<AccessToken, ProviderError>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        self.0.access_token()
    }

    fn token_rejected<'a, 'b, 'f>(
        &'a self,
        token: &'b AccessToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.0.token_rejected(token)
    }

    fn fhir_base(&self) -> Option<&FhirBaseUrl> {
        self.0.fhir_base()
    }

    fn http_client(&self) -> Option<&SharedHttpClient> {
        self.0.http_client()
    }
}

/// A provider that always hands out the same token: for tests, scripts and a token obtained
/// elsewhere (a CLI's `--token`). It cannot renew, so [`AccessTokenProvider::token_rejected`]
/// does nothing and the server's refusal reaches the caller.
#[derive(Debug, Clone)]
pub struct StaticTokenProvider {
    token: AccessToken,
    fhir_base: Option<FhirBaseUrl>,
}

impl StaticTokenProvider {
    /// A provider of `token`, bound to no server: the caller answers for where it is sent.
    pub fn new(token: AccessToken) -> Self {
        Self {
            token,
            fhir_base: None,
        }
    }

    /// Binds the token to the server it was issued for: a FHIR client for another server then
    /// refuses the provider.
    pub fn for_fhir_base(mut self, base: FhirBaseUrl) -> Self {
        self.fhir_base = Some(base);
        self
    }
}

#[async_trait]
impl AccessTokenProvider for StaticTokenProvider {
    async fn access_token(&self) -> Result<AccessToken, ProviderError> {
        Ok(self.token.clone())
    }

    async fn token_rejected(&self, _token: &AccessToken) {}

    fn fhir_base(&self) -> Option<&FhirBaseUrl> {
        self.fhir_base.as_ref()
    }
}

/// Why an [`AccessTokenProvider`] has no token to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// For now: the authorization server or the token store could not be reached, timed out or
    /// failed. Retrying later may succeed.
    Unavailable,
    /// The authorization server refused the client's credentials or grant (`invalid_client`,
    /// `unauthorized_client`, `invalid_scope`, ...). Retrying the same request will not help; the
    /// configuration or registration needs fixing.
    Rejected,
    /// No token can be had without the user: there is no refresh token, or it expired or was
    /// revoked (`invalid_grant`). An App Launch application must send the user through
    /// authorization again.
    RelaunchNeeded,
    /// Anything else.
    Other,
}

impl fmt::Display for ProviderErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "access token unavailable",
            Self::Rejected => "access token request rejected",
            Self::RelaunchNeeded => "new authorization needed",
            Self::Other => "access token error",
        })
    }
}

/// An error from an [`AccessTokenProvider`]: a [`kind`](ProviderError::kind), a message, and the
/// underlying error (the OAuth crate's, the store's) as [`std::error::Error::source`].
///
/// The message must never contain a token or secret; `Display` shows the kind and the message,
/// not the source.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ProviderError {
    kind: ProviderErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl ProviderError {
    /// An error of `kind`. `message` says what failed, with no token or secret in it.
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error, reachable through [`std::error::Error::source`].
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Why there is no token.
    pub fn kind(&self) -> ProviderErrorKind {
        self.kind
    }

    /// What failed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[tokio::test]
    async fn static_provider_returns_its_token_and_ignores_rejection() {
        let p = SharedAccessTokenProvider::new(StaticTokenProvider::new(AccessToken::new("tok")));
        let t = p.access_token().await.unwrap();
        assert!(t.ct_eq("tok"));
        p.token_rejected(&t).await;
        assert!(p.access_token().await.unwrap().ct_eq("tok"));
    }

    #[test]
    fn debug_of_providers_is_redacted_p5() {
        let p = StaticTokenProvider::new(AccessToken::new("tok-SECRET"));
        let shared = SharedAccessTokenProvider::new(p.clone());
        let printed = format!("{p:?} {shared:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
    }

    #[test]
    fn error_kind_message_and_source() {
        let e = ProviderError::new(ProviderErrorKind::RelaunchNeeded, "refresh token expired")
            .with_source(std::io::Error::other("invalid_grant"));
        assert_eq!(e.kind(), ProviderErrorKind::RelaunchNeeded);
        assert_eq!(e.message(), "refresh token expired");
        assert_eq!(
            e.to_string(),
            "new authorization needed: refresh token expired"
        );
        assert_eq!(e.source().unwrap().to_string(), "invalid_grant");
    }

    #[test]
    fn sharing_a_shared_provider_does_not_wrap_it_again() {
        let shared =
            SharedAccessTokenProvider::new(StaticTokenProvider::new(AccessToken::new("x")));
        let again = SharedAccessTokenProvider::new(shared.clone());
        assert!(Arc::ptr_eq(&shared.0, &again.0));
    }

    #[tokio::test]
    async fn a_bound_static_provider_names_its_server() {
        let base = FhirBaseUrl::parse("https://ehr.example/fhir").unwrap();
        let p = StaticTokenProvider::new(AccessToken::new("x")).for_fhir_base(base.clone());
        assert_eq!(SharedAccessTokenProvider::new(p).fhir_base(), Some(&base));
        assert!(StaticTokenProvider::new(AccessToken::new("x"))
            .fhir_base()
            .is_none());
    }

    #[tokio::test]
    async fn object_safe_behind_arc_dyn() {
        let p: Arc<dyn AccessTokenProvider> =
            Arc::new(StaticTokenProvider::new(AccessToken::new("x")));
        let shared = SharedAccessTokenProvider::from_arc(p);
        assert!(shared.access_token().await.unwrap().ct_eq("x"));
    }
}
