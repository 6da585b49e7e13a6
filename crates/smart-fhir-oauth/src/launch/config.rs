//! Configuration of an App Launch client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use smart_fhir_core::{
    check_endpoint_url, ClientSecret, Clock, FhirBaseUrl, HttpClient, InsecureHttp, ServerClocks,
    SharedClock, SharedHttpClient, Url,
};
use smart_fhir_discovery::{ClientAuthMethod, DiscoveryCache};
use smart_fhir_jwt::Algorithm;
use smart_fhir_scopes::ScopeSet;
use smart_fhir_store::{MemorySessionStore, SessionStore, SharedSessionStore};

use crate::credential::PrivateKeyJwt;
use crate::error::excerpt;
use crate::id_token::IdTokenVerifier;
use crate::launch::error::LaunchError;

/// How long an authorization in flight (its `state`, PKCE verifier and nonce) is kept: 10
/// minutes.
pub const DEFAULT_PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a signed-in session is kept in the session store after its last refresh: 8 hours.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);
/// How long before expiry an access token is refreshed, by default (at most half its lifetime
/// is used).
pub const DEFAULT_REFRESH_BUFFER: Duration = Duration::from_secs(30);
/// Authorize URLs longer than this many bytes are sent as a form POST when the server
/// advertises `authorize-post` (SC-4.10, SC-1.12).
pub const DEFAULT_AUTHORIZE_POST_THRESHOLD: usize = 2000;
/// How long one refresh may take in all, by default.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// How the client authenticates at the token endpoint, in the code exchange and in every
/// refresh.
// Built once per application and never moved on a hot path: boxing the key variant would only
// make it harder to construct.
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public client: no authentication; `client_id` goes in the form body (SC-2.22,
    /// SC-4.30).
    Public,
    /// `client_secret_basic`: `Authorization: Basic base64(urlencode(client_id) ":"
    /// urlencode(secret))` (SC-2.18, SC-2.19).
    ClientSecretBasic(ClientSecret),
    /// `client_secret_post`: `client_id` and `client_secret` in the form body (SC-2.21).
    ClientSecretPost(ClientSecret),
    /// `private_key_jwt`: a freshly signed client assertion whose `aud` is the token endpoint
    /// (SC-2.9 – SC-2.13), with the same credential type as Backend Services.
    PrivateKeyJwt(PrivateKeyJwt),
}

impl ClientAuth {
    /// `private_key_jwt` with a key (and the defaults) or a configured [`PrivateKeyJwt`].
    pub fn private_key_jwt(credential: impl Into<PrivateKeyJwt>) -> Self {
        Self::PrivateKeyJwt(credential.into())
    }

    /// The `token_endpoint_auth_methods_supported` name of this method.
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::Public => "none",
            Self::ClientSecretBasic(_) => "client_secret_basic",
            Self::ClientSecretPost(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str("Public"),
            Self::ClientSecretBasic(_) => f.write_str("ClientSecretBasic([redacted])"),
            Self::ClientSecretPost(_) => f.write_str("ClientSecretPost([redacted])"),
            Self::PrivateKeyJwt(credential) => {
                f.debug_tuple("PrivateKeyJwt").field(credential).finish()
            }
        }
    }
}

/// Which issuers (FHIR servers) an app may be launched from (SC-4.3, P1).
///
/// An EHR launch names its FHIR server in `iss`, a value anyone can put in a link. Before any
/// request is made, `iss` is checked against this policy; otherwise a crafted link could make
/// the app fetch a discovery document from, and send its client credentials to, a server of the
/// attacker's choosing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum IssuerPolicy {
    /// Only these FHIR base URLs (compared after normalisation: scheme and host case, trailing
    /// slash).
    AllowList(Vec<FhirBaseUrl>),
    /// Any issuer at all. Only for apps registered with every server that could launch them and
    /// that accept the risks above (a test harness, a sandbox); never for production apps.
    DangerouslyAllowAnyIssuer,
}

