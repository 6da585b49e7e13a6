//! Bulk Data status polling, manifests and cancellation (SC-7.11–SC-7.17, SC-7.23, SC-7.24)
//! against a scripted transport, on paused time.

mod bulk_support;

use std::time::{Duration, SystemTime};

use bulk_support::{builder, client, manifest, Fake, Reply, Tokens, BASE, STATUS};
use http::Method;
use serde_json::json;
use smart_fhir_core::FixedClock;
use smart_fhir_http::bulk::{PollEvent, PollOptions, PollStatus, Progress};
use smart_fhir_http::FhirError;

fn done() -> Reply {
    Reply::json(
        200,
        manifest(
            true,
            json!([{"type": "Patient", "url": format!("{BASE}/files/Patient.1.ndjson"), "count": 3}]),
            json!([]),
        ),
    )
}

fn gaps(fake: &Fake) -> Vec<Duration> {
    let seen = fake.seen_at(Method::GET, STATUS);
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// SC-7.12, SC-7.11: 202 is "in progress"; `X-Progress` reaches the callback; without
/// `Retry-After` the waits grow exponentially up to the bound; 200 ends with the manifest.
#[tokio::test(start_paused = true)]
async fn sc_7_11_sc_7_12_exponential_backoff_and_x_progress() {
    let fake = Fake::default();
    for i in 1..=5 {
        fake.on(
            Method::GET,
            STATUS,
            Reply::status(202).header("x-progress", &format!("{}% done\t ", i * 20)),
        );
    }
    fake.on(Method::GET, STATUS, done());
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap().with_poll_options(
        PollOptions::default()
            .initial_interval(Duration::from_secs(2))
            .max_interval(Duration::from_secs(10)),
    );
    let mut reports: Vec<Progress> = Vec::new();
    let m = job
        .wait_with_progress(|p| reports.push(p.clone()))
        .await
        .unwrap();
    assert_eq!(m.output.len(), 1);
    assert_eq!(
        gaps(&fake),
        [2, 4, 8, 10, 10].map(Duration::from_secs),
        "exponential, capped at max_interval"
    );
    assert_eq!(reports.len(), 5);
    assert!(reports.iter().all(|r| r.event == PollEvent::InProgress));
    assert_eq!(reports[0].progress.as_deref(), Some("20% done"));
    assert_eq!(reports[4].polls, 5);
    assert_eq!(reports[2].next_poll_in, Duration::from_secs(8));
    let req = &fake.seen()[0];
    assert_eq!(req.header("authorization"), Some("Bearer tok-1"), "SC-7.1");
    assert_eq!(req.header("accept"), Some("application/json"));
}

/// SC-7.11: `Retry-After` in seconds and as an HTTP date (read with the client's clock) is
/// honoured, with the minimum interval as a floor.
#[tokio::test(start_paused = true)]
async fn sc_7_11_retry_after_seconds_and_http_date() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::status(202).header("retry-after", "5"),
    )
    .on(
        Method::GET,
        STATUS,
        // The fixed clock says 07:28:00.
        Reply::status(202).header("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
    )
    .on(
        Method::GET,
        STATUS,
        Reply::status(202).header("retry-after", "0"),
    )
    .on(Method::GET, STATUS, done());
    let c = builder(&fake)
        .auth(Tokens::default())
        .clock(FixedClock::at_unix(1_445_412_480))
        .build()
        .unwrap();
    let job = c
        .bulk_job(STATUS)
        .unwrap()
        .with_poll_options(PollOptions::default().min_interval(Duration::from_secs(2)));
    job.wait().await.unwrap();
    assert_eq!(gaps(&fake), [5, 30, 2].map(Duration::from_secs));
}

/// A very long `Retry-After` is shortened to `max_retry_after`.
#[tokio::test(start_paused = true)]
async fn sc_7_11_long_retry_after_is_capped() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::status(202).header("retry-after", "86400"),
    )
    .on(Method::GET, STATUS, done());
    let (c, _) = client(&fake);
    let job = c
        .bulk_job(STATUS)
        .unwrap()
        .with_poll_options(PollOptions::default().max_retry_after(Duration::from_secs(90)));
    job.wait().await.unwrap();
    assert_eq!(gaps(&fake), [Duration::from_secs(90)]);
}

