//! The FHIR client (SC-8) and the FHIR CLI commands against the harness's FHIR server (the
//! Medplum router behind a SMART token check), authorized with Backend Services.

use std::process::{Command, Output};

use serde_json::{json, Value};
use smart_fhir_http::client::{BundleEntry, Level, SearchParams};
use smart_fhir_http::{FhirClient, FhirError, FhirResponse, OperationOutcome};
use smart_fhir_integration_tests::*;

const ALL: &str = "system/*.cruds";

fn client() -> FhirClient {
    fhir_client("it-fhir", ALL)
}

fn new_patient(family: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:smart-fhir:test:it-fhir", "value": mrn}],
        "name": [{"family": family, "given": ["Test"]}],
        "active": true
    })
}

fn identifier(mrn: &str) -> String {
    format!("urn:smart-fhir:test:it-fhir|{mrn}")
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

fn created(r: FhirResponse<Option<Value>>) -> (Value, String) {
    let etag = r.etag().expect("ETag").to_owned();
    (r.into_body().expect("a body"), etag)
}

/// SC-8.20: the CapabilityStatement.
#[tokio::test]
async fn sc_8_20_capabilities() {
    let c = client();
    let r: FhirResponse = c.capabilities(None).await.expect("metadata");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body()["resourceType"], "CapabilityStatement");
    assert!(r.body()["fhirVersion"]
        .as_str()
        .unwrap_or("")
        .starts_with("4."));
}

/// SC-8.4 – SC-8.7, SC-8.9, SC-8.11, SC-8.13, SC-8.19: a resource's life: create, read, conditional
/// read (304), version-aware update and a 412 on a stale version, vread, JSON and FHIRPath
/// patch, history, delete, then 410.
#[tokio::test]
async fn sc_8_crud_lifecycle_with_versions() {
    let c = client();
    let mrn = unique();
    let r = c
        .create::<Value>("Patient", &new_patient("Lifecycle", &mrn), None)
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let location = r.location().expect("Location").to_owned();
    let (p, etag1) = created(r);
    let id = id_of(&p);
    assert!(
        location.contains(&format!("/Patient/{id}/_history/")),
        "{location}"
    );
    let v1 = p["meta"]["versionId"]
        .as_str()
        .expect("versionId")
        .to_owned();
    assert_eq!(etag1, format!("W/\"{v1}\""));

    // Read, and a conditional read of the current version (SC-8.4).
    let r: FhirResponse = c.read("Patient", &id).await.expect("read");
    assert_eq!(r.version_id(), Some(v1.as_str()));
    assert!(r.last_modified().is_some());
    let r = c
        .read_if_none_match::<Value>("Patient", &id, &v1)
        .await
        .expect("conditional read");
    assert_eq!(r.status(), 304);
    assert!(r.body().is_none());

    // Version-aware update (SC-8.7), then the same stale version again → 412.
    let mut changed = p.clone();
    changed["active"] = json!(false);
    let r = c
        .update::<Value>("Patient", &id, &changed, Some(&v1))
        .await
        .expect("update");
    assert_eq!(r.status(), 200);
    let v2 = r.version_id().expect("new version").to_owned();
    assert_ne!(v1, v2);
    let e = c
        .update::<Value>("Patient", &id, &changed, Some(&v1))
        .await
        .expect_err("stale If-Match");
    assert_eq!(
        e.status(),
        Some(http::StatusCode::PRECONDITION_FAILED),
        "{e}"
    );

    // A conditional read of the old version now returns the resource.
    let r = c
        .read_if_none_match::<Value>("Patient", &id, &v1)
        .await
        .expect("conditional read");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().as_ref().expect("body")["active"], false);

    // vread of the first version (SC-8.5).
    let r: FhirResponse = c.vread("Patient", &id, &v1).await.expect("vread");
    assert_eq!(r.body()["active"], true);

    // JSON Patch with If-Match (SC-8.9), then a failing `test` → 422.
    let patch = json!([{"op": "replace", "path": "/active", "value": true},
                       {"op": "add", "path": "/gender", "value": "female"}]);
    let r = c
        .patch_json::<Value>("Patient", &id, &patch, Some(&v2))
        .await
        .expect("JSON patch");
    let body = r.body().as_ref().expect("body");
    assert_eq!(body["active"], true);
    assert_eq!(body["gender"], "female");
    let e = c
        .patch_json::<Value>(
            "Patient",
            &id,
            &json!([{"op": "test", "path": "/gender", "value": "male"}]),
            None,
        )
        .await
        .expect_err("failed test");
    assert_eq!(
        e.status(),
        Some(http::StatusCode::UNPROCESSABLE_ENTITY),
        "{e}"
    );

    // FHIRPath Patch (SC-8.9).
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "other"}]}]});
    let r = c
        .patch_fhirpath::<Value>("Patient", &id, &params, None)
        .await
        .expect("FHIRPath patch");
    assert_eq!(r.body().as_ref().expect("body")["gender"], "other");

    // Delete (SC-8.11), then 410 (SC-8.4), and the deletion in the history (SC-8.19).
    let r = c.delete("Patient", &id).await.expect("delete");
    assert!(
        matches!(r.status().as_u16(), 200 | 202 | 204),
        "{}",
        r.status()
    );
    let e = c.read::<Value>("Patient", &id).await.expect_err("deleted");
    assert_eq!(e.status(), Some(http::StatusCode::GONE), "{e}");
    let entries: Vec<BundleEntry> = {
        let mut s = c
            .history_pages(Level::Instance("Patient", &id), &[])
            .expect("history")
            .entries::<Value>();
        let mut v = vec![];
        while let Some(e) = s.next_entry().await.expect("history page") {
            v.push(e);
        }
        v
    };
    assert_eq!(entries.len(), 5, "create, update, 2 patches, delete");
    assert!(entries[0].is_deletion(), "newest first");
    assert!(entries[0].resource.is_none());
    assert_eq!(entries[4].request_method.as_deref(), Some("POST"));
    let h: FhirResponse = c
        .history_instance("Patient", &id, &SearchParams::new().count(2))
        .await
        .expect("history page");
    assert_eq!(h.body()["type"], "history");
    assert_eq!(h.body()["entry"].as_array().map(Vec::len), Some(2));
}

