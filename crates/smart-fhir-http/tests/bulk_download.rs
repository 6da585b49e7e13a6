//! Bulk Data file downloads (SC-7.18–SC-7.21, P6, P15) against a scripted transport with
//! chunked bodies.

mod bulk_support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bulk_support::{client, gzip, manifest, patients, Fake, Reply, Seen, Tokens, BASE, STATUS};
use bytes::Bytes;
use futures_util::StreamExt;
use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use smart_fhir_core::HttpErrorKind;
use smart_fhir_http::bulk::{BulkJob, DownloadOptions, FileKind};
use smart_fhir_http::FhirError;

const FILE1: &str = "https://ehr.example/fhir/files/Patient.1.ndjson";
const FILE2: &str = "https://ehr.example/fhir/files/Patient.2.ndjson";
const ERRORS: &str = "https://ehr.example/fhir/files/errors.ndjson";

fn one_file(requires_token: bool, url: &str) -> Value {
    manifest(
        requires_token,
        json!([{"type": "Patient", "url": url}]),
        json!([]),
    )
}

/// A complete job whose status URL (one of its own) answers `manifest`, already waited for,
/// downloading with `options`.
async fn job_with(fake: &Fake, manifest: Value, options: DownloadOptions) -> (BulkJob, Tokens) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let status = format!("{STATUS}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    fake.on(Method::GET, &status, Reply::json(200, manifest));
    let (c, tokens) = client(fake);
    let job = c.bulk_job(&status).unwrap().with_download_options(options);
    job.wait().await.unwrap();
    (job, tokens)
}

/// The requests other than status requests.
fn file_requests(fake: &Fake) -> Vec<Seen> {
    fake.seen()
        .into_iter()
        .filter(|s| !s.path().starts_with("/fhir/bulk-status/"))
        .collect()
}

async fn read_all(job: &BulkJob) -> Result<Vec<Value>, FhirError> {
    let file = &job.manifest().unwrap().output[0];
    let mut s = job.open_file::<Value>(file).await?;
    let mut out = Vec::new();
    while let Some(r) = s.next_resource().await? {
        out.push(r);
    }
    Ok(out)
}

/// Every line of the first output file, unparsed.
async fn read_lines(job: &BulkJob) -> Result<Vec<Bytes>, FhirError> {
    let file = &job.manifest().unwrap().output[0];
    let mut s = job.open_lines(file).await?;
    let mut out = Vec::new();
    while let Some(line) = s.next_line().await? {
        out.push(line);
    }
    Ok(out)
}

/// SC-7.18, P6: with `requiresAccessToken: false` no token is sent; with `true` it is, and
/// the NDJSON headers are sent either way (SC-7.19, SC-7.20).
#[tokio::test]
async fn sc_7_18_p6_token_only_when_required() {
    let fake = Fake::default();
    fake.on(Method::GET, FILE1, Reply::ndjson(patients(0..3), 10));
    let opts = DownloadOptions::default();

    let (job, _) = job_with(&fake, one_file(false, FILE1), opts.clone()).await;
    assert_eq!(read_all(&job).await.unwrap().len(), 3);
    let (job, _) = job_with(&fake, one_file(true, FILE1), opts).await;
    assert_eq!(read_all(&job).await.unwrap().len(), 3);

    let seen = fake.seen_at(Method::GET, FILE1);
    assert_eq!(seen[0].header("authorization"), None, "SC-7.18: no token");
    assert_eq!(seen[1].header("authorization"), Some("Bearer tok-1"));
    for s in &seen {
        assert_eq!(
            s.header("accept"),
            Some("application/fhir+ndjson"),
            "SC-7.19"
        );
        assert_eq!(s.header("accept-encoding"), Some("gzip"), "SC-7.20");
    }
}

