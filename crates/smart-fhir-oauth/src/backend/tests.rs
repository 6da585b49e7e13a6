//! Clock skew in Backend Services: the assertion carries the token endpoint's time, learnt from
//! the `Date` of its responses, and a refusal that reveals an offset is retried once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use smart_fhir_core::{FixedClock, HttpError};
use smart_fhir_jwt::{KeySpec, PrivateKey};

use super::*;

/// The servers' true time.
const T: u64 = 1_700_000_000;
const BASE: &str = "https://ehr.example/fhir";
/// The token endpoint on the FHIR server's origin.
const SAME_ORIGIN_TOKEN: &str = "https://ehr.example/oauth2/token";
/// The token endpoint on an origin of its own.
const OTHER_ORIGIN_TOKEN: &str = "https://auth.example/oauth2/token";

/// A FHIR server and an authorization server whose clocks read the local clock plus `skew`
/// seconds, and which check an assertion's `exp` as SMART servers do: not past (15 s tolerance)
/// and at most five minutes ahead.
struct Servers {
    local: FixedClock,
    /// `server time - local time`, per origin (the FHIR server, the authorization server).
    fhir_skew: i64,
    auth_skew: i64,
    token_endpoint: &'static str,
    /// Refuse every token request with this error, whatever the assertion.
    always_refuse: Option<&'static str>,
    token_requests: AtomicUsize,
    /// `iat` of each assertion received.
    iats: Mutex<Vec<i64>>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Servers")
    }
}

fn unix(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

impl Servers {
    fn time(&self, skew: i64) -> SystemTime {
        ClockOffset::from_seconds(skew).apply(self.local.now())
    }

    fn reply(&self, status: u16, skew: i64, body: Value) -> http::Response<Bytes> {
        http::Response::builder()
            .status(status)
            .header(http::header::DATE, httpdate::fmt_http_date(self.time(skew)))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body.to_string()))
            .unwrap()
    }

    fn token(&self, request: &http::Request<Bytes>) -> http::Response<Bytes> {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let assertion = url::form_urlencoded::parse(request.body())
            .find(|(k, _)| k == "client_assertion")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let payload = assertion.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        self.iats
            .lock()
            .unwrap()
            .push(claims["iat"].as_i64().unwrap());
        let exp = claims["exp"].as_i64().unwrap();
        let now = unix(self.time(self.auth_skew));
        let refusal = self.always_refuse.or(if exp < now - 15 || exp - now > 300 {
            Some("invalid_client")
        } else {
            None
        });
        match refusal {
            Some(code) => self.reply(400, self.auth_skew, json!({"error": code})),
            None => self.reply(
                200,
                self.auth_skew,
                json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 300}),
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Fake(Arc<Servers>);

#[async_trait]
impl HttpClient for Fake {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let s = &self.0;
        let uri = request.uri().to_string();
        Ok(
            if uri == format!("{BASE}/.well-known/smart-configuration") {
                s.reply(
                    200,
                    s.fhir_skew,
                    json!({
                        "token_endpoint": s.token_endpoint,
                        "grant_types_supported": ["client_credentials"],
                        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                        "token_endpoint_auth_signing_alg_values_supported": ["ES384"],
                        "capabilities": ["client-confidential-asymmetric"],
                        "code_challenge_methods_supported": ["S256"]
                    }),
                )
            } else if uri == s.token_endpoint {
                s.token(&request)
            } else {
                s.reply(404, 0, json!({}))
            },
        )
    }
}

struct Setup {
    /// The local clock's error: `local - true time`.
    local_error: i64,
    token_endpoint: &'static str,
    /// Whether the FHIR server's clock is right (else it is as wrong as the local one).
    fhir_server_right: bool,
    always_refuse: Option<&'static str>,
    correction: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            local_error: 0,
            token_endpoint: SAME_ORIGIN_TOKEN,
            fhir_server_right: true,
            always_refuse: None,
            correction: true,
        }
    }
}

fn run(setup: Setup) -> (BackendServices, Arc<Servers>) {
    let local = FixedClock::at_unix(T.checked_add_signed(setup.local_error).unwrap());
    let servers = Arc::new(Servers {
        local: local.clone(),
        fhir_skew: if setup.fhir_server_right {
            -setup.local_error
        } else {
            0
        },
        auth_skew: -setup.local_error,
        token_endpoint: setup.token_endpoint,
        always_refuse: setup.always_refuse,
        token_requests: AtomicUsize::new(0),
        iats: Mutex::default(),
    });
    let backend = BackendServices::builder()
        .fhir_base(FhirBaseUrl::parse(BASE).unwrap())
        .client_id("skewed")
        .scope("system/Patient.rs")
        .private_key(PrivateKey::generate(KeySpec::P384).unwrap())
        .http_client(Fake(servers.clone()))
        .clock(local)
        .clock_skew_correction(setup.correction)
        .build()
        .unwrap();
    (backend, servers)
}