/// SC-7.13: 429 slows polling down (Retry-After honoured, the own interval doubled).
#[tokio::test(start_paused = true)]
async fn sc_7_13_429_slows_down() {
    let fake = Fake::default();
    fake.on(Method::GET, STATUS, Reply::status(202))
        .on(
            Method::GET,
            STATUS,
            Reply::status(429).header("retry-after", "20"),
        )
        .on(Method::GET, STATUS, Reply::status(429))
        .on(Method::GET, STATUS, Reply::status(202))
        .on(Method::GET, STATUS, done());
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap().with_poll_options(
        PollOptions::default()
            .initial_interval(Duration::from_secs(1))
            .max_interval(Duration::from_secs(100)),
    );
    let mut events = Vec::new();
    job.wait_with_progress(|p| events.push(p.event))
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            PollEvent::InProgress,
            PollEvent::SlowDown,
            PollEvent::SlowDown,
            PollEvent::InProgress
        ]
    );
    // 1 s; then Retry-After 20 s; then the own interval, doubled by each 429 (2 → 4 → 8 s);
    // then 16 s, the interval having doubled after that wait.
    assert_eq!(gaps(&fake), [1, 20, 8, 16].map(Duration::from_secs));
}

/// SC-7.14: 5xx and OperationOutcomes with a `transient` issue are retried, a bounded number
/// of consecutive times.
#[tokio::test(start_paused = true)]
async fn sc_7_14_transient_errors_are_retried() {
    let fake = Fake::default();
    fake.on(Method::GET, STATUS, Reply::status(503))
        .on(
            Method::GET,
            STATUS,
            Reply::outcome(500, "exception", "boom"),
        )
        .on(
            Method::GET,
            STATUS,
            Reply::outcome(400, "transient", "try later"),
        )
        .on(Method::GET, STATUS, done());
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    let mut reports = Vec::new();
    let m = job
        .wait_with_progress(|p| reports.push(p.clone()))
        .await
        .unwrap();
    assert_eq!(m.transaction_time, "2024-05-01T10:00:00Z");
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.event == PollEvent::Retrying));
    assert!(reports[2].error.as_deref().unwrap().contains("try later"));

    let fake = Fake::default();
    fake.on(Method::GET, STATUS, Reply::status(500));
    let (c, _) = client(&fake);
    let job = c
        .bulk_job(STATUS)
        .unwrap()
        .with_poll_options(PollOptions::default().max_transient_errors(2));
    let e = job.wait().await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(500));
    assert_eq!(fake.seen().len(), 3, "first try and two retries");
}

/// SC-7.14: other 4xx/5xx fail at once, with the OperationOutcome; a non-FHIR body is kept
/// as a bounded excerpt.
#[tokio::test(start_paused = true)]
async fn sc_7_14_fatal_errors_end_the_wait() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::outcome(404, "not-found", "export job expired"),
    );
    let (c, _) = client(&fake);
    let e = c.bulk_job(STATUS).unwrap().wait().await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404));
    assert_eq!(e.outcome().unwrap().issue[0].code, "not-found");
    assert_eq!(fake.seen().len(), 1);

    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::status(400).body("<html>bad things</html>"),
    );
    let (c, _) = client(&fake);
    let e = c.bulk_job(STATUS).unwrap().poll().await.unwrap_err();
    assert!(e.to_string().contains("bad things"), "{e}");
    assert!(!e.is_transient());
}

