//! Bulk Data export end to end against the harness (SC-7): system and Group level, with and
//! without gzip, `requiresAccessToken` true and false (checked with the harness's counters),
//! throttling and transient failures while polling, partial errors, cancel, token renewal
//! between files, and the `smart-fhir export` command.
//!
//! The harness's Bulk Data settings are global: every test sets the ones it relies on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use smart_fhir_http::bulk::{
    DownloadOptions, DownloadSummary, FileKind, Manifest, PollEvent, PollOptions, PollStatus,
};
use smart_fhir_http::FhirClient;
use smart_fhir_integration_tests::*;

const SCOPE: &str = "system/*.rs";

/// Seeds a few thousand resources once for this test binary: 500 Patients with 4
/// Observations each (2 500 resources; a few more are there from the start).
async fn seed() {
    static SEEDED: tokio::sync::OnceCell<Value> = tokio::sync::OnceCell::const_new();
    SEEDED
        .get_or_init(|| async {
            admin_json(
                http::Method::POST,
                "/_harness/seed",
                Some(&json!({"patients": 500, "observationsPerPatient": 4})),
            )
            .await
        })
        .await;
}

/// Settings for one test: the harness defaults with `changes` applied.
async fn settings(changes: Value) {
    let mut s = json!({
        "requiresAccessToken": true,
        "pollCount": 1,
        "fileMax": 1000,
        "failNextPolls": 0,
        "rateLimitNextPolls": 0
    });
    if let (Some(s), Some(c)) = (s.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            s.insert(k.clone(), v.clone());
        }
    }
    bulk_settings(s).await;
}

fn counter(stats: &Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or(0)
}

