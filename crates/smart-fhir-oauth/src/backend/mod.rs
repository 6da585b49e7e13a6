//! The SMART Backend Services token source (SC-2, SC-3): client credentials with a signed
//! client assertion, cached, renewed before expiry, single flight.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use smart_fhir_core::{AccessToken, Clock, FhirBaseUrl, SharedClock, SharedHttpClient};
use smart_fhir_core::{AccessTokenProvider, ProviderError, ProviderErrorKind};
use smart_fhir_discovery::{ClientProfile, SmartConfiguration};
use smart_fhir_jwt::{Algorithm, AssertionSigner};
use smart_fhir_scopes::{ScopeDiff, ScopeSet};
use smart_fhir_store::{SharedTokenStore, StoredToken, TokenStore};
use tokio::sync::OnceCell;
use url::Url;

use crate::credential::{chosen_algorithm, PrivateKeyJwt};
use crate::error::OAuthError;
use crate::token::{client_credentials_request, exchange};

mod builder;
mod lease;

pub use builder::BackendServicesBuilder;
use lease::LeaseGuard;

/// How long before expiry a token is renewed, by default.
pub const DEFAULT_RENEWAL_BUFFER: Duration = Duration::from_secs(30);
/// How long one token acquisition may take in all, by default.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A Backend Services token source: an [`AccessTokenProvider`] for the FHIR client.
///
/// * Tokens are cached in the [`TokenStore`] and in memory, and renewed a buffer before expiry
///   (SC-3.8, SC-3.9).
/// * However many callers ask at once, one token request is made and every caller gets its result
///   or its error (single flight).
/// * Each token request signs a fresh assertion (SC-2.11); no refresh token is relied on (SC-3.6).
/// * A token reported as rejected is dropped, so the next caller renews it.
///
/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct BackendServices {
    inner: Arc<Inner>,
}

struct Inner {
    fhir_base: FhirBaseUrl,
    client_id: String,
    scope: String,
    requested: ScopeSet,
    credential: PrivateKeyJwt,
    /// The algorithms the credential may sign with, most preferred first.
    candidates: Vec<Algorithm>,
    explicit_endpoint: Option<(Url, String)>,
    skip_fit_check: bool,
    http: SharedHttpClient,
    store: SharedTokenStore,
    store_key: String,
    clock: SharedClock,
    renewal_buffer: Duration,
    load_timeout: Duration,
    endpoint: OnceCell<Endpoint>,
    cached: RwLock<Option<StoredToken>>,
    flight: Mutex<Option<Arc<Flight>>>,
}

/// The resolved token endpoint and the signer prepared for it.
struct Endpoint {
    url: Url,
    /// The token endpoint exactly as the server or the caller spelled it: the assertion's `aud`
    /// (SC-2.10).
    audience: String,
    signer: AssertionSigner,
    configuration: Option<SmartConfiguration>,
}

/// One token acquisition shared by every caller that arrives while it runs; each gets a clone
/// of its result or of its error.
#[derive(Default)]
struct Flight {
    result: OnceCell<Result<StoredToken, OAuthError>>,
}

impl fmt::Debug for BackendServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendServices")
            .field("fhir_base", &self.inner.fhir_base)
            .field("client_id", &self.inner.client_id)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

impl BackendServices {
    /// The FHIR base URL this source gets tokens for.
    pub fn fhir_base(&self) -> &FhirBaseUrl {
        &self.inner.fhir_base
    }

    /// The key under which tokens are kept in the [`TokenStore`]: the FHIR base, the client id
    /// and the requested scope (no secret).
    pub fn store_key(&self) -> &str {
        &self.inner.store_key
    }

    /// The scopes requested.
    pub fn requested_scopes(&self) -> &ScopeSet {
        &self.inner.requested
    }

    /// The current token with its expiry and granted scope, fetching one if needed.
    pub async fn token(&self) -> Result<StoredToken, OAuthError> {
        self.inner.token().await
    }

    /// The current access token, fetching one if needed.
    pub async fn access_token(&self) -> Result<AccessToken, OAuthError> {
        self.inner.access_token().await
    }

    /// The scopes the server granted with the current token (SC-3.4, SC-5.13), fetching a token
    /// if needed. Scopes the grammar does not know are kept aside, not failed on.
    pub async fn granted_scopes(&self) -> Result<ScopeSet, OAuthError> {
        let token = self.inner.token().await?;
        Ok(ScopeSet::parse_lenient(token.scope.as_deref().unwrap_or("")).into_scopes())
    }

