//! A kicked-off export: status polling, the manifest it keeps, cancellation (SC-7.11–SC-7.16, SC-7.23).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{HeaderValue, ACCEPT, EXPIRES};
use http::{Method, StatusCode};
use tracing::Instrument;
use url::Url;

use super::download::DownloadOptions;
use super::manifest::{check_url, Manifest};
use super::trace;
use crate::client::{retry_after, RequestLine};
use crate::{FhirClient, FhirError, RequestOptions, RetryPolicy};
use smart_fhir_core::text::describe_json_error;
use smart_fhir_core::text::printable;

/// How a [`BulkJob`] polls its status URL (SC-7.11, SC-7.13).
///
/// Without a `Retry-After` the job waits `initial_interval`, then twice as long after each
/// poll, up to `max_interval`. A `Retry-After` (seconds or HTTP date) is honoured, up to
/// `max_retry_after`. No wait is shorter than `min_interval`. A `429` doubles the interval.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollOptions {
    /// The first wait when the server gives none (default 1 s).
    pub initial_interval: Duration,
    /// The shortest wait, also when the server asks for less (default 1 s).
    pub min_interval: Duration,
    /// The longest wait the job chooses by itself (default 60 s).
    pub max_interval: Duration,
    /// The longest `Retry-After` honoured as given (default 1 hour); a longer one is
    /// shortened to this.
    pub max_retry_after: Duration,
    /// Consecutive transient failures (transport errors, `5xx`, an `OperationOutcome` with a
    /// `transient` issue) retried before giving up (default 5, SC-7.14).
    pub max_transient_errors: u32,
    /// How long [`BulkJob::wait`] waits in total before failing (default: no limit).
    pub timeout: Option<Duration>,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(1),
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
            max_transient_errors: 5,
            timeout: None,
        }
    }
}

impl PollOptions {
    /// Sets the first wait.
    pub fn initial_interval(mut self, d: Duration) -> Self {
        self.initial_interval = d;
        self
    }

    /// Sets the shortest wait.
    pub fn min_interval(mut self, d: Duration) -> Self {
        self.min_interval = d;
        self
    }

    /// Sets the longest self-chosen wait.
    pub fn max_interval(mut self, d: Duration) -> Self {
        self.max_interval = d;
        self
    }

    /// Sets the longest `Retry-After` honoured.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Sets how many consecutive transient failures are retried.
    pub fn max_transient_errors(mut self, n: u32) -> Self {
        self.max_transient_errors = n;
        self
    }

    /// Sets the total time limit of [`BulkJob::wait`].
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}

/// What one status request said (SC-7.12–SC-7.15).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PollStatus {
    /// `202`: still running.
    InProgress(InProgress),
    /// `429`: polling too often; wait longer (SC-7.13).
    SlowDown {
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// `200`: done; the manifest lists the files.
    Complete(Box<Manifest>),
}

/// A `202` status answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InProgress {
    /// The `X-Progress` header (printable, at most 200 characters), SC-7.12.
    pub progress: Option<String>,
    /// The server's `Retry-After`, if any (SC-7.11).
    pub retry_after: Option<Duration>,
    /// v3 `allowPartialManifests`: the files already available, when the server sends them
    /// with the `202`.
    pub manifest: Option<Box<Manifest>>,
}

/// What [`BulkJob::wait_with_progress`] reports before each wait.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Progress {
    /// Why the job is waiting.
    pub event: PollEvent,
    /// The server's `X-Progress`, if it sent one.
    pub progress: Option<String>,
    /// Status requests sent so far.
    pub polls: u32,
    /// The wait before the next one.
    pub next_poll_in: Duration,
    /// For [`PollEvent::Retrying`]: the error being retried.
    pub error: Option<String>,
}

/// Why a [`BulkJob`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollEvent {
    /// The export is running (`202`).
    InProgress,
    /// The server asked to poll less often (`429`).
    SlowDown,
    /// A transient failure will be retried (SC-7.14).
    Retrying,
}

/// A Bulk Data export on the server, known by its status URL; once complete, it keeps the
/// manifest.
///
/// Get one from [`BulkExport::start`](super::BulkExport::start) (a new export) or
/// [`FhirClient::bulk_job`] (one kicked off earlier). [`wait`](Self::wait) polls until the
/// export is complete and keeps the [`Manifest`] ([`manifest`](Self::manifest)); the file
/// methods ([`download_to_dir`](Self::download_to_dir), [`open_file`](Self::open_file),
/// [`open_lines`](Self::open_lines)) read it from there. Status and file requests carry the
/// client's access token when they go to the FHIR server's origin (SC-7.1); the token is
/// renewed on the way as it expires.
///
/// Clones are handles of the same job: the manifest one learns is seen by all.
#[derive(Clone)]
pub struct BulkJob {
    pub(crate) client: FhirClient,
    status_url: Url,
    status_line: RequestLine,
    poll: PollOptions,
    pub(crate) download: DownloadOptions,
    manifest: Arc<OnceLock<Manifest>>,
}

