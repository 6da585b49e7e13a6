//! One FHIR client, three ways to see a resource: the `fhir-model` crate's R4B types, your own
//! serde types, and `serde_json::Value`.
//!
//! ```sh
//! cargo run -p smart-fhir-http --example typed_resources -- \
//!   --fhir-base https://ehr.example/fhir [--token ACCESS_TOKEN] [--insecure-http]
//! ```
//!
//! Without `--token` the server must be open. The client is generic over the body type
//! (`read::<T>`, `search::<T>` with `T: DeserializeOwned`), so any model crate fits; this one
//! uses `fhir-model` with only its `r4b` feature.

use fhir_model::r4b::resources::{Bundle, Patient, Resource};
use serde::Deserialize;
use serde_json::Value;
use smart_fhir_core::{AccessToken, FhirBaseUrl, InsecureHttp, StaticTokenProvider};
use smart_fhir_http::client::SearchParams;
use smart_fhir_http::{FhirClient, FhirResponse};

/// Just the parts of a Patient this program needs: unknown members are ignored.
#[derive(Debug, Deserialize)]
struct MyPatient {
    id: String,
    #[serde(default)]
    name: Vec<MyName>,
    #[serde(rename = "birthDate")]
    birth_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MyName {
    family: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut base, mut token) = (None, None);
    let mut insecure = InsecureHttp::Deny;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fhir-base" => base = args.next(),
            "--token" => token = args.next(),
            "--insecure-http" => insecure = InsecureHttp::AllowLoopback,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let base = FhirBaseUrl::parse_with(&base.ok_or("--fhir-base is required")?, insecure)?;
    let mut builder = FhirClient::builder(base.clone());
    if let Some(token) = token {
        builder =
            builder.auth(StaticTokenProvider::new(AccessToken::new(token)).for_fhir_base(base));
    }
    let fhir = builder.build()?;

    // A typed search: the searchset Bundle as fhir-model's R4B `Bundle`, its entries as the
    // `Resource` enum.
    let params = SearchParams::new().count(5);
    let bundle: FhirResponse<Bundle> = fhir.search("Patient", &params).await?;
    println!(
        "searchset: total {:?}, {} entries",
        bundle.body().total,
        bundle.body().entry.len()
    );
    let mut first_id = None;
    for entry in bundle.body().entry.iter().flatten() {
        if let Some(Resource::Patient(p)) = &entry.resource {
            let family = p.name.iter().flatten().find_map(|n| n.family.clone());
            println!(
                "  Patient/{} {}",
                p.id.as_deref().unwrap_or("?"),
                family.unwrap_or_default()
            );
            first_id = first_id.or_else(|| p.id.clone());
        }
    }
    let Some(id) = first_id else {
        println!("no Patient to read");
        return Ok(());
    };

    // The same resource three ways.
    let typed: FhirResponse<Patient> = fhir.read("Patient", &id).await?;
    println!(
        "fhir-model Patient: gender {:?}, birth date {:?}, version {:?}",
        typed.body().gender,
        typed.body().birth_date,
        typed.version_id()
    );
    let mine: FhirResponse<MyPatient> = fhir.read("Patient", &id).await?;
    println!(
        "own type: {} {:?} born {:?}",
        mine.body().id,
        mine.body().name.first().and_then(|n| n.family.as_deref()),
        mine.body().birth_date
    );
    let value: FhirResponse<Value> = fhir.read("Patient", &id).await?;
    println!(
        "serde_json::Value: {} members",
        value.body().as_object().map_or(0, |o| o.len())
    );
    Ok(())
}