/// P6: even when required, the token never goes to another origin (e.g. a storage host).
#[tokio::test]
async fn p6_no_token_to_another_origin() {
    let other = "https://storage.example/bucket/Patient.1.ndjson";
    let fake = Fake::default();
    fake.on(Method::GET, other, Reply::ndjson(patients(0..1), 100));
    let (job, _) = job_with(&fake, one_file(true, other), DownloadOptions::default()).await;
    read_all(&job).await.unwrap();
    assert_eq!(file_requests(&fake)[0].header("authorization"), None);
}

/// P15: a file URL that is plain HTTP, another scheme or relative is refused unfetched.
#[tokio::test]
async fn p15_file_urls_are_checked() {
    let fake = Fake::default();
    for url in [
        "http://ehr.example/f.ndjson",
        "file:///etc/passwd",
        "/fhir/files/x",
    ] {
        let (job, _) = job_with(&fake, one_file(true, url), DownloadOptions::default()).await;
        let e = read_all(&job).await.unwrap_err();
        assert!(matches!(e, FhirError::Url(_)), "{url}: {e}");
        let e = read_lines(&job).await.unwrap_err();
        assert!(matches!(e, FhirError::Url(_)), "{url}: {e}");
    }
    assert!(file_requests(&fake).is_empty());
}

/// The files of an export that has not completed cannot be opened: the job has no manifest
/// to say whether they need the token (SC-7.18).
#[tokio::test]
async fn sc_7_18_files_need_a_complete_job() {
    let fake = Fake::default();
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    let file: smart_fhir_http::bulk::ManifestFile =
        serde_json::from_value(json!({"type": "Patient", "url": FILE1})).unwrap();
    let e = job.open_lines(&file).await.unwrap_err();
    assert!(matches!(e, FhirError::Bulk { .. }), "{e}");
    assert!(e.to_string().contains("not completed"), "{e}");
    assert!(fake.seen().is_empty());
}

/// SC-7.20: a gzipped body is decoded as it arrives, in small chunks too.
#[tokio::test]
async fn sc_7_20_gzip_content_encoding() {
    let fake = Fake::default();
    fake.on(Method::GET, FILE1, Reply::ndjson_gzip(patients(0..500), 97));
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    let got = read_all(&job).await.unwrap();
    assert_eq!(got.len(), 500);
    assert_eq!(got[499]["id"], "p499");
}

/// SC-7.20: without `Accept-Encoding` when switched off; a gzip body without
/// `Content-Encoding` (a `.gz` file served as is) is still recognised.
#[tokio::test]
async fn sc_7_20_gzip_off_and_sniffed() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::status(200).chunks(&gzip(patients(0..4).as_bytes()), 1),
    );
    let opts = DownloadOptions::default().gzip(false);
    let (job, _) = job_with(&fake, one_file(true, FILE1), opts).await;
    let got = read_all(&job).await.unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(file_requests(&fake)[0].header("accept-encoding"), None);
}

/// SC-7.20: an unsupported `Content-Encoding` is an error, not garbage.
#[tokio::test]
async fn sc_7_20_unknown_content_encoding_fails() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::ndjson(patients(0..1), 100).header("content-encoding", "br"),
    );
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    let e = read_all(&job).await.unwrap_err();
    assert!(matches!(e, FhirError::Download { .. }), "{e}");
}

/// SC-7.21: trailing newline, blank lines, CRLF and a missing final newline are tolerated;
/// lines split across chunks are joined.
#[tokio::test]
async fn sc_7_21_ndjson_tolerates_blank_lines_crlf_and_trailing_newline() {
    let text = "{\"id\":\"a\"}\r\n\r\n\n{\"id\":\"b\"}\n   \n{\"id\":\"c\"}";
    for chunk in [1, 3, 1000] {
        let fake = Fake::default();
        fake.on(Method::GET, FILE1, Reply::ndjson(text, chunk));
        let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
        let got = read_all(&job).await.unwrap();
        let ids: Vec<_> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"], "chunk size {chunk}");
    }
    let fake = Fake::default();
    fake.on(Method::GET, FILE1, Reply::ndjson("", 1));
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    assert!(read_all(&job).await.unwrap().is_empty());
}

