//! The SMART Backend Services token source (SC-2, SC-3): client credentials with a signed
//! client assertion, cached, renewed before expiry, single flight.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use smart_fhir_core::{
    AccessToken, Clock, ClockOffset, FhirBaseUrl, HttpClient, ServerClocks, SharedClock,
    SharedHttpClient,
};
use smart_fhir_core::{AccessTokenProvider, ProviderError, ProviderErrorKind};
use smart_fhir_core::{CacheOutcome, Expiring, ExpiringCache};
use smart_fhir_discovery::{ClientProfile, DiscoveryCache, SmartConfiguration};
use smart_fhir_jwt::{Algorithm, AssertionSigner};
use smart_fhir_scopes::{ScopeDiff, ScopeSet};
use smart_fhir_store::{
    acquire_or_wait, Acquired, LeaseOptions, SharedTokenStore, StoredToken, TokenStore,
    TokenStoreLease,
};
use tokio::sync::OnceCell;
use url::Url;

use crate::credential::{chosen_algorithm, PrivateKeyJwt};
use crate::error::{OAuthError, OAuthErrorCode};
use crate::token::{client_credentials_request, exchange};

mod builder;
#[cfg(test)]
mod tests;

pub use builder::BackendServicesBuilder;

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
/// * Clock skew: the assertion's `iat` and `exp` are the token endpoint's time, the local clock
///   corrected by the offset the server's `Date` headers show (discovery and token responses;
///   see [`ServerClocks`]). When the server refuses an assertion (`invalid_client` or
///   `invalid_grant`) and its response shows an offset the assertion did not carry, the request
///   is made once more with the corrected time. Turned off with
///   [`BackendServicesBuilder::clock_skew_correction`].
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
    /// Where the server's configuration comes from: shared by every client of the transport
    /// unless the builder was given another.
    discovery: Arc<DiscoveryCache>,
    store: SharedTokenStore,
    store_key: String,
    lease: TokenStoreLease,
    clock: SharedClock,
    /// The token endpoint's clock offset, when correction is on.
    server_clocks: Option<Arc<ServerClocks>>,
    renewal_buffer: Duration,
    load_timeout: Duration,
    /// The endpoint and signer, prepared once (the first token request).
    endpoint: OnceCell<Endpoint>,
    /// The token in memory, renewed a buffer before expiry, one load at a time.
    cache: ExpiringCache<(), Arc<StoredToken>, OAuthError>,
}

/// The resolved token endpoint and the signer prepared for it.
struct Endpoint {
    url: Url,
    /// The token endpoint exactly as the server or the caller spelled it: the assertion's `aud`
    /// (SC-2.10).
    audience: String,
    signer: AssertionSigner,
    /// Shared with every client of the server (see [`DiscoveryCache::for_transport`]).
    configuration: Option<Arc<SmartConfiguration>>,
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
        Ok(StoredToken::clone(&*Inner::token(&self.inner).await?))
    }

    /// The current access token, fetching one if needed.
    pub async fn access_token(&self) -> Result<AccessToken, OAuthError> {
        Inner::access_token(&self.inner).await
    }

    /// The scopes the server granted with the current token (SC-3.4, SC-5.13), fetching a token
    /// if needed. Scopes the grammar does not know are kept aside, not failed on.
    pub async fn granted_scopes(&self) -> Result<ScopeSet, OAuthError> {
        let token = Inner::token(&self.inner).await?;
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
            .and_then(|e| e.configuration.as_deref())
    }

    /// The token endpoint, once resolved.
    pub fn resolved_token_endpoint(&self) -> Option<&Url> {
        self.inner.endpoint.get().map(|e| &e.url)
    }
}

impl Inner {
    /// Whether `token` is usable at `now`: not within the renewal buffer of its expiry, the
    /// buffer capped at half its lifetime (SC-3.8).
    fn usable(&self, token: &StoredToken) -> bool {
        let lifetime = token
            .expires_at
            .duration_since(token.issued_at)
            .unwrap_or(Duration::ZERO);
        !token.expires_within(self.clock.now(), self.renewal_buffer.min(lifetime / 2))
    }

    /// The access token: from memory when fresh (the per-request fast path, which copies the
    /// access token alone), else from the one shared load.
    async fn access_token(self: &Arc<Self>) -> Result<AccessToken, OAuthError> {
        match self.cache.get(&()) {
            Some(t) => {
                tracing::trace!(cache = "hit", "Backend Services token");
                Ok(t.access_token.clone())
            }
            None => Ok(Self::token(self).await?.access_token.clone()),
        }
    }

    /// The token: from memory when fresh, else loaded once for every caller that asks while
    /// the load runs (the one expiring cache, [`ExpiringCache`]).
    async fn token(self: &Arc<Self>) -> Result<Arc<StoredToken>, OAuthError> {
        let inner = Arc::clone(self);
        let (result, outcome) = self
            .cache
            .get_or_load_traced(&(), move || async move {
                tracing::debug!(
                    cache = "miss",
                    fhir_base = inner.fhir_base.as_str(),
                    "Backend Services token"
                );
                let token = inner.acquire().await?;
                let expires_at = token.expires_at;
                Ok(Expiring::new(Arc::new(token), expires_at))
            })
            .await;
        if outcome == CacheOutcome::Hit {
            tracing::trace!(cache = "hit", "Backend Services token");
        }
        result
    }

