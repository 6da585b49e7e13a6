//! `export`: a Bulk Data export into a directory (SC-7).
//!
//! Kick-off, polling with the server's progress, downloads with one progress bar per file (on
//! a terminal; plain log lines otherwise, all on stderr), a summary on stdout. Exit code 0 when
//! everything was exported, 1 when the export failed or the server reported errors (`error[]`,
//! listed), 130 after Ctrl-C (the export is then cancelled on the server, best effort).

use smart_fhir_core::text::printable;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use smart_fhir_http::bulk::{
    BulkExport, BulkJob, DownloadOptions, DownloadSummary, FileKind, FileProgress, KickoffMethod,
    Manifest, PollEvent, PollOptions, Progress, DEFAULT_MAX_EXPANSION_RATIO,
    DEFAULT_MAX_FILE_BYTES,
};
use smart_fhir_http::{FhirClient, OperationOutcome};

use crate::server::FhirArgs;
use crate::{Failure, Result};

/// Exit code after Ctrl-C (128 + SIGINT).
const INTERRUPTED: u8 = 130;

/// The default deadline of a whole export: one day.
const DEFAULT_TIMEOUT_SECS: u64 = 24 * 60 * 60;

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    fhir: FhirArgs,
    /// Export the data of the patients in this Group (Group/ID/$export).
    #[arg(long, value_name = "ID", conflicts_with = "patient")]
    group: Option<String>,
    /// Export the data of all patients (Patient/$export). Default: everything ($export).
    #[arg(long)]
    patient: bool,
    /// Resource types to export, comma-separated (e.g. Patient,Observation). Default: all.
    #[arg(long = "type", value_name = "TYPES", value_delimiter = ',')]
    types: Vec<String>,
    /// Only resources changed after this FHIR instant, e.g. 2024-01-31T00:00:00Z (use the
    /// transactionTime of a previous export for an incremental one).
    #[arg(long, value_name = "INSTANT")]
    since: Option<String>,
    /// Only resources changed before this FHIR instant (Bulk Data v3).
    #[arg(long, value_name = "INSTANT")]
    until: Option<String>,
    /// A filter query such as "Observation?category=laboratory" (_typeFilter); repeatable.
    #[arg(long = "type-filter", value_name = "QUERY")]
    type_filters: Vec<String>,
    /// Elements to include, comma-separated (_elements).
    #[arg(long, value_name = "ELEMENTS", value_delimiter = ',')]
    elements: Vec<String>,
    /// Let the server skip parameters it does not support (Prefer: handling=lenient).
    #[arg(long)]
    lenient: bool,
    /// Kick off with POST and a Parameters body instead of GET.
    #[arg(long)]
    post: bool,
    /// The directory for the NDJSON files and manifest.json (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Files downloaded at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    parallel: usize,
    /// Give up when the whole export (waiting for the server and downloading) has not
    /// finished after this many seconds; the export is then deleted at the server.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
    /// The largest file, in bytes, received or decoded; a larger one fails the export.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
    /// The largest gzip expansion (decoded bytes per received byte); a gzip body that
    /// expands more fails the export.
    #[arg(long, value_name = "RATIO", default_value_t = DEFAULT_MAX_EXPANSION_RATIO)]
    max_expansion_ratio: u64,
    /// Leave the files on the server (by default the status URL is deleted after the
    /// download, so that the server may free them).
    #[arg(long)]
    keep_on_server: bool,
}

pub(crate) fn export(a: ExportArgs) -> Result<u8> {
    let client = a.fhir.client()?;
    let request = bulk_request(&client, &a);
    let rt = crate::transport::rt()?;
    rt.block_on(run(&request, &a))
}

/// The items of a comma-separated option, trimmed, without empty ones.
fn non_empty(items: &[String]) -> impl Iterator<Item = String> + '_ {
    items
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn bulk_request(client: &FhirClient, a: &ExportArgs) -> BulkExport {
    let mut e = client.bulk_export();
    match (&a.group, a.patient) {
        (Some(g), _) => e = e.group(g.clone()),
        (None, true) => e = e.patient_level(),
        (None, false) => {}
    }
    e = e.types(non_empty(&a.types));
    if let Some(s) = &a.since {
        e = e.since(s.clone());
    }
    if let Some(u) = &a.until {
        e = e.until(u.clone());
    }
    for q in &a.type_filters {
        e = e.type_filter(q.clone());
    }
    e = e.elements(non_empty(&a.elements));
    if a.post {
        e = e.method(KickoffMethod::Post);
    }
    e = e.poll_options(PollOptions::default().timeout(Duration::from_secs(a.timeout)));
    e.download_options(
        DownloadOptions::default()
            .concurrency(a.parallel.max(1))
            .max_file_bytes(a.max_file_bytes)
            .max_expansion_ratio(a.max_expansion_ratio),
    )
    .lenient(a.lenient)
}

