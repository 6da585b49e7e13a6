//! Downloading the files of a completed export (SC-7.18–SC-7.21).

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{self, Stream, StreamExt};
use http::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http::Method;
use serde::de::{DeserializeOwned, IgnoredAny};
use smart_fhir_core::StreamingBody;
use tokio::io::AsyncWriteExt;

use tokio::time::Instant;
use tracing::Instrument;

use super::job::BulkJob;
use super::manifest::{Manifest, ManifestFile};
use super::ndjson::{BodyDecoder, LineSplitter, LineTooLong};
use super::trace;
use crate::client::RequestLine;
use crate::{AuthMode, FhirError, RequestOptions};
use smart_fhir_core::text::describe_json_error;

/// The most of an error response body read to describe it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The default largest file, received or decoded: 16 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 30;

/// The default largest gzip expansion: 200 decoded bytes per received byte (NDJSON compresses
/// some 10 to 30 times; a gzip bomb some 1,000 times).
pub const DEFAULT_MAX_EXPANSION_RATIO: u64 = 200;

/// The received bytes that count as at least this many for the expansion check (64 KiB).
pub const EXPANSION_ALLOWANCE: u64 = 64 * 1024;

/// How files are downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// The longest NDJSON line (one resource) accepted, decoded (default 64 MiB); a longer
    /// one fails the file rather than growing memory (P15).
    pub max_line_bytes: usize,
    /// The most bytes of one file, received and decoded (default
    /// [`DEFAULT_MAX_FILE_BYTES`]; `None`: no limit): a file that never ends fails instead of
    /// filling the disk.
    pub max_file_bytes: Option<u64>,
    /// The most a gzip body may expand: decoded bytes per received byte (default
    /// [`DEFAULT_MAX_EXPANSION_RATIO`]; `None`: no limit). The first
    /// [`EXPANSION_ALLOWANCE`] received bytes count as that many, so a small file is not
    /// judged by its header. A gzip bomb fails early instead of filling the disk.
    pub max_expansion_ratio: Option<u64>,
    /// Files downloaded at once by [`BulkJob::download_to_dir`] (default 2, at least 1).
    pub concurrency: usize,
    /// Whether to send `Accept-Encoding: gzip` (default true, SC-7.20). A gzipped answer is
    /// decoded whatever this says.
    pub gzip: bool,
    /// Whether [`BulkJob::download_to_dir`] also fetches the `error[]` files (default true).
    pub include_errors: bool,
    /// Whether [`BulkJob::download_to_dir`] also fetches the `deleted[]` files (default true).
    pub include_deleted: bool,
    /// The longest wait for the response head and then for each piece of the body (default:
    /// the client's).
    pub timeout: Option<Duration>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            max_line_bytes: 64 * 1024 * 1024,
            max_file_bytes: Some(DEFAULT_MAX_FILE_BYTES),
            max_expansion_ratio: Some(DEFAULT_MAX_EXPANSION_RATIO),
            concurrency: 2,
            gzip: true,
            include_errors: true,
            include_deleted: true,
            timeout: None,
        }
    }
}

impl DownloadOptions {
    /// Sets the longest line.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    /// Sets the most bytes received for one file.
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = Some(bytes);
        self
    }

    /// Sets the largest gzip expansion (decoded bytes per received byte).
    pub fn max_expansion_ratio(mut self, ratio: u64) -> Self {
        self.max_expansion_ratio = Some(ratio);
        self
    }

    /// Sets how many files are downloaded at once.
    pub fn concurrency(mut self, files: usize) -> Self {
        self.concurrency = files;
        self
    }

    /// Sets whether to ask for gzip.
    pub fn gzip(mut self, yes: bool) -> Self {
        self.gzip = yes;
        self
    }

    /// Sets whether the `error[]` files are downloaded too.
    pub fn include_errors(mut self, yes: bool) -> Self {
        self.include_errors = yes;
        self
    }

    /// Sets whether the `deleted[]` files are downloaded too.
    pub fn include_deleted(mut self, yes: bool) -> Self {
        self.include_deleted = yes;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Which list of the manifest a file is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// `output[]`: exported resources.
    Output,
    /// `error[]`: `OperationOutcome`s about what failed (SC-7.16).
    Error,
    /// `deleted[]`: `Bundle`s naming deleted resources.
    Deleted,
}

