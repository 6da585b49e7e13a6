//! A SMART Backend Services job: discover the server, get a token with a signed client
//! assertion, search and read Patients.
//!
//! ```sh
//! cargo run -p smart-fhir --example backend_services -- \
//!   --fhir-base https://ehr.example/fhir --client-id my-app --key client.pem \
//!   --scope "system/Patient.rs" [--insecure-http]
//! ```
//! `cargo xtask demo` runs it against the local harness.

use bytes::Bytes;
use smart_fhir::{
    AccessTokenProvider, BackendServices, Clock, FhirBaseUrl, HttpClient, HyperHttpClient,
    InsecureHttp, PrivateKey, SharedHttpClient, SystemClock,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut base, mut client_id, mut key, mut scope) = (None, None, None, None);
    let mut insecure = InsecureHttp::Deny;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fhir-base" => base = args.next(),
            "--client-id" => client_id = args.next(),
            "--key" => key = args.next(),
            "--scope" => scope = args.next(),
            "--insecure-http" => insecure = InsecureHttp::AllowLoopback,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let base = FhirBaseUrl::parse_with(&base.ok_or("--fhir-base is required")?, insecure)?;
    let key = PrivateKey::from_pem(&std::fs::read_to_string(key.ok_or("--key is required")?)?)?;
    let http = SharedHttpClient::new(HyperHttpClient::builder().insecure_http(insecure).build()?);

    let backend = BackendServices::builder()
        .fhir_base(base.clone())
        .client_id(client_id.ok_or("--client-id is required")?)
        .scope(scope.unwrap_or_else(|| "system/Patient.rs".to_owned()))
        .private_key(key)
        .shared_http_client(http.clone())
        .build()?;

    let token = backend.token().await?;
    println!(
        "token: type {}, granted scope \"{}\", expires in {} s",
        token.token_type,
        token.scope.as_deref().unwrap_or(""),
        token.remaining(SystemClock.now()).as_secs()
    );
    if let Some(endpoint) = backend.resolved_token_endpoint() {
        println!("token endpoint (discovered): {endpoint}");
    }

    // A search, then a read of the first Patient found.
    let bundle = get(&http, &backend, &base, "Patient?_count=3").await?;
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    println!("search Patient?_count=3: {} entries", entries.len());
    let id = entries
        .first()
        .and_then(|e| e["resource"]["id"].as_str())
        .ok_or("the server returned no Patient")?;
    let patient = get(&http, &backend, &base, &format!("Patient/{id}")).await?;
    let name = &patient["name"][0];
    println!(
        "read Patient/{id}: {} {}",
        name["given"][0].as_str().unwrap_or("?"),
        name["family"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// A bearer-authenticated GET that renews the token once on 401 (SC-3.8, SC-8.26).
async fn get(
    http: &SharedHttpClient,
    auth: &BackendServices,
    base: &FhirBaseUrl,
    path: &str,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    for attempt in 0..2 {
        let token = AccessTokenProvider::access_token(auth).await?;
        let req = http::Request::builder()
            .uri(base.join(path)?.as_str())
            .header("accept", "application/fhir+json")
            .header("authorization", format!("Bearer {}", token.secret()))
            .body(Bytes::new())?;
        let resp = http.execute(req).await?;
        if resp.status() == http::StatusCode::UNAUTHORIZED && attempt == 0 {
            auth.token_rejected(&token).await;
            continue;
        }
        if !resp.status().is_success() {
            return Err(format!("GET {path}: HTTP {}", resp.status()).into());
        }
        return Ok(serde_json::from_slice(resp.body())?);
    }
    Err(format!("GET {path}: refused after renewing the token").into())
}
