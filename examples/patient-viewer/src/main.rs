//! `patient-viewer`: after an EHR or standalone launch, shows the patient's name, birth date and
//! latest observations, with a sign-out button. Configured from the environment
//! (see `smart_fhir_axum::SmartLaunch::from_env`) plus `PATIENT_VIEWER_LISTEN`:
//!
//! ```sh
//! SMART_FHIR_BASE=https://ehr.example/fhir SMART_CLIENT_ID=my-app \
//! SMART_SCOPE="launch openid fhirUser launch/patient patient/*.rs offline_access" \
//! SMART_REDIRECT_URI=http://127.0.0.1:8080/smart/callback SMART_INSECURE_HTTP=loopback \
//! PATIENT_VIEWER_LISTEN=127.0.0.1:8080 cargo run -p patient-viewer
//! ```
#![forbid(unsafe_code)]
// Dependencies the program does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use smart_fhir::core::text::escape_html as esc;
use smart_fhir::http::client::SearchParams;
use smart_fhir_axum::{SmartError, SmartLaunch, SmartSession};

/// The patient page: name, birth date, the five latest observations, a sign-out button.
async fn patient_page(session: SmartSession) -> Result<Html<String>, SmartError> {
    let Some(patient) = session.read_patient::<Value>().await? else {
        return Ok(Html(format!(
            "<h1>No patient in context</h1>{}",
            session.logout_form()
        )));
    };
    let id = session.patient().unwrap_or_default();
    let search = SearchParams::new()
        .add("subject", format!("Patient/{id}"))
        .sort("-date")
        .count(5);
    let bundle: Value = session
        .fhir()
        .search("Observation", &search)
        .await
        .map_err(|e| session.error(e))?
        .into_body();
    let mut rows = String::new();
    for obs in bundle["entry"].as_array().into_iter().flatten() {
        let o = &obs["resource"];
        let what = o["code"]["text"]
            .as_str()
            .or(o["code"]["coding"][0]["display"].as_str())
            .unwrap_or("(observation)");
        let q = &o["valueQuantity"];
        let value = match (q["value"].as_f64(), q["unit"].as_str()) {
            (Some(v), Some(u)) => format!("{v} {u}"),
            (Some(v), None) => v.to_string(),
            _ => o["valueString"].as_str().unwrap_or("").to_owned(),
        };
        let when = o["effectiveDateTime"].as_str().unwrap_or("");
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(when),
            esc(what),
            esc(&value)
        ));
    }
    Ok(Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Patient</title></head><body>\
         <h1 id=\"patient-name\">{name}</h1><p>Birth date: <span id=\"birth-date\">{birth}</span></p>\
         <h2>Latest observations</h2><table id=\"observations\"><tr><th>When</th><th>What</th><th>Value</th></tr>{rows}</table>\
         {logout}</body></html>",
        name = esc(&patient_name(&patient)),
        birth = esc(patient["birthDate"].as_str().unwrap_or("unknown")),
        logout = session.logout_form(),
    )))
}

/// The first `name` of a Patient: its `text`, else the given names and the family name.
fn patient_name(patient: &Value) -> String {
    let name = &patient["name"][0];
    if let Some(text) = name["text"].as_str() {
        return text.to_owned();
    }
    let mut parts: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    parts.extend(name["family"].as_str());
    if parts.is_empty() {
        "(no name)".to_owned()
    } else {
        parts.join(" ")
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patient-viewer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::var("PATIENT_VIEWER_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".to_owned())
        .parse()?;
    let smart = SmartLaunch::from_env().await?;
    let app = Router::new()
        .route("/", get(patient_page))
        .merge(smart.router())
        .with_state(smart);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("patient-viewer: listening on http://{listen}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
