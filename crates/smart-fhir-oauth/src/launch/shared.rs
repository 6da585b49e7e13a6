//! What every part of the flow shares: the configuration, the refreshes in flight, the client's
//! authentication at the token endpoint, and the token exchange.

use std::sync::Arc;

use bytes::Bytes;
use smart_fhir_core::{Clock, ExpiringCache};
use smart_fhir_jwt::{Algorithm, ClientAssertion};
use smart_fhir_store::StoredToken;

use crate::introspect::RevocationAuth;
use crate::launch::config::{ClientAuth, LaunchClientConfig};
use crate::launch::error::LaunchError;
use crate::launch::protocol::TokenAuth;
use crate::launch::record::digest;
use crate::launch::state::SessionState;

/// The longest session id accepted.
const MAX_SESSION_ID: usize = 512;

/// How many sessions may be refreshing at once in one process before finished entries are
/// pruned (entries with a refresh in progress are never dropped).
const MAX_REFRESHING_SESSIONS: usize = 4096;

/// The shared state of an [`AppLaunch`](crate::AppLaunch) and its
/// [`SessionClient`](crate::SessionClient)s.
pub(crate) struct LaunchCore {
    pub(crate) config: LaunchClientConfig,
    /// Refreshes in progress in this process, by session id: the one expiring cache
    /// ([`ExpiringCache`]) used for single flight alone (a refreshed session is not kept in
    /// memory; the store has it).
    pub(crate) refreshes: ExpiringCache<String, Arc<SessionState>, LaunchError>,
}

impl LaunchCore {
    pub(crate) fn new(config: LaunchClientConfig) -> Self {
        // The refresh task's own time limit (`refresh_timeout`) ends a refresh first, so that
        // its waiters learn the outcome only once the task is over (the lease released, the
        // rotation stored or abandoned); the cache's limit is a backstop a second later.
        let refreshes = ExpiringCache::new(
            config.clock.clone(),
            config.refresh_buffer,
            config.refresh_timeout + std::time::Duration::from_secs(1),
            MAX_REFRESHING_SESSIONS,
        );
        Self { config, refreshes }
    }

    /// A fresh client assertion for `private_key_jwt` (SC-2.11), `aud` = the token endpoint as
    /// the server advertised it (SC-2.10, P8); `None` for other methods.
    pub(crate) fn assertion(
        &self,
        token_endpoint: &str,
        algorithm: Option<Algorithm>,
    ) -> Result<Option<ClientAssertion>, LaunchError> {
        let cfg = &self.config;
        let ClientAuth::PrivateKeyJwt(credential) = &cfg.auth else {
            return Ok(None);
        };
        let alg = algorithm
            .filter(|a| cfg.algorithms.contains(a))
            .or_else(|| cfg.algorithms.first().copied())
            .ok_or_else(|| LaunchError::config("client_auth", "no signing algorithm"))?;
        let signer = credential
            .signer(alg, cfg.insecure)
            .map_err(LaunchError::Assertion)?;
        // The token endpoint's time (its `Date` headers; `ServerClocks`), when correction is on.
        let offset = match (&cfg.server_clocks, url::Url::parse(token_endpoint)) {
            (Some(clocks), Ok(url)) => clocks.offset(&url),
            _ => smart_fhir_core::ClockOffset::ZERO,
        };
        credential
            .sign(
                &signer,
                &cfg.client_id,
                token_endpoint,
                offset.apply(cfg.clock.now()),
            )
            .map(Some)
            .map_err(LaunchError::Assertion)
    }

    /// The token-request authentication of this client.
    pub(crate) fn token_auth<'a>(
        &'a self,
        assertion: Option<&'a ClientAssertion>,
    ) -> TokenAuth<'a> {
        let cfg = &self.config;
        match (&cfg.auth, assertion) {
            (ClientAuth::ClientSecretBasic(secret), _) => TokenAuth::ClientSecretBasic {
                client_id: &cfg.client_id,
                secret,
            },
            (ClientAuth::ClientSecretPost(secret), _) => TokenAuth::ClientSecretPost {
                client_id: &cfg.client_id,
                secret,
            },
            (ClientAuth::PrivateKeyJwt(_), Some(assertion)) => {
                TokenAuth::PrivateKeyJwt { assertion }
            }
            _ => TokenAuth::Public {
                client_id: &cfg.client_id,
            },
        }
    }

    /// The client's authentication at the revocation endpoint: as at the token endpoint (RFC
    /// 7009 §2.1), with a fresh assertion for each request.
    pub(crate) fn revocation_auth(
        &self,
        token_endpoint: &str,
        algorithm: Option<Algorithm>,
    ) -> Result<RevocationAuth, LaunchError> {
        let cfg = &self.config;
        let client_id = cfg.client_id.clone();
        Ok(match &cfg.auth {
            ClientAuth::Public => RevocationAuth::Public { client_id },
            ClientAuth::ClientSecretBasic(secret) => RevocationAuth::Basic {
                client_id,
                secret: secret.clone(),
            },
            ClientAuth::ClientSecretPost(secret) => RevocationAuth::Post {
                client_id,
                secret: secret.clone(),
            },
            ClientAuth::PrivateKeyJwt(_) => match self.assertion(token_endpoint, algorithm)? {
                Some(assertion) => RevocationAuth::PrivateKeyJwt {
                    client_id,
                    assertion,
                },
                None => RevocationAuth::Public { client_id },
            },
        })
    }

    /// Sends a code exchange or a refresh through the one token exchange
    /// ([`crate::token::exchange`]).
    pub(crate) async fn exchange(
        &self,
        request: http::Request<Bytes>,
        requested_scope: &str,
        grant: &'static str,
    ) -> Result<StoredToken, LaunchError> {
        // The response's `Date` (success or error) feeds the server's clock offset.
        let observed;
        let http: &dyn smart_fhir_core::HttpClient = match &self.config.server_clocks {
            Some(clocks) => {
                observed = clocks.observing(&self.config.http);
                &observed
            }
            None => &self.config.http,
        };
        crate::token::exchange(http, &self.config.clock, request, requested_scope, grant)
            .await
            .map_err(LaunchError::Token)
    }
}

