//! Memory for many tenants (issue 9, §4): 1,000 Backend Services clients of one server, each
//! with its own client id, key and cached token, in one process; printed: the resident-memory
//! growth over the same process with one client, and the discovery and token requests made.
//!
//! `cargo bench -p smart-fhir-oauth --bench tenants` (add `-- --own-discovery` to give every
//! client a discovery cache of its own, as before clients of one transport shared one; add
//! `-- --tenants N` for another count).
//!
//! Memory is read from `/proc/self/statm` (resident pages; Linux). The server is an in-process
//! fake `HttpClient`: a discovery document and a token response with an 800-byte access token.
//! Targets: growth < 16 MiB, 1 discovery request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use smart_fhir_core::{FhirBaseUrl, HttpClient, HttpError, SharedHttpClient};
use smart_fhir_discovery::DiscoveryCache;
use smart_fhir_jwt::{KeySpec, PrivateKey};
use smart_fhir_oauth::BackendServices;

const BASE: &str = "https://ehr.example/fhir";
const TOKEN_URL: &str = "https://auth.example/oauth2/token";

#[derive(Debug, Default)]
struct Server {
    discovery: AtomicUsize,
    tokens: AtomicUsize,
}

#[derive(Debug, Clone)]
struct Fake(Arc<Server>);

#[async_trait]
impl HttpClient for Fake {
    async fn execute(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let uri = req.uri().to_string();
        let body = if uri == format!("{BASE}/.well-known/smart-configuration") {
            self.0.discovery.fetch_add(1, Ordering::SeqCst);
            json!({
                "issuer": "https://auth.example",
                "token_endpoint": TOKEN_URL,
                "authorization_endpoint": "https://auth.example/oauth2/authorize",
                "grant_types_supported": ["client_credentials", "authorization_code"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "scopes_supported": ["system/*.rs", "system/Patient.rs", "openid", "fhirUser"],
                "response_types_supported": ["code"],
                "capabilities": ["client-confidential-asymmetric", "permission-v2",
                                 "launch-ehr", "launch-standalone", "context-ehr-patient"],
                "code_challenge_methods_supported": ["S256"]
            })
        } else if uri == TOKEN_URL {
            let n = self.0.tokens.fetch_add(1, Ordering::SeqCst) + 1;
            json!({
                "access_token": format!("{n:08}.{}", "x".repeat(800)),
                "token_type": "bearer",
                "expires_in": 3600,
                "scope": "system/Patient.rs"
            })
        } else {
            return Ok(http::Response::builder()
                .status(404)
                .body(Bytes::new())
                .expect("response"));
        };
        Ok(http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
            .expect("response"))
    }
}

/// Resident memory in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

async fn tenant(http: &SharedHttpClient, n: usize, own_discovery: bool) -> BackendServices {
    let mut builder = BackendServices::builder()
        .fhir_base(FhirBaseUrl::parse(BASE).expect("base"))
        .client_id(format!("tenant-{n:04}"))
        .scope("system/Patient.rs")
        .private_key(PrivateKey::generate(KeySpec::P384).expect("key"))
        .http_client(http.clone());
    if own_discovery {
        builder = builder.discovery_cache(Arc::new(DiscoveryCache::builder(http.clone()).build()));
    }
    let client = builder.build().expect("client");
    client.access_token().await.expect("token");
    client
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let own_discovery = args.iter().any(|a| a == "--own-discovery");
    let tenants: usize = args
        .iter()
        .position(|a| a == "--tenants")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let server = Arc::new(Server::default());
    let http = SharedHttpClient::new(Fake(Arc::clone(&server)));

    let mut clients = vec![tenant(&http, 0, own_discovery).await];
    let one = rss();
    for n in 1..tenants {
        clients.push(tenant(&http, n, own_discovery).await);
    }
    let many = rss();
    let growth = many.saturating_sub(one);
    #[allow(clippy::cast_precision_loss)]
    let (mib, per_tenant) = (
        growth as f64 / (1024.0 * 1024.0),
        growth as f64 / 1024.0 / (tenants.max(2) - 1) as f64,
    );
    println!(
        "tenants: {tenants} Backend Services clients of one server, each with a cached token{}",
        if own_discovery {
            " (a discovery cache each)"
        } else {
            ""
        }
    );
    println!(
        "resident memory: {:.1} MiB with one client, {:.1} MiB with {tenants}",
        one as f64 / (1024.0 * 1024.0),
        many as f64 / (1024.0 * 1024.0)
    );
    println!("growth: {mib:.1} MiB ({per_tenant:.1} KiB a tenant; target < 16 MiB)");
    println!(
        "discovery requests: {} (target 1); token requests: {}",
        server.discovery.load(Ordering::SeqCst),
        server.tokens.load(Ordering::SeqCst)
    );
    drop(clients);
}