/// SC-8.8, SC-8.10, SC-8.12, SC-8.14: conditional create, update, patch and delete.
#[tokio::test]
async fn sc_8_14_conditional_interactions() {
    let c = client();
    let mrn = unique();
    let query = format!("identifier={}", identifier(&mrn));
    let r = c
        .create::<Value>("Patient", &new_patient("Conditional", &mrn), Some(&query))
        .await
        .expect("conditional create");
    assert_eq!(r.status(), 201);
    let id = id_of(r.body().as_ref().expect("body"));
    let r = c
        .create::<Value>("Patient", &new_patient("Conditional", &mrn), Some(&query))
        .await
        .expect("conditional create again");
    assert_eq!(r.status(), 200, "SC-8.14: one match, nothing created");
    assert_eq!(id_of(r.body().as_ref().expect("body")), id);

    let by_mrn = [("identifier", identifier(&mrn))];
    let by_mrn: Vec<(&str, &str)> = by_mrn.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut p = new_patient("Conditional", &mrn);
    p["gender"] = json!("unknown");
    let r = c
        .conditional_update::<Value>("Patient", &by_mrn, &p)
        .await
        .expect("conditional update");
    assert_eq!(r.status(), 200, "SC-8.8: one match, updated");
    assert_eq!(id_of(r.body().as_ref().expect("body")), id);

    let r = c
        .conditional_patch_json::<Value>(
            "Patient",
            &by_mrn,
            &json!([{"op": "replace", "path": "/gender", "value": "female"}]),
        )
        .await
        .expect("conditional patch");
    assert_eq!(r.body().as_ref().expect("body")["gender"], "female");

    let r = c
        .conditional_delete("Patient", &by_mrn)
        .await
        .expect("conditional delete");
    assert_eq!(r.status(), 200);
    let e = c.read::<Value>("Patient", &id).await.expect_err("deleted");
    assert_eq!(e.status(), Some(http::StatusCode::GONE));

    // Several matches → 412 (SC-8.8).
    let family = format!("Dup{}", unique());
    for _ in 0..2 {
        let _: FhirResponse<Option<Value>> = c
            .create("Patient", &new_patient(&family, &unique()), None)
            .await
            .expect("create");
    }
    let e = c
        .conditional_update::<Value>(
            "Patient",
            &[("family", family.as_str())],
            &new_patient(&family, "x"),
        )
        .await
        .expect_err("several matches");
    assert_eq!(
        e.status(),
        Some(http::StatusCode::PRECONDITION_FAILED),
        "{e}"
    );
}