impl fmt::Debug for BulkJob {
    // The status URL's query may be a capability: only the path is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkJob")
            .field("status", &self.status_line)
            .field("complete", &self.manifest.get().is_some())
            .field("poll", &self.poll)
            .field("download", &self.download)
            .finish_non_exhaustive()
    }
}

impl BulkJob {
    pub(crate) fn new(client: FhirClient, status_url: Url) -> Self {
        let uri = http::Uri::try_from(status_url.as_str()).unwrap_or_default();
        Self {
            client,
            status_line: RequestLine::new(&Method::GET, &uri),
            status_url,
            poll: PollOptions::default(),
            download: DownloadOptions::default(),
            manifest: Arc::new(OnceLock::new()),
        }
    }

    /// Sets how the status is polled (default [`PollOptions::default`]).
    #[must_use]
    pub fn with_poll_options(mut self, options: PollOptions) -> Self {
        self.poll = options;
        self
    }

    /// Sets how files are downloaded (default [`DownloadOptions::default`]).
    #[must_use]
    pub fn with_download_options(mut self, options: DownloadOptions) -> Self {
        self.download = options;
        self
    }

    /// The status URL (`Content-Location` of the kick-off); keep it to resume or cancel later.
    pub fn status_url(&self) -> &Url {
        &self.status_url
    }

    /// The client the job uses.
    pub fn client(&self) -> &FhirClient {
        &self.client
    }

