//! Shared helpers for the integration tests: where the harness is, its admin endpoints, and a
//! bearer-authenticated GET.
//!
//! The tests run under `cargo xtask integration`, which generates the keys with the `smart-fhir`
//! CLI, registers their public JWKS with the harness, starts it, and sets:
//! `SMART_FHIR_IT_BASE` (the FHIR base), `SMART_FHIR_IT_DIR` (keys), `SMART_FHIR_IT_JWKS_PORT`
//! (where the tests serve the JWKS of the `jku` client), `SMART_FHIR_IT_PATIENT_IDS` (seeded
//! patients) and `SMART_FHIR_BIN` (the CLI binary). It also starts Redis and sets
//! `SMART_FHIR_IT_REDIS_URL` (a standalone server) and `SMART_FHIR_IT_REDIS_CLUSTER` (the
//! comma-separated nodes of a three-master cluster).
#![forbid(unsafe_code)]
#![allow(missing_docs)]

pub mod leak;

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::Value;
use smart_fhir_core::{AccessToken, FhirBaseUrl, HttpClient, InsecureHttp, SharedHttpClient};
use smart_fhir_http::HyperHttpClient;
use smart_fhir_jwt::PrivateKey;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests with `cargo xtask integration`")
    })
}

pub fn base() -> FhirBaseUrl {
    FhirBaseUrl::parse_with(&var("SMART_FHIR_IT_BASE"), InsecureHttp::AllowLoopback)
        .expect("harness base URL")
}

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(var("SMART_FHIR_IT_DIR")).join(format!("{name}.pem"))
}

pub fn key(name: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(key_path(name)).expect("key file");
    PrivateKey::from_pem(&pem).expect("key loads")
}

pub fn jwks_port() -> u16 {
    var("SMART_FHIR_IT_JWKS_PORT").parse().expect("port")
}

pub fn jwks_file() -> PathBuf {
    PathBuf::from(var("SMART_FHIR_IT_DIR")).join("jwks.json")
}

pub fn cli_bin() -> PathBuf {
    PathBuf::from(var("SMART_FHIR_BIN"))
}

/// The standalone Redis that `cargo xtask integration` started.
pub fn redis_url() -> String {
    var("SMART_FHIR_IT_REDIS_URL")
}

/// The nodes of the Redis Cluster that `cargo xtask integration` started.
pub fn redis_cluster_urls() -> Vec<String> {
    var("SMART_FHIR_IT_REDIS_CLUSTER")
        .split(',')
        .map(str::to_owned)
        .collect()
}

pub fn patient_ids() -> Vec<String> {
    serde_json::from_str(&var("SMART_FHIR_IT_PATIENT_IDS")).expect("patient ids")
}

pub fn http() -> SharedHttpClient {
    SharedHttpClient::new(
        HyperHttpClient::builder()
            .insecure_http(InsecureHttp::AllowLoopback)
            .build()
            .expect("transport"),
    )
}

/// The harness origin (`http://127.0.0.1:PORT`), for its admin endpoints.
pub fn origin() -> String {
    let b = base();
    b.url().origin().ascii_serialization()
}

async fn admin(method: http::Method, path: &str) -> Value {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", origin()))
        .body(Bytes::new())
        .expect("request");
    let resp = http().execute(req).await.expect("admin request");
    assert!(
        resp.status().is_success(),
        "admin {path}: {}",
        resp.status()
    );
    serde_json::from_slice(resp.body()).unwrap_or(Value::Null)
}

/// Token requests the harness has counted for `client_id`.
pub async fn token_requests(client_id: &str) -> u64 {
    let stats = admin(http::Method::GET, "/_harness/stats").await;
    stats["token_requests_by_client"][client_id]
        .as_u64()
        .unwrap_or(0)
}

/// Makes the harness refuse every access token issued so far.
pub async fn revoke_all() {
    admin(http::Method::POST, "/_harness/revoke-all").await;
}

/// `GET [base]/path` with a bearer token; returns the status and the JSON body.
pub async fn fhir_get(path: &str, token: Option<&AccessToken>) -> (u16, Value) {
    let url = base().join(path).expect("url");
    let mut req = http::Request::builder()
        .uri(url.as_str())
        .header("accept", "application/fhir+json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {}", t.secret()));
    }
    let resp = http()
        .execute(req.body(Bytes::new()).expect("request"))
        .await
        .expect("FHIR request");
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
    )
}

/// Serves `body` as `application/json` on 127.0.0.1:`port` for every request, until the returned
/// handle is dropped (it aborts the task). Counts requests.
pub async fn serve_json(port: u16, body: String) -> JsonServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the JWKS port");
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    JsonServer { task, hits }
}

