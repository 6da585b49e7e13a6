//! A fake SMART server for the App Launch tests: the FHIR server's discovery document, an
//! authorization server's token and revocation endpoints, and an OpenID provider's
//! configuration and JWKS. Every request is recorded and counted.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use smart_fhir_core::{
    FhirBaseUrl, FixedClock, HttpClient, HttpError, SharedClock, SharedHttpClient,
};
use smart_fhir_jwt::{KeySpec, PrivateKey};
use smart_fhir_oauth::{
    AppLaunch, AuthorizeRequest, ClientAuth, IssuerPolicy, LaunchClientConfig,
    LaunchClientConfigBuilder,
};
use smart_fhir_store::{MemorySessionStore, SharedSessionStore};

pub(crate) const NOW: u64 = 1_750_000_000;
pub(crate) const BASE: &str = "https://ehr.example/fhir";
pub(crate) const ISSUER: &str = "https://auth.example";
pub(crate) const AUTHORIZE_URL: &str = "https://auth.example/authorize";
pub(crate) const TOKEN_URL: &str = "https://auth.example/token";
pub(crate) const REVOKE_URL: &str = "https://auth.example/revoke";
pub(crate) const OPENID_CONFIG_URL: &str = "https://auth.example/.well-known/openid-configuration";
pub(crate) const JWKS_URL: &str = "https://auth.example/jwks";
pub(crate) const CLIENT_ID: &str = "app-1";
pub(crate) const REDIRECT_URI: &str = "https://app.example/callback";
pub(crate) const LANDING_URL: &str = "https://app.example/home";
pub(crate) const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

/// One request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: http::Method,
    pub uri: String,
    pub authorization: Option<String>,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn names(&self) -> Vec<&str> {
        self.form.iter().map(|(k, _)| k.as_str()).collect()
    }
}

type TokenResponder = dyn Fn(usize, &Recorded) -> (u16, Value) + Send + Sync;

/// The fake server.
pub(crate) struct Server {
    pub smart_config: Mutex<Value>,
    token: Mutex<Arc<TokenResponder>>,
    pub requests: Mutex<Vec<Recorded>>,
    pub total: AtomicUsize,
    pub token_requests: AtomicUsize,
    revoke: Mutex<(u16, Value)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Server")
    }
}

pub(crate) fn default_smart_config() -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": JWKS_URL,
        "authorization_endpoint": AUTHORIZE_URL,
        "token_endpoint": TOKEN_URL,
        "revocation_endpoint": REVOKE_URL,
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": [
            "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
            "client-confidential-asymmetric", "context-ehr-patient", "context-standalone-patient",
            "sso-openid-connect", "permission-offline", "permission-patient", "permission-v2"
        ]
    })
}

/// A token response numbered `n`: access token `at-n`, refresh token `rt-n`, patient in
/// context.
pub(crate) fn token_body(n: usize) -> Value {
    json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "launch/patient openid fhirUser offline_access patient/*.rs",
        "refresh_token": format!("rt-{n}"),
        "patient": "pat-123",
    })
}

impl Server {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            smart_config: Mutex::new(default_smart_config()),
            token: Mutex::new(Arc::new(|n, _| (200, token_body(n)))),
            requests: Mutex::new(Vec::new()),
            total: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
            revoke: Mutex::new((200, json!({}))),
        })
    }

    /// Answers token requests (numbered from 1) with `f`.
    pub(crate) fn on_token(
        &self,
        f: impl Fn(usize, &Recorded) -> (u16, Value) + Send + Sync + 'static,
    ) {
        *self.token.lock().unwrap() = Arc::new(f);
    }

    /// Answers revocation requests with `f`'s status and body.
    pub(crate) fn on_revoke(&self, f: impl FnOnce() -> (u16, Value)) {
        *self.revoke.lock().unwrap() = f();
    }

    /// Changes the discovery document.
    pub(crate) fn edit_config(&self, f: impl FnOnce(&mut Value)) {
        f(&mut self.smart_config.lock().unwrap());
    }

    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub(crate) fn token_requests(&self) -> Vec<Recorded> {
        self.requests_to(TOKEN_URL)
    }

    pub(crate) fn requests_to(&self, url: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.uri == url)
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Fake(pub Arc<Server>);