/// SC-7.15, SC-7.16, SC-7.24: the manifest is parsed whole (unknown members ignored), with
/// `Expires`; a non-empty `error[]` is a partial success.
#[tokio::test]
async fn sc_7_15_sc_7_16_manifest_with_partial_errors_and_expires() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::json(
            200,
            json!({
                "transactionTime": "2024-05-01T10:00:00.123+02:00",
                "request": "https://ehr.example/fhir/$export?_type=Patient,Observation",
                "requiresAccessToken": false,
                "outputOrganizedBy": "Patient",
                "output": [
                    {"type": "Patient", "url": "https://files.example/p1.ndjson", "count": 10},
                    {"type": "Observation", "url": "https://files.example/o1.ndjson",
                     "continuesInFile": "https://files.example/o2.ndjson"},
                    {"type": "Observation", "url": "https://files.example/o2.ndjson", "count": 5}
                ],
                "deleted": [{"type": "Bundle", "url": "https://files.example/del.ndjson"}],
                "error": [{"type": "OperationOutcome", "url": "https://files.example/err.ndjson"}],
                "extension": {"https://example/vendor": {"shard": 3}},
                "link": [{"relation": "next", "url": "https://ehr.example/fhir/manifest/2"}],
                "somethingNew": true
            }),
        )
        .header("expires", "Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    let (c, _) = client(&fake);
    let PollStatus::Complete(m) = c.bulk_job(STATUS).unwrap().poll().await.unwrap() else {
        panic!("not complete");
    };
    assert_eq!(m.transaction_time, "2024-05-01T10:00:00.123+02:00");
    assert!(!m.requires_access_token);
    assert_eq!(m.output.len(), 3);
    assert_eq!(m.output[0].count, Some(10));
    assert_eq!(
        m.output[1].continues_in_file.as_deref(),
        Some("https://files.example/o2.ndjson")
    );
    assert_eq!(m.declared_output_count(), 15);
    assert_eq!(m.deleted[0].resource_type, "Bundle");
    assert!(m.is_partial(), "SC-7.16");
    assert_eq!(m.error[0].resource_type, "OperationOutcome");
    assert_eq!(m.output_organized_by.as_deref(), Some("Patient"));
    assert_eq!(m.next_link(), Some("https://ehr.example/fhir/manifest/2"));
    assert_eq!(
        m.extension.as_ref().unwrap()["https://example/vendor"]["shard"],
        3
    );
    assert_eq!(
        m.expires,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480))
    );
}

/// SC-7.17: the manifest's transactionTime is accepted as the next `_since`.
#[tokio::test]
async fn sc_7_17_transaction_time_feeds_the_next_since() {
    let fake = Fake::default();
    fake.on(Method::GET, STATUS, done());
    fake.on(Method::GET, "/fhir/$export", bulk_support::accepted());
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    let m = job.wait().await.unwrap();
    c.bulk_export()
        .since(&m.transaction_time)
        .start()
        .await
        .unwrap();
    let kickoff = fake.seen_at(Method::GET, "/fhir/$export");
    assert_eq!(
        kickoff[0].query().unwrap(),
        "_since=2024-05-01T10%3A00%3A00Z"
    );
}

/// SC-7.15: a 200 whose body is not a manifest is a typed error that does not quote it.
#[tokio::test]
async fn sc_7_15_broken_manifests_are_errors() {
    for body in [
        json!({"transactionTime": "x", "request": "y", "output": []}),
        json!({"resourceType": "Patient", "name": [{"family": "Secret"}]}),
        json!([1, 2]),
    ] {
        let fake = Fake::default();
        fake.on(Method::GET, STATUS, Reply::json(200, body.clone()));
        let (c, _) = client(&fake);
        let e = c.bulk_job(STATUS).unwrap().poll().await.unwrap_err();
        assert!(matches!(e, FhirError::Manifest { .. }), "{body}: {e}");
        assert!(!e.to_string().contains("Secret"), "{e}");
    }
}

/// SC-7.23: cancel is a DELETE of the status URL, expecting 202; an error status fails.
#[tokio::test]
async fn sc_7_23_cancel_deletes_the_status_url() {
    let fake = Fake::default();
    fake.on(
        Method::DELETE,
        STATUS,
        Reply::outcome(202, "informational", "deleted"),
    );
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    job.cancel().await.unwrap();
    let del = fake.seen_at(Method::DELETE, STATUS);
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].header("authorization"), Some("Bearer tok-1"));

    let fake = Fake::default();
    fake.on(
        Method::DELETE,
        STATUS,
        Reply::outcome(404, "not-found", "no such job"),
    );
    let (c, _) = client(&fake);
    let e = c.bulk_job(STATUS).unwrap().cancel().await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404));
}