fn out_dir(name: &str) -> PathBuf {
    let dir = key_path("rs384")
        .parent()
        .expect("the key directory")
        .join(format!("bulk-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("exported file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON resource a line"))
        .collect()
}

/// Every output file exists with exactly the manifest's count of lines; returns the
/// resources of each type.
fn check_files(manifest: &Manifest, summary: &DownloadSummary) -> Vec<(String, Vec<Value>)> {
    let outputs: Vec<_> = summary
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Output)
        .collect();
    assert_eq!(outputs.len(), manifest.output.len());
    let mut by_type: Vec<(String, Vec<Value>)> = Vec::new();
    for (file, entry) in outputs.iter().zip(&manifest.output) {
        let resources = lines(&file.path);
        assert_eq!(
            Some(resources.len() as u64),
            entry.count,
            "{}",
            file.path.display()
        );
        assert_eq!(file.resources, resources.len() as u64);
        assert!(resources
            .iter()
            .all(|r| r["resourceType"] == entry.resource_type.as_str()));
        match by_type.iter_mut().find(|(t, _)| *t == entry.resource_type) {
            Some((_, all)) => all.extend(resources),
            None => by_type.push((entry.resource_type.clone(), resources)),
        }
    }
    by_type
}

async fn group(client: &FhirClient) -> (String, HashSet<String>) {
    let url = client
        .url("Group?identifier=urn:smart-fhir:test:group%7CCOHORT-1")
        .expect("url");
    let req = client
        .request(http::Method::GET, &url, None)
        .expect("request");
    let resp = client
        .send_checked(req, &Default::default())
        .await
        .expect("group search");
    let bundle: Value = serde_json::from_slice(resp.body()).expect("bundle");
    let g = &bundle["entry"][0]["resource"];
    let members = g["member"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["entity"]["reference"].as_str().map(str::to_owned))
        .collect();
    (g["id"].as_str().expect("group id").to_owned(), members)
}

/// SC-7.3–SC-7.6, SC-7.11, SC-7.12, SC-7.15, SC-7.18–SC-7.21, SC-7.1: a system-level export
/// of a few thousand resources, gzipped, with `requiresAccessToken: true`, over several
/// files; `X-Progress` is reported; the token is renewed when the server revokes it between
/// the manifest and the files; every line lands in a file and the counts match the manifest.
#[tokio::test]
async fn sc_7_3_system_export_gzip_with_token() {
    seed().await;
    settings(json!({"pollCount": 2, "fileMax": 1000})).await;
    let client = fhir_client("it-bulk", SCOPE);
    let export = client
        .bulk_export()
        .types(["Patient", "Observation"])
        .type_filter("Observation?code=http://loinc.org|29463-7")
        // One file at a time, so that exactly one request meets the revoked token.
        .download_options(DownloadOptions::default().concurrency(1));
    let started = std::time::Instant::now();
    let job = export.start().await.expect("kick-off");
    let mut progress = Vec::new();
    let manifest = job
        .wait_with_progress(|p| progress.push(p.progress.clone().unwrap_or_default()))
        .await
        .expect("manifest");
    assert_eq!(progress.len(), 2, "{progress:?}");
    assert!(progress.iter().all(|p| p.ends_with('%')), "{progress:?}");
    assert!(manifest.requires_access_token);
    assert!(!manifest.is_partial());
    assert!(manifest.expires.is_some());
    assert!(
        manifest
            .output
            .iter()
            .filter(|f| f.resource_type == "Observation")
            .count()
            >= 3,
        "2000+ Observations in files of 1000"
    );

    // The kick-off arrived as sent: the filter query whole, despite its `|` and `=`.
    let log = admin_json(http::Method::GET, "/_harness/bulk-kickoffs", None).await;
    let last = log["kickoffs"].as_array().and_then(|k| k.last()).cloned();
    let last = last.expect("a kick-off");
    assert_eq!(last["prefer"], "respond-async");
    assert_eq!(
        last["parameters"]["_typeFilter"],
        json!(["Observation?code=http://loinc.org|29463-7"])
    );

    // The server forgets every token it issued: the first file request is refused, the client
    // gets a new token and carries on (SC-7.1, SC-8.26).
    let tokens_before = token_requests("it-bulk").await;
    revoke_all().await;
    let before = stats().await;
    let dir = out_dir("system");
    let summary = job.download_to_dir(&dir).await.expect("download");
    let after = stats().await;
    assert_eq!(token_requests("it-bulk").await, tokens_before + 1);
    let by_type = check_files(manifest, &summary);
    let total: usize = by_type.iter().map(|(_, r)| r.len()).sum();
    assert!(total >= 2500, "{total} resources");
    assert!(
        summary.bytes_received() * 3 < summary.bytes(),
        "gzip: {} received for {} bytes",
        summary.bytes_received(),
        summary.bytes()
    );
    assert_eq!(
        counter(&after, "bulk_file_requests") - counter(&before, "bulk_file_requests"),
        manifest.output.len() as u64 + 1,
        "one file request per file, plus the one refused with the revoked token"
    );
    job.cancel().await.expect("release the files");
    eprintln!(
        "system export: {total} resources, {} files, {} bytes ({} received) in {:?}",
        summary.files.len(),
        summary.bytes(),
        summary.bytes_received(),
        started.elapsed()
    );
}

/// SC-7.3, SC-7.18, P6: a Group-level export with `requiresAccessToken: false` downloads every
/// file without a token (the harness counts `Authorization` headers on such files), here
/// without gzip; only the group's patients and their data are in it.
#[tokio::test]
async fn sc_7_18_group_export_without_token_and_gzip() {
    seed().await;
    settings(json!({"requiresAccessToken": false, "pollCount": 0})).await;
    let client = fhir_client("it-bulk", SCOPE);
    let (group_id, members) = group(&client).await;
    let job = client
        .bulk_export()
        .group(group_id)
        .types(["Patient", "Observation"])
        .download_options(DownloadOptions::default().gzip(false))
        .start()
        .await
        .expect("kick-off");
    let manifest = job.wait().await.expect("manifest");
    assert!(!manifest.requires_access_token);
    let before = stats().await;
    let dir = out_dir("group");
    let summary = job.download_to_dir(&dir).await.expect("download");
    let after = stats().await;
    let files = summary.files.len() as u64;
    assert_eq!(
        counter(&after, "bulk_file_requests_without_auth")
            - counter(&before, "bulk_file_requests_without_auth"),
        files
    );
    assert_eq!(
        counter(&after, "bulk_file_requests_with_auth")
            - counter(&before, "bulk_file_requests_with_auth"),
        0,
        "P6: no token on files that do not require one"
    );
    assert_eq!(summary.bytes_received(), summary.bytes(), "not gzipped");
    let by_type = check_files(manifest, &summary);
    for (ty, resources) in by_type {
        for r in resources {
            let reference = match ty.as_str() {
                "Patient" => format!("Patient/{}", r["id"].as_str().unwrap_or("")),
                _ => r["subject"]["reference"].as_str().unwrap_or("").to_owned(),
            };
            assert!(members.contains(&reference), "{ty} outside the group");
        }
    }
    job.cancel().await.expect("release");
}

/// SC-7.4: a Patient-level POST kick-off with `patient` parameters restricts the export to
/// those patients; the harness parsed the `Parameters` body as sent.
#[tokio::test]
async fn sc_7_4_post_kickoff_with_patient_parameter() {
    seed().await;
    settings(json!({"pollCount": 0})).await;
    let client = fhir_client("it-bulk", SCOPE);
    let ids = patient_ids();
    let job = client
        .bulk_export()
        .patient_level()
        .types(["Patient"])
        .patient_reference(ids[0].clone())
        .patient_reference(format!("Patient/{}", ids[1]))
        .start()
        .await
        .expect("kick-off");
    let manifest = job.wait().await.expect("manifest");
    assert_eq!(manifest.declared_output_count(), 2);
    let log = admin_json(http::Method::GET, "/_harness/bulk-kickoffs", None).await;
    let last = log["kickoffs"].as_array().and_then(|k| k.last()).cloned();
    let last = last.expect("a kick-off");
    assert_eq!(last["method"], "POST");
    assert_eq!(last["level"], "patient");
    assert_eq!(
        last["parameters"]["patient"].as_array().map(Vec::len),
        Some(2)
    );
    job.cancel().await.expect("release");
}

/// SC-7.13, SC-7.14, SC-7.16: a 429 and transient 500s while polling are waited out; an
/// unknown type comes back as an `error[]` file: partial success, downloaded too.
#[tokio::test]
async fn sc_7_16_partial_errors_after_throttling_and_transient_failures() {
    seed().await;
    settings(json!({"pollCount": 1, "rateLimitNextPolls": 1, "failNextPolls": 2})).await;
    let client = fhir_client("it-bulk", SCOPE);
    let job = client
        .bulk_export()
        .types(["Patient", "NoSuchType"])
        .start()
        .await
        .expect("kick-off")
        .with_poll_options(PollOptions::default().max_interval(Duration::from_secs(2)));
    let mut events = Vec::new();
    let manifest = job
        .wait_with_progress(|p| events.push(p.event))
        .await
        .expect("manifest");
    assert_eq!(
        events,
        [
            PollEvent::SlowDown,
            PollEvent::Retrying,
            PollEvent::Retrying,
            PollEvent::InProgress
        ]
    );
    assert!(manifest.is_partial(), "SC-7.16");
    let dir = out_dir("partial");
    let summary = job.download_to_dir(&dir).await.expect("download");
    let errors: Vec<_> = summary
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Error)
        .collect();
    assert_eq!(errors.len(), 1);
    let outcomes = lines(&errors[0].path);
    assert!(outcomes
        .iter()
        .all(|o| o["resourceType"] == "OperationOutcome"));
    assert!(outcomes
        .iter()
        .any(|o| o.to_string().contains("NoSuchType")));
    job.cancel().await.expect("release");
}

