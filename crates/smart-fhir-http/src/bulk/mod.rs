//! Bulk Data export (FHIR Bulk Data Access 2.0, with the 3.0 additions; SC-7.1–SC-7.24).
//!
//! ```no_run
//! # async fn run(fhir: smart_fhir_http::FhirClient) -> Result<(), smart_fhir_http::FhirError> {
//! let job = fhir.bulk_export().types(["Patient", "Observation"]).start().await?;
//! let manifest = job.wait().await?;
//! let summary = job.download_to_dir("export").await?;
//! println!("{} files; partial: {}", summary.files.len(), manifest.is_partial());
//! // Next time, only what changed: `.since(&manifest.transaction_time)` (SC-7.17).
//! job.cancel().await?; // the server may delete the files now
//! # Ok(())
//! # }
//! ```
//!
//! 1. **Kick-off**: [`FhirClient::bulk_export`](crate::FhirClient::bulk_export) gives a
//!    [`BulkExport`] with defaults (system level, every type); set what differs and
//!    [`start`](BulkExport::start) it: `GET` (or `POST` with a `Parameters` resource when
//!    `patient` is given), `Prefer: respond-async`; `429` is waited out. The result is a
//!    [`BulkJob`] holding the status URL.
//! 2. **Status**: [`BulkJob::wait`] polls with exponential backoff, honouring `Retry-After`
//!    (seconds or HTTP date) and `429`, retrying transient failures a bounded number of times
//!    ([`PollOptions`]). The job keeps the [`Manifest`] ([`BulkJob::manifest`]); a non-empty
//!    `error[]` means partial success ([`Manifest::is_partial`]).
//!    [`BulkJob::wait_with_progress`] reports the server's `X-Progress` to a callback;
//!    [`BulkJob::poll`] is one step.
//! 3. **Files**: [`BulkJob::download_to_dir`] writes them all to disk, each atomically;
//!    [`BulkJob::open_file`] reads one file resource by resource ([`NdjsonStream`], also as a
//!    `futures` `Stream`), and [`BulkJob::open_lines`] line by line as [`bytes::Bytes`],
//!    unparsed ([`NdjsonLines`]), for callers that parse elsewhere. Files are fetched with the
//!    token only when the manifest says `requiresAccessToken: true` (SC-7.18, P6), gunzipped
//!    as they arrive, and split into lines in flat memory ([`DownloadOptions`]).
//! 4. **Cancel** or release the files with [`BulkJob::cancel`] (`DELETE`, SC-7.23).
//!
//! Every URL the server hands out (status URL, file URLs, manifest links) is checked like a
//! configured endpoint before use: `https`, or loopback `http` with the base's opt-in (P15).
//! Error messages name URL paths, never query strings, tokens or file contents.
//!
//! # Tracing
//!
//! The export is traced with [`tracing`]: a `bulk_kickoff` span (origin, path template such as
//! `Group/{id}/$export`, method) with the status of each answer; a `bulk_wait` span (origin)
//! with an event per status answer (status, `X-Progress` made printable and cut to 100
//! characters, `Retry-After`) and one for the manifest (file counts); an event per file
//! request (origin, type, status, `Content-Length`, gzip) and at the end of each file (type,
//! bytes, lines, duration). Never a token, a query string, a body or a line.

mod download;
mod job;
mod kickoff;
mod manifest;
mod ndjson;
mod trace;

pub use download::{
    DownloadOptions, DownloadSummary, DownloadedFile, FileKind, FileProgress, NdjsonLines,
    NdjsonStream, DEFAULT_MAX_EXPANSION_RATIO, DEFAULT_MAX_FILE_BYTES, EXPANSION_ALLOWANCE,
};
pub use job::{BulkJob, InProgress, PollEvent, PollOptions, PollStatus, Progress};
pub use kickoff::{BulkExport, ExportLevel, KickoffMethod};
pub use manifest::{Manifest, ManifestFile, ManifestLink};