/// A short, one-way tag of a session id for logs: the id itself is a bearer credential of the
/// application's user and is never logged.
pub(crate) fn session_tag(session_id: &str) -> String {
    digest(session_id).chars().take(12).collect()
}

pub(crate) fn check_session_id(session_id: &str) -> Result<(), LaunchError> {
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID {
        return Err(LaunchError::input(
            "session id",
            format!("must be 1 to {MAX_SESSION_ID} bytes"),
        ));
    }
    if session_id.chars().any(char::is_control) {
        return Err(LaunchError::input(
            "session id",
            "contains control characters",
        ));
    }
    if session_id.starts_with("smart-fhir:") {
        return Err(LaunchError::input(
            "session id",
            "the prefix `smart-fhir:` is reserved",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_checked() {
        assert!(check_session_id("abc").is_ok());
        assert!(check_session_id("").is_err());
        assert!(check_session_id("a\nb").is_err());
        assert!(check_session_id("smart-fhir:launch:states").is_err());
        assert!(check_session_id(&"a".repeat(513)).is_err());
    }

    /// Clock skew: a `private_key_jwt` assertion carries the token endpoint's time once its
    /// offset is known (and that server's alone); with the correction off, the local time.
    #[test]
    fn skew_app_launch_assertion_carries_the_token_endpoints_time() {
        use base64::Engine as _;
        use smart_fhir_core::{FhirBaseUrl, FixedClock, HttpError, SharedHttpClient};

        use crate::launch::config::IssuerPolicy;

        #[derive(Debug)]
        struct NoNetwork;
        #[async_trait::async_trait]
        impl smart_fhir_core::HttpClient for NoNetwork {
            async fn execute(
                &self,
                request: http::Request<Bytes>,
            ) -> Result<http::Response<Bytes>, HttpError> {
                Err(HttpError::new(
                    smart_fhir_core::HttpErrorKind::Connect,
                    request.uri(),
                    "no network in this test",
                ))
            }
        }

        const T: u64 = 1_700_000_000;
        const TOKEN: &str = "https://auth.example/token";
        let iat = |correction: bool, endpoint: &str| {
            let local = FixedClock::at_unix(T + 300);
            let key = smart_fhir_jwt::PrivateKey::generate(smart_fhir_jwt::KeySpec::P384).unwrap();
            let config = LaunchClientConfig::builder()
                .client_id("app")
                .redirect_uri("https://app.example/callback")
                .scope("launch openid")
                .client_auth(ClientAuth::private_key_jwt(key))
                .issuer_policy(IssuerPolicy::allow_list([FhirBaseUrl::parse(
                    "https://ehr.example/fhir",
                )
                .unwrap()]))
                .landing_url("https://app.example/")
                .http_client(SharedHttpClient::new(NoNetwork))
                .clock(local)
                .clock_skew_correction(correction)
                .build()
                .unwrap();
            // The token endpoint's `Date`: the true time, five minutes behind the local clock.
            let clocks = smart_fhir_core::ServerClocks::for_transport(&config.http, &config.clock);
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::DATE,
                "Tue, 14 Nov 2023 22:13:20 GMT".parse().unwrap(),
            );
            clocks.observe(&url::Url::parse(TOKEN).unwrap(), &headers);
            let core = LaunchCore::new(config);
            let assertion = core.assertion(endpoint, None).unwrap().unwrap();
            let payload = assertion.secret().split('.').nth(1).unwrap().to_owned();
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .unwrap(),
            )
            .unwrap();
            claims["iat"].as_u64().unwrap()
        };
        assert_eq!(iat(true, TOKEN), T);
        assert_eq!(iat(false, TOKEN), T + 300);
        assert_eq!(iat(true, "https://other.example/token"), T + 300);
    }

    /// P5: the log tag of a session id is short and does not contain it.
    #[test]
    fn session_tag_hides_the_id() {
        let tag = session_tag("session-secret-123");
        assert_eq!(tag.len(), 12);
        assert!(!tag.contains("session"));
        assert_eq!(tag, session_tag("session-secret-123"));
    }
}
