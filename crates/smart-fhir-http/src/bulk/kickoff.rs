//! The kick-off request of a Bulk Data export (SC-7.3–SC-7.10).

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_LOCATION, CONTENT_TYPE};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use url::form_urlencoded::byte_serialize;

use tracing::Instrument;

use super::download::DownloadOptions;
use super::job::{BulkJob, PollOptions};
use super::manifest::{check_url, is_type_name};
use super::trace;
use crate::client::{retry_after, RequestLine};
use crate::{FhirClient, FhirError, RequestOptions, RetryPolicy};

/// Which data an export covers (SC-7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportLevel {
    /// `[base]/$export`: everything the client may see.
    System,
    /// `[base]/Patient/$export`: the data of all patients (or of the `patient` list).
    Patient,
    /// `[base]/Group/[id]/$export`: the data of the patients in one group.
    Group(String),
}

/// How the kick-off request is sent (SC-7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KickoffMethod {
    /// `GET` with the parameters in the query (every server supports it).
    Get,
    /// `POST` with a `Parameters` resource (needed for `patient`).
    Post,
}

/// A Bulk Data export to kick off: the level, the parameters, and how the job then polls and
/// downloads (SC-7.3–SC-7.8, SC-7.24).
///
/// Get one from [`FhirClient::bulk_export`]: a system-level export of everything, with the
/// defaults of [`PollOptions`] and [`DownloadOptions`]; call a method only for what differs,
/// then [`start`](Self::start) it.
///
/// ```no_run
/// # async fn run(fhir: smart_fhir_http::FhirClient) -> Result<(), smart_fhir_http::FhirError> {
/// let job = fhir
///     .bulk_export()
///     .group("diabetes-cohort")
///     .types(["Patient", "Observation"])
///     .since("2024-01-01T00:00:00Z")
///     .type_filter("Observation?category=laboratory")
///     .start()
///     .await?;
/// # let _ = job; Ok(()) }
/// ```
///
/// The parameters are checked when the export starts (or when [`to_request`](Self::to_request)
/// builds the request).
#[derive(Debug, Clone)]
#[must_use]
pub struct BulkExport {
    client: FhirClient,
    level: ExportLevel,
    types: Vec<String>,
    since: Option<String>,
    until: Option<String>,
    type_filters: Vec<String>,
    output_format: Option<String>,
    elements: Vec<String>,
    patients: Vec<String>,
    include_associated_data: Vec<String>,
    organize_output_by: Option<String>,
    allow_partial_manifests: bool,
    lenient: bool,
    method: Option<KickoffMethod>,
    max_retries: u32,
    max_retry_after: Duration,
    poll: PollOptions,
    download: DownloadOptions,
}

impl BulkExport {
    fn new(client: FhirClient) -> Self {
        Self {
            client,
            level: ExportLevel::System,
            types: Vec::new(),
            since: None,
            until: None,
            type_filters: Vec::new(),
            output_format: None,
            elements: Vec::new(),
            patients: Vec::new(),
            include_associated_data: Vec::new(),
            organize_output_by: None,
            allow_partial_manifests: false,
            lenient: false,
            method: None,
            max_retries: 5,
            max_retry_after: Duration::from_secs(300),
            poll: PollOptions::default(),
            download: DownloadOptions::default(),
        }
    }

    /// Sets the level (default [`ExportLevel::System`], `[base]/$export`).
    pub fn level(mut self, level: ExportLevel) -> Self {
        self.level = level;
        self
    }

    /// `[base]/Group/[id]/$export`: the data of the patients in one group.
    pub fn group(self, id: impl Into<String>) -> Self {
        self.level(ExportLevel::Group(id.into()))
    }

    /// `[base]/Patient/$export`: the data of all patients (or of those given with
    /// [`patient_reference`](Self::patient_reference)).
    pub fn patient_level(self) -> Self {
        self.level(ExportLevel::Patient)
    }

