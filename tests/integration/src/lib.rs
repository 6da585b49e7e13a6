//! Shared helpers for the integration tests: where the harness is, its admin endpoints, and a
//! bearer-authenticated GET.
//!
//! The tests run under `cargo xtask integration`, which generates the keys with the `smart-fhir`
//! CLI, registers their public JWKS with the harness, starts it, and sets:
//! `SMART_FHIR_IT_BASE` (the FHIR base), `SMART_FHIR_IT_DIR` (keys), `SMART_FHIR_IT_JWKS_PORT`
//! (where the tests serve the JWKS of the `jku` client), `SMART_FHIR_IT_PATIENT_IDS` (seeded
//! patients) and `SMART_FHIR_BIN` (the CLI binary).
#![forbid(unsafe_code)]
#![allow(missing_docs)]

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
        .shared_http_client(http())
        .build()
        .expect("backend services");
    smart_fhir_http::FhirClient::builder(base())
        .shared_http_client(http())
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
