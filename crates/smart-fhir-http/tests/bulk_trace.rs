//! The `tracing` output of a whole Bulk Data export (kick-off, polling, manifest, downloads),
//! captured at TRACE level and checked: what it must say, and that it never says a token, a
//! query string, a body or a line of a file (issue 8 §4; P5, SC-7.12).

mod bulk_support;

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bulk_support::{client, manifest, patients, Fake, Reply, STATUS};
use http::Method;
use serde_json::json;
use smart_fhir_core::HttpErrorKind;
use tracing::field::{Field, Visit};
use tracing::span;

/// Every span and event as one line of text: `span <name> k=v…` or
/// `event <LEVEL> [<open spans>] k=v…`.
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    spans: Arc<Mutex<Vec<(u64, String)>>>,
    open: Arc<Mutex<Vec<u64>>>,
    next: Arc<AtomicU64>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn span_name(&self, id: u64) -> String {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_default()
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &span::Attributes<'_>) -> span::Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        let name = attrs.metadata().name().to_owned();
        self.spans.lock().unwrap().push((id, name.clone()));
        self.lines
            .lock()
            .unwrap()
            .push(format!("span {name}{}", fields.0));
        span::Id::from_u64(id)
    }

    fn record(&self, id: &span::Id, values: &span::Record<'_>) {
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        let name = self.span_name(id.into_u64());
        self.lines
            .lock()
            .unwrap()
            .push(format!("record {name}{}", fields.0));
    }

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let open: Vec<String> = self
            .open
            .lock()
            .unwrap()
            .iter()
            .map(|id| self.span_name(*id))
            .collect();
        self.lines.lock().unwrap().push(format!(
            "event {} [{}]{}",
            event.metadata().level(),
            open.join(">"),
            fields.0
        ));
    }

    fn enter(&self, id: &span::Id) {
        self.open.lock().unwrap().push(id.into_u64());
    }

    fn exit(&self, id: &span::Id) {
        let mut open = self.open.lock().unwrap();
        if let Some(at) = open.iter().rposition(|i| *i == id.into_u64()) {
            open.remove(at);
        }
    }
}

fn find<'a>(lines: &'a [String], parts: &[&str]) -> &'a str {
    lines
        .iter()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no trace line with {parts:?} in:\n{}", lines.join("\n")))
}