    /// Adds resource types to `_type` (default: every type the server exports).
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.types.extend(types.into_iter().map(Into::into));
        self
    }

    /// `_since`: only resources changed after this FHIR instant (e.g. the `transactionTime` of
    /// the previous export, SC-7.17).
    pub fn since(mut self, instant: impl Into<String>) -> Self {
        self.since = Some(instant.into());
        self
    }

    /// `_until` (v3): only resources changed before this FHIR instant.
    pub fn until(mut self, instant: impl Into<String>) -> Self {
        self.until = Some(instant.into());
        self
    }

    /// Adds a `_typeFilter` query such as `Observation?category=laboratory`. Each query is
    /// sent URL-encoded as its own parameter (SC-7.6); a server may ignore them (SC-7.7), so
    /// filter again on the client when it matters.
    pub fn type_filter(mut self, query: impl Into<String>) -> Self {
        self.type_filters.push(query.into());
        self
    }

    /// `_outputFormat` (default: the server's, `application/fhir+ndjson`).
    pub fn output_format(mut self, format: impl Into<String>) -> Self {
        self.output_format = Some(format.into());
        self
    }

    /// Adds elements to `_elements` (e.g. `id`, `Patient.name`).
    pub fn elements<I, S>(mut self, elements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.elements.extend(elements.into_iter().map(Into::into));
        self
    }

    /// Adds a patient (`Patient/123` or `123`) to the `patient` parameter, which limits a
    /// Patient- or Group-level export to these patients. It can only be sent in a `POST`, so
    /// the kick-off becomes one (SC-7.4).
    pub fn patient_reference(mut self, reference: impl Into<String>) -> Self {
        self.patients.push(reference.into());
        self
    }

    /// Adds a value to `includeAssociatedData` (e.g. `LatestProvenanceResources`).
    pub fn include_associated_data(mut self, value: impl Into<String>) -> Self {
        self.include_associated_data.push(value.into());
        self
    }

    /// v3 `organizeOutputBy` (e.g. `Patient`).
    pub fn organize_output_by(mut self, resource_type: impl Into<String>) -> Self {
        self.organize_output_by = Some(resource_type.into());
        self
    }

    /// v3 `allowPartialManifests`: the server may split the manifest into linked pages.
    pub fn allow_partial_manifests(mut self, yes: bool) -> Self {
        self.allow_partial_manifests = yes;
        self
    }

    /// Adds `handling=lenient` to `Prefer`: the server may skip parameters it does not support
    /// instead of failing (SC-7.8).
    pub fn lenient(mut self, yes: bool) -> Self {
        self.lenient = yes;
        self
    }

    /// Forces the kick-off method (default: `GET`, or `POST` when `patient` is given).
    pub fn method(mut self, method: KickoffMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// How many times a kick-off answered with `429` (or `503` with `Retry-After`) is sent
    /// again (default 5, SC-7.10).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The longest `Retry-After` waited for at kick-off (default 5 minutes); a longer one ends
    /// the kick-off with the server's error.
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.max_retry_after = wait;
        self
    }

    /// How the job polls its status (default [`PollOptions::default`]).
    pub fn poll_options(mut self, options: PollOptions) -> Self {
        self.poll = options;
        self
    }

    /// How the job downloads its files (default [`DownloadOptions::default`]).
    pub fn download_options(mut self, options: DownloadOptions) -> Self {
        self.download = options;
        self
    }

    /// The method the kick-off will use.
    pub fn effective_method(&self) -> KickoffMethod {
        self.method.unwrap_or(if self.patients.is_empty() {
            KickoffMethod::Get
        } else {
            KickoffMethod::Post
        })
    }

    /// The URL path of the kick-off relative to the base, with the group id left out: what
    /// traces name.
    fn path_template(&self) -> &'static str {
        match self.level {
            ExportLevel::System => "$export",
            ExportLevel::Patient => "Patient/$export",
            ExportLevel::Group(_) => "Group/{id}/$export",
        }
    }

    /// The kick-off request, without the token (that is added when it is sent): `GET` with a
    /// query, or `POST` with a `Parameters` body; `Accept: application/fhir+json` and `Prefer:
    /// respond-async` (SC-7.5).
    ///
    /// Fails with [`FhirError::InvalidRequest`] when a parameter is malformed: a type that is
    /// not a type name, an instant that is not a FHIR instant, a group id that is not a FHIR
    /// id, `patient` with `GET` or at system level.
    pub fn to_request(&self) -> Result<http::Request<Bytes>, FhirError> {
        let client = &self.client;
        self.validate()?;
        let path = match &self.level {
            ExportLevel::System => "$export".to_owned(),
            ExportLevel::Patient => "Patient/$export".to_owned(),
            ExportLevel::Group(id) => format!("Group/{id}/$export"),
        };
        let mut url = client.url(&path)?;
        let method = self.effective_method();
        let body = match method {
            KickoffMethod::Get => {
                let query = self.query();
                if !query.is_empty() {
                    url.set_query(Some(&query));
                }
                None
            }
            KickoffMethod::Post => Some(Bytes::from(self.parameters().to_string())),
        };
        let http_method = match method {
            KickoffMethod::Get => Method::GET,
            KickoffMethod::Post => Method::POST,
        };
        let prefer = if self.lenient {
            "respond-async, handling=lenient"
        } else {
            "respond-async"
        };
        let has_body = body.is_some();
        let mut request = client.request(http_method, &url, body)?;
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/fhir+json"));
        if has_body {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/fhir+json"),
            );
        }
        headers.insert("prefer", HeaderValue::from_static(prefer));
        Ok(request)
    }

    fn validate(&self) -> Result<(), FhirError> {
        let bad = |what: String| Err(FhirError::InvalidRequest(what));
        if let ExportLevel::Group(id) = &self.level {
            if !is_fhir_id(id) {
                return bad("the group id is not a FHIR id ([A-Za-z0-9.-], 1 to 64)".into());
            }
        }
        if let Some(t) = self.types.iter().find(|t| !is_type_name(t)) {
            return bad(format!("_type: {:?} is not a resource type name", short(t)));
        }
        for (name, value) in [("_since", &self.since), ("_until", &self.until)] {
            if let Some(v) = value {
                if !is_fhir_instant(v) {
                    return bad(format!(
                        "{name}: {:?} is not a FHIR instant (e.g. 2024-01-31T12:00:00Z)",
                        short(v)
                    ));
                }
            }
        }
        for q in &self.type_filters {
            let ty = q.split_once('?').map(|(t, _)| t);
            if !ty.is_some_and(is_type_name) {
                return bad(
                    "_typeFilter: each filter is a query of the form Type?param=value".into(),
                );
            }
        }
        if self
            .elements
            .iter()
            .chain(&self.include_associated_data)
            .any(|e| e.is_empty() || e.contains(',') || e.chars().any(char::is_control))
        {
            return bad(
                "_elements and includeAssociatedData values must be non-empty, without commas"
                    .into(),
            );
        }
        if let Some(t) = &self.organize_output_by {
            if !is_type_name(t) {
                return bad("organizeOutputBy is not a resource type name".into());
            }
        }
        if !self.patients.is_empty() {
            if self.level == ExportLevel::System {
                return bad("the patient parameter is for Patient- and Group-level exports".into());
            }
            if self.effective_method() == KickoffMethod::Get {
                return bad("the patient parameter can only be sent with POST".into());
            }
            if let Some(p) = self
                .patients
                .iter()
                .find(|p| patient_reference(p).is_none())
            {
                return bad(format!(
                    "patient: {:?} is not a Patient reference",
                    short(p)
                ));
            }
        }
        Ok(())
    }

    /// The query string of a `GET` kick-off (SC-7.6).
    fn query(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let joined = |items: &[String]| {
            items
                .iter()
                .map(|s| byte_serialize(s.as_bytes()).collect::<String>())
                .collect::<Vec<_>>()
                .join(",")
        };
        let enc = |s: &str| byte_serialize(s.as_bytes()).collect::<String>();
        if let Some(f) = &self.output_format {
            pairs.push(("_outputFormat", enc(f)));
        }
        if let Some(s) = &self.since {
            pairs.push(("_since", enc(s)));
        }
        if let Some(s) = &self.until {
            pairs.push(("_until", enc(s)));
        }
        if !self.types.is_empty() {
            pairs.push(("_type", joined(&self.types)));
        }
        if !self.elements.is_empty() {
            pairs.push(("_elements", joined(&self.elements)));
        }
        for q in &self.type_filters {
            // Commas inside a query are encoded, so that a server reading the 2.0 form (queries
            // joined by commas) splits nothing.
            pairs.push(("_typeFilter", enc(q)));
        }
        if !self.include_associated_data.is_empty() {
            pairs.push((
                "includeAssociatedData",
                joined(&self.include_associated_data),
            ));
        }
        if let Some(o) = &self.organize_output_by {
            pairs.push(("organizeOutputBy", enc(o)));
        }
        if self.allow_partial_manifests {
            pairs.push(("allowPartialManifests", "true".to_owned()));
        }
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The `Parameters` body of a `POST` kick-off (SC-7.4, SC-7.6).
    fn parameters(&self) -> Value {
        let mut p: Vec<Value> = Vec::new();
        if let Some(f) = &self.output_format {
            p.push(json!({"name": "_outputFormat", "valueString": f}));
        }
        if let Some(s) = &self.since {
            p.push(json!({"name": "_since", "valueInstant": s}));
        }
        if let Some(s) = &self.until {
            p.push(json!({"name": "_until", "valueInstant": s}));
        }
        if !self.types.is_empty() {
            p.push(json!({"name": "_type", "valueString": self.types.join(",")}));
        }
        if !self.elements.is_empty() {
            p.push(json!({"name": "_elements", "valueString": self.elements.join(",")}));
        }
        for q in &self.type_filters {
            p.push(json!({"name": "_typeFilter", "valueString": q}));
        }
        for r in self.patients.iter().filter_map(|r| patient_reference(r)) {
            p.push(json!({"name": "patient", "valueReference": {"reference": r}}));
        }
        for v in &self.include_associated_data {
            p.push(json!({"name": "includeAssociatedData", "valueCode": v}));
        }
        if let Some(o) = &self.organize_output_by {
            p.push(json!({"name": "organizeOutputBy", "valueString": o}));
        }
        if self.allow_partial_manifests {
            p.push(json!({"name": "allowPartialManifests", "valueBoolean": true}));
        }
        json!({"resourceType": "Parameters", "parameter": p})
    }
}