/// SC-7.24: a v3 `next` link is followed (checked, polled like the first manifest); each
/// job keeps its own manifest.
#[tokio::test(start_paused = true)]
async fn sc_7_24_next_manifest_link() {
    let next = format!("{BASE}/manifest/2");
    let fake = Fake::default();
    let mut first = manifest(true, json!([]), json!([]));
    first["link"] = json!([{"relation": "next", "url": next}]);
    fake.on(Method::GET, STATUS, Reply::json(200, first));
    fake.on(Method::GET, &next, Reply::status(202))
        .on(Method::GET, &next, done());
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    let second = job.next_manifest().await.unwrap().unwrap();
    assert!(job.manifest().unwrap().output.is_empty());
    assert_eq!(second.manifest().unwrap().output.len(), 1);
    assert_eq!(second.status_url().as_str(), next);
    assert!(second.next_manifest().await.unwrap().is_none());
    assert_eq!(fake.seen_at(Method::GET, &next).len(), 2);

    let mut evil = manifest(true, json!([]), json!([]));
    evil["link"] = json!([{"relation": "next", "url": "http://evil.example/m"}]);
    let fake = Fake::default();
    fake.on(Method::GET, STATUS, Reply::json(200, evil));
    let (c, _) = client(&fake);
    let e = c
        .bulk_job(STATUS)
        .unwrap()
        .next_manifest()
        .await
        .unwrap_err();
    assert!(matches!(e, FhirError::Url(_)), "P15: {e}");
    assert_eq!(fake.seen().len(), 1, "the evil link is not fetched");
}

/// v3: a `202` may carry the manifest of the files ready so far.
#[tokio::test]
async fn sc_7_24_partial_manifest_with_202() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::json(
            202,
            manifest(
                true,
                json!([{"type": "Patient", "url": "https://x.example/1"}]),
                json!([]),
            ),
        )
        .header("x-progress", "1 of 3 files"),
    );
    let (c, _) = client(&fake);
    let PollStatus::InProgress(p) = c.bulk_job(STATUS).unwrap().poll().await.unwrap() else {
        panic!("not in progress");
    };
    assert_eq!(p.progress.as_deref(), Some("1 of 3 files"));
    assert_eq!(p.manifest.unwrap().output.len(), 1);
}

/// The total wait can be bounded.
#[tokio::test(start_paused = true)]
async fn wait_timeout() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::status(202).header("retry-after", "30"),
    );
    let (c, _) = client(&fake);
    let job = c
        .bulk_job(STATUS)
        .unwrap()
        .with_poll_options(PollOptions::default().timeout(Duration::from_secs(100)));
    let e = job.wait().await.unwrap_err();
    assert!(matches!(e, FhirError::Bulk { .. }), "{e}");
    assert_eq!(fake.seen().len(), 4, "at 0, 30, 60 and 90 s");
}

/// The job keeps its manifest: none before completion, the manifest after; waiting again
/// sends no request; `poll` keeps a complete manifest too; clones share it.
#[tokio::test(start_paused = true)]
async fn sc_7_15_the_job_keeps_its_manifest() {
    let fake = Fake::default();
    fake.on(Method::GET, STATUS, Reply::status(202))
        .on(Method::GET, STATUS, done());
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    let handle = job.clone();
    assert!(job.manifest().is_none());
    assert!(matches!(
        job.poll().await.unwrap(),
        PollStatus::InProgress(_)
    ));
    assert!(job.manifest().is_none());
    let m = job.wait().await.unwrap();
    assert_eq!(m.output.len(), 1);
    assert_eq!(job.wait().await.unwrap().output.len(), 1);
    assert_eq!(fake.seen().len(), 2, "no status request once complete");
    assert_eq!(handle.manifest().map(|m| m.output.len()), Some(1));

    let fake = Fake::default();
    fake.on(Method::GET, STATUS, done());
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    assert!(matches!(job.poll().await.unwrap(), PollStatus::Complete(_)));
    assert_eq!(job.manifest().map(|m| m.output.len()), Some(1));
}

/// SC-7.11: the poll options given to the export reach its job.
#[tokio::test(start_paused = true)]
async fn sc_7_11_poll_options_travel_from_the_export_to_the_job() {
    let fake = Fake::default();
    fake.on(Method::GET, "/fhir/$export", bulk_support::accepted());
    fake.on(Method::GET, STATUS, Reply::status(202))
        .on(Method::GET, STATUS, done());
    let (c, _) = client(&fake);
    let job = c
        .bulk_export()
        .poll_options(PollOptions::default().initial_interval(Duration::from_secs(7)))
        .start()
        .await
        .unwrap();
    job.wait().await.unwrap();
    assert_eq!(gaps(&fake), [Duration::from_secs(7)]);
}