/// A Group export end to end, traced: the kick-off span names the origin and the path
/// template (not the group id), each answer its status; each status answer its status, a
/// cleaned and bounded `X-Progress` and `Retry-After`; the manifest its file counts; each file
/// its type, bytes, lines and duration. No trace line carries the token, a query string, the
/// kick-off parameters, an `X-Progress` control character or a line of a file.
#[tokio::test(start_paused = true)]
async fn bulk_export_traces_every_step_and_no_secret() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let file = "https://ehr.example/fhir/files/Patient.1.ndjson?sig=SIGNED-CAPABILITY";
    let fake = Fake::default();
    fake.on(
        Method::GET,
        "/fhir/Group/cohort-7/$export",
        Reply::status(429).header("retry-after", "2"),
    )
    .on(
        Method::GET,
        "/fhir/Group/cohort-7/$export",
        bulk_support::accepted(),
    );
    // A header value can hold no control character but the tab.
    let progress = format!("40% done\t{}", "x".repeat(500));
    fake.on(
        Method::GET,
        STATUS,
        Reply::status(202)
            .header("x-progress", &progress)
            .header("retry-after", "3"),
    )
    .on(
        Method::GET,
        STATUS,
        Reply::json(
            200,
            manifest(
                true,
                json!([{"type": "Patient", "url": file, "count": 2}]),
                json!([]),
            ),
        ),
    );
    fake.on(
        Method::GET,
        file,
        Reply::ndjson_gzip(
            "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Secret-Smith\"}]}\n\
             {\"resourceType\":\"Patient\",\"id\":\"p2\"}\n",
            16,
        ),
    );
    let (c, _) = client(&fake);
    let job = c
        .bulk_export()
        .group("cohort-7")
        .types(["Patient"])
        .type_filter("Patient?name=Hidden-Filter")
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = job.download_to_dir(dir.path()).await.unwrap();
    assert_eq!(summary.files[0].resources, 2);

    let lines = capture.lines();
    let text = lines.join("\n");
    find(
        &lines,
        &[
            "span bulk_kickoff",
            "origin=https://ehr.example",
            "path=Group/{id}/$export",
        ],
    );
    find(&lines, &["[bulk_kickoff]", "status=429", "answered"]);
    find(&lines, &["[bulk_kickoff]", "status=429", "retry_after_s=2"]);
    find(
        &lines,
        &["INFO [bulk_kickoff]", "status=202", "export started"],
    );
    find(&lines, &["span bulk_wait", "origin=https://ehr.example"]);
    let poll = find(&lines, &["[bulk_wait]", "status=202", "in progress"]);
    assert!(poll.contains("retry_after_s=3"), "{poll}");
    assert!(
        poll.contains("progress=40% done xxx"),
        "tab made a space: {poll}"
    );
    assert!(poll.contains('…'), "X-Progress is cut: {poll}");
    assert!(poll.len() < 400, "X-Progress is bounded: {poll}");
    find(
        &lines,
        &[
            "INFO [bulk_wait]",
            "output_files=1",
            "error_files=0",
            "declared_resources=2",
        ],
    );
    find(&lines, &["span bulk_download", "files=1"]);
    find(
        &lines,
        &["span bulk_file", "resource_type=Patient", "kind=Output"],
    );
    find(
        &lines,
        &[
            "[bulk_download>bulk_file]",
            "file request answered",
            "resource_type=Patient",
            "status=200",
            "gzip=true",
        ],
    );
    let done = find(
        &lines,
        &[
            "[bulk_download>bulk_file]",
            "file read",
            "resource_type=Patient",
            "lines=2",
        ],
    );
    assert!(done.contains("duration_ms="), "{done}");
    assert!(done.contains("bytes_received="), "{done}");
    find(
        &lines,
        &["[bulk_download]", "files written", "files=1", "resources=2"],
    );

    for secret in [
        "tok-1",
        "Bearer",
        "sig=",
        "SIGNED-CAPABILITY",
        "cohort-7",
        "Hidden-Filter",
        "_typeFilter",
        "Secret-Smith",
        "\t",
        "bulk-status/42",
    ] {
        assert!(!text.contains(secret), "{secret:?} in the trace:\n{text}");
    }
}

/// A file that breaks is traced once, as failed (type, lines so far, the kind of error), and
/// reading on after the error adds no "read" event.
#[tokio::test]
async fn a_failed_file_is_traced_once_as_failed() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let file = "https://ehr.example/fhir/files/Observation.1.ndjson";
    let fake = Fake::default();
    fake.on(
        Method::GET,
        STATUS,
        Reply::json(
            200,
            manifest(
                false,
                json!([{"type": "Observation", "url": file}]),
                json!([]),
            ),
        ),
    );
    fake.on(
        Method::GET,
        file,
        Reply::ndjson(patients(0..3), 64).then_fail(HttpErrorKind::Io),
    );
    let (c, _) = client(&fake);
    let job = c.bulk_job(STATUS).unwrap();
    let manifest = job.wait().await.unwrap();
    let mut lines = job.open_lines(&manifest.output[0]).await.unwrap();
    let mut read = 0;
    let e = loop {
        match lines.next_line().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the broken body ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(read, 3, "{e}");
    assert!(lines.next_line().await.unwrap().is_none());
    assert!(lines.next_line().await.unwrap().is_none());

    let trace = capture.lines();
    let failed: Vec<_> = trace.iter().filter(|l| l.contains("file failed")).collect();
    assert_eq!(failed.len(), 1, "{trace:#?}");
    assert!(
        failed[0].contains("resource_type=Observation"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("lines=3"), "{}", failed[0]);
    assert!(failed[0].contains("error=transport"), "{}", failed[0]);
    assert!(
        !trace.iter().any(|l| l.contains("file read")),
        "no success after a failure: {trace:#?}"
    );
}