/// A local clock five minutes fast or slow: the discovery response's `Date` (same origin as
/// the token endpoint) sets the offset, and the first assertion already carries the server's
/// time: one token request.
#[tokio::test]
async fn skew_first_assertion_carries_the_servers_time_after_discovery() {
    for local_error in [300, -300] {
        let (backend, servers) = run(Setup {
            local_error,
            ..Setup::default()
        });
        backend.token().await.expect("token");
        assert_eq!(servers.token_requests.load(Ordering::SeqCst), 1);
        assert_eq!(
            *servers.iats.lock().unwrap(),
            vec![T as i64],
            "{local_error}"
        );
    }
}

/// With correction off the same client is refused (the fake checks `exp` as SMART servers do):
/// the local time is sent, and there is no retry.
#[tokio::test]
async fn skew_correction_off_sends_local_time_and_is_refused() {
    for local_error in [300, -300] {
        let (backend, servers) = run(Setup {
            local_error,
            correction: false,
            ..Setup::default()
        });
        let e = backend.token().await.expect_err("refused");
        assert!(e.is_invalid_client(), "{e:?}");
        assert_eq!(servers.token_requests.load(Ordering::SeqCst), 1);
        assert_eq!(*servers.iats.lock().unwrap(), vec![T as i64 + local_error]);
    }
}

/// A token endpoint on another origin than discovery: the FHIR server's `Date` does not move
/// the assertion (per server); the refusal's `Date` shows the offset, and one retry with the
/// corrected time succeeds.
#[tokio::test]
async fn skew_refusal_with_an_offset_is_retried_once_with_the_servers_time() {
    let (backend, servers) = run(Setup {
        local_error: -300,
        token_endpoint: OTHER_ORIGIN_TOKEN,
        ..Setup::default()
    });
    backend.token().await.expect("token after one retry");
    assert_eq!(servers.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        *servers.iats.lock().unwrap(),
        vec![T as i64 - 300, T as i64]
    );
    // Later requests use the known offset straight away.
    backend.inner.cache.clear();
    backend
        .inner
        .store
        .delete(backend.store_key())
        .await
        .unwrap();
    backend.token().await.expect("token");
    assert_eq!(servers.token_requests.load(Ordering::SeqCst), 3);
}

/// One server's `Date` never changes the times sent to another: the FHIR server's clock is
/// five minutes off, the authorization server's and the local clock agree.
#[tokio::test]
async fn skew_is_per_server() {
    let local = FixedClock::at_unix(T);
    let servers = Arc::new(Servers {
        local: local.clone(),
        fhir_skew: 300,
        auth_skew: 0,
        token_endpoint: OTHER_ORIGIN_TOKEN,
        always_refuse: None,
        token_requests: AtomicUsize::new(0),
        iats: Mutex::default(),
    });
    let backend = BackendServices::builder()
        .fhir_base(FhirBaseUrl::parse(BASE).unwrap())
        .client_id("per-server")
        .scope("system/Patient.rs")
        .private_key(PrivateKey::generate(KeySpec::P384).unwrap())
        .http_client(Fake(servers.clone()))
        .clock(local)
        .build()
        .unwrap();
    backend.token().await.expect("token");
    assert_eq!(*servers.iats.lock().unwrap(), vec![T as i64]);
}

/// Never a loop: a server that refuses every assertion is asked twice at most, and the
/// refusal is returned.
#[tokio::test]
async fn skew_retry_happens_once_only() {
    let (backend, servers) = run(Setup {
        local_error: 300,
        token_endpoint: OTHER_ORIGIN_TOKEN,
        always_refuse: Some("invalid_grant"),
        ..Setup::default()
    });
    let e = backend.token().await.expect_err("refused");
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant));
    assert_eq!(servers.token_requests.load(Ordering::SeqCst), 2);
}

/// No retry when the refusal shows no new offset (the assertion already carried it, or the
/// clocks agree), nor for refusals a clock cannot cause.
#[tokio::test]
async fn skew_no_retry_without_a_new_offset_or_for_other_errors() {
    for (local_error, code) in [
        (300, "invalid_client"), // the offset was known from discovery and applied
        (0, "invalid_client"),   // the clocks agree
        (0, "invalid_scope"),
    ] {
        let (backend, servers) = run(Setup {
            local_error,
            always_refuse: Some(code),
            ..Setup::default()
        });
        backend.token().await.expect_err("refused");
        assert_eq!(
            servers.token_requests.load(Ordering::SeqCst),
            1,
            "{local_error} {code}"
        );
    }
    let (backend, servers) = run(Setup {
        local_error: 300,
        token_endpoint: OTHER_ORIGIN_TOKEN,
        always_refuse: Some("invalid_scope"),
        ..Setup::default()
    });
    backend.token().await.expect_err("refused");
    assert_eq!(servers.token_requests.load(Ordering::SeqCst), 1);
}
