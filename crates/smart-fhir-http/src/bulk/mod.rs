//! Bulk Data export (FHIR Bulk Data Access 2.0, with the 3.0 additions; SC-7.1–SC-7.24).
//!
//! 1. **Kick-off**: describe the export with [`BulkExport`] and start it with
//!    [`FhirClient::bulk_export`](crate::FhirClient::bulk_export): `GET` (or `POST` with a
//!    `Parameters` resource when `patient` is given), `Prefer: respond-async`; `429` is
//!    waited out. The result is a [`BulkJob`] holding the status URL.
//! 2. **Status**: [`BulkJob::wait`] polls with exponential backoff, honouring `Retry-After`
//!    (seconds or HTTP date) and `429`, retrying transient failures a bounded number of times,
//!    and reports the server's `X-Progress`; [`BulkJob::poll`] is one step. The result is the
//!    [`Manifest`]; a non-empty `error[]` means partial success ([`Manifest::is_partial`]).
//! 3. **Files**: [`BulkJob::open_file`] reads one file resource by resource
//!    ([`NdjsonStream`], also as a `futures` `Stream`); [`BulkJob::download_to_dir`] writes
//!    them all to disk, each atomically. Files are fetched with the token only when the
//!    manifest says `requiresAccessToken: true` (SC-7.18, P6), gunzipped as they arrive, and
//!    split into lines in flat memory.
//! 4. **Cancel** or release the files with [`BulkJob::cancel`] (`DELETE`, SC-7.23).
//!
//! Every URL the server hands out (status URL, file URLs, manifest links) is checked like a
//! configured endpoint before use: `https`, or loopback `http` with the base's opt-in (P15).
//! Error messages name URL paths, never query strings, tokens or file contents.
//!
//! ```no_run
//! use std::path::Path;
//!
//! use smart_fhir_http::bulk::{BulkExport, DownloadOptions};
//! use smart_fhir_http::FhirClient;
//!
//! # async fn run(client: FhirClient) -> Result<(), smart_fhir_http::FhirError> {
//! let job = client
//!     .bulk_export(&BulkExport::group("cohort-1").resource_types(["Patient", "Observation"]))
//!     .await?;
//! let manifest = job
//!     .wait(|p| eprintln!("waiting: {}", p.progress.as_deref().unwrap_or("…")))
//!     .await?;
//! let summary = job
//!     .download_to_dir(&manifest, Path::new("export"), &DownloadOptions::default(), |_| {})
//!     .await?;
//! println!("{} files; partial: {}", summary.files.len(), manifest.is_partial());
//! // Next time, only what changed: `.since(manifest.transaction_time)` (SC-7.17).
//! job.cancel().await?; // the server may delete the files now
//! # Ok(())
//! # }
//! ```

mod download;
mod job;
mod kickoff;
mod manifest;
mod ndjson;

pub use download::{
    DownloadOptions, DownloadSummary, DownloadedFile, FileKind, FileProgress, NdjsonStream,
};
pub use job::{BulkJob, InProgress, PollEvent, PollOptions, PollStatus, Progress};
pub use kickoff::{BulkExport, ExportLevel, KickoffMethod};
pub use manifest::{Manifest, ManifestFile, ManifestLink};