/// SC-8.16, SC-8.18: type search paged with `_count=2` through the `next` links, by GET and by
/// POST `_search`; system and compartment search.
#[tokio::test]
async fn sc_8_18_search_paging_through_several_pages() {
    let c = client();
    let family = format!("Paging{}", unique());
    for _ in 0..5 {
        let _: FhirResponse<Option<Value>> = c
            .create("Patient", &new_patient(&family, &unique()), None)
            .await
            .expect("create");
    }
    let params = SearchParams::new().add("family", family.clone()).count(2);

    let first: FhirResponse = c.search("Patient", &params).await.expect("search");
    assert_eq!(first.body()["type"], "searchset");
    assert_eq!(first.body()["total"], 5);
    assert_eq!(first.body()["entry"].as_array().map(Vec::len), Some(2));

    let mut resources = c
        .search_pages("Patient", &params)
        .expect("pages")
        .resources::<Value>();
    let mut all = vec![];
    while let Some(r) = resources.next_resource().await.expect("page") {
        all.push(r);
    }
    assert_eq!(all.len(), 5);
    assert_eq!(resources.pages_fetched(), 3);
    let mut ids: Vec<String> = all.iter().map(id_of).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "no resource twice");

    let posted = c
        .search_post_pages("Patient", &params)
        .expect("pages")
        .resources::<Value>()
        .collect_all()
        .await
        .expect("POST pages");
    assert_eq!(posted.len(), 5);

    // max_pages stops early and tells where to resume.
    let mut two = c
        .search_pages("Patient", &params)
        .expect("pages")
        .max_pages(2)
        .resources::<Value>();
    let mut n = 0;
    while two.next_resource().await.expect("page").is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    let resume = two.next_url().expect("a next link");
    let rest = c
        .pages_from(resume)
        .expect("resume")
        .resources::<Value>()
        .collect_all()
        .await
        .expect("rest");
    assert_eq!(rest.len(), 1);

    // System search (SC-8.16).
    let r: FhirResponse = c
        .search_system(&[("_type", "Patient"), ("family", family.as_str())])
        .await
        .expect("system search");
    assert_eq!(r.body()["total"], 5);

    // Compartment search (SC-8.16): the seeded patient's two body-weight Observations.
    let seeded = patient_ids().into_iter().next().expect("a seeded patient");
    let obs = c
        .search_compartment::<Value>(
            "Patient",
            &seeded,
            Some("Observation"),
            &[("code", "29463-7")],
        )
        .await
        .expect("compartment search");
    assert_eq!(obs.body()["total"], 2);
}

/// SC-8.19: type-level history, paged.
#[tokio::test]
async fn sc_8_19_type_history_pages() {
    let c = client();
    let mut pages = c
        .history_pages(Level::Type("Patient"), &SearchParams::new().count(2))
        .expect("history")
        .max_pages(2);
    let mut n = 0;
    while let Some(page) = pages.next_page().await.expect("page") {
        assert_eq!(page.body()["type"], "history");
        n += 1;
    }
    assert_eq!(n, 2);
    assert!(
        pages.next_url().is_some(),
        "more history than two pages of two"
    );
}