    /// How the granted scopes differ from the requested ones (SC-5.13): what is missing, what
    /// was granted beyond the request.
    pub async fn scope_difference(&self) -> Result<ScopeDiff, OAuthError> {
        let granted = self.granted_scopes().await?;
        Ok(self.inner.requested.difference(&granted))
    }

    /// The requested scopes the server did not grant (SC-5.13): empty when everything asked for
    /// was granted.
    pub async fn missing_scopes(&self) -> Result<ScopeSet, OAuthError> {
        Ok(self.scope_difference().await?.missing().clone())
    }

    /// Drops `token` from the caches if it is still the current one, so the next caller renews.
    pub async fn token_rejected(&self, token: &AccessToken) {
        self.inner.reject(token).await;
    }

    /// The server's SMART configuration, when discovery was used.
    pub fn configuration(&self) -> Option<&SmartConfiguration> {
        self.inner
            .endpoint
            .get()
            .and_then(|e| e.configuration.as_ref())
    }

    /// The token endpoint, once resolved.
    pub fn resolved_token_endpoint(&self) -> Option<&Url> {
        self.inner.endpoint.get().map(|e| &e.url)
    }
}

impl Inner {
    fn buffer_for(&self, token: &StoredToken) -> Duration {
        let lifetime = token
            .expires_at
            .duration_since(token.issued_at)
            .unwrap_or(Duration::ZERO);
        self.renewal_buffer.min(lifetime / 2)
    }

    fn usable(&self, token: &StoredToken, now: SystemTime) -> bool {
        !token.expires_within(now, self.buffer_for(token))
    }