pub struct JsonServer {
    task: tokio::task::JoinHandle<()>,
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for JsonServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonServer")
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl JsonServer {
    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A FHIR client of the harness, authorized with Backend Services as `client_id` (registered
/// with the `rs384` key) for `scope`.
pub fn fhir_client(client_id: &str, scope: &str) -> smart_fhir_http::FhirClient {
    let backend = smart_fhir_oauth::BackendServices::builder()
        .fhir_base(base())
        .client_id(client_id)
        .scope(scope)
        .private_key(key("rs384"))
        .http_client(http())
        .build()
        .expect("backend services");
    smart_fhir_http::FhirClient::builder(base())
        .http_client(http())
        .auth(backend)
        .build()
        .expect("FHIR client")
}

/// A fresh random token (16 hex digits) to keep one test's data apart from another's.
pub fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    format!("{:016x}", h.finish())
}

/// A request to a `/_harness/*` admin endpoint with an optional JSON body; the JSON answer.
pub async fn admin_json(method: http::Method, path: &str, body: Option<&Value>) -> Value {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", origin()));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let resp = http()
        .execute(req.body(body).expect("request"))
        .await
        .expect("admin request");
    assert!(
        resp.status().is_success(),
        "admin {path}: {}",
        resp.status()
    );
    serde_json::from_slice(resp.body()).unwrap_or(Value::Null)
}

/// The harness's counters (`GET /_harness/stats`).
pub async fn stats() -> Value {
    admin_json(http::Method::GET, "/_harness/stats", None).await
}

/// Changes the Bulk Data settings (`POST /_harness/bulk-settings`); returns them.
pub async fn bulk_settings(settings: Value) -> Value {
    admin_json(
        http::Method::POST,
        "/_harness/bulk-settings",
        Some(&settings),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// App Launch: the harness configuration's App Launch clients, and a headless browser.

/// The harness configuration `cargo xtask integration` wrote (clients with their secrets and
/// redirect URIs). Never printed.
pub fn harness_config() -> Value {
    let path = PathBuf::from(var("SMART_FHIR_IT_DIR")).join("harness-config.json");
    let text = std::fs::read_to_string(&path).expect("harness-config.json");
    serde_json::from_str(&text).expect("harness config is JSON")
}

fn registered_client(client_id: &str) -> Value {
    harness_config()["clients"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["client_id"] == client_id).cloned())
        .unwrap_or_else(|| panic!("client {client_id} is not in the harness configuration"))
}

/// The client secret registered for `client_id`.
pub fn client_secret(client_id: &str) -> smart_fhir_core::ClientSecret {
    let c = registered_client(client_id);
    smart_fhir_core::ClientSecret::new(c["client_secret"].as_str().expect("a client secret"))
}

/// The (first) redirect URI registered for `client_id`.
pub fn redirect_uri(client_id: &str) -> String {
    let c = registered_client(client_id);
    c["redirect_uris"][0]
        .as_str()
        .expect("a redirect URI")
        .to_owned()
}

/// Stores an EHR launch context (`POST /_harness/launch`); returns the `launch` id.
pub async fn ehr_launch_context(context: &Value) -> String {
    let answer = admin_json(http::Method::POST, "/_harness/launch", Some(context)).await;
    answer["launch"].as_str().expect("a launch id").to_owned()
}

/// A headless browser: follows redirects with `GET` and keeps cookies, as the harness's
/// authorization server needs (see `tests/servers/README.md`, "Redirect chain").
///
/// Cookies are kept by host, not by port, as browsers do; path, expiry and `Secure` are not
/// modelled (a `Set-Cookie` with an empty value or `Max-Age=0` removes one).
pub struct Browser {
    http: SharedHttpClient,
    jar: std::sync::Mutex<std::collections::BTreeMap<String, Vec<(String, String)>>>,
}

/// Cookie names per host only: their values are sessions and must not print.
impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: std::collections::BTreeMap<String, Vec<String>> = match self.jar.lock() {
            Ok(jar) => jar
                .iter()
                .map(|(host, cookies)| {
                    (
                        host.clone(),
                        cookies.iter().map(|(n, _)| n.clone()).collect(),
                    )
                })
                .collect(),
            Err(_) => std::collections::BTreeMap::new(),
        };
        f.debug_struct("Browser")
            .field("cookies", &names)
            .finish_non_exhaustive()
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// The most redirects [`Browser::follow`] takes.
pub const MAX_REDIRECTS: usize = 20;

impl Browser {
    pub fn new() -> Self {
        Self {
            http: http(),
            jar: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    fn host_of(url: &str) -> String {
        smart_fhir_core::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The value of cookie `name` for `host`.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        let jar = self.jar.lock().expect("jar");
        jar.get(host)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Sends `request` with the jar's cookies for its host and keeps the cookies it sets.
    pub async fn send(&self, mut request: http::Request<Bytes>) -> http::Response<Bytes> {
        let url = request.uri().to_string();
        let host = Self::host_of(&url);
        let header = {
            let jar = self.jar.lock().expect("jar");
            jar.get(&host)
                .map(|cs| {
                    cs.iter()
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default()
        };
        if !header.is_empty() {
            request.headers_mut().insert(
                http::header::COOKIE,
                http::HeaderValue::from_str(&header).expect("cookie header"),
            );
        }
        let response = self
            .http
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("browser request to {}: {e}", Self::origin_of(&url)));
        let mut jar = self.jar.lock().expect("jar");
        let cookies = jar.entry(host).or_default();
        for set in response.headers().get_all(http::header::SET_COOKIE) {
            let Ok(set) = set.to_str() else { continue };
            let mut parts = set.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let removed = value.is_empty()
                || parts.any(|a| {
                    let a = a.trim().to_ascii_lowercase();
                    a == "max-age=0" || (a.starts_with("expires=") && a.contains("1970"))
                });
            cookies.retain(|(n, _)| n != name);
            if !removed {
                cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        response
    }

    fn origin_of(url: &str) -> String {
        smart_fhir_core::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> http::Response<Bytes> {
        let req = http::Request::get(url)
            .header("accept", "text/html,application/json")
            .body(Bytes::new())
            .expect("request");
        self.send(req).await
    }

    /// `POST url` with a form body.
    pub async fn post_form(&self, url: &str, fields: &[(String, String)]) -> http::Response<Bytes> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        let req = http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .expect("request");
        self.send(req).await
    }

    /// Follows `response` (the answer to `url`) through its redirects. Stops before requesting a
    /// `Location` for which `stop` is true and returns it as `Err`; otherwise returns the final
    /// URL and the first response that is not a redirect.
    pub async fn follow(
        &self,
        mut url: String,
        mut response: http::Response<Bytes>,
        stop: impl Fn(&str) -> bool,
    ) -> Result<(String, http::Response<Bytes>), String> {
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                return Ok((url, response));
            }
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .expect("a redirect has a Location");
            let next = smart_fhir_core::Url::parse(&url)
                .and_then(|u| u.join(location))
                .expect("a usable Location")
                .to_string();
            if stop(&next) {
                return Err(next);
            }
            response = self.get(&next).await;
            url = next;
        }
        panic!("more than {MAX_REDIRECTS} redirects");
    }

    /// `GET url` and every redirect after it; the final URL and response.
    pub async fn navigate(&self, url: &str) -> (String, http::Response<Bytes>) {
        let response = self.get(url).await;
        self.follow(url.to_owned(), response, |_| false)
            .await
            .expect("no stop")
    }

    /// `GET url` and its redirects up to the first `Location` that starts with `prefix`, which
    /// is returned without being requested (the redirect URI of a client nobody serves).
    pub async fn navigate_until(&self, url: &str, prefix: &str) -> String {
        let response = self.get(url).await;
        self.follow_until(url, response, prefix).await
    }

    /// [`follow`](Self::follow) up to the first `Location` that starts with `prefix`.
    pub async fn follow_until(
        &self,
        url: &str,
        response: http::Response<Bytes>,
        prefix: &str,
    ) -> String {
        match self
            .follow(url.to_owned(), response, |l| l.starts_with(prefix))
            .await
        {
            Err(location) => location,
            Ok((last, r)) => panic!(
                "the redirects from {} ended at {} with {} before reaching {prefix}: {}",
                Self::origin_of(url),
                Self::origin_of(&last),
                r.status(),
                String::from_utf8_lossy(r.body())
            ),
        }
    }
}

/// A transport that counts and records (method, URL) of every request, then passes it on.
#[derive(Debug)]
pub struct CountingHttp {
    inner: SharedHttpClient,
    seen: std::sync::Mutex<Vec<String>>,
}

impl CountingHttp {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            inner: http(),
            seen: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// How many requests went through.
    pub fn count(&self) -> usize {
        self.seen.lock().expect("log").len()
    }

    /// The URLs requested, in order.
    pub fn urls(&self) -> Vec<String> {
        self.seen.lock().expect("log").clone()
    }
}

#[async_trait::async_trait]
impl HttpClient for CountingHttp {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, smart_fhir_core::HttpError> {
        self.seen
            .lock()
            .expect("log")
            .push(request.uri().to_string());
        self.inner.execute(request).await
    }
}
