//! The Backend Services token source against a fake server that asserts the requests and counts
//! them: single flight, renewal, rejection, discovery and fit, assertion content, timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use smart_fhir_core::AccessTokenProvider;
use smart_fhir_core::{
    AccessToken, FhirBaseUrl, FixedClock, HttpClient, HttpError, SharedHttpClient,
};
use smart_fhir_jwt::{Algorithm, KeySpec, PrivateKey};
use smart_fhir_oauth::{BackendServices, OAuthError, OAuthErrorCode, PrivateKeyJwt};

const BASE: &str = "https://ehr.example/fhir";
const TOKEN_URL: &str = "https://auth.example/oauth2/token";

type Responder = dyn Fn(usize) -> (u16, String) + Send + Sync;

/// A fake server: answers discovery with `config`, token requests with `token(n)` (n = 1, 2, …),
/// and records each token request's form.
struct Fake {
    config: Mutex<Option<Value>>,
    token: Box<Responder>,
    token_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    forms: Mutex<Vec<Vec<(String, String)>>>,
    hang: bool,
    /// When set, token requests wait for a permit: the test decides when the server answers.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fake")
    }
}

impl Fake {
    fn new(token: impl Fn(usize) -> (u16, String) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            config: Mutex::new(Some(json!({
                "token_endpoint": TOKEN_URL,
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "capabilities": ["client-confidential-asymmetric", "permission-v2"],
                "code_challenge_methods_supported": ["S256"]
            }))),
            token: Box::new(token),
            token_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            forms: Mutex::new(vec![]),
            hang: false,
            gate: None,
        })
    }

    fn bearer(expires_in: u64) -> impl Fn(usize) -> (u16, String) + Send + Sync {
        move |n| {
            (
                200,
                json!({"access_token": format!("token-{n}"), "token_type": "bearer",
                       "expires_in": expires_in, "scope": "system/Patient.rs"})
                .to_string(),
            )
        }
    }

    fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
struct FakeClient(Arc<Fake>);

#[async_trait]
impl HttpClient for FakeClient {
    async fn execute(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let uri = req.uri().to_string();
        let (status, body) = if uri == format!("{BASE}/.well-known/smart-configuration") {
            assert_eq!(req.method(), http::Method::GET);
            self.0.discovery_requests.fetch_add(1, Ordering::SeqCst);
            match self.0.config.lock().unwrap().clone() {
                Some(c) => (200, c.to_string()),
                None => (404, String::new()),
            }
        } else if uri == TOKEN_URL {
            assert_eq!(req.method(), http::Method::POST);
            assert_eq!(
                req.headers()["content-type"],
                "application/x-www-form-urlencoded"
            );
            let n = self.0.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
            let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body())
                .into_owned()
                .collect();
            self.0.forms.lock().unwrap().push(form);
            if let Some(gate) = &self.0.gate {
                let _permit = gate.acquire().await.unwrap();
            }
            if self.0.hang {
                std::future::pending::<()>().await;
            }
            // Let every other caller pile up behind this request.
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            (self.0.token)(n)
        } else {
            (404, String::new())
        };
        Ok(http::Response::builder()
            .status(status)
            .body(Bytes::from(body))
            .unwrap())
    }
}

fn key() -> PrivateKey {
    PrivateKey::generate(KeySpec::P384).expect("key")
}

fn builder(fake: &Arc<Fake>) -> smart_fhir_oauth::BackendServicesBuilder {
    BackendServices::builder()
        .fhir_base(FhirBaseUrl::parse(BASE).unwrap())
        .client_id("backend-1")
        .scope("system/Patient.rs")
        .private_key(key())
        .http_client(SharedHttpClient::new(FakeClient(fake.clone())))
}

fn decode_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Single flight: 10,000 concurrent callers on an empty cache → exactly one token request, and
/// every caller gets its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_10000_callers_one_token_request() {
    let fake = Fake::new(Fake::bearer(3600));
    let backend = builder(&fake).build().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10_000 {
        let b = backend.clone();
        tasks.push(tokio::spawn(async move { b.access_token().await }));
    }
    for t in tasks {
        let token = t.await.unwrap().expect("every caller gets the token");
        assert_eq!(token.secret(), "token-1");
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.discovery_requests.load(Ordering::SeqCst), 1);
}

/// Single flight also shares an error: every waiter gets it; the next call tries again.
///
/// The server answers only once every caller has joined the flight (a single-threaded runtime:
/// a caller joins the flight within the poll that counts it as started).
#[tokio::test(flavor = "current_thread")]
async fn single_flight_shares_the_error_then_retries_sc_3_7() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let fake = Arc::new(Fake {
        gate: Some(gate.clone()),
        ..Arc::into_inner(Fake::new(|n| {
            if n == 1 {
                (
                    401,
                    r#"{"error":"invalid_client","error_description":"unknown key"}"#.into(),
                )
            } else {
                (
                    200,
                    r#"{"access_token":"ok","token_type":"Bearer","expires_in":300}"#.into(),
                )
            }
        }))
        .unwrap()
    });
    let backend = builder(&fake).build().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let b = backend.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            b.access_token().await
        }));
    }
    while started.load(Ordering::SeqCst) < 1000 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(usize::MAX >> 4);
    for t in tasks {
        let err = t.await.unwrap().expect_err("all share the error");
        assert!(err.is_invalid_client(), "{err:?}");
        assert_eq!(err.oauth_code(), Some(&OAuthErrorCode::InvalidClient));
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(backend.access_token().await.unwrap().secret(), "ok");
    assert_eq!(fake.token_requests(), 2);
}