/// A Bulk Data file read line by line, without parsing: each NDJSON line (one resource) as
/// [`Bytes`], for callers that parse elsewhere (SC-7.19–SC-7.21).
///
/// The body is read chunk by chunk and gunzipped when gzipped (SC-7.20). A line that lies
/// inside one received chunk is handed out as a part of that chunk, not copied; only a line
/// cut by a chunk boundary (or a gzipped one) is assembled in a buffer, which never holds more
/// than one line, bounded by [`DownloadOptions::max_line_bytes`] (P15). Blank lines are skipped,
/// the `\r` of `\r\n` and a byte order mark at the start of the file are removed, a missing
/// final newline is tolerated. The lines are not checked to be JSON.
///
/// Get one from [`BulkJob::open_lines`]. When the file ends (or fails) a `tracing` event says
/// the resource type, bytes, lines and duration.
pub struct NdjsonLines {
    body: StreamingBody,
    decoder: BodyDecoder,
    lines: LineSplitter,
    pending: Bytes,
    state: StreamState,
    request: RequestLine,
    file: String,
    resource_type: String,
    max_line: usize,
    received: u64,
    decoded: u64,
    max_decoded: Option<u64>,
    max_ratio: Option<u64>,
    content_length: Option<u64>,
    returned: u64,
    returned_bytes: u64,
    last_line: u64,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Reading,
    BodyDone,
    Decoded,
    Finished,
    Failed,
}

impl fmt::Debug for NdjsonLines {
    // The buffers hold patient data, the URL's query may be a capability: neither is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NdjsonLines")
            .field("file", &self.file)
            .field("state", &self.state)
            .field("received", &self.received)
            .field("lines", &self.returned)
            .finish_non_exhaustive()
    }
}