impl BulkExport {
    /// Kicks off the export (SC-7.3–SC-7.10) and returns the job to wait for.
    ///
    /// Success is `202 Accepted` with a `Content-Location` naming the status URL, which is
    /// checked like any endpoint (P15; a relative one is resolved against the kick-off URL).
    /// A `429` (or `503` with `Retry-After`) is waited out and the kick-off sent again, at
    /// most [`max_retries`](Self::max_retries) times (SC-7.10); any other error status is a
    /// [`FhirError::Status`] carrying the server's `OperationOutcome` (SC-7.9).
    ///
    /// Traced as a `bulk_kickoff` span (origin, path template, method) with an event for each
    /// answer (status); never the query, the body or the token.
    pub async fn start(&self) -> Result<BulkJob, FhirError> {
        let span = tracing::info_span!(
            "bulk_kickoff",
            origin = %trace::origin(self.client.base().url()),
            path = self.path_template(),
            method = ?self.effective_method(),
        );
        self.kick_off().instrument(span).await
    }

    async fn kick_off(&self) -> Result<BulkJob, FhirError> {
        let client = &self.client;
        let request = self.to_request()?;
        let line = RequestLine::new(request.method(), request.uri());
        let is_get = request.method() == Method::GET;
        // Retries are decided here: a throttled kick-off was not processed and may be sent
        // again whatever its method, but a POST that failed in transit may have started a job.
        let options = RequestOptions::default().retry(RetryPolicy::none());
        let mut attempt: u32 = 0;
        loop {
            let result = client.send(request.clone(), &options).await;
            let response = match result {
                Ok(r) => r,
                // `send` returns statuses as responses: an error here is the transport's.
                Err(e) if e.is_transient() && is_get && attempt < self.max_retries => {
                    let wait = backoff(attempt);
                    tracing::debug!(
                        attempt,
                        wait_s = wait.as_secs(),
                        "Bulk Data kick-off failed in transit; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(attempt, "Bulk Data kick-off failed in transit");
                    return Err(e);
                }
            };
            let status = response.status();
            tracing::debug!(
                status = status.as_u16(),
                attempt,
                "Bulk Data kick-off answered"
            );
            match status {
                StatusCode::ACCEPTED => {
                    let job = client
                        .job_from_kickoff(&line, &request, response.headers())?
                        .with_poll_options(self.poll.clone())
                        .with_download_options(self.download.clone());
                    tracing::info!(status = status.as_u16(), "Bulk Data export started");
                    return Ok(job);
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    let after = retry_after(response.headers(), client.clock_now());
                    let throttled = status == StatusCode::TOO_MANY_REQUESTS;
                    let wait = match after {
                        Some(w) => Some(w),
                        None if throttled => Some(backoff(attempt)),
                        None => None,
                    };
                    if let Some(wait) = wait {
                        if attempt < self.max_retries && wait <= self.max_retry_after {
                            drop(response);
                            tracing::debug!(
                                status = status.as_u16(),
                                retry_after_s = after.map(|a| a.as_secs()),
                                wait_s = wait.as_secs(),
                                "Bulk Data kick-off throttled; waiting"
                            );
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                            continue;
                        }
                    }
                    return Err(FhirError::from_response(line, status, response.body()));
                }
                s if s.is_success() => {
                    return Err(FhirError::Bulk {
                        request: line,
                        reason: format!(
                            "the server answered {s} instead of 202 Accepted: it does not run \
                             the export asynchronously"
                        ),
                    })
                }
                _ => return Err(FhirError::from_response(line, status, response.body())),
            }
        }
    }
}

impl FhirClient {
    /// A Bulk Data export of this server (SC-7.3–SC-7.10): system level, every type, default
    /// polling and downloads, until a method of [`BulkExport`] says otherwise.
    ///
    /// ```no_run
    /// # async fn run(fhir: smart_fhir_http::FhirClient) -> Result<(), smart_fhir_http::FhirError> {
    /// let job = fhir.bulk_export().types(["Patient"]).start().await?;
    /// job.wait().await?;
    /// job.download_to_dir("export").await?;
    /// # Ok(()) }
    /// ```
    pub fn bulk_export(&self) -> BulkExport {
        BulkExport::new(self.clone())
    }