async fn run(request: &BulkExport, a: &ExportArgs) -> Result<u8> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let ui = Ui::new();

    let job = tokio::select! {
        r = tokio::time::timeout_at(deadline, request.start()) => match r {
            Ok(r) => r.map_err(|e| Failure::from_error("export kick-off failed", &e))?,
            Err(_) => return Err(Failure::new(format!(
                "export kick-off failed: no answer within --timeout {} s", a.timeout
            ))),
        },
        _ = tokio::signal::ctrl_c() => {
            ui.log("interrupted before the export started");
            return Ok(INTERRUPTED);
        }
    };
    ui.log(&format!("export started; status URL {}", job.status_url()));

    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, wait_and_download(&job, &ui, &a.out)) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    ui.clear();
    let (manifest, summary) = match outcome {
        None => return Ok(interrupted(&ui, &job).await),
        Some(Ok(Ok(done))) => done,
        // Any failure after the kick-off: the export is deleted at the server (SC-7.23), and
        // no manifest.json says the files on disk are complete.
        Some(Ok(Err(failure))) => {
            abandon(&ui, &job, &a.out).await;
            return Err(failure);
        }
        Some(Err(_)) => {
            abandon(&ui, &job, &a.out).await;
            return Err(Failure::new(format!(
                "the export did not finish within --timeout {} s",
                a.timeout
            )));
        }
    };

    if !a.keep_on_server {
        // The files are safe on disk: let the server delete its copies (SC-7.23).
        match tokio::time::timeout(Duration::from_secs(15), job.cancel()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => ui.log(&format!("the server did not release the export: {e}")),
            Err(_) => ui.log("the server did not answer the release request in time"),
        }
    }

    print_summary(&summary, manifest, &a.out, started.elapsed());
    if manifest.is_partial() {
        print_errors(&summary);
        return Ok(1);
    }
    Ok(0)
}

/// Waits for the export, downloads every file, and only then writes `manifest.json`: a
/// manifest beside the files means they are all there.
async fn wait_and_download<'j>(
    job: &'j BulkJob,
    ui: &Ui,
    out: &Path,
) -> Result<(&'j Manifest, DownloadSummary)> {
    let manifest = job
        .wait_with_progress(|p| ui.waiting(p))
        .await
        .map_err(|e| Failure::from_error("export failed", &e))?;
    ui.stop_waiting();
    ui.log(&format!(
        "export complete: {} output file(s), {} error file(s)",
        manifest.output.len(),
        manifest.error.len()
    ));
    std::fs::create_dir_all(out)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", out.display())))?;
    let summary = job
        .download_to_dir_with_progress(out, |p| ui.file(p))
        .await
        .map_err(|e| Failure::from_error("download failed", &e))?;
    write_manifest(out, manifest)?;
    Ok((manifest, summary))
}

/// After a failure: the export is deleted at the server (best effort), and the user is told
/// that what is on disk is incomplete.
async fn abandon(ui: &Ui, job: &BulkJob, out: &Path) {
    match tokio::time::timeout(Duration::from_secs(10), job.cancel()).await {
        Ok(Ok(())) => ui.log("the export was deleted at the server"),
        Ok(Err(e)) => ui.log(&format!("could not delete the export at the server: {e}")),
        Err(_) => ui.log("could not delete the export at the server: no answer in time"),
    }
    if out.join(MANIFEST).exists() {
        // A manifest.json from an earlier export would vouch for a partial set of files.
        ui.log(&format!(
            "the export is incomplete: {} in {} is from an earlier export",
            MANIFEST,
            out.display()
        ));
    } else {
        ui.log(&format!(
            "the export is incomplete: no {MANIFEST} was written in {}",
            out.display()
        ));
    }
}

/// The name of the manifest written beside the files once every one of them is there.
const MANIFEST: &str = "manifest.json";

/// After Ctrl-C: cancel the export on the server (best effort, SC-7.23).
async fn interrupted(ui: &Ui, job: &BulkJob) -> u8 {
    ui.clear();
    ui.log("interrupted: cancelling the export on the server");
    match tokio::time::timeout(Duration::from_secs(10), job.cancel()).await {
        Ok(Ok(())) => ui.log("export cancelled"),
        Ok(Err(e)) => ui.log(&format!("could not cancel the export: {e}")),
        Err(_) => ui.log("could not cancel the export: no answer in time"),
    }
    INTERRUPTED
}