impl IssuerPolicy {
    /// An allow-list of these FHIR base URLs.
    pub fn allow_list(bases: impl IntoIterator<Item = FhirBaseUrl>) -> Self {
        Self::AllowList(bases.into_iter().collect())
    }

    /// Checks `iss` against the policy without any network request, and returns the FHIR base
    /// to use: the allow-listed one (with its own insecure-HTTP policy), or `iss` parsed with
    /// `insecure` when any issuer is allowed.
    pub fn check(&self, iss: &str, insecure: InsecureHttp) -> Result<FhirBaseUrl, LaunchError> {
        let refused = || LaunchError::IssuerNotAllowed {
            iss: excerpt(iss.as_bytes()),
        };
        match self {
            Self::AllowList(bases) => {
                // Parsed with the loosest policy only to normalise it for the comparison; the
                // allow-listed entry, with its own policy, is what is used.
                let candidate = FhirBaseUrl::parse_with(iss, InsecureHttp::AllowLoopback)
                    .map_err(|_| refused())?;
                bases
                    .iter()
                    .find(|b| b.as_str() == candidate.as_str())
                    .cloned()
                    .ok_or_else(refused)
            }
            Self::DangerouslyAllowAnyIssuer => {
                FhirBaseUrl::parse_with(iss, insecure).map_err(|_| refused())
            }
        }
    }
}

/// The configuration of an App Launch client, checked. Build it with
/// [`LaunchClientConfig::builder`], then make an [`AppLaunch`](crate::AppLaunch) of it.
pub struct LaunchClientConfig {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: ScopeSet,
    pub(crate) auth: ClientAuth,
    /// `private_key_jwt`: the algorithms that fit the key, most preferred first.
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) issuers: IssuerPolicy,
    pub(crate) store: SharedSessionStore,
    pub(crate) clock: SharedClock,
    pub(crate) http: SharedHttpClient,
    pub(crate) discovery: Arc<DiscoveryCache>,
    pub(crate) id_tokens: IdTokenVerifier,
    pub(crate) landing_url: Url,
    pub(crate) insecure: InsecureHttp,
    pub(crate) refresh_buffer: Duration,
    pub(crate) refresh_timeout: Duration,
    pub(crate) session_ttl: Duration,
    pub(crate) pending_ttl: Duration,
    pub(crate) authorize_post_threshold: usize,
    pub(crate) skip_fit_check: bool,
    /// The token endpoints' clock offsets, when correction is on.
    pub(crate) server_clocks: Option<Arc<ServerClocks>>,
}

