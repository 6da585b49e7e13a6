//! [`BackendServicesBuilder`]: the configuration of a Backend Services token source, checked.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use smart_fhir_core::{
    Clock, ExpiringCache, FhirBaseUrl, HttpClient, ServerClocks, SharedClock, SharedHttpClient,
};
use smart_fhir_discovery::DiscoveryCache;
use smart_fhir_scopes::ScopeSet;
use smart_fhir_store::{MemoryTokenStore, SharedTokenStore, TokenStore, TokenStoreLease};
use tokio::sync::OnceCell;
use url::Url;

use super::{BackendServices, Inner, DEFAULT_LOAD_TIMEOUT, DEFAULT_RENEWAL_BUFFER};
use crate::credential::PrivateKeyJwt;
use crate::error::OAuthError;

impl BackendServices {
    /// A builder.
    pub fn builder() -> BackendServicesBuilder {
        BackendServicesBuilder {
            fhir_base: None,
            client_id: None,
            scope: None,
            credential: None,
            token_endpoint: None,
            http: None,
            discovery: None,
            store: None,
            clock: None,
            renewal_buffer: DEFAULT_RENEWAL_BUFFER,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            skip_fit_check: false,
            clock_skew_correction: true,
        }
    }
}

/// Builder for [`BackendServices`]. Nothing touches the network until the first token is asked
/// for.
#[must_use]
pub struct BackendServicesBuilder {
    fhir_base: Option<FhirBaseUrl>,
    client_id: Option<String>,
    scope: Option<String>,
    credential: Option<PrivateKeyJwt>,
    token_endpoint: Option<String>,
    http: Option<SharedHttpClient>,
    discovery: Option<Arc<DiscoveryCache>>,
    store: Option<SharedTokenStore>,
    clock: Option<SharedClock>,
    renewal_buffer: Duration,
    load_timeout: Duration,
    skip_fit_check: bool,
    clock_skew_correction: bool,
}

impl fmt::Debug for BackendServicesBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendServicesBuilder")
            .field("fhir_base", &self.fhir_base)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("credential", &self.credential)
            .field("token_endpoint", &self.token_endpoint)
            .finish_non_exhaustive()
    }
}

impl BackendServicesBuilder {
    /// The FHIR server's base URL (required).
    pub fn fhir_base(mut self, base: FhirBaseUrl) -> Self {
        self.fhir_base = Some(base);
        self
    }

    /// The registered client id (required).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The scopes to request, space-separated (required), e.g. `system/Patient.rs` (SC-3.3).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The `private_key_jwt` credential that signs client assertions (required): a
    /// [`PrivateKey`](smart_fhir_jwt::PrivateKey) (any format `smart-fhir-jwt` loads) with the
    /// defaults, or a [`PrivateKeyJwt`] with its algorithm, `kid`, `jku` or assertion lifetime
    /// set.
    pub fn private_key(mut self, credential: impl Into<PrivateKeyJwt>) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// The token endpoint, which skips discovery.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// The transport (required): usually `smart_fhir_http::HyperHttpClient`.
    pub fn http_client(mut self, http: impl HttpClient + 'static) -> Self {
        self.http = Some(SharedHttpClient::new(http));
        self
    }

    /// Where the server's SMART configuration is discovered and kept. Default: the cache of the
    /// transport ([`DiscoveryCache::for_transport`]), shared by every client built with the same
    /// shared transport, so that a thousand tenants of one server make one discovery request and
    /// keep one copy of the configuration. Give a cache of its own to a client that must not
    /// share (another clock, other discovery options).
    pub fn discovery_cache(mut self, cache: Arc<DiscoveryCache>) -> Self {
        self.discovery = Some(cache);
        self
    }

    /// Where tokens are cached (default: in memory, this process only).
    pub fn token_store(mut self, store: impl TokenStore + 'static) -> Self {
        self.store = Some(SharedTokenStore::new(store));
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(SharedClock::new(clock));
        self
    }

    /// Renew this long before expiry (default 30 s; at most half a token's lifetime is used).
    pub fn renewal_buffer(mut self, buffer: Duration) -> Self {
        self.renewal_buffer = buffer;
        self
    }