    /// A job for an export kicked off earlier, from its status URL (e.g. saved across a
    /// restart). The URL is checked like any endpoint (P15).
    pub fn bulk_job(&self, status_url: &str) -> Result<BulkJob, FhirError> {
        let url = check_url(status_url, "Bulk Data status URL", self.base())?;
        Ok(BulkJob::new(self.clone(), url))
    }

    fn job_from_kickoff(
        &self,
        line: &RequestLine,
        request: &http::Request<Bytes>,
        headers: &http::HeaderMap,
    ) -> Result<BulkJob, FhirError> {
        let location = headers
            .get(CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| FhirError::Bulk {
                request: line.clone(),
                reason: "202 Accepted without a Content-Location (the status URL)".into(),
            })?;
        // Servers should send an absolute URL (SC-7.9); a relative one is resolved against the
        // kick-off URL, and either way the result is checked like any endpoint.
        let kickoff = url::Url::parse(&request.uri().to_string())
            .map_err(|e| FhirError::InvalidRequest(format!("{line}: not an absolute URL: {e}")))?;
        let resolved = kickoff.join(location).map_err(|_| FhirError::Bulk {
            request: line.clone(),
            reason: "the Content-Location is not a URL".into(),
        })?;
        let url = check_url(
            resolved.as_str(),
            "Bulk Data status URL (Content-Location)",
            self.base(),
        )?;
        Ok(BulkJob::new(self.clone(), url))
    }