impl fmt::Debug for LaunchClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchClientConfig")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("auth", &self.auth)
            .field("issuers", &self.issuers)
            .field("landing_url", &self.landing_url.as_str())
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl LaunchClientConfig {
    /// A builder.
    pub fn builder() -> LaunchClientConfigBuilder {
        LaunchClientConfigBuilder::default()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The registered redirect URI, exactly as sent.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The configured scopes.
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// Where the application sends the user after a successful callback (P10).
    pub fn landing_url(&self) -> &Url {
        &self.landing_url
    }

    /// The client authentication method as discovery's fit check knows it.
    pub(crate) fn auth_method(&self) -> ClientAuthMethod {
        match &self.auth {
            ClientAuth::Public => ClientAuthMethod::None,
            ClientAuth::ClientSecretBasic(_) => ClientAuthMethod::ClientSecretBasic,
            ClientAuth::ClientSecretPost(_) => ClientAuthMethod::ClientSecretPost,
            ClientAuth::PrivateKeyJwt(_) => PrivateKeyJwt::auth_method(&self.algorithms),
        }
    }
}

/// Builds a [`LaunchClientConfig`] (by value; [`build`](Self::build) checks everything).
#[must_use]
#[derive(Default)]
pub struct LaunchClientConfigBuilder {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    auth: Option<ClientAuth>,
    issuers: Option<IssuerPolicy>,
    store: Option<SharedSessionStore>,
    clock: Option<SharedClock>,
    http: Option<SharedHttpClient>,
    discovery: Option<Arc<DiscoveryCache>>,
    id_tokens: Option<IdTokenVerifier>,
    landing_url: Option<String>,
    insecure: InsecureHttp,
    refresh_buffer: Option<Duration>,
    refresh_timeout: Option<Duration>,
    session_ttl: Option<Duration>,
    pending_ttl: Option<Duration>,
    authorize_post_threshold: Option<usize>,
    skip_fit_check: bool,
    /// `None`: on (the default).
    clock_skew_correction: Option<bool>,
}

impl fmt::Debug for LaunchClientConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchClientConfigBuilder")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("auth", &self.auth)
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

impl LaunchClientConfigBuilder {
    /// The registered client id (required).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The registered redirect URI (required; SC-4.1): absolute, `https`, or `http` on a
    /// loopback host with [`insecure_http`](Self::insecure_http). Sent exactly as given.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// The scopes to request, space-separated (required), e.g. `launch/patient openid fhirUser
    /// offline_access patient/*.rs`. An EHR launch adds `launch` when it is missing; a
    /// standalone launch leaves plain `launch` out (SC-4.9). `openid` makes the flow send a
    /// nonce and verify the `id_token`.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// How the client authenticates at the token endpoint (default: [`ClientAuth::Public`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Which issuers may launch the app (required; SC-4.3, P1).
    pub fn issuer_policy(mut self, policy: IssuerPolicy) -> Self {
        self.issuers = Some(policy);
        self
    }

    /// Where authorizations in flight and signed-in sessions are kept (default: in this
    /// process's memory, on the configured clock).
    pub fn session_store(mut self, store: impl SessionStore + 'static) -> Self {
        self.store = Some(SharedSessionStore::new(store));
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(SharedClock::new(clock));
        self
    }

    /// The transport (required): usually `smart_fhir_http::HyperHttpClient`.
    pub fn http_client(mut self, http: impl HttpClient + 'static) -> Self {
        self.http = Some(SharedHttpClient::new(http));
        self
    }

    /// Where servers' SMART configurations are discovered and kept. Default: the cache of the
    /// transport ([`DiscoveryCache::for_transport`]), shared by every client (App Launch or
    /// Backend Services) built with the same shared transport; give one of its own to a client
    /// that must not share (another clock, other discovery options).
    pub fn discovery_cache(mut self, cache: Arc<DiscoveryCache>) -> Self {
        self.discovery = Some(cache);
        self
    }

    /// The `id_token` verifier (default: a new one on the transport and clock).
    pub fn id_token_verifier(mut self, verifier: IdTokenVerifier) -> Self {
        self.id_tokens = Some(verifier);
        self
    }

    /// Whether times sent to or checked against the authorization server follow its clock as
    /// its `Date` headers show it (default on; see [`ServerClocks`]): the `private_key_jwt`
    /// assertion's `iat` and `exp`, and the default `id_token` verifier's checks (a verifier
    /// given with [`id_token_verifier`](Self::id_token_verifier) keeps its own setting).
    pub fn clock_skew_correction(mut self, on: bool) -> Self {
        self.clock_skew_correction = Some(on);
        self
    }

    /// The application's own page to send the user to after a successful callback (required).
    /// The callback never takes a destination from the request (SC-4.15, P10).
    pub fn landing_url(mut self, url: impl Into<String>) -> Self {
        self.landing_url = Some(url.into());
        self
    }

    /// Whether plain `http://` is allowed for loopback hosts (redirect URI, landing URL,
    /// issuers under [`IssuerPolicy::DangerouslyAllowAnyIssuer`], `smart_style_url`), for
    /// local development and tests (default: [`InsecureHttp::Deny`]; P7).
    pub fn insecure_http(mut self, policy: InsecureHttp) -> Self {
        self.insecure = policy;
        self
    }

    /// Refresh this long before the access token expires (default
    /// [`DEFAULT_REFRESH_BUFFER`]; at most half a token's lifetime is used).
    pub fn refresh_buffer(mut self, buffer: Duration) -> Self {
        self.refresh_buffer = Some(buffer);
        self
    }

    /// How long one refresh may take in all (default [`DEFAULT_REFRESH_TIMEOUT`]).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = Some(timeout);
        self
    }

    /// How long a signed-in session is kept after its last refresh (default
    /// [`DEFAULT_SESSION_TTL`]).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = Some(ttl);
        self
    }

    /// How long an authorization may stay in flight (default [`DEFAULT_PENDING_TTL`]).
    pub fn pending_ttl(mut self, ttl: Duration) -> Self {
        self.pending_ttl = Some(ttl);
        self
    }

    /// Authorize URLs longer than this are sent as a form POST when the server advertises
    /// `authorize-post` (default [`DEFAULT_AUTHORIZE_POST_THRESHOLD`]).
    pub fn authorize_post_threshold(mut self, bytes: usize) -> Self {
        self.authorize_post_threshold = Some(bytes);
        self
    }

    /// Skips the check that the server advertises the grant, client type and launch this client
    /// uses (SC-1.13), for servers whose configuration is known to be incomplete. An
    /// `authorization_endpoint` is required regardless, and PKCE is always `S256` (SC-1.11).
    pub fn skip_fit_check(mut self, skip: bool) -> Self {
        self.skip_fit_check = skip;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<LaunchClientConfig, LaunchError> {
        let missing = |field: &'static str| LaunchError::config(field, "required");
        let client_id = self.client_id.ok_or_else(|| missing("client_id"))?;
        if client_id.trim().is_empty() || client_id.chars().any(char::is_control) {
            return Err(LaunchError::config(
                "client_id",
                "empty or contains control characters",
            ));
        }
        let redirect_uri = self.redirect_uri.ok_or_else(|| missing("redirect_uri"))?;
        check_url(&redirect_uri, "redirect_uri", self.insecure)?;
        let landing = self.landing_url.ok_or_else(|| missing("landing_url"))?;
        let landing_url = check_url(&landing, "landing_url", self.insecure)?;
        let scope = self.scope.ok_or_else(|| missing("scope"))?;
        let scopes =
            ScopeSet::parse(&scope).map_err(|e| LaunchError::config("scope", e.to_string()))?;
        if scopes.is_empty() {
            return Err(LaunchError::config("scope", "no scope given"));
        }
        let issuers = self.issuers.ok_or_else(|| missing("issuer_policy"))?;
        if matches!(&issuers, IssuerPolicy::AllowList(list) if list.is_empty()) {
            return Err(LaunchError::config(
                "issuer_policy",
                "the allow-list is empty: no issuer could launch the app",
            ));
        }
        let auth = self.auth.unwrap_or(ClientAuth::Public);
        let algorithms = match &auth {
            ClientAuth::PrivateKeyJwt(credential) => {
                if let Some(jku) = credential.jku_url() {
                    check_url(jku, "jku", self.insecure)?;
                }
                credential
                    .check()
                    .map_err(|issue| LaunchError::config("client_auth", issue.reason))?
            }
            ClientAuth::ClientSecretBasic(s) | ClientAuth::ClientSecretPost(s) => {
                if s.secret().is_empty() {
                    return Err(LaunchError::config(
                        "client_auth",
                        "the client secret is empty",
                    ));
                }
                Vec::new()
            }
            ClientAuth::Public => Vec::new(),
        };
        let http = self.http.ok_or_else(|| missing("http_client"))?;
        let clock = self.clock.unwrap_or_default();
        let store = self.store.unwrap_or_else(|| {
            SharedSessionStore::new(MemorySessionStore::new().with_clock(clock.clone()))
        });
        let discovery = self
            .discovery
            .unwrap_or_else(|| DiscoveryCache::for_transport(&http, &clock));
        let correction = self.clock_skew_correction.unwrap_or(true);
        let id_tokens = self.id_tokens.unwrap_or_else(|| {
            IdTokenVerifier::new(http.clone(), clock.clone()).clock_skew_correction(correction)
        });
        let server_clocks = correction.then(|| ServerClocks::for_transport(&http, &clock));
        let pending_ttl = self.pending_ttl.unwrap_or(DEFAULT_PENDING_TTL);
        let session_ttl = self.session_ttl.unwrap_or(DEFAULT_SESSION_TTL);
        let refresh_timeout = self.refresh_timeout.unwrap_or(DEFAULT_REFRESH_TIMEOUT);
        for (field, d) in [
            ("pending_ttl", pending_ttl),
            ("session_ttl", session_ttl),
            ("refresh_timeout", refresh_timeout),
        ] {
            if d.is_zero() {
                return Err(LaunchError::config(field, "must be longer than zero"));
            }
        }
        Ok(LaunchClientConfig {
            server_clocks,
            client_id,
            redirect_uri,
            scopes,
            auth,
            algorithms,
            issuers,
            store,
            clock,
            http,
            discovery,
            id_tokens,
            landing_url,
            insecure: self.insecure,
            refresh_buffer: self.refresh_buffer.unwrap_or(DEFAULT_REFRESH_BUFFER),
            refresh_timeout,
            session_ttl,
            pending_ttl,
            authorize_post_threshold: self
                .authorize_post_threshold
                .unwrap_or(DEFAULT_AUTHORIZE_POST_THRESHOLD),
            skip_fit_check: self.skip_fit_check,
        })
    }
}