/// SC-8.21: a transaction with `urn:uuid` references; a batch with a failing entry; a failing
/// transaction keeps nothing.
#[tokio::test]
async fn sc_8_21_batch_and_transaction() {
    let c = client();
    let mrn = unique();
    let patient_urn = "urn:uuid:2f0d4c2e-6a51-4cc5-9b7e-0d7a3c2f9a11";
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_urn, "resource": new_patient("Transaction", &mrn),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": patient_urn},
            "valueQuantity": {"value": 70, "unit": "kg"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let r: FhirResponse = c.transaction(&tx).await.expect("transaction");
    assert_eq!(r.body()["type"], "transaction-response");
    let entries = r.body()["entry"].as_array().expect("entries").clone();
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert!(
            e["response"]["status"]
                .as_str()
                .unwrap_or("")
                .starts_with("201"),
            "{e}"
        );
    }
    let loc = |e: &Value| {
        e["response"]["location"]
            .as_str()
            .expect("location")
            .to_owned()
    };
    let patient_id = loc(&entries[0]).split('/').nth(1).expect("id").to_owned();
    let obs_id = loc(&entries[1]).split('/').nth(1).expect("id").to_owned();
    let obs: FhirResponse = c.read("Observation", &obs_id).await.expect("read");
    assert_eq!(
        obs.body()["subject"]["reference"],
        format!("Patient/{patient_id}"),
        "the urn:uuid reference was resolved"
    );

    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{patient_id}")}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist-0"}},
        {"resource": new_patient("Batch", &unique()), "request": {"method": "POST", "url": "Patient"}}
    ]});
    let r: FhirResponse = c.batch(&batch).await.expect("batch");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body()["type"], "batch-response");
    let statuses: Vec<&str> = r.body()["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses.len(), 3);
    assert!(statuses[0].starts_with("200"), "{statuses:?}");
    assert!(statuses[1].starts_with("404"), "{statuses:?}");
    assert!(statuses[2].starts_with("201"), "{statuses:?}");

    // A transaction whose second entry fails keeps nothing (the first entry's create is rolled
    // back).
    let mrn2 = unique();
    let failing = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": new_patient("Rollback", &mrn2), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "other"},
         "request": {"method": "PUT", "url": format!("Patient/{patient_id}"), "ifMatch": "W/\"0\""}}
    ]});
    let e = c
        .transaction::<Value>(&failing)
        .await
        .expect_err("failing transaction");
    let status = e.status().expect("a status error");
    assert!(status.is_client_error() || status.is_server_error(), "{e}");
    assert!(e.outcome().is_some(), "{e}");
    let found: FhirResponse = c
        .search("Patient", &[("identifier", identifier(&mrn2).as_str())])
        .await
        .expect("search");
    assert_eq!(found.body()["total"], 0, "rolled back");
}

/// `$everything` (paged) and `$validate`.
#[tokio::test]
async fn operations_everything_and_validate() {
    let c = client();
    let seeded = patient_ids().into_iter().next().expect("a seeded patient");
    let everything = c
        .operation_pages(
            Level::Instance("Patient", &seeded),
            "$everything",
            &[("_count", "2")],
        )
        .expect("$everything");
    let mut resources = everything.resources::<Value>();
    let mut types = vec![];
    while let Some(r) = resources.next_resource().await.expect("page") {
        types.push(r["resourceType"].as_str().unwrap_or("").to_owned());
    }
    assert!(resources.pages_fetched() >= 2, "paged with _count=2");
    assert_eq!(
        types.iter().filter(|t| *t == "Patient").count(),
        1,
        "{types:?}"
    );
    assert!(
        types.iter().filter(|t| *t == "Observation").count() >= 2,
        "{types:?}"
    );

    let ok: FhirResponse<OperationOutcome> = c
        .operation_post(
            Level::Type("Patient"),
            "validate",
            &new_patient("Valid", "1"),
        )
        .await
        .expect("$validate");
    assert!(
        ok.body()
            .issue
            .iter()
            .all(|i| i.severity != "error" && i.severity != "fatal"),
        "{:?}",
        ok.body()
    );
    let bad: FhirResponse<OperationOutcome> = c
        .operation_post(
            Level::Type("Patient"),
            "$validate",
            &json!({"resourceType": "Patient", "gender": 7}),
        )
        .await
        .expect("$validate");
    assert!(
        bad.body().issue.iter().any(|i| i.severity == "error"),
        "{:?}",
        bad.body()
    );
}

/// SC-8.26, SC-3.8: a revoked token meets a 401; the client renews it once and the request
/// succeeds.
#[tokio::test]
async fn sc_8_26_revoked_token_is_renewed_once() {
    let c = fhir_client("it-fhir-renew", "system/Patient.rs");
    let seeded = patient_ids().into_iter().next().expect("a seeded patient");
    let _: FhirResponse = c.read("Patient", &seeded).await.expect("first read");
    let before = token_requests("it-fhir-renew").await;
    revoke_all().await;
    let r: FhirResponse = c
        .read("Patient", &seeded)
        .await
        .expect("read after revocation");
    assert_eq!(r.status(), 200);
    assert_eq!(
        token_requests("it-fhir-renew").await,
        before + 1,
        "renewed exactly once"
    );
}

