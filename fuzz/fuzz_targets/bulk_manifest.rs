//! Bulk Data kick-off and status responses (SC-7.9–SC-7.17, SC-7.24): the same fuzzed
//! response (status, headers such as `Content-Location`, `Retry-After`, `X-Progress`,
//! `Expires`, and the body) answers a kick-off and a status poll. A job's status URL and a
//! manifest's file and `next` URLs that pass the check are acceptable; a manifest reads back
//! from its JSON; the access token never goes to another origin.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use smart_fhir_core::{check_endpoint_url, FhirBaseUrl, InsecureHttp, Url};
use smart_fhir_fuzz::{
    block_on, check_credentials, fhir_client, printable, response, FakeHttp, FHIR_BASE,
};
use smart_fhir_http::bulk::PollStatus;
use smart_fhir_http::{FhirClient, Manifest};

struct Setup {
    http: FakeHttp,
    client: FhirClient,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let http = FakeHttp::new();
        let client = fhir_client(&http);
        Setup { http, client }
    })
}

fn acceptable(url: &str) {
    let url = Url::parse(url).expect("a checked URL parses");
    check_endpoint_url(&url, "url", InsecureHttp::Deny).expect("a checked URL is acceptable");
}

fn check_manifest(manifest: &Manifest) {
    for file in manifest
        .output
        .iter()
        .chain(&manifest.error)
        .chain(&manifest.deleted)
    {
        let base = FhirBaseUrl::parse(FHIR_BASE).expect("a base");
        if let Ok(url) = file.checked_url(&base) {
            acceptable(url.as_str());
        }
        let _ = file.has_valid_type();
    }
    let _ = manifest.is_partial();
    let _ = manifest.declared_output_count();
    let json = serde_json::to_vec(manifest).expect("a manifest serializes");
    let mut again: Manifest = serde_json::from_slice(&json).expect("and reads back");
    again.expires = manifest.expires;
    assert_eq!(&again, manifest);
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();
    let answer = response(data);
    let (parts, body) = answer.into_parts();
    setup.http.respond(move |req| {
        check_credentials(req);
        let mut r = http::Response::new(body.clone());
        *r.status_mut() = parts.status;
        *r.headers_mut() = parts.headers.clone();
        r
    });
    block_on(async {
        let kickoff = setup
            .client
            .bulk_export()
            .types(["Patient"])
            .max_retries(0)
            .start()
            .await;
        match kickoff {
            Ok(job) => acceptable(job.status_url().as_str()),
            Err(e) => assert!(printable(&e.to_string()), "{e}"),
        }
        let job = setup
            .client
            .bulk_job("https://ehr.example/fhir/$export-status/1")
            .expect("a status URL");
        match job.poll().await {
            Ok(PollStatus::Complete(manifest)) => {
                check_manifest(&manifest);
                assert!(job.manifest().is_some());
                if let Some(link) = manifest.next_link() {
                    let _ = link;
                }
            }
            Ok(PollStatus::InProgress(progress)) => {
                if let Some(text) = &progress.progress {
                    assert!(printable(text), "{text:?}");
                }
                if let Some(manifest) = &progress.manifest {
                    check_manifest(manifest);
                }
            }
            Ok(_) => {}
            Err(e) => assert!(printable(&e.to_string()), "{e}"),
        }
    });
});