/// SC-7.19–SC-7.21: the raw line stream yields each non-blank line as bytes, unparsed (a line
/// that is not JSON comes through), without its line end, whatever the chunking, gzipped or
/// not; line numbers count blank lines.
#[tokio::test]
async fn sc_7_21_raw_lines_plain_and_gzipped() {
    let text = "\u{feff}{\"id\":\"a\"}\r\n\r\nnot json\n  \n{\"id\":\"c\"}";
    let expected: [&[u8]; 3] = [b"{\"id\":\"a\"}", b"not json", b"{\"id\":\"c\"}"];
    for (i, reply) in [
        Reply::ndjson(text, 1),
        Reply::ndjson(text, 4),
        Reply::ndjson(text, 1000),
        Reply::ndjson_gzip(text, 3),
        Reply::ndjson_gzip(text, 1000),
    ]
    .into_iter()
    .enumerate()
    {
        let fake = Fake::default();
        fake.on(Method::GET, FILE1, reply);
        let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
        let file = &job.manifest().unwrap().output[0];
        let mut lines = job.open_lines(file).await.unwrap();
        let mut got = Vec::new();
        let mut numbers = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            got.push(line);
            numbers.push(lines.line_number());
        }
        assert_eq!(got, expected, "reply {i}");
        assert_eq!(numbers, [1, 3, 5], "reply {i}");
        assert_eq!(lines.lines_read(), 3);
        assert!(lines.next_line().await.unwrap().is_none(), "stays ended");

        let stream = job.open_lines(file).await.unwrap().into_stream();
        let all: Vec<Bytes> = stream.map(|l| l.unwrap()).collect().await;
        assert_eq!(all, expected, "reply {i} as a stream");
    }
}

/// SC-7.21: lines that lie inside one received chunk are parts of that chunk, not copies.
#[tokio::test]
async fn sc_7_21_raw_lines_share_the_received_chunk() {
    let body = Bytes::from(patients(0..5));
    let fake = Fake::default();
    fake.on(Method::GET, FILE1, Reply::ndjson(&body[..], body.len()));
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    let lines = read_lines(&job).await.unwrap();
    assert_eq!(lines.len(), 5);
    // Each line starts where the previous one ended plus its newline: one buffer.
    for pair in lines.windows(2) {
        let end = pair[0].as_ptr().wrapping_add(pair[0].len() + 1);
        assert_eq!(pair[1].as_ptr(), end);
    }
}

/// P15: the raw line stream keeps the line-length bound, also for gzipped bodies.
#[tokio::test]
async fn p15_raw_lines_keep_the_bound() {
    let long = format!("{{\"id\":\"x\",\"text\":\"{}\"}}\n", "a".repeat(10_000));
    let text = format!("{}{long}", patients(0..2));
    // In pieces, whole (the long line inside one chunk), and gzipped.
    for reply in [
        Reply::ndjson(&text, 512),
        Reply::ndjson(&text, text.len()),
        Reply::ndjson_gzip(&text, 512),
    ] {
        let fake = Fake::default();
        fake.on(Method::GET, FILE1, reply);
        let opts = DownloadOptions::default().max_line_bytes(4096);
        let (job, _) = job_with(&fake, one_file(true, FILE1), opts).await;
        let file = &job.manifest().unwrap().output[0];
        let mut lines = job.open_lines(file).await.unwrap();
        assert!(lines.next_line().await.unwrap().is_some());
        assert!(lines.next_line().await.unwrap().is_some());
        match lines.next_line().await.unwrap_err() {
            FhirError::Ndjson { line, reason, .. } => {
                assert_eq!(line, 3);
                assert!(reason.contains("4096"), "{reason}");
            }
            other => panic!("{other}"),
        }
        assert!(
            lines.next_line().await.unwrap().is_none(),
            "ends after an error"
        );
    }
}

