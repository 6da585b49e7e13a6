//! A SMART Backend Services job, configured from the environment: discover the server, get a
//! token with a signed client assertion, then search and read Patients through the FHIR client.
//!
//! ```sh
//! SMART_FHIR_BASE=https://ehr.example/fhir SMART_CLIENT_ID=my-app \
//! SMART_SCOPE="system/Patient.rs" SMART_PRIVATE_KEY_FILE=client.pem \
//!   cargo run -p smart-fhir --example backend_services
//! ```
//! `SMART_INSECURE_HTTP=loopback` allows a server on `http://127.0.0.1`; `cargo xtask demo` runs
//! the example so against the local harness. The variables are listed at `smart_fhir::Config`.

use std::process::ExitCode;

use smart_fhir::{Clock, Config, SystemClock};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes, one a line; none shows a token, a key or a query.
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let backend = Config::from_env()?.backend_services()?;

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

    // A FHIR client for the token source's server, on its connection pool, taking its tokens:
    // cached, renewed before expiry, and renewed once when the server answers 401.
    let fhir = backend.fhir_client()?;

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