impl NdjsonLines {
    /// The next non-blank line, without its line end; `None` at the end of the file.
    ///
    /// Errors: [`FhirError::Ndjson`] for a line longer than the bound (with its line number,
    /// never its content), [`FhirError::Download`] for a corrupt or truncated gzip stream,
    /// [`FhirError::Http`] when the connection breaks. After an error the stream ends.
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, FhirError> {
        if let Some(line) = self.fast_line() {
            return Ok(Some(line));
        }
        match self.next_numbered().await {
            Ok(Some((number, line))) => Ok(Some(self.returning(number, line))),
            Ok(None) => {
                // The end is traced once; after a failure it was traced as one already.
                if !matches!(self.state, StreamState::Finished | StreamState::Failed) {
                    self.state = StreamState::Finished;
                    self.trace_end(None);
                }
                Ok(None)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    fn failed(&mut self, e: FhirError) -> FhirError {
        self.state = StreamState::Failed;
        self.trace_end(Some(&e));
        e
    }

    /// The lines as a [`Stream`]; it ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, FhirError>> + Send {
        stream::unfold(Some(self), |state| async move {
            let mut s = state?;
            match s.next_line().await {
                Ok(Some(line)) => Some((Ok(line), Some(s))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// The common case, without the state machine of `next_numbered` (and, called first by
    /// [`NdjsonStream::next_resource`], without that of `next_line`): an identity-encoded,
    /// ordinary line that lies inside the chunk at hand.
    #[inline]
    fn fast_line(&mut self) -> Option<Bytes> {
        if !self.decoder.is_identity()
            || !matches!(self.state, StreamState::Reading | StreamState::BodyDone)
        {
            return None;
        }
        let (number, line) = self.lines.cut_line(&mut self.pending)?;
        Some(self.returning(number, line))
    }

    #[inline]
    fn returning(&mut self, number: u64, line: Bytes) -> Bytes {
        self.last_line = number;
        self.returned += 1;
        self.returned_bytes = self
            .returned_bytes
            .saturating_add(u64::try_from(line.len()).unwrap_or(u64::MAX));
        line
    }

    /// The 1-based number, in the file, of the line returned last (blank lines count); 0
    /// before the first.
    pub fn line_number(&self) -> u64 {
        self.last_line
    }

    /// Lines returned so far.
    pub fn lines_read(&self) -> u64 {
        self.returned
    }

    /// Body bytes received so far (as sent: compressed when gzipped).
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// The `Content-Length` of the response, when the server gave one.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The file's URL path (no query), as error messages name it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// An [`FhirError::Ndjson`] about the line returned last.
    pub(crate) fn error_at_last_line(&mut self, reason: String) -> FhirError {
        let e = self.ndjson_error(self.last_line, reason);
        if self.state != StreamState::Failed {
            self.state = StreamState::Failed;
            self.trace_end(Some(&e));
        }
        e
    }

    /// The next non-blank line and its number.
    async fn next_numbered(&mut self) -> Result<Option<(u64, Bytes)>, FhirError> {
        loop {
            match self.state {
                StreamState::Reading | StreamState::BodyDone => {}
                StreamState::Decoded => return self.lines.finish().map_err(|e| self.too_long(e)),
                StreamState::Finished | StreamState::Failed => return Ok(None),
            }
            if self.decoder.is_identity() {
                // Lines are cut from the received chunk itself, not copied.
                if let Some(line) = self
                    .lines
                    .next_line_from(&mut self.pending)
                    .map_err(|e| self.too_long(e))?
                {
                    return Ok(Some(line));
                }
            } else {
                if let Some(line) = self.lines.next_line().map_err(|e| self.too_long(e))? {
                    return Ok(Some(line));
                }
                if !self.pending.is_empty() {
                    let before = self.lines.buffer_mut().len();
                    let n = self
                        .decoder
                        .decode(&self.pending, self.lines.buffer_mut())
                        .map_err(|reason| self.download_error(reason))?;
                    self.pending.advance(n);
                    let added = self.lines.buffer_mut().len().saturating_sub(before);
                    self.check_decoded(added)?;
                    continue;
                }
            }
            if self.state == StreamState::BodyDone {
                let before = self.lines.buffer_mut().len();
                self.decoder
                    .finish(self.lines.buffer_mut())
                    .map_err(|reason| self.download_error(reason))?;
                let added = self.lines.buffer_mut().len().saturating_sub(before);
                self.check_decoded(added)?;
                self.state = StreamState::Decoded;
                continue;
            }
            // The used-up chunk may still refer to the transport's read buffer (an empty slice
            // of it): let it go first, so that the transport can reuse that buffer for the
            // next read instead of allocating a new one.
            self.pending = Bytes::new();
            match self.body.next_chunk().await {
                Ok(Some(chunk)) => {
                    if self.received == 0 {
                        self.decoder.sniff(&chunk);
                    }
                    self.received = self
                        .received
                        .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
                    self.pending = chunk;
                    // Whatever the transport enforces: the body itself is bounded here.
                    if let Some(max) = self.max_decoded {
                        if self.received > max {
                            return Err(self.download_error(format!(
                                "the body is larger than {max} bytes (max_file_bytes)"
                            )));
                        }
                    }
                }
                Ok(None) => self.state = StreamState::BodyDone,
                Err(source) => {
                    return Err(FhirError::Http {
                        request: self.request.clone(),
                        source: Box::new(source),
                    })
                }
            }
        }
    }

    fn trace_end(&self, error: Option<&FhirError>) {
        let elapsed = self.started.elapsed();
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match error {
            None => tracing::info!(
                resource_type = %self.resource_type,
                bytes_received = self.received,
                bytes = self.returned_bytes,
                lines = self.returned,
                duration_ms,
                "Bulk Data file read"
            ),
            Some(e) => tracing::info!(
                resource_type = %self.resource_type,
                bytes_received = self.received,
                lines = self.returned,
                duration_ms,
                error = trace::error_kind(e),
                "Bulk Data file failed"
            ),
        }
    }

    /// Counts decoded bytes against [`DownloadOptions::max_file_bytes`] and
    /// [`DownloadOptions::max_expansion_ratio`].
    fn check_decoded(&mut self, added: usize) -> Result<(), FhirError> {
        self.decoded = self
            .decoded
            .saturating_add(u64::try_from(added).unwrap_or(u64::MAX));
        if let Some(max) = self.max_decoded {
            if self.decoded > max {
                return Err(self.download_error(format!(
                    "the decoded file is larger than {max} bytes (max_file_bytes)"
                )));
            }
        }
        if let Some(ratio) = self.max_ratio {
            let allowed = self
                .received
                .max(EXPANSION_ALLOWANCE)
                .saturating_mul(ratio.max(1));
            if self.decoded > allowed {
                return Err(self.download_error(format!(
                    "the gzip body expands more than {ratio} times (max_expansion_ratio)"
                )));
            }
        }
        Ok(())
    }

    fn too_long(&self, e: LineTooLong) -> FhirError {
        self.ndjson_error(
            e.line,
            format!(
                "the line is longer than {} bytes (max_line_bytes)",
                self.max_line
            ),
        )
    }

    fn ndjson_error(&self, line: u64, reason: String) -> FhirError {
        FhirError::Ndjson {
            file: self.file.clone(),
            line,
            reason,
        }
    }

    fn download_error(&self, reason: String) -> FhirError {
        FhirError::Download {
            file: self.file.clone(),
            reason,
        }
    }
}

/// A Bulk Data file read one resource at a time (SC-7.21): the lines of [`NdjsonLines`], each
/// parsed as a `T` (`serde_json::Value` by default, or the caller's FHIR model type).
///
/// Get one from [`BulkJob::open_file`].
pub struct NdjsonStream<T = serde_json::Value> {
    lines: NdjsonLines,
    resources: u64,
    _resource: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for NdjsonStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NdjsonStream")
            .field("lines", &self.lines)
            .field("resources", &self.resources)
            .finish()
    }
}

impl<T: DeserializeOwned> NdjsonStream<T> {
    /// The next resource, `None` at the end of the file.
    ///
    /// Errors: [`FhirError::Ndjson`] for a line that is not a `T` or is too long (with its
    /// line number, never its content), [`FhirError::Download`] for a corrupt or truncated
    /// gzip stream, [`FhirError::Http`] when the connection breaks. After an error the stream
    /// ends.
    pub async fn next_resource(&mut self) -> Result<Option<T>, FhirError> {
        let line = match self.lines.fast_line() {
            Some(line) => line,
            None => match self.lines.next_line().await? {
                Some(line) => line,
                None => return Ok(None),
            },
        };
        match serde_json::from_slice::<T>(&line) {
            Ok(resource) => {
                self.resources += 1;
                Ok(Some(resource))
            }
            Err(e) => Err(self.lines.error_at_last_line(describe_line_error(&e))),
        }
    }

    /// The resources as a [`Stream`]; it ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<T, FhirError>> + Send
    where
        T: Send,
    {
        stream::unfold(Some(self), |state| async move {
            let mut s = state?;
            match s.next_resource().await {
                Ok(Some(r)) => Some((Ok(r), Some(s))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

impl<T> NdjsonStream<T> {
    /// Resources returned so far.
    pub fn resources_read(&self) -> u64 {
        self.resources
    }

    /// Body bytes received so far (as sent: compressed when gzipped).
    pub fn bytes_received(&self) -> u64 {
        self.lines.bytes_received()
    }

    /// The `Content-Length` of the response, when the server gave one.
    pub fn content_length(&self) -> Option<u64> {
        self.lines.content_length()
    }

    /// The file's URL path (no query), as error messages name it.
    pub fn file(&self) -> &str {
        self.lines.file()
    }

    /// The unparsed lines underneath.
    pub fn into_lines(self) -> NdjsonLines {
        self.lines
    }
}

/// What [`BulkJob::download_to_dir`] reports while a file downloads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileProgress<'a> {
    /// The file's position in the download plan (output files first, in manifest order).
    pub index: usize,
    /// Which list the file is from.
    pub kind: FileKind,
    /// The resource type the manifest gives.
    pub resource_type: &'a str,
    /// The local file name (e.g. `Patient.1.ndjson`).
    pub file_name: &'a str,
    /// Body bytes received (compressed when gzipped).
    pub bytes_received: u64,
    /// The `Content-Length`, when known.
    pub content_length: Option<u64>,
    /// Resources written.
    pub resources: u64,
    /// Whether the file is complete (the last report for it).
    pub done: bool,
}

/// One file written by [`BulkJob::download_to_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadedFile {
    /// Which list the file is from.
    pub kind: FileKind,
    /// The resource type the manifest gives.
    pub resource_type: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Resources (lines) written.
    pub resources: u64,
    /// Bytes written (decoded NDJSON).
    pub bytes: u64,
    /// Body bytes received (compressed when gzipped).
    pub bytes_received: u64,
    /// The `count` the manifest gave, if any.
    pub declared_count: Option<u64>,
}

/// What [`BulkJob::download_to_dir`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadSummary {
    /// The files, in plan order (output, then error, then deleted; manifest order within).
    pub files: Vec<DownloadedFile>,
}

impl DownloadSummary {
    /// Resources written in files of `kind`.
    pub fn resources(&self, kind: FileKind) -> u64 {
        self.files
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.resources)
            .fold(0u64, u64::saturating_add)
    }

    /// Bytes written in all files.
    pub fn bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.bytes)
            .fold(0u64, u64::saturating_add)
    }

    /// Body bytes received for all files.
    pub fn bytes_received(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.bytes_received)
            .fold(0u64, u64::saturating_add)
    }
}

/// A file to fetch, with its local name.
struct Planned<'m> {
    index: usize,
    kind: FileKind,
    file: &'m ManifestFile,
    name: String,
}

/// A `.part` file that is removed unless the download completed (also when the download's
/// future is dropped).
struct PartFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl BulkJob {
    /// Opens one file of the manifest for reading, resource by resource (SC-7.18–SC-7.21),
    /// each line parsed as a `T`: see [`open_lines`](Self::open_lines) for the request.
    pub async fn open_file<T>(&self, file: &ManifestFile) -> Result<NdjsonStream<T>, FhirError> {
        Ok(NdjsonStream {
            lines: self.open_lines(file).await?,
            resources: 0,
            _resource: PhantomData,
        })
    }

    /// Opens one file of the manifest for reading, line by line, without parsing
    /// (SC-7.18–SC-7.21).
    ///
    /// `file` is one of the manifest's ([`wait`](Self::wait) first: the job must be complete).
    /// Its URL is checked first (scheme and host, P15). The request sends `Accept:
    /// application/fhir+ndjson` and `Accept-Encoding: gzip` (unless
    /// [`DownloadOptions::gzip`] is off), and carries the access token only when the manifest
    /// says `requiresAccessToken: true` and the URL has the FHIR server's origin (SC-7.18,
    /// P6); an expired token is renewed first, a rejected one renewed and the request sent
    /// again once. A non-2xx answer is a [`FhirError::Status`].
    pub async fn open_lines(&self, file: &ManifestFile) -> Result<NdjsonLines, FhirError> {
        let requires_access_token = self.completed()?.requires_access_token;
        let options = &self.download;
        let url = file.checked_url(self.client.base())?;
        let mut request = self.client.request(Method::GET, &url, None)?;
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/fhir+ndjson"));
        if options.gzip {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let line = RequestLine::new(request.method(), request.uri());
        let auth = if requires_access_token {
            AuthMode::Default
        } else {
            AuthMode::Never
        };
        let limit = options
            .max_file_bytes
            .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX));
        let mut send_options = RequestOptions::default()
            .auth(auth)
            .max_response_bytes(limit);
        if let Some(t) = options.timeout {
            send_options = send_options.timeout(t);
        }
        let started = Instant::now();
        let response = self.client.send_streaming(request, &send_options).await?;
        let (parts, mut body) = response.into_parts();
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let content_length = header(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok());
        tracing::debug!(
            origin = %trace::origin(&url),
            resource_type = %trace::server_text(&file.resource_type),
            status = parts.status.as_u16(),
            content_length,
            gzip = header(CONTENT_ENCODING).is_some_and(|v| v.to_ascii_lowercase().contains("gzip")),
            "Bulk Data file request answered"
        );
        if !parts.status.is_success() {
            let excerpt = read_bounded(&mut body, ERROR_BODY_LIMIT).await;
            return Err(FhirError::from_response(line, parts.status, &excerpt));
        }
        let file_name = line.path().to_owned();
        let decoder =
            BodyDecoder::new(header(CONTENT_ENCODING)).map_err(|reason| FhirError::Download {
                file: file_name.clone(),
                reason,
            })?;
        let max_line = options.max_line_bytes.max(1);
        Ok(NdjsonLines {
            body,
            decoder,
            lines: LineSplitter::new(max_line),
            pending: Bytes::new(),
            state: StreamState::Reading,
            request: line,
            file: file_name,
            resource_type: trace::server_text(&file.resource_type),
            max_line,
            received: 0,
            decoded: 0,
            max_decoded: options.max_file_bytes,
            max_ratio: options.max_expansion_ratio,
            content_length,
            returned: 0,
            returned_bytes: 0,
            last_line: 0,
            started,
        })
    }

    /// Downloads every file of the manifest into `dir` (created if missing), waiting for the
    /// export first when it has not completed yet: `output[]` files as `Type.N.ndjson`,
    /// `error[]` files as `error.Type.N.ndjson` and `deleted[]` files as
    /// `deleted.Type.N.ndjson` (N counting from 1 per type), [`DownloadOptions::concurrency`]
    /// at a time.
    ///
    /// Each file is written to a hidden `.part` file and renamed when complete, so a failed
    /// or cancelled download leaves no final file (and no `.part` file). Every line is checked
    /// to be one JSON object and written with a `\n` (blank lines dropped, `\r\n` made `\n`).
    /// Before anything is fetched, every type must be a type name (file names are built from
    /// it) and every URL must pass the endpoint checks (P15). The first failure stops the
    /// download and is returned; files completed before it stay.
    pub async fn download_to_dir(
        &self,
        dir: impl AsRef<Path>,
    ) -> Result<DownloadSummary, FhirError> {
        self.download_to_dir_with_progress(dir, |_| {}).await
    }

    /// As [`download_to_dir`](Self::download_to_dir), calling `progress` as each file starts,
    /// as it advances and when it is done.
    pub async fn download_to_dir_with_progress(
        &self,
        dir: impl AsRef<Path>,
        progress: impl Fn(&FileProgress<'_>) + Send + Sync,
    ) -> Result<DownloadSummary, FhirError> {
        let dir = dir.as_ref();
        let manifest = self.wait().await?;
        let plan = self.plan(manifest, &self.download)?;
        let span = tracing::info_span!("bulk_download", files = plan.len());
        self.download_plan(&plan, dir, &progress)
            .instrument(span)
            .await
    }

    async fn download_plan(
        &self,
        plan: &[Planned<'_>],
        dir: &Path,
        progress: &(dyn Fn(&FileProgress<'_>) + Send + Sync),
    ) -> Result<DownloadSummary, FhirError> {
        let options = &self.download;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| FhirError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        let mut running = stream::iter(plan.iter())
            .map(|item| {
                let span = tracing::info_span!(
                    "bulk_file",
                    index = item.index,
                    kind = ?item.kind,
                    resource_type = %item.file.resource_type,
                );
                self.download_one(item, dir, progress).instrument(span)
            })
            .buffer_unordered(options.concurrency.max(1));
        let mut files = Vec::with_capacity(plan.len());
        while let Some(result) = running.next().await {
            files.push(result?);
        }
        files.sort_by_key(|(index, _)| *index);
        let summary = DownloadSummary {
            files: files.into_iter().map(|(_, f)| f).collect(),
        };
        tracing::info!(
            files = summary.files.len(),
            resources = summary.resources(FileKind::Output),
            bytes = summary.bytes(),
            bytes_received = summary.bytes_received(),
            "Bulk Data files written"
        );
        Ok(summary)
    }

    fn plan<'m>(
        &self,
        manifest: &'m Manifest,
        options: &DownloadOptions,
    ) -> Result<Vec<Planned<'m>>, FhirError> {
        let mut lists = vec![(FileKind::Output, "output", &manifest.output)];
        if options.include_errors {
            lists.push((FileKind::Error, "error", &manifest.error));
        }
        if options.include_deleted {
            lists.push((FileKind::Deleted, "deleted", &manifest.deleted));
        }
        let base = self.client.base();
        let mut counters: std::collections::HashMap<(FileKind, &str), u32> =
            std::collections::HashMap::new();
        let mut plan = Vec::new();
        for (kind, list_name, list) in lists {
            for (i, file) in list.iter().enumerate() {
                let invalid = |reason: String| FhirError::Manifest {
                    request: self.status_line().clone(),
                    reason: format!("{list_name}[{i}]: {reason}"),
                };
                if !file.has_valid_type() {
                    return Err(invalid("the type is not a resource type name".to_owned()));
                }
                file.checked_url(base).map_err(|e| invalid(e.to_string()))?;
                let n = counters
                    .entry((kind, file.resource_type.as_str()))
                    .or_insert(0);
                *n += 1;
                let name = match kind {
                    FileKind::Output => format!("{}.{n}.ndjson", file.resource_type),
                    FileKind::Error => format!("error.{}.{n}.ndjson", file.resource_type),
                    FileKind::Deleted => format!("deleted.{}.{n}.ndjson", file.resource_type),
                };
                plan.push(Planned {
                    index: plan.len(),
                    kind,
                    file,
                    name,
                });
            }
        }
        Ok(plan)
    }

    async fn download_one(
        &self,
        item: &Planned<'_>,
        dir: &Path,
        progress: &(dyn Fn(&FileProgress<'_>) + Send + Sync),
    ) -> Result<(usize, DownloadedFile), FhirError> {
        let final_path = dir.join(&item.name);
        let mut part = PartFile {
            path: dir.join(format!(".{}.part", item.name)),
            keep: false,
        };
        let io_error = |path: &Path| {
            let path = path.display().to_string();
            move |source| FhirError::Io { path, source }
        };
        let mut lines = self.open_lines(item.file).await?;
        let report = |lines: &NdjsonLines, resources: u64, done: bool| {
            progress(&FileProgress {
                index: item.index,
                kind: item.kind,
                resource_type: &item.file.resource_type,
                file_name: &item.name,
                bytes_received: lines.bytes_received(),
                content_length: lines.content_length(),
                resources,
                done,
            });
        };
        report(&lines, 0, false);
        // Created synchronously (a short call): an asynchronous create still running when this
        // future is dropped could leave a `.part` file behind after the guard removed it.
        // A leftover name is removed (a symlink itself, never its target), then the file is
        // created exclusively: O_CREAT | O_EXCL never follows a symlink planted meanwhile, so
        // nothing is written outside `dir`.
        let _ = std::fs::remove_file(&part.path);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part.path)
            .map_err(io_error(&part.path))?;
        let file = tokio::fs::File::from_std(file);
        let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        let mut resources: u64 = 0;
        let mut bytes: u64 = 0;
        let mut reported_at: u64 = 0;
        while let Some(data) = lines.next_line().await? {
            let is_object = data
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'{');
            if let Err(e) = serde_json::from_slice::<IgnoredAny>(&data) {
                return Err(lines.error_at_last_line(describe_line_error(&e)));
            }
            if !is_object {
                return Err(lines.error_at_last_line("the line is not a JSON object".into()));
            }
            out.write_all(&data).await.map_err(io_error(&part.path))?;
            out.write_all(b"\n").await.map_err(io_error(&part.path))?;
            resources += 1;
            bytes = bytes.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX) + 1);
            if lines.bytes_received().saturating_sub(reported_at) >= 256 * 1024 {
                reported_at = lines.bytes_received();
                report(&lines, resources, false);
            }
        }
        out.flush().await.map_err(io_error(&part.path))?;
        let file = out.into_inner();
        file.sync_all().await.map_err(io_error(&part.path))?;
        drop(file);
        tokio::fs::rename(&part.path, &final_path)
            .await
            .map_err(io_error(&final_path))?;
        part.keep = true;
        report(&lines, resources, true);
        Ok((
            item.index,
            DownloadedFile {
                kind: item.kind,
                resource_type: item.file.resource_type.clone(),
                path: final_path,
                resources,
                bytes,
                bytes_received: lines.bytes_received(),
                declared_count: item.file.count,
            },
        ))
    }
}

/// A serde error about one NDJSON line, without quoting it; the position is a column (the
/// line number is the file's, given separately).
fn describe_line_error(e: &serde_json::Error) -> String {
    describe_json_error(e)
        .replace("the body ", "the line ")
        .replace("(line 1, column ", "(column ")
}

/// Up to `limit` bytes of a body, for an error message; a broken body yields what arrived.
async fn read_bounded(body: &mut StreamingBody, limit: usize) -> Bytes {
    let mut buf = BytesMut::new();
    while buf.len() < limit {
        match body.next_chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - buf.len();
                buf.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            }
            Ok(None) | Err(_) => break,
        }
    }
    buf.freeze()
}