/// SC-8.26, SC-5.14: a 403 `insufficient_scope` is returned with its OperationOutcome, without
/// renewing the token.
#[tokio::test]
async fn sc_8_26_insufficient_scope_is_not_renewed() {
    let c = fhir_client("it-fhir-scope", "system/Patient.rs");
    let before = token_requests("it-fhir-scope").await;
    let e = c
        .create::<Value>("Patient", &new_patient("Forbidden", &unique()), None)
        .await
        .expect_err("no c scope");
    assert_eq!(e.status(), Some(http::StatusCode::FORBIDDEN), "{e}");
    assert_eq!(e.outcome().expect("outcome").issue[0].code, "forbidden");
    assert_eq!(
        token_requests("it-fhir-scope").await,
        before + 1,
        "one token, no renewal"
    );
    assert!(matches!(e, FhirError::Status { .. }));
}

// ----- the CLI, as a person runs it ----------------------------------------------------------

fn cli(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let key = key_path("rs384");
    let base = base().to_string();
    let mut cmd = Command::new(cli_bin());
    cmd.args(args)
        .args([
            "--fhir-base",
            &base,
            "--client-id",
            "it-fhir-cli",
            "--scope",
            ALL,
        ])
        .arg("--key")
        .arg(&key)
        .arg("--insecure-http")
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run smart-fhir");
    if let Some(mut w) = child.stdin.take() {
        if let Some(text) = stdin {
            w.write_all(text.as_bytes()).expect("stdin");
        }
    }
    child.wait_with_output().expect("smart-fhir output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok_json(o: &Output) -> Value {
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// SC-8.4, SC-8.6, SC-8.7, SC-8.11, SC-8.13, SC-8.18: create → get → update --if-match (and a
/// stale one) → patch → search --all → history → delete → get (410), with the CLI.
#[test]
fn cli_create_get_update_search_delete() {
    let dir = std::env::temp_dir().join(format!("smart-fhir-it-{}", unique()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let family = format!("Cli{}", unique());
    let file = dir.join("patient.json");
    std::fs::write(&file, new_patient(&family, &unique()).to_string()).expect("write");
    let file = file.to_str().expect("utf-8 path");

    let p = ok_json(&cli(&["create", "Patient", file], None));
    let id = id_of(&p);
    let v1 = p["meta"]["versionId"]
        .as_str()
        .expect("versionId")
        .to_owned();
    let target = format!("Patient/{id}");

    let got = ok_json(&cli(&["get", &target], None));
    assert_eq!(got["id"], id.as_str());
    let meta = ok_json(&cli(&["get", "metadata"], None));
    assert_eq!(meta["resourceType"], "CapabilityStatement");

    let mut changed = got.clone();
    changed["active"] = json!(false);
    let updated = ok_json(&cli(
        &["update", &target, "-", "--if-match", &v1],
        Some(&changed.to_string()),
    ));
    assert_eq!(updated["active"], false);
    let old = ok_json(&cli(&["get", &format!("{target}/_history/{v1}")], None));
    assert_eq!(old["active"], true);

    let stale = cli(
        &["update", &target, "-", "--if-match", &v1],
        Some(&changed.to_string()),
    );
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale.stderr));
    let err = text(&stale.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("412"), "{err}");

    let patched = ok_json(&cli(
        &["patch", &target, "-"],
        Some(r#"[{"op": "add", "path": "/gender", "value": "female"}]"#),
    ));
    assert_eq!(patched["gender"], "female");

    // Two more, then every match over pages of two, as NDJSON.
    for _ in 0..2 {
        ok_json(&cli(
            &["create", "Patient", "-"],
            Some(&new_patient(&family, &unique()).to_string()),
        ));
    }
    let all = cli(
        &[
            "search",
            "Patient",
            &format!("family={family}"),
            "_count=2",
            "--all",
        ],
        None,
    );
    assert!(all.status.success(), "{}", text(&all.stderr));
    let lines: Vec<Value> = text(&all.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|r| r["resourceType"] == "Patient"));
    let posted = ok_json(&cli(
        &["search", "Patient", &format!("family={family}"), "--post"],
        None,
    ));
    assert_eq!(posted["total"], 3);

    let history = ok_json(&cli(&["history", &target, "--count", "10"], None));
    assert_eq!(history["type"], "history");
    assert_eq!(history["entry"].as_array().map(Vec::len), Some(3));

    let deleted = cli(&["delete", &target], None);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    let gone = cli(&["get", &target], None);
    assert_eq!(gone.status.code(), Some(1));
    let err = text(&gone.stderr);
    assert!(err.contains("410"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SC-8.21: `batch` sends a transaction from stdin; a batch with a failing entry exits 1 after
/// printing the response Bundle.
#[test]
fn cli_batch_and_transaction() {
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7d3c9a8e-1b2f-4e6a-9c0d-5f4e3b2a1c0d", "resource": new_patient("CliTx", &unique()),
         "request": {"method": "POST", "url": "Patient"}}]});
    let r = ok_json(&cli(&["batch", "-"], Some(&tx.to_string())));
    assert_eq!(r["type"], "transaction-response");

    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/does-not-exist-0"}}]});
    let o = cli(&["batch", "-"], Some(&batch.to_string()));
    assert_eq!(o.status.code(), Some(1));
    let printed: Value = serde_json::from_slice(&o.stdout).expect("the response Bundle");
    assert_eq!(printed["type"], "batch-response");
    assert!(
        text(&o.stderr).contains("1 of 1 entries failed"),
        "{}",
        text(&o.stderr)
    );
}

/// Bad usage exits 2 before anything is sent.
#[test]
fn cli_usage_errors_exit_2() {
    for args in [
        vec!["update", "Patient", "-"],
        vec!["search", "patient"],
        vec!["search", "Patient", "family"],
        vec!["get", "https://elsewhere.example/Patient/1"],
    ] {
        let o = cli(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
    }
}

/// SC-8.4, SC-8.16: the client is generic over the body type. The `fhir-model` crate's R4B
/// types work as they are: a typed create (its `Patient` serialized), `read::<Patient>`, and a
/// search answered as its `Bundle` whose entries are its `Resource` enum; so do the caller's own
/// serde types and `serde_json::Value`, for the same resource.
#[tokio::test]
async fn sc_8_typed_resources_fhir_model_own_types_and_value() {
    use fhir_model::r4b::codes::BundleType;
    use fhir_model::r4b::resources::{Bundle, Patient, Resource};

    #[derive(Debug, serde::Deserialize)]
    struct MyPatient {
        id: String,
        #[serde(default)]
        name: Vec<MyName>,
        active: Option<bool>,
    }
    #[derive(Debug, serde::Deserialize)]
    struct MyName {
        family: Option<String>,
    }

    let c = client();
    let mrn = unique();
    let typed: Patient =
        serde_json::from_value(new_patient("Typed", &mrn)).expect("an R4B Patient");
    let r = c
        .create::<Patient>("Patient", &typed, None)
        .await
        .expect("typed create");
    assert_eq!(r.status(), 201);
    let created = r.into_body().expect("a body");
    let id = created.id.clone().expect("an id");
    assert_eq!(created.active, Some(true));

    // fhir-model's Patient.
    let read: FhirResponse<Patient> = c.read("Patient", &id).await.expect("read::<Patient>");
    assert_eq!(read.body().id.as_deref(), Some(id.as_str()));
    let family = read
        .body()
        .name
        .iter()
        .flatten()
        .find_map(|n| n.family.clone());
    assert_eq!(family.as_deref(), Some("Typed"));
    assert_eq!(
        read.body()
            .identifier
            .iter()
            .flatten()
            .find_map(|i| i.value.clone()),
        Some(mrn.clone())
    );

    // The caller's own type, and serde_json::Value, for the same resource.
    let mine: FhirResponse<MyPatient> = c.read("Patient", &id).await.expect("own type");
    assert_eq!(mine.body().id, id);
    assert_eq!(mine.body().active, Some(true));
    assert_eq!(mine.body().name[0].family.as_deref(), Some("Typed"));
    let value: FhirResponse = c.read("Patient", &id).await.expect("Value");
    assert_eq!(value.body()["name"][0]["family"], "Typed");

    // A typed searchset Bundle.
    let bundle: FhirResponse<Bundle> = c
        .search("Patient", &[("identifier", identifier(&mrn).as_str())])
        .await
        .expect("search::<Bundle>");
    assert_eq!(bundle.body().r#type, BundleType::Searchset);
    let patients: Vec<&Patient> = bundle
        .body()
        .entry
        .iter()
        .flatten()
        .filter_map(|e| match &e.resource {
            Some(Resource::Patient(p)) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(patients.len(), 1, "{:?}", bundle.body().entry.len());
    assert_eq!(patients[0].id.as_deref(), Some(id.as_str()));

    c.delete("Patient", &id).await.expect("delete");
}