/// Writes `manifest.json` through a new temporary file renamed into place: a symlink planted
/// at the name is replaced, never followed.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(manifest)
        .map_err(|e| Failure::new(format!("cannot encode the manifest: {e}")))?;
    crate::files::write_new(&path, (text + "\n").as_bytes(), 0o644, true)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn print_summary(summary: &DownloadSummary, manifest: &Manifest, dir: &Path, took: Duration) {
    let output: Vec<_> = summary
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Output)
        .collect();
    outln!(
        "exported {} resources in {} files ({}, {} received) to {} in {:.1} s",
        summary.resources(FileKind::Output),
        output.len(),
        HumanBytes(summary.bytes()),
        HumanBytes(summary.bytes_received()),
        dir.display(),
        took.as_secs_f64()
    );
    for f in &summary.files {
        let kind = match f.kind {
            FileKind::Output => "",
            FileKind::Error => " (errors)",
            FileKind::Deleted => " (deleted)",
            _ => "",
        };
        outln!(
            "  {:<36} {:>9} resources {:>12}{kind}",
            file_name(&f.path),
            f.resources,
            HumanBytes(f.bytes).to_string()
        );
        if let Some(declared) = f.declared_count {
            if declared != f.resources {
                eprintln!(
                    "warning: {}: the manifest says {declared} resources, the file has {}",
                    file_name(&f.path),
                    f.resources
                );
            }
        }
    }
    outln!(
        "transactionTime: {} (pass it as --since for the next incremental export)",
        printable(&manifest.transaction_time, 64)
    );
}

/// Lists the `error[]` files and their first issues (SC-7.16).
fn print_errors(summary: &DownloadSummary) {
    let errors: Vec<_> = summary
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Error)
        .collect();
    outln!(
        "partial success: the server reported errors in {} file(s):",
        errors.len()
    );
    for f in errors {
        outln!("  {} ({} issues)", file_name(&f.path), f.resources);
        let Ok(file) = std::fs::File::open(&f.path) else {
            continue;
        };
        for line in std::io::BufReader::new(file)
            .lines()
            .map_while(std::result::Result::ok)
            .take(10)
        {
            let Some(outcome) = OperationOutcome::from_body(line.as_bytes()) else {
                continue;
            };
            for issue in outcome.issue.iter().take(3) {
                let text = issue
                    .diagnostics
                    .as_deref()
                    .or_else(|| issue.details.as_ref().and_then(|d| d.text.as_deref()))
                    .unwrap_or("");
                outln!(
                    "    {} {}: {}",
                    printable(&issue.severity, 20),
                    printable(&issue.code, 40),
                    printable(text, 200)
                );
            }
        }
        if f.resources > 10 {
            outln!("    … see the file for the rest");
        }
    }
}

/// Progress on stderr: bars on a terminal, log lines otherwise.
struct Ui {
    bars: Option<MultiProgress>,
    waiting: Mutex<Option<ProgressBar>>,
    files: Mutex<HashMap<usize, ProgressBar>>,
}

impl Ui {
    fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            bars,
            waiting: Mutex::new(None),
            files: Mutex::new(HashMap::new()),
        }
    }

    fn log(&self, line: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn waiting(&self, p: &Progress) {
        let what = match p.event {
            PollEvent::InProgress => format!(
                "export in progress{}",
                p.progress
                    .as_deref()
                    .map(|x| format!(": {}", printable(x, 100)))
                    .unwrap_or_default()
            ),
            PollEvent::SlowDown => "the server asks to poll less often".to_owned(),
            PollEvent::Retrying => format!(
                "status request failed ({}); retrying",
                printable(p.error.as_deref().unwrap_or("transient error"), 200)
            ),
            _ => "waiting".to_owned(),
        };
        let next = p.next_poll_in.as_secs_f64();
        match &self.bars {
            Some(m) => {
                let mut slot = lock(&self.waiting);
                let bar = slot.get_or_insert_with(|| {
                    let b = m.add(ProgressBar::new_spinner());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                bar.set_message(format!("{what} (poll {}, next in {next:.0} s)", p.polls));
            }
            None => eprintln!("{what}; next status request in {next:.0} s"),
        }
    }

    fn stop_waiting(&self) {
        if let Some(bar) = lock(&self.waiting).take() {
            bar.finish_and_clear();
        }
    }

    fn file(&self, p: &FileProgress<'_>) {
        let Some(m) = &self.bars else {
            if p.done {
                eprintln!(
                    "downloaded {}: {} resources, {} received",
                    p.file_name,
                    p.resources,
                    HumanBytes(p.bytes_received)
                );
            } else if p.resources == 0 && p.bytes_received == 0 {
                eprintln!("downloading {}", p.file_name);
            }
            return;
        };
        let mut files = lock(&self.files);
        let bar = files.entry(p.index).or_insert_with(|| {
            let bar = match p.content_length {
                Some(len) => m.add(ProgressBar::new(len)).with_style(
                    ProgressStyle::with_template(
                        "{prefix:32} [{bar:24}] {bytes:>10}/{total_bytes:<10} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => m.add(ProgressBar::no_length()).with_style(
                    ProgressStyle::with_template("{spinner} {prefix:30} {bytes:>10} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_prefix(p.file_name.to_owned());
            bar
        });
        bar.set_position(p.bytes_received);
        bar.set_message(format!("{} resources", p.resources));
        if p.done {
            bar.finish_with_message(format!("{} resources, done", p.resources));
        }
    }

    fn clear(&self) {
        self.stop_waiting();
        if let Some(m) = &self.bars {
            let _ = m.clear();
        }
        lock(&self.files).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