fn check_url(text: &str, what: &'static str, insecure: InsecureHttp) -> Result<Url, LaunchError> {
    let url = Url::parse(text).map_err(|e| LaunchError::config(what, e.to_string()))?;
    check_endpoint_url(&url, what, insecure)
        .map_err(|e| LaunchError::config(what, e.to_string()))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_after_normalisation_and_refuses_others_p1() {
        let policy =
            IssuerPolicy::allow_list([FhirBaseUrl::parse("https://ehr.example/fhir").unwrap()]);
        let ok = policy
            .check("https://EHR.example/fhir/", InsecureHttp::Deny)
            .unwrap();
        assert_eq!(ok.as_str(), "https://ehr.example/fhir");
        for bad in [
            "https://ehr.example/fhir2",
            "https://ehr.example.evil/fhir",
            "http://ehr.example/fhir",
            "https://ehr.example/fhir?x=1",
            "not a url",
            "",
        ] {
            assert!(
                matches!(
                    policy.check(bad, InsecureHttp::AllowLoopback),
                    Err(LaunchError::IssuerNotAllowed { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn allow_any_still_refuses_insecure_http_without_opt_in_p7() {
        let policy = IssuerPolicy::DangerouslyAllowAnyIssuer;
        assert!(policy
            .check("https://any.example/r4", InsecureHttp::Deny)
            .is_ok());
        assert!(policy
            .check("http://127.0.0.1:1/r4", InsecureHttp::Deny)
            .is_err());
        assert!(policy
            .check("http://127.0.0.1:1/r4", InsecureHttp::AllowLoopback)
            .is_ok());
        assert!(policy
            .check("http://ehr.example/r4", InsecureHttp::AllowLoopback)
            .is_err());
    }

    #[test]
    fn debug_redacts_secrets() {
        let a = ClientAuth::ClientSecretBasic(ClientSecret::new("hunter2"));
        let b = ClientAuth::ClientSecretPost(ClientSecret::new("hunter2"));
        let printed = format!("{a:?} {b:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