    /// The manifest, once a [`wait`](Self::wait) or [`poll`](Self::poll) saw the export
    /// complete; `None` before.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.get()
    }

    /// The manifest, or an error saying the export has not completed yet.
    pub(crate) fn completed(&self) -> Result<&Manifest, FhirError> {
        self.manifest.get().ok_or_else(|| FhirError::Bulk {
            request: self.status_line.clone(),
            reason: "the export has not completed yet: wait() for it first".into(),
        })
    }

    /// The status request, as error messages name it.
    pub(crate) fn status_line(&self) -> &RequestLine {
        &self.status_line
    }

    /// One status request (SC-7.12–SC-7.15). A complete manifest is also kept by the job.
    ///
    /// Errors: a `4xx`/`5xx` is a [`FhirError::Status`] (with the `OperationOutcome`, if any;
    /// [`FhirError::is_transient`] tells whether polling again may help); a `200` whose body
    /// is not a manifest is a [`FhirError::Manifest`].
    pub async fn poll(&self) -> Result<PollStatus, FhirError> {
        let status = self.poll_once().await?;
        if let PollStatus::Complete(m) = &status {
            self.manifest.get_or_init(|| (**m).clone());
        }
        Ok(status)
    }

    async fn poll_once(&self) -> Result<PollStatus, FhirError> {
        let mut request = self.client.request(Method::GET, &self.status_url, None)?;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        let line = RequestLine::new(request.method(), request.uri());
        let options = RequestOptions::default().retry(RetryPolicy::none());
        let response = match self.client.send(request, &options).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(
                    transient = e.is_transient(),
                    "Bulk Data status request failed in transit"
                );
                return Err(e);
            }
        };
        let status = response.status();
        let headers = response.headers();
        let retry_after = retry_after(headers, self.client.clock_now());
        match status {
            StatusCode::ACCEPTED => {
                let raw = headers.get("x-progress").and_then(|v| v.to_str().ok());
                tracing::debug!(
                    status = status.as_u16(),
                    progress = raw.map(trace::server_text),
                    retry_after_s = retry_after.map(|d| d.as_secs()),
                    "Bulk Data status: in progress"
                );
                let progress = raw.map(|v| printable(v, 200)).filter(|v| !v.is_empty());
                let manifest = partial_manifest(response.body());
                Ok(PollStatus::InProgress(InProgress {
                    progress,
                    retry_after,
                    manifest,
                }))
            }
            StatusCode::TOO_MANY_REQUESTS => {
                tracing::debug!(
                    status = status.as_u16(),
                    retry_after_s = retry_after.map(|d| d.as_secs()),
                    "Bulk Data status: slow down"
                );
                Ok(PollStatus::SlowDown { retry_after })
            }
            StatusCode::OK => {
                let mut manifest: Manifest =
                    serde_json::from_slice(response.body()).map_err(|e| FhirError::Manifest {
                        request: line.clone(),
                        reason: describe_json_error(&e),
                    })?;
                manifest.expires = headers
                    .get(EXPIRES)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| httpdate::parse_http_date(v.trim()).ok());
                tracing::info!(
                    status = status.as_u16(),
                    output_files = manifest.output.len(),
                    error_files = manifest.error.len(),
                    deleted_files = manifest.deleted.len(),
                    declared_resources = manifest.declared_output_count(),
                    requires_access_token = manifest.requires_access_token,
                    more_manifests = manifest.next_link().is_some(),
                    "Bulk Data export complete: manifest"
                );
                Ok(PollStatus::Complete(Box::new(manifest)))
            }
            s if s.is_success() => {
                tracing::debug!(status = s.as_u16(), "Bulk Data status: unexpected");
                Err(FhirError::Bulk {
                    request: line,
                    reason: format!("unexpected status {s} from the status URL"),
                })
            }
            s => {
                tracing::debug!(
                    status = s.as_u16(),
                    retry_after_s = retry_after.map(|d| d.as_secs()),
                    "Bulk Data status: error"
                );
                Err(FhirError::from_response(line, s, response.body()))
            }
        }
    }

    /// Polls until the export completes and returns the manifest, which the job keeps
    /// (SC-7.11–SC-7.15); at once when it is already known.
    ///
    /// Waits follow [`PollOptions`]; they are `tokio::time::sleep`s, so a test can run them
    /// on paused time. A manifest with a non-empty `error[]` is returned as it is: check
    /// [`Manifest::is_partial`] (SC-7.16). Each status answer is traced (status,
    /// `X-Progress`, `Retry-After`); to show progress yourself use
    /// [`wait_with_progress`](Self::wait_with_progress).
    pub async fn wait(&self) -> Result<&Manifest, FhirError> {
        self.wait_with_progress(|_| {}).await
    }

    /// As [`wait`](Self::wait), calling `on_progress` before every wait with the server's
    /// `X-Progress` (SC-7.12).
    pub async fn wait_with_progress(
        &self,
        on_progress: impl FnMut(&Progress),
    ) -> Result<&Manifest, FhirError> {
        if let Some(m) = self.manifest.get() {
            return Ok(m);
        }
        let span = tracing::info_span!("bulk_wait", origin = %trace::origin(&self.status_url));
        let manifest = self
            .poll_until_complete(on_progress)
            .instrument(span)
            .await?;
        Ok(self.manifest.get_or_init(|| manifest))
    }

    async fn poll_until_complete(
        &self,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<Manifest, FhirError> {
        let opts = &self.poll;
        let started = tokio::time::Instant::now();
        let mut interval = opts.initial_interval.max(opts.min_interval);
        let mut polls: u32 = 0;
        let mut errors: u32 = 0;
        loop {
            polls = polls.saturating_add(1);
            let (event, progress, asked, error) = match self.poll_once().await {
                Ok(PollStatus::Complete(m)) => return Ok(*m),
                Ok(PollStatus::InProgress(p)) => {
                    errors = 0;
                    (PollEvent::InProgress, p.progress, p.retry_after, None)
                }
                Ok(PollStatus::SlowDown { retry_after }) => {
                    errors = 0;
                    interval = interval.saturating_mul(2).min(opts.max_interval);
                    (PollEvent::SlowDown, None, retry_after, None)
                }
                Err(e) if e.is_transient() && errors < opts.max_transient_errors => {
                    errors += 1;
                    (PollEvent::Retrying, None, None, Some(e.to_string()))
                }
                Err(e) => return Err(e),
            };
            let wait = match asked {
                Some(w) => w.min(opts.max_retry_after),
                None => {
                    let w = interval;
                    interval = interval.saturating_mul(2).min(opts.max_interval);
                    w
                }
            }
            .max(opts.min_interval);
            if let Some(limit) = opts.timeout {
                if started.elapsed().saturating_add(wait) > limit {
                    tracing::debug!(polls, limit_s = limit.as_secs(), "Bulk Data wait timed out");
                    return Err(FhirError::Bulk {
                        request: self.status_line.clone(),
                        reason: format!("the export did not complete within {limit:?}"),
                    });
                }
            }
            on_progress(&Progress {
                event,
                progress,
                polls,
                next_poll_in: wait,
                error,
            });
            tokio::time::sleep(wait).await;
        }
    }

    /// Cancels the export, or, after it completed, tells the server its files may be deleted:
    /// `DELETE` on the status URL, expecting `202` (SC-7.23; `200` and `204` are accepted too).
    pub async fn cancel(&self) -> Result<(), FhirError> {
        let request = self
            .client
            .request(Method::DELETE, &self.status_url, None)?;
        let line = RequestLine::new(request.method(), request.uri());
        let response = self
            .client
            .send(request, &RequestOptions::default())
            .await?;
        let status = response.status();
        tracing::debug!(
            origin = %trace::origin(&self.status_url),
            status = status.as_u16(),
            "Bulk Data export cancelled or released"
        );
        match status {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            s => Err(FhirError::from_response(line, s, response.body())),
        }
    }

    /// The job of the next manifest when the server split them (v3 `allowPartialManifests`, a
    /// `next` link, SC-7.24), waited for like the first; `None` after the last one. Waits for
    /// this job first if needed. The link is checked like any endpoint (P15).
    pub async fn next_manifest(&self) -> Result<Option<BulkJob>, FhirError> {
        let manifest = self.wait().await?;
        let Some(link) = manifest.next_link() else {
            return Ok(None);
        };
        let url = check_url(link, "Bulk Data manifest link", self.client.base())?;
        let next = BulkJob::new(self.client.clone(), url)
            .with_poll_options(self.poll.clone())
            .with_download_options(self.download.clone());
        next.wait().await?;
        Ok(Some(next))
    }
}

/// A manifest sent with a `202` (v3 `allowPartialManifests`); anything else is ignored.
fn partial_manifest(body: &[u8]) -> Option<Box<Manifest>> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body.get(start) != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Manifest>(body).ok().map(Box::new)
}
