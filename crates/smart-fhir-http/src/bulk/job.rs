//! A kicked-off export: status polling, the manifest, cancellation (SC-7.11–SC-7.16, SC-7.23).

use std::time::Duration;

use http::header::{HeaderValue, ACCEPT, EXPIRES};
use http::{Method, StatusCode};
use url::Url;

use super::manifest::{check_url, Manifest};
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

/// What [`BulkJob::wait`] reports before each wait.
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

/// A running Bulk Data export, known by its status URL.
///
/// Get one from [`FhirClient::bulk_export`] (a new export) or [`FhirClient::bulk_job`] (one
/// kicked off earlier). Status and file requests carry the client's access token when they go
/// to the FHIR server's origin (SC-7.1); the token is renewed on the way as it expires.
#[derive(Debug, Clone)]
pub struct BulkJob {
    pub(crate) client: FhirClient,
    status_url: Url,
    status_line: RequestLine,
    poll: PollOptions,
}

impl BulkJob {
    pub(crate) fn new(client: FhirClient, status_url: Url) -> Self {
        let uri = http::Uri::try_from(status_url.as_str()).unwrap_or_default();
        Self {
            client,
            status_line: RequestLine::new(&Method::GET, &uri),
            status_url,
            poll: PollOptions::default(),
        }
    }

    /// Sets how the status is polled.
    #[must_use]
    pub fn with_poll_options(mut self, options: PollOptions) -> Self {
        self.poll = options;
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

    /// The status request, as error messages name it.
    pub(crate) fn status_line(&self) -> &RequestLine {
        &self.status_line
    }

    /// One status request (SC-7.12–SC-7.15).
    ///
    /// Errors: a `4xx`/`5xx` is a [`FhirError::Status`] (with the `OperationOutcome`, if any;
    /// [`FhirError::is_transient`] tells whether polling again may help); a `200` whose body
    /// is not a manifest is a [`FhirError::Manifest`].
    pub async fn poll(&self) -> Result<PollStatus, FhirError> {
        let mut request = self.client.request(Method::GET, &self.status_url, None)?;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        let line = RequestLine::new(request.method(), request.uri());
        let options = RequestOptions::default().retry(RetryPolicy::none());
        let response = self.client.send(request, &options).await?;
        let status = response.status();
        let headers = response.headers();
        match status {
            StatusCode::ACCEPTED => {
                let progress = headers
                    .get("x-progress")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| printable(v, 200))
                    .filter(|v| !v.is_empty());
                let manifest = partial_manifest(response.body());
                Ok(PollStatus::InProgress(InProgress {
                    progress,
                    retry_after: retry_after(headers, self.client.clock_now()),
                    manifest,
                }))
            }
            StatusCode::TOO_MANY_REQUESTS => Ok(PollStatus::SlowDown {
                retry_after: retry_after(headers, self.client.clock_now()),
            }),
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
                Ok(PollStatus::Complete(Box::new(manifest)))
            }
            s if s.is_success() => Err(FhirError::Bulk {
                request: line,
                reason: format!("unexpected status {s} from the status URL"),
            }),
            s => Err(FhirError::from_response(line, s, response.body())),
        }
    }

    /// Polls until the export completes and returns the manifest (SC-7.11–SC-7.15).
    ///
    /// `on_progress` is called before every wait, with the server's `X-Progress` (SC-7.12).
    /// Waits follow [`PollOptions`]; they are `tokio::time::sleep`s, so a test can run them
    /// on paused time. A manifest with a non-empty `error[]` is returned as it is: check
    /// [`Manifest::is_partial`] (SC-7.16).
    pub async fn wait(
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
            let (event, progress, asked, error) = match self.poll().await {
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
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            s => Err(FhirError::from_response(line, s, response.body())),
        }
    }

    /// The next manifest when the server split them (v3 `allowPartialManifests`, a `next`
    /// link, SC-7.24), polled like the first; `None` after the last one. The link is checked
    /// like any endpoint (P15).
    pub async fn next_manifest(&self, manifest: &Manifest) -> Result<Option<Manifest>, FhirError> {
        let Some(link) = manifest.next_link() else {
            return Ok(None);
        };
        let url = check_url(
            link,
            "Bulk Data manifest link",
            self.client.base().insecure_http(),
        )?;
        let next = BulkJob::new(self.client.clone(), url).with_poll_options(self.poll.clone());
        next.wait(|_| {}).await.map(Some)
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