    pub(crate) fn clock_now(&self) -> std::time::SystemTime {
        use smart_fhir_core::Clock;
        self.clock().now()
    }
}

/// 1 s, 2 s, 4 s, … capped at 60 s: the wait before a retry the server gave no time for.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}

/// `Patient/123` or `123` → `Patient/123`; anything else → `None`.
fn patient_reference(r: &str) -> Option<String> {
    let id = r.strip_prefix("Patient/").unwrap_or(r);
    is_fhir_id(id).then(|| format!("Patient/{id}"))
}

/// `[A-Za-z0-9\-\.]{1,64}` (FHIR `id`).
fn is_fhir_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A FHIR `instant`: `YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)`.
pub(crate) fn is_fhir_instant(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.len() == r.len() && d.iter().all(u8::is_ascii_digit))
    };
    let num = |r: std::ops::Range<usize>| -> u32 {
        b.get(r)
            .map(|d| d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
            .unwrap_or(u32::MAX)
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19))
    {
        return false;
    }
    if !((1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) <= 23
        && num(14..16) <= 59
        && num(17..19) <= 60)
    {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3)
                && at(i + 3, b':')
                && digits(i + 4..i + 6)
                && i + 6 == b.len()
                && num(i + 1..i + 3) <= 14
                && num(i + 4..i + 6) <= 59
        }
        _ => false,
    }
}

/// A bounded rendition of a caller's value for an error message.
fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_instants() {
        for ok in [
            "2024-01-31T12:00:00Z",
            "2024-01-31T12:00:00.123Z",
            "2024-01-31T12:00:00+02:00",
            "2024-01-31T12:00:00.5-05:30",
        ] {
            assert!(is_fhir_instant(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-01-31",
            "2024-01-31T12:00:00",
            "2024-13-01T00:00:00Z",
            "2024-01-31T24:00:00Z",
            "2024-01-31T12:00:00.Z",
            "2024-01-31T12:00:00Zjunk",
            "2024-01-31T12:00:00+2:00",
            "2024-01-31 12:00:00Z",
            "२०२४-01-31T12:00:00Z",
        ] {
            assert!(!is_fhir_instant(bad), "{bad}");
        }
    }

    #[test]
    fn patient_references_and_ids() {
        assert_eq!(patient_reference("123").as_deref(), Some("Patient/123"));
        assert_eq!(
            patient_reference("Patient/a.b-c").as_deref(),
            Some("Patient/a.b-c")
        );
        assert_eq!(patient_reference("Group/1"), None);
        assert_eq!(patient_reference("Patient/"), None);
        assert!(!is_fhir_id("a/b"));
        assert!(!is_fhir_id(&"a".repeat(65)));
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }
}