/// SC-7.23: DELETE on the status URL cancels a running export; it is gone afterwards.
#[tokio::test]
async fn sc_7_23_cancel_a_running_export() {
    settings(json!({"pollCount": 100})).await;
    let client = fhir_client("it-bulk", SCOPE);
    let job = client
        .bulk_export()
        .types(["Patient"])
        .start()
        .await
        .expect("kick-off");
    assert!(matches!(
        job.poll().await.expect("status"),
        PollStatus::InProgress(_)
    ));
    job.cancel().await.expect("cancel");
    let e = job.poll().await.expect_err("cancelled");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404));
    settings(json!({})).await;
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(cli_bin())
        .args(args)
        .output()
        .expect("run smart-fhir")
}

/// The `smart-fhir export` command end to end: a Group export into a directory (files and
/// manifest.json there, counts as in the manifest, summary on stdout, exit 0); then an export
/// with an unknown type: the errors are listed and the exit code is 1.
#[tokio::test]
async fn cli_export_end_to_end() {
    seed().await;
    settings(json!({"pollCount": 1})).await;
    let (group_id, _) = group(&fhir_client("it-bulk", SCOPE)).await;
    let base = base().to_string();
    let key = key_path("rs384");
    let key = key.to_str().expect("key path");
    let dir = out_dir("cli");
    let dir_text = dir.to_str().expect("dir").to_owned();
    let common = [
        "export",
        "--fhir-base",
        base.as_str(),
        "--insecure-http",
        "--client-id",
        "it-bulk-cli",
        "--key",
        key,
        "--scope",
        SCOPE,
        "--out",
        dir_text.as_str(),
    ];
    let mut args = common.to_vec();
    args.extend([
        "--group",
        group_id.as_str(),
        "--type",
        "Patient,Observation",
    ]);
    let out = cli(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("exported"), "{stdout}");
    assert!(
        stderr.contains("33%") || stderr.contains("in progress"),
        "{stderr}"
    );
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest.json");
    let mut n: std::collections::HashMap<String, u32> = Default::default();
    for entry in &manifest.output {
        let k = n.entry(entry.resource_type.clone()).or_insert(0);
        *k += 1;
        let path = dir.join(format!("{}.{k}.ndjson", entry.resource_type));
        assert_eq!(
            Some(lines(&path).len() as u64),
            entry.count,
            "{}",
            path.display()
        );
    }
    assert!(manifest.declared_output_count() >= 3);

    let mut args = common.to_vec();
    args.extend(["--type", "Patient,NoSuchType"]);
    let out = cli(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("partial success"), "{stdout}");
    assert!(
        stdout.contains("error.OperationOutcome.1.ndjson"),
        "{stdout}"
    );
    assert!(dir.join("error.OperationOutcome.1.ndjson").exists());
}