    /// The cached access token alone, when usable: the per-request fast path, which copies no
    /// secret and no other field.
    fn cached_access_token(&self) -> Option<AccessToken> {
        let now = self.clock.now();
        let guard = self.cached.read().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|t| self.usable(t, now))
            .map(|t| t.access_token.clone())
    }

    async fn access_token(&self) -> Result<AccessToken, OAuthError> {
        match self.cached_access_token() {
            Some(t) => {
                tracing::trace!(cache = "hit", "Backend Services token");
                Ok(t)
            }
            None => Ok(self.token().await?.access_token),
        }
    }

    fn cached_usable(&self, now: SystemTime) -> Option<StoredToken> {
        let guard = self.cached.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|t| self.usable(t, now)).cloned()
    }

    async fn token(&self) -> Result<StoredToken, OAuthError> {
        if let Some(t) = self.cached_usable(self.clock.now()) {
            return Ok(t);
        }
        tracing::debug!(
            cache = "miss",
            fhir_base = self.fhir_base.as_str(),
            "Backend Services token"
        );
        let flight = {
            let mut slot = self.flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = self.cached_usable(self.clock.now()) {
                return Ok(t);
            }
            slot.get_or_insert_with(|| Arc::new(Flight::default()))
                .clone()
        };
        // `get_or_init` runs one initialiser at a time: every caller that joined this flight waits
        // for it. If the caller running it is cancelled, the next waiter takes over.
        let result = flight
            .result
            .get_or_init(|| async {
                match tokio::time::timeout(self.load_timeout, self.acquire()).await {
                    Ok(result) => result,
                    Err(_) => Err(OAuthError::Timeout(self.load_timeout)),
                }
            })
            .await
            .clone();
        {
            let mut slot = self.flight.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                *slot = None;
            }
        }
        result
    }

    /// Gets a token from the store (another process may have fetched one) or from the server.
    async fn acquire(&self) -> Result<StoredToken, OAuthError> {
        if let Some(t) = self.usable_from_store().await? {
            tracing::debug!(
                cache = "store",
                "Backend Services token found in the token store"
            );
            return Ok(t);
        }
        // Cross-process single flight: the lease holder fetches; others wait for its result in
        // the store, take the lease when it is freed, and fetch themselves if neither happens in
        // time.
        let mut lease = self.try_lease().await?;
        if lease.is_none() {
            let deadline = self.load_timeout / 2;
            let mut waited = Duration::ZERO;
            let mut step = Duration::from_millis(25);
            while waited < deadline {
                tokio::time::sleep(step).await;
                waited += step;
                step = (step * 2).min(Duration::from_millis(500));
                if let Some(t) = self.usable_from_store().await? {
                    return Ok(t);
                }
                lease = self.try_lease().await?;
                if lease.is_some() {
                    break;
                }
            }
        }
        let token = self.fetch().await?;
        self.store
            .set(&self.store_key, token.clone())
            .await
            .map_err(OAuthError::from)?;
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        // Released only after the token is stored, so that the next holder finds it.
        if let Some(lease) = lease {
            lease.release().await;
        }
        Ok(token)
    }

    async fn try_lease(&self) -> Result<Option<LeaseGuard>, OAuthError> {
        let lease = self
            .store
            .try_acquire_lease(&self.store_key, self.load_timeout)
            .await
            .map_err(OAuthError::from)?;
        Ok(lease.map(|lease| LeaseGuard {
            store: self.store.clone(),
            lease: Some(lease),
        }))
    }

    async fn usable_from_store(&self) -> Result<Option<StoredToken>, OAuthError> {
        let stored = self
            .store
            .get(&self.store_key)
            .await
            .map_err(OAuthError::from)?;
        match stored {
            Some(t) if self.usable(&t, self.clock.now()) => {
                *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }

    /// One token request with a freshly signed assertion (SC-2.11, SC-3.2).
    async fn fetch(&self) -> Result<StoredToken, OAuthError> {
        let endpoint = self
            .endpoint
            .get_or_try_init(|| self.resolve_endpoint())
            .await?;
        let assertion = self
            .credential
            .sign(
                &endpoint.signer,
                &self.client_id,
                &endpoint.audience,
                self.clock.now(),
            )
            .map_err(OAuthError::Assertion)?;
        let request = client_credentials_request(&endpoint.url, &self.scope, assertion.secret())?;
        drop(assertion);
        exchange(
            &self.http,
            &self.clock,
            request,
            &self.scope,
            "client_credentials",
        )
        .await
    }

    /// The token endpoint: the explicit one, or discovery plus the fit check (SC-1.13).
    async fn resolve_endpoint(&self) -> Result<Endpoint, OAuthError> {
        let (url, audience, configuration) = match &self.explicit_endpoint {
            Some((url, spelled)) => (url.clone(), spelled.clone(), None),
            None => {
                let config = smart_fhir_discovery::discover(&self.http, &self.fhir_base)
                    .await
                    .map_err(OAuthError::from)?;
                (
                    config.token_endpoint().clone(),
                    config.token_endpoint_as_advertised().to_owned(),
                    Some(config),
                )
            }
        };
        // The fit check (SC-1.13): the server must offer client credentials with
        // `private_key_jwt` and accept one of the candidate algorithms.
        let fit = match configuration.as_ref().filter(|_| !self.skip_fit_check) {
            Some(config) => Some(
                config
                    .check_fit(&ClientProfile::backend_services(
                        self.candidates.iter().map(|a| a.as_str()),
                    ))
                    .map_err(OAuthError::Unfit)?,
            ),
            None => None,
        };
        let algorithm =
            chosen_algorithm(&self.candidates, fit.as_ref()).ok_or_else(|| OAuthError::Config {
                field: "private_key",
                reason: "no supported signing algorithm fits this key".to_owned(),
            })?;
        let signer = self
            .credential
            .signer(algorithm, self.fhir_base.insecure_http())
            .map_err(OAuthError::Assertion)?;
        Ok(Endpoint {
            url,
            audience,
            signer,
            configuration,
        })
    }

    async fn reject(&self, token: &AccessToken) {
        {
            let mut cached = self.cached.write().unwrap_or_else(|p| p.into_inner());
            if cached
                .as_ref()
                .is_some_and(|t| t.access_token.ct_eq(token.secret()))
            {
                *cached = None;
            }
        }
        // Compare-and-delete: a newer token stored meanwhile stays.
        let _ = self
            .store
            .delete_if_access_token(&self.store_key, token)
            .await;
    }
}

#[async_trait]
impl AccessTokenProvider for BackendServices {
    async fn access_token(&self) -> Result<AccessToken, ProviderError> {
        self.inner.access_token().await.map_err(|e| {
            let kind = if e.is_invalid_client() {
                ProviderErrorKind::Rejected
            } else {
                ProviderErrorKind::Unavailable
            };
            ProviderError::new(kind, "cannot get a Backend Services access token").with_source(e)
        })
    }

    async fn token_rejected(&self, token: &AccessToken) {
        self.inner.reject(token).await;
    }

    fn fhir_base(&self) -> Option<&FhirBaseUrl> {
        Some(&self.inner.fhir_base)
    }

    fn http_client(&self) -> Option<&SharedHttpClient> {
        Some(&self.inner.http)
    }
}