#[async_trait]
impl HttpClient for Fake {
    async fn execute(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let server = &self.0;
        server.total.fetch_add(1, Ordering::SeqCst);
        let recorded = Recorded {
            method: req.method().clone(),
            uri: req.uri().to_string(),
            authorization: req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
            form: url::form_urlencoded::parse(req.body())
                .into_owned()
                .collect(),
        };
        server.requests.lock().unwrap().push(recorded.clone());
        let (status, body) = match recorded.uri.as_str() {
            u if u == format!("{BASE}/.well-known/smart-configuration") => {
                assert_eq!(req.method(), http::Method::GET);
                (200, server.smart_config.lock().unwrap().clone())
            }
            TOKEN_URL => {
                assert_eq!(req.method(), http::Method::POST);
                assert_eq!(
                    req.headers()["content-type"],
                    "application/x-www-form-urlencoded"
                );
                let n = server.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
                // Let every other caller pile up behind this request.
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                }
                let responder = server.token.lock().unwrap().clone();
                responder(n, &recorded)
            }
            REVOKE_URL => server.revoke.lock().unwrap().clone(),
            OPENID_CONFIG_URL => (
                200,
                json!({"issuer": ISSUER, "jwks_uri": JWKS_URL,
                       "id_token_signing_alg_values_supported": ["RS256"]}),
            ),
            JWKS_URL => (200, id_token_key().public_jwks()),
            // A FHIR read `GET {BASE}/{type}/{id}`: the resource named, with nothing else.
            u if req.method() == http::Method::GET && u.starts_with(&format!("{BASE}/")) => {
                let path = &u[BASE.len() + 1..];
                match path.split_once('/') {
                    Some((kind, id)) if !id.contains('/') => {
                        (200, json!({"resourceType": kind, "id": id}))
                    }
                    _ => (404, json!({})),
                }
            }
            _ => (404, json!({})),
        };
        Ok(http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
            .unwrap())
    }
}

/// The OpenID provider's signing key.
pub(crate) fn id_token_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::generate(KeySpec::Rsa2048)
            .unwrap()
            .with_kid("op-1")
            .unwrap()
    })
}

/// A P-384 client key for `private_key_jwt`.
pub(crate) fn client_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::generate(KeySpec::P384)
            .unwrap()
            .with_kid("client-1")
            .unwrap()
    })
}

/// An `id_token` signed by the provider with `claims`.
pub(crate) fn id_token(claims: &Value) -> String {
    let key = id_token_key();
    let pem = key.to_pkcs8_pem();
    let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// Everything a test needs.
pub(crate) struct Setup {
    pub server: Arc<Server>,
    pub clock: FixedClock,
    pub store: SharedSessionStore,
    pub http: SharedHttpClient,
}

impl Setup {
    pub(crate) fn new() -> Self {
        let server = Server::new();
        let clock = FixedClock::at_unix(NOW);
        let store = SharedSessionStore::new(
            MemorySessionStore::new().with_clock(SharedClock::new(clock.clone())),
        );
        let http = SharedHttpClient::new(Fake(Arc::clone(&server)));
        Self {
            server,
            clock,
            store,
            http,
        }
    }

    /// A configuration builder for a public client with the defaults above.
    pub(crate) fn builder(&self) -> LaunchClientConfigBuilder {
        LaunchClientConfig::builder()
            .client_id(CLIENT_ID)
            .redirect_uri(REDIRECT_URI)
            .scope(SCOPE)
            .issuer_policy(IssuerPolicy::allow_list(
                [FhirBaseUrl::parse(BASE).unwrap()],
            ))
            .landing_url(LANDING_URL)
            .session_store(self.store.clone())
            .clock(self.clock.clone())
            .http_client(self.http.clone())
    }

    pub(crate) fn app(&self) -> AppLaunch {
        AppLaunch::new(self.builder().build().unwrap())
    }

    pub(crate) fn app_with(&self, auth: ClientAuth) -> AppLaunch {
        AppLaunch::new(self.builder().client_auth(auth).build().unwrap())
    }
}

/// The parameters of a redirect or form post.
pub(crate) fn params(req: &AuthorizeRequest) -> HashMap<String, String> {
    let pairs: Vec<(String, String)> = match req {
        AuthorizeRequest::Redirect(url) => url.query_pairs().into_owned().collect(),
        AuthorizeRequest::FormPost { fields, .. } => fields.clone(),
        other => panic!("unexpected {other:?}"),
    };
    let mut map = HashMap::new();
    for (k, v) in pairs {
        assert!(map.insert(k.clone(), v).is_none(), "{k} repeated");
    }
    map
}

/// The callback query of a successful authorization.
pub(crate) fn callback_query(req: &AuthorizeRequest, code: &str) -> String {
    let p = params(req);
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code)
        .append_pair("state", &p["state"])
        .finish()
}

/// `BASE64URL(SHA-256(verifier))`.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Every message in an error's chain.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(" | ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
