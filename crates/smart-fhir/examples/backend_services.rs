//! A SMART Backend Services job: discover the server, get a token with a signed client
//! assertion, then search and read Patients through the FHIR client.
//!
//! ```sh
//! cargo run -p smart-fhir --example backend_services -- \
//!   --fhir-base https://ehr.example/fhir --client-id my-app --key client.pem \
//!   --scope "system/Patient.rs" [--insecure-http]
//! ```
//! `cargo xtask demo` runs it against the local harness.

use smart_fhir::{
    BackendServices, Clock, FhirBaseUrl, FhirClient, HyperHttpClient, InsecureHttp, PrivateKey,
    SharedHttpClient, SystemClock,
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
        .http_client(http.clone())
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

    // A FHIR client that takes its tokens from the token source: cached, renewed before expiry,
    // and renewed once when the server answers 401.
    let fhir = FhirClient::builder(base)
        .http_client(http)
        .auth(backend)
        .build()?;

    // A search, then a read of the first Patient found.
    let bundle = fhir
        .search::<serde_json::Value>("Patient", &[("_count", "3")])
        .await?
        .into_body();
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    println!("search Patient?_count=3: {} entries", entries.len());
    let id = entries
        .first()
        .and_then(|e| e["resource"]["id"].as_str())
        .ok_or("the server returned no Patient")?;
    let patient = fhir.read::<serde_json::Value>("Patient", id).await?;
    let name = &patient.body()["name"][0];
    println!(
        "read Patient/{id} (version {}): {} {}",
        patient.version_id().unwrap_or("?"),
        name["given"][0].as_str().unwrap_or("?"),
        name["family"].as_str().unwrap_or("?")
    );
    Ok(())
}