    /// Gets a token from the store (another process may have fetched one) or from the server,
    /// under the store's lease (the one lease protocol of `smart-fhir-store`): the holder
    /// fetches; the others wait for its result in the store, take the lease when it is freed,
    /// and fetch themselves if neither happens within half the load timeout.
    async fn acquire(&self) -> Result<StoredToken, OAuthError> {
        let options = LeaseOptions {
            ttl: self.load_timeout,
            max_wait: self.load_timeout / 2,
        };
        let lease = match acquire_or_wait(&self.lease, options, || self.usable_from_store()).await?
        {
            Acquired::Ready(token) => {
                tracing::debug!(
                    cache = "store",
                    "Backend Services token found in the token store"
                );
                return Ok(token);
            }
            Acquired::Held(lease) => Some(lease),
            Acquired::WaitedOut => None,
        };
        let token = self.fetch().await?;
        self.store
            .set(&self.store_key, token.clone())
            .await
            .map_err(OAuthError::from)?;
        // Released only after the token is stored, so that the next holder finds it. A lease
        // whose fetch was cancelled or failed is released on drop.
        if let Some(lease) = lease {
            lease.release().await;
        }
        Ok(token)
    }

    async fn usable_from_store(&self) -> Result<Option<StoredToken>, OAuthError> {
        let stored = self
            .store
            .get(&self.store_key)
            .await
            .map_err(OAuthError::from)?;
        Ok(stored.filter(|t| self.usable(t)))
    }

    /// One token request with a freshly signed assertion (SC-2.11, SC-3.2), and at most one
    /// more when the server refused the assertion and its `Date` showed a clock offset the
    /// assertion did not carry.
    async fn fetch(&self) -> Result<StoredToken, OAuthError> {
        let endpoint = self
            .endpoint
            .get_or_try_init(|| self.resolve_endpoint())
            .await?;
        let (result, applied) = self.request_token(endpoint).await;
        let Err(error) = result else {
            return result;
        };
        let Some(clocks) = &self.server_clocks else {
            return Err(error);
        };
        let now_known = clocks.offset(&endpoint.url);
        if !refused_assertion(&error) || now_known == applied {
            return Err(error);
        }
        tracing::info!(
            origin = %endpoint.url.origin().ascii_serialization(),
            offset_seconds = now_known.seconds(),
            "the token endpoint refused the client assertion and its clock is off; retrying once with its time"
        );
        // Once: the second answer is final, whatever its Date says.
        self.request_token(endpoint).await.0
    }

    /// Signs an assertion with the token endpoint's time and sends the token request; returns
    /// the result and the clock offset the assertion was signed with.
    async fn request_token(
        &self,
        endpoint: &Endpoint,
    ) -> (Result<StoredToken, OAuthError>, ClockOffset) {
        let offset = self
            .server_clocks
            .as_ref()
            .map_or(ClockOffset::ZERO, |c| c.offset(&endpoint.url));
        let result = async {
            let assertion = self
                .credential
                .sign(
                    &endpoint.signer,
                    &self.client_id,
                    &endpoint.audience,
                    offset.apply(self.clock.now()),
                )
                .map_err(OAuthError::Assertion)?;
            let request =
                client_credentials_request(&endpoint.url, &self.scope, assertion.secret())?;
            drop(assertion);
            // The token's lifetime is counted on the local clock (`expires_in` is relative), so
            // the exchange keeps the local clock; the response's `Date` feeds the offsets.
            let observed;
            let http: &dyn HttpClient = match &self.server_clocks {
                Some(clocks) => {
                    observed = clocks.observing(&self.http);
                    &observed
                }
                None => &self.http,
            };
            exchange(
                http,
                &self.clock,
                request,
                &self.scope,
                "client_credentials",
            )
            .await
        }
        .await;
        (result, offset)
    }

    /// The token endpoint: the explicit one, or discovery plus the fit check (SC-1.13).
    async fn resolve_endpoint(&self) -> Result<Endpoint, OAuthError> {
        let (url, audience, configuration) = match &self.explicit_endpoint {
            Some((url, spelled)) => (url.clone(), spelled.clone(), None),
            None => {
                let config = self
                    .discovery
                    .get(&self.fhir_base)
                    .await
                    .map_err(OAuthError::Discovery)?;
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
        self.cache
            .invalidate_if(&(), |t| t.access_token.ct_eq(token.secret()));
        // Compare-and-delete: a newer token stored meanwhile stays.
        let _ = self
            .store
            .delete_if_access_token(&self.store_key, token)
            .await;
    }
}

/// Whether the token endpoint refused the request in a way a wrong `iat`/`exp` causes.
fn refused_assertion(error: &OAuthError) -> bool {
    matches!(
        error.oauth_code(),
        Some(OAuthErrorCode::InvalidClient | OAuthErrorCode::InvalidGrant)
    )
}

#[async_trait]
impl AccessTokenProvider for BackendServices {
    async fn access_token(&self) -> Result<AccessToken, ProviderError> {
        Inner::access_token(&self.inner).await.map_err(|e| {
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