    /// How long one token acquisition may take (default 30 s).
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// Skips the check that the discovered server supports client credentials with
    /// `private_key_jwt` (for servers whose configuration is known to be incomplete).
    pub fn skip_fit_check(mut self, skip: bool) -> Self {
        self.skip_fit_check = skip;
        self
    }

    /// Whether the client assertion's `iat` and `exp` follow the token endpoint's clock as its
    /// `Date` headers show it (default on; see [`ServerClocks`]). Off: the local clock alone,
    /// and no retry after a refusal.
    pub fn clock_skew_correction(mut self, on: bool) -> Self {
        self.clock_skew_correction = on;
        self
    }

    /// Checks the configuration and builds the token source.
    pub fn build(self) -> Result<BackendServices, OAuthError> {
        let missing = |field: &'static str| OAuthError::Config {
            field,
            reason: "required".to_owned(),
        };
        let fhir_base = self.fhir_base.ok_or_else(|| missing("fhir_base"))?;
        let client_id = self.client_id.ok_or_else(|| missing("client_id"))?;
        if client_id.trim().is_empty() {
            return Err(OAuthError::Config {
                field: "client_id",
                reason: "empty".to_owned(),
            });
        }
        let scope_text = self.scope.ok_or_else(|| missing("scope"))?;
        let requested = ScopeSet::parse(&scope_text).map_err(|e| OAuthError::Config {
            field: "scope",
            reason: e.to_string(),
        })?;
        if requested.is_empty() {
            return Err(OAuthError::Config {
                field: "scope",
                reason: "no scope given".to_owned(),
            });
        }
        let credential = self.credential.ok_or_else(|| missing("private_key"))?;
        let http = self.http.ok_or_else(|| missing("http_client"))?;
        let candidates = credential.check().map_err(|issue| OAuthError::Config {
            field: issue.field,
            reason: issue.reason,
        })?;
        let token_endpoint = match self.token_endpoint {
            Some(t) => Some((
                parse_endpoint(&t, "token_endpoint", &fhir_base)?,
                t.trim().to_owned(),
            )),
            None => None,
        };
        if let Some(jku) = credential.jku_url() {
            parse_endpoint(jku, "jku", &fhir_base)?;
        }
        // The scope is sent as the caller wrote it (a server may match scope strings exactly);
        // only surrounding and repeated white space is removed.
        let scope = scope_text.split_whitespace().collect::<Vec<_>>().join(" ");
        let store_key = format!(
            "smart-fhir:backend:{}|{}|{}",
            fhir_base.as_str(),
            client_id,
            scope
        );
        let clock = self.clock.unwrap_or_default();
        let store = self
            .store
            .unwrap_or_else(|| SharedTokenStore::new(MemoryTokenStore::new()));
        let discovery = self
            .discovery
            .unwrap_or_else(|| DiscoveryCache::for_transport(&http, &clock));
        let server_clocks = self
            .clock_skew_correction
            .then(|| ServerClocks::for_transport(&http, &clock));
        let lease = TokenStoreLease::new(store.clone(), store_key.clone());
        // One key (this client's token); the load timeout bounds one acquisition in all.
        let cache = ExpiringCache::new(clock.clone(), self.renewal_buffer, self.load_timeout, 1);
        Ok(BackendServices {
            inner: Arc::new(Inner {
                fhir_base,
                client_id,
                scope,
                requested,
                credential,
                candidates,
                explicit_endpoint: token_endpoint,
                skip_fit_check: self.skip_fit_check,
                http,
                discovery,
                store,
                store_key,
                lease,
                clock,
                server_clocks,
                renewal_buffer: self.renewal_buffer,
                load_timeout: self.load_timeout,
                endpoint: OnceCell::new(),
                cache,
            }),
        })
    }
}

/// A configured endpoint: acceptable for the FHIR base (never plain http for an https base,
/// whatever the insecure-HTTP opt-in says).
fn parse_endpoint(text: &str, what: &str, base: &FhirBaseUrl) -> Result<Url, OAuthError> {
    let url = Url::parse(text).map_err(|e| smart_fhir_core::UrlError::Invalid {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    smart_fhir_discovery::check_document_endpoint(&url, what, base.url(), base.insecure_http())?;
    Ok(url)
}