/// SC-7.21: resources parse into the caller's type; the stream API yields them too; a line
/// that is not a resource is an error naming the line, never its content.
#[tokio::test]
async fn sc_7_21_typed_resources_stream_and_bad_line() {
    #[derive(Debug, Deserialize)]
    struct Patient {
        id: String,
    }
    let fake = Fake::default();
    fake.on(Method::GET, FILE1, Reply::ndjson(patients(0..20), 64));
    fake.on(
        Method::GET,
        FILE2,
        Reply::ndjson("{\"id\":\"ok\"}\n\n{\"id\": \"Secret Smith\", \n", 5),
    );
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    let s = job
        .open_file::<Patient>(&job.manifest().unwrap().output[0])
        .await
        .unwrap();
    let all: Vec<Patient> = s.into_stream().map(|r| r.unwrap()).collect().await;
    assert_eq!(all.len(), 20);
    assert_eq!(all[7].id, "p7");

    let (job, _) = job_with(&fake, one_file(true, FILE2), DownloadOptions::default()).await;
    let mut s = job
        .open_file::<Patient>(&job.manifest().unwrap().output[0])
        .await
        .unwrap();
    assert_eq!(s.next_resource().await.unwrap().unwrap().id, "ok");
    let e = s.next_resource().await.unwrap_err();
    match &e {
        FhirError::Ndjson { file, line, .. } => {
            assert_eq!(file, "/fhir/files/Patient.2.ndjson");
            assert_eq!(*line, 3);
        }
        other => panic!("{other}"),
    }
    assert!(!e.to_string().contains("Secret"), "{e}");
    assert!(
        s.next_resource().await.unwrap().is_none(),
        "ends after an error"
    );
}