/// SC-3.8, SC-3.9: the token is reused until the renewal buffer before expiry, then renewed.
#[tokio::test]
async fn sc_3_8_renews_a_buffer_before_expiry() {
    let fake = Fake::new(Fake::bearer(300));
    let clock = FixedClock::at_unix(1_800_000_000);
    let backend = builder(&fake)
        .clock(clock.clone())
        .renewal_buffer(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(backend.access_token().await.unwrap().secret(), "token-1");
    clock.advance(Duration::from_secs(269));
    assert_eq!(backend.access_token().await.unwrap().secret(), "token-1");
    assert_eq!(fake.token_requests(), 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(backend.access_token().await.unwrap().secret(), "token-2");
    assert_eq!(fake.token_requests(), 2);
}

/// SC-3.4: without `expires_in` the token lives 60 s, so it is renewed after 30 s.
#[tokio::test]
async fn sc_3_4_missing_expires_in_gets_a_short_lifetime() {
    let fake = Fake::new(|n| {
        (
            200,
            format!(r#"{{"access_token":"t{n}","token_type":"Bearer"}}"#),
        )
    });
    let clock = FixedClock::at_unix(1_800_000_000);
    let backend = builder(&fake).clock(clock.clone()).build().unwrap();
    assert_eq!(backend.access_token().await.unwrap().secret(), "t1");
    clock.advance(Duration::from_secs(29));
    assert_eq!(backend.access_token().await.unwrap().secret(), "t1");
    clock.advance(Duration::from_secs(2));
    assert_eq!(backend.access_token().await.unwrap().secret(), "t2");
}

/// SC-8.26: a rejected token is dropped and renewed; reporting a stale token keeps the new one.
#[tokio::test]
async fn sc_8_26_rejected_token_is_dropped_once() {
    let fake = Fake::new(Fake::bearer(3600));
    let backend = builder(&fake).build().unwrap();
    let first = AccessTokenProvider::access_token(&backend).await.unwrap();
    AccessTokenProvider::token_rejected(&backend, &first).await;
    let second = AccessTokenProvider::access_token(&backend).await.unwrap();
    assert_eq!(second.secret(), "token-2");
    AccessTokenProvider::token_rejected(&backend, &AccessToken::new("token-1")).await;
    let third = AccessTokenProvider::access_token(&backend).await.unwrap();
    assert_eq!(third.secret(), "token-2");
    assert_eq!(fake.token_requests(), 2);
}

/// SC-2.9–2.11, SC-2.13, SC-3.2, P8, P11: each request carries a fresh assertion for the exact
/// token endpoint.
#[tokio::test]
async fn sc_2_10_each_request_signs_a_fresh_assertion() {
    let fake = Fake::new(Fake::bearer(3600));
    let clock = FixedClock::at_unix(1_800_000_000);
    let backend = builder(&fake).clock(clock.clone()).build().unwrap();
    let first = backend.access_token().await.unwrap();
    backend.token_rejected(&first).await;
    backend.access_token().await.unwrap();
    let forms = fake.forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 2);
    let mut jtis = vec![];
    for form in &forms {
        let get = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("grant_type"), "client_credentials");
        assert_eq!(get("scope"), "system/Patient.rs");
        assert_eq!(
            get("client_assertion_type"),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        let jwt = get("client_assertion");
        let header = decode_part(&jwt, 0);
        let claims = decode_part(&jwt, 1);
        // The fake lists RS384 first, but the key is P-384: ES384 is the one that fits both.
        assert_eq!(header["alg"], "ES384");
        assert_eq!(header["typ"], "JWT");
        assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
        assert_eq!(claims["iss"], "backend-1");
        assert_eq!(claims["sub"], "backend-1");
        assert_eq!(claims["aud"], TOKEN_URL);
        assert_eq!(claims["iat"], 1_800_000_000u64);
        assert_eq!(claims["exp"], 1_800_000_120u64);
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(jtis[0], jtis[1], "a fresh jti per token request (SC-2.11)");
}

/// An explicit token endpoint skips discovery.
#[tokio::test]
async fn explicit_token_endpoint_skips_discovery() {
    let fake = Fake::new(Fake::bearer(3600));
    let backend = builder(&fake).token_endpoint(TOKEN_URL).build().unwrap();
    backend.access_token().await.unwrap();
    assert_eq!(fake.discovery_requests.load(Ordering::SeqCst), 0);
    assert!(backend.configuration().is_none());
}

/// SC-1.13: a server without client credentials is refused before any token request.
#[tokio::test]
async fn sc_1_13_unfit_server_is_refused_before_any_token_request() {
    let fake = Fake::new(Fake::bearer(3600));
    *fake.config.lock().unwrap() = Some(json!({
        "token_endpoint": TOKEN_URL,
        "authorization_endpoint": "https://auth.example/authorize",
        "grant_types_supported": ["authorization_code"],
        "capabilities": ["launch-ehr", "client-public"],
        "code_challenge_methods_supported": ["S256"]
    }));
    let backend = builder(&fake).build().unwrap();
    let err = backend.access_token().await.unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("client_credentials"), "{chain}");
    assert_eq!(fake.token_requests(), 0);
}

/// SC-1.13: an explicit algorithm the server does not accept is refused.
#[tokio::test]
async fn sc_1_13_algorithm_the_server_refuses() {
    let fake = Fake::new(Fake::bearer(3600));
    let backend = builder(&fake)
        .private_key(PrivateKey::generate(KeySpec::P256).unwrap())
        .build()
        .unwrap();
    let err = backend.access_token().await.unwrap_err();
    assert!(error_chain(&err).contains("ES256"), "{}", error_chain(&err));
    assert_eq!(fake.token_requests(), 0);
}

/// The load timeout bounds a token endpoint that never answers (tokio's paused clock: no real
/// waiting).
#[tokio::test(start_paused = true)]
async fn load_timeout_bounds_a_hanging_server() {
    let fake = Arc::new(Fake {
        hang: true,
        ..Arc::into_inner(Fake::new(Fake::bearer(3600))).unwrap()
    });
    let backend = builder(&fake)
        .load_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = backend.access_token().await.unwrap_err();
    assert!(matches!(&err, OAuthError::Timeout(_)), "{err:?}");
}

/// The builder refuses incomplete or unsafe configuration with a typed error.
#[test]
fn builder_refuses_bad_configuration() {
    let fake = Fake::new(Fake::bearer(3600));
    let cases: Vec<(smart_fhir_oauth::BackendServicesBuilder, &str)> = vec![
        (BackendServices::builder(), "fhir_base"),
        (builder(&fake).client_id(" "), "client_id"),
        (builder(&fake).scope("patient/Observation.rx"), "scope"),
        (builder(&fake).scope("   "), "scope"),
        (
            builder(&fake).private_key(
                PrivateKeyJwt::new(key()).assertion_lifetime(Duration::from_secs(301)),
            ),
            "assertion_lifetime",
        ),
        (
            builder(&fake).token_endpoint("http://auth.example/token"),
            "http",
        ),
        (
            builder(&fake).private_key(PrivateKeyJwt::new(key()).jku("ftp://x/jwks")),
            "jku",
        ),
        // P7: an https base's token endpoint is https even with the insecure-HTTP opt-in
        // (the client assertion would travel in clear).
        (
            builder(&fake)
                .fhir_base(
                    FhirBaseUrl::parse_with(BASE, smart_fhir_core::InsecureHttp::AllowLoopback)
                        .unwrap(),
                )
                .token_endpoint("http://127.0.0.1:9000/token"),
            "downgrade",
        ),
        (
            builder(&fake).private_key(PrivateKeyJwt::new(key()).algorithm(Algorithm::ES256)),
            "ES256 does not fit",
        ),
    ];
    for (b, expect) in cases {
        let err = b.build().unwrap_err();
        assert!(err.to_string().contains(expect), "{expect}: {err}");
    }
}

/// P5: nothing secret in Debug.
#[tokio::test]
async fn p5_debug_has_no_secret() {
    let fake = Fake::new(Fake::bearer(3600));
    let b = builder(&fake);
    let printed = format!("{b:?}");
    assert!(printed.contains("[redacted]"));
    let backend = b.build().unwrap();
    let token = backend.token().await.unwrap();
    let printed = format!("{backend:?} {token:?}");
    assert!(!printed.contains("token-1"), "{printed}");
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// A caller that gives up while its token request is under way does not hold up the next one:
/// its store lease is released, not left to expire (tokio's paused clock measures the wait).
#[tokio::test(start_paused = true)]
async fn cancelled_fetch_releases_its_lease() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let fake = Arc::new(Fake {
        gate: Some(gate.clone()),
        ..Arc::into_inner(Fake::new(Fake::bearer(3600))).unwrap()
    });
    let backend = builder(&fake).build().unwrap();
    let first = {
        let b = backend.clone();
        tokio::spawn(async move { b.access_token().await })
    };
    while fake.token_requests() == 0 {
        tokio::task::yield_now().await;
    }
    first.abort();
    let _ = first.await;
    gate.add_permits(100);
    let started = tokio::time::Instant::now();
    let token = backend
        .access_token()
        .await
        .expect("the next caller gets a token");
    assert_eq!(token.secret(), "token-2");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} for a lease nobody held",
        started.elapsed()
    );
}