/// P15: a line longer than the bound fails instead of growing memory.
#[tokio::test]
async fn p15_over_long_line_fails() {
    let long = format!("{{\"id\":\"x\",\"text\":\"{}\"}}\n", "a".repeat(10_000));
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::ndjson(format!("{}{long}", patients(0..2)), 512),
    );
    let opts = DownloadOptions::default().max_line_bytes(4096);
    let (job, _) = job_with(&fake, one_file(true, FILE1), opts).await;
    let e = read_all(&job).await.unwrap_err();
    match e {
        FhirError::Ndjson { line, reason, .. } => {
            assert_eq!(line, 3);
            assert!(reason.contains("4096"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

/// SC-7.20: a truncated gzip stream is an error, not a short file.
#[tokio::test]
async fn sc_7_20_truncated_gzip_fails() {
    let gz = gzip(patients(0..200).as_bytes());
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::status(200)
            .header("content-encoding", "gzip")
            .chunks(&gz[..gz.len() - 10], 50),
    );
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    let e = read_all(&job).await.unwrap_err();
    assert!(matches!(e, FhirError::Download { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    let e = read_lines(&job).await.unwrap_err();
    assert!(matches!(e, FhirError::Download { .. }), "raw lines: {e}");
}

/// A file request answered with an error status is a typed error.
#[tokio::test]
async fn file_error_status() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::outcome(410, "not-found", "files expired"),
    );
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    let e = read_all(&job).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(410));
    assert!(e.to_string().contains("files expired"), "{e}");
}

fn two_files_and_errors(requires_token: bool) -> Value {
    manifest(
        requires_token,
        json!([
            {"type": "Patient", "url": FILE1, "count": 3},
            {"type": "Patient", "url": FILE2, "count": 2}
        ]),
        json!([{"type": "OperationOutcome", "url": ERRORS}]),
    )
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The whole manifest to a directory: one file per output (`Type.N.ndjson`), error files
/// too, normalised NDJSON, per-file progress, counts in the summary.
#[tokio::test]
async fn download_to_dir_writes_every_file() {
    let fake = Fake::default();
    fake.on(Method::GET, FILE1, Reply::ndjson_gzip(patients(0..3), 7));
    fake.on(
        Method::GET,
        FILE2,
        Reply::ndjson(
            "{\"resourceType\":\"Patient\"}\r\n\n{\"resourceType\":\"Patient\"}",
            4,
        ),
    );
    fake.on(
        Method::GET,
        ERRORS,
        Reply::ndjson("{\"resourceType\":\"OperationOutcome\"}\n", 100),
    );
    let (job, _) = job_with(
        &fake,
        two_files_and_errors(false),
        DownloadOptions::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let events = Mutex::new(Vec::new());
    let summary = job
        .download_to_dir_with_progress(&out, |p| {
            events
                .lock()
                .unwrap()
                .push((p.file_name.to_owned(), p.resources, p.done));
        })
        .await
        .unwrap();
    assert_eq!(
        names(&out),
        [
            "Patient.1.ndjson",
            "Patient.2.ndjson",
            "error.OperationOutcome.1.ndjson"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("Patient.2.ndjson")).unwrap(),
        "{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\"}\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("Patient.1.ndjson")).unwrap(),
        patients(0..3)
    );
    assert_eq!(summary.files.len(), 3);
    assert_eq!(summary.resources(FileKind::Output), 5);
    assert_eq!(summary.resources(FileKind::Error), 1);
    assert_eq!(summary.files[0].declared_count, Some(3));
    assert_eq!(summary.files[2].kind, FileKind::Error);
    assert!(summary.files[0].bytes_received > 0);
    let events = events.into_inner().unwrap();
    for name in ["Patient.1.ndjson", "Patient.2.ndjson"] {
        let mine: Vec<_> = events.iter().filter(|e| e.0 == name).collect();
        assert!(!mine.first().unwrap().2, "a start report");
        assert!(mine.last().unwrap().2, "a done report");
    }
    assert!(file_requests(&fake)
        .iter()
        .all(|s| s.header("authorization").is_none()));
}

/// `download_to_dir` without a progress callback, on a job not waited for: it waits for the
/// export first (SC-7.11), then writes the files.
#[tokio::test(start_paused = true)]
async fn download_to_dir_waits_for_the_export() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::status(202).header("retry-after", "3"),
    )
    .on(
        Method::GET,
        STATUS,
        Reply::json(200, one_file(false, FILE1)),
    );
    fake.on(Method::GET, FILE1, Reply::ndjson(patients(0..4), 16));
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = job.download_to_dir(dir.path()).await.unwrap();
    assert_eq!(summary.resources(FileKind::Output), 4);
    assert_eq!(names(dir.path()), ["Patient.1.ndjson"]);
    assert_eq!(fake.seen_at(Method::GET, STATUS).len(), 2);
    assert!(job.manifest().is_some());
}

/// Atomic files: a failed download (broken connection, truncated gzip, bad line) leaves no
/// final file and no temporary file; files completed before stay.
#[tokio::test]
async fn failed_download_leaves_no_file() {
    for broken in [
        Reply::ndjson(patients(0..50), 64).then_fail(HttpErrorKind::Io),
        Reply::status(200)
            .header("content-encoding", "gzip")
            .body(gzip(patients(0..50).as_bytes())[..100].to_vec()),
        Reply::ndjson("{\"id\":1}\nnot json\n", 64),
    ] {
        let fake = Fake::default();
        fake.on(Method::GET, FILE1, Reply::ndjson(patients(0..3), 64));
        fake.on(Method::GET, FILE2, broken);
        let opts = DownloadOptions::default()
            .concurrency(1)
            .include_errors(false);
        let (job, _) = job_with(&fake, two_files_and_errors(true), opts).await;
        let dir = tempfile::tempdir().unwrap();
        let e = job.download_to_dir(dir.path()).await.unwrap_err();
        assert!(
            matches!(
                e,
                FhirError::Http { .. } | FhirError::Download { .. } | FhirError::Ndjson { .. }
            ),
            "{e}"
        );
        assert_eq!(names(dir.path()), ["Patient.1.ndjson"], "{e}");
    }
}

/// P15: types become file names only when they are type names; a bad URL anywhere stops
/// the download before any request.
#[tokio::test]
async fn p15_unsafe_types_and_urls_stop_before_any_request() {
    for (ty, url) in [
        ("../../etc/cron.d/x", FILE1),
        ("Patient", "http://evil.example/x.ndjson"),
    ] {
        let fake = Fake::default();
        let m = manifest(
            true,
            json!([{"type": "Patient", "url": FILE2}, {"type": ty, "url": url}]),
            json!([]),
        );
        let (job, _) = job_with(&fake, m, DownloadOptions::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let e = job.download_to_dir(dir.path()).await.unwrap_err();
        assert!(matches!(e, FhirError::Manifest { .. }), "{e}");
        assert!(file_requests(&fake).is_empty());
        assert!(names(dir.path()).is_empty());
    }
}

/// SC-7.1, SC-8.26: a token that expires between files is renewed (client side: the provider
/// hands out a new one; server side: a 401 makes the client renew and send again once).
#[tokio::test]
async fn sc_7_1_token_expiring_between_files_is_renewed() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::ndjson(patients(0..2), 64).require_token("tok-1"),
    );
    // By the second file the server no longer accepts tok-1.
    fake.on(
        Method::GET,
        FILE2,
        Reply::ndjson(patients(2..4), 64).require_token("tok-2"),
    );
    fake.on(
        Method::GET,
        ERRORS,
        Reply::ndjson("", 64).require_token("tok-3"),
    );
    let opts = DownloadOptions::default()
        .concurrency(1)
        .include_errors(false);
    let (job, tokens) = job_with(&fake, two_files_and_errors(true), opts).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = job.download_to_dir(dir.path()).await.unwrap();
    assert_eq!(summary.resources(FileKind::Output), 4);
    assert_eq!(tokens.rejected(), ["tok-1"]);
    let auth: Vec<_> = file_requests(&fake)
        .iter()
        .map(|s| s.header("authorization").unwrap_or("").to_owned())
        .collect();
    assert_eq!(auth, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]);

    // The provider itself notices expiry: the next file goes out with the new token at once.
    tokens.expire();
    let m = manifest(
        true,
        json!([{"type": "OperationOutcome", "url": ERRORS}]),
        json!([]),
    );
    let other = job.client().bulk_job(&format!("{STATUS}-errors")).unwrap();
    fake.on(
        Method::GET,
        other.status_url().as_str(),
        Reply::json(200, m),
    );
    other.wait().await.unwrap();
    read_all(&other).await.unwrap();
    let last = fake.seen().pop().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer tok-3"));
    assert_eq!(tokens.rejected().len(), 1);
}

/// The files are fetched concurrently when asked, and all arrive.
#[tokio::test]
async fn concurrent_downloads() {
    let fake = Fake::default();
    let mut output = Vec::new();
    for i in 0..6 {
        let url = format!("{BASE}/files/Observation.{i}.ndjson");
        fake.on(Method::GET, &url, Reply::ndjson(patients(0..10), 33));
        output.push(json!({"type": "Observation", "url": url}));
    }
    let m = manifest(false, Value::Array(output), json!([]));
    let (job, _) = job_with(&fake, m, DownloadOptions::default().concurrency(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = job.download_to_dir(dir.path()).await.unwrap();
    assert_eq!(summary.resources(FileKind::Output), 60);
    assert_eq!(names(dir.path()).len(), 6);
    assert_eq!(
        summary
            .files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        (1..=6)
            .map(|i| format!("Observation.{i}.ndjson"))
            .collect::<Vec<_>>()
    );
}

/// Issue 11 §1 (Bulk downloads without a bound), P15: a small gzip body that expands past the
/// default ratio (a gzip bomb: megabytes of one byte) fails with a typed error naming the
/// option, and nothing is left on disk; raised, the same body is read.
#[tokio::test]
async fn p15_gzip_bomb_fails_at_the_default_expansion_ratio() {
    // 16 MiB of spaces after one line of JSON compress to a few dozen KiB: far above 200 : 1.
    let mut text = Vec::new();
    text.extend_from_slice(b"{\"resourceType\":\"Patient\"}\n");
    text.resize(16 << 20, b' ');
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&text).unwrap();
        e.finish().unwrap()
    };
    assert!((gz.len() as u64) < 64 * 1024, "the bomb is small");
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::status(200)
            .header("content-encoding", "gzip")
            .chunks(&gz, 4096),
    );
    let (job, _) = job_with(&fake, one_file(true, FILE1), DownloadOptions::default()).await;
    let e = read_lines(&job).await.unwrap_err();
    assert!(matches!(e, FhirError::Download { .. }), "{e}");
    assert!(e.to_string().contains("max_expansion_ratio"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = job.download_to_dir(dir.path()).await.unwrap_err();
    assert!(e.to_string().contains("max_expansion_ratio"), "{e}");
    assert!(names(dir.path()).is_empty());

    // Raised, the same body gets past the point where the default stopped it.
    let opts = DownloadOptions::default().max_expansion_ratio(10_000);
    let (job, _) = job_with(&fake, one_file(true, FILE1), opts).await;
    let file = &job.manifest().unwrap().output[0];
    let mut lines = job.open_lines(file).await.unwrap();
    assert!(lines.next_line().await.unwrap().is_some());
    assert_eq!(lines.next_line().await.unwrap(), None);
}

/// Issue 11 §1 (Bulk downloads without a bound): `max_file_bytes` bounds the decoded file as
/// well as the received body, so a file that never ends stops at the bound.
#[tokio::test]
async fn p15_decoded_file_over_max_file_bytes_fails() {
    let fake = Fake::default();
    fake.on(
        Method::GET,
        FILE1,
        Reply::ndjson_gzip(patients(0..2000), 4096),
    );
    let opts = DownloadOptions::default().max_file_bytes(10_000);
    let (job, _) = job_with(&fake, one_file(true, FILE1), opts).await;
    let e = read_lines(&job).await.unwrap_err();
    assert!(e.to_string().contains("max_file_bytes"), "{e}");
    let plain = Fake::default();
    plain.on(Method::GET, FILE1, Reply::ndjson(patients(0..2000), 4096));
    let opts = DownloadOptions::default().max_file_bytes(10_000);
    let (job, _) = job_with(&plain, one_file(true, FILE1), opts).await;
    assert!(
        read_lines(&job).await.is_err(),
        "the received body is bounded too"
    );
}

/// Issue 11 §1 (writes that follow symlinks): a symlink planted at a `.part` name or at a
/// final name in the output directory is never followed: the file it points to keeps its
/// content, and the downloaded data lands in the directory.
#[cfg(unix)]
#[tokio::test]
async fn planted_symlinks_in_the_output_directory_are_not_followed() {
    let fake = Fake::default();
    fake.on(Method::GET, FILE1, Reply::ndjson(patients(0..3), 64));
    let opts = DownloadOptions::default().include_errors(false);
    let (job, _) = job_with(&fake, one_file(true, FILE1), opts).await;
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join(".Patient.1.ndjson.part")).unwrap();
    job.download_to_dir(dir.path()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(names(dir.path()), ["Patient.1.ndjson"]);

    std::fs::remove_file(dir.path().join("Patient.1.ndjson")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("Patient.1.ndjson")).unwrap();
    job.download_to_dir(dir.path()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let written = dir.path().join("Patient.1.ndjson");
    assert!(!std::fs::symlink_metadata(&written).unwrap().is_symlink());
    assert_eq!(
        std::fs::read_to_string(&written).unwrap().lines().count(),
        3
    );
}
