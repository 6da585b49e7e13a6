//! The FHIR RESTful interactions (SC-8) as methods on [`FhirClient`]: capabilities, read, vread,
//! search, create, update, patch, delete, history, batch, transaction and named operations.
//!
//! Every method validates the resource type names and ids it puts into a URL, so that a caller's
//! mistake is an [`FhirError::InvalidRequest`] rather than a request to an unexpected path. Bodies
//! are decoded as the caller's `T` (`serde_json::Value` is the easy default); a response that has
//! no body (`204`, `Prefer: return=minimal`) is `None` where the interaction allows it.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, IF_MATCH, IF_NONE_MATCH};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

pub use super::names::{is_valid_id, is_valid_resource_type};
use super::response::{etag_for_version, version_from_etag};
use super::{
    BearerCache, FhirClient, FhirError, FhirResponse, Inner, OperationOutcome, RequestLine,
    RequestOptions,
};
use smart_fhir_core::text::printable;

/// `If-None-Exist` (conditional create, SC-8.14).
const IF_NONE_EXIST: HeaderName = HeaderName::from_static("if-none-exist");
/// `Prefer` (SC-8.22, SC-8.23).
const PREFER: HeaderName = HeaderName::from_static("prefer");
/// The media type of a JSON Patch document (SC-8.9).
pub const JSON_PATCH_MEDIA_TYPE: &str = "application/json-patch+json";
/// The media type of a `_search` POST body (SC-8.16).
const FORM_MEDIA_TYPE: &str = "application/x-www-form-urlencoded";

pub(crate) fn check_type(name: &str) -> Result<&str, FhirError> {
    if is_valid_resource_type(name) {
        Ok(name)
    } else {
        Err(FhirError::InvalidRequest(format!(
            "\"{}\" is not a FHIR resource type name ([A-Z][A-Za-z]*)",
            printable(name, 64)
        )))
    }
}

fn check_id<'a>(what: &str, id: &'a str) -> Result<&'a str, FhirError> {
    // The id itself is not repeated: a caller may have passed something else by mistake (an MRN,
    // a name) that does not belong in an error message.
    if is_valid_id(id) {
        Ok(id)
    } else {
        Err(FhirError::InvalidRequest(format!(
            "the {what} is not a valid FHIR id (1 to 64 of A-Z, a-z, 0-9, '-', '.')"
        )))
    }
}

/// `everything` or `$everything` → `$everything`, checked.
fn operation_segment(name: &str) -> Result<String, FhirError> {
    let bare = name.strip_prefix('$').unwrap_or(name);
    let ok = (1..=64).contains(&bare.len())
        && bare.starts_with(|c: char| c.is_ascii_alphabetic())
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(format!("${bare}"))
    } else {
        Err(FhirError::InvalidRequest(format!(
            "\"{}\" is not a FHIR operation name",
            printable(name, 64)
        )))
    }
}

/// An `If-Match` or `If-None-Match` value from a version id (`3` → `W/"3"`) or an ETag as the
/// server sent it (SC-8.4, SC-8.7).
fn etag_header(version: &str) -> Result<HeaderValue, FhirError> {
    check_id("version", version_from_etag(version))?;
    HeaderValue::from_str(&etag_for_version(version)).map_err(|_| {
        FhirError::InvalidRequest("the version is not a valid header value".to_owned())
    })
}

/// Search, history or operation parameters: name/value pairs in order, names repeatable
/// (`date=ge2020&date=lt2021`).
///
/// Implemented for slices, arrays and vectors of pairs and for [`SearchParams`], so that
/// `&[("name", "Smith"), ("_count", "50")]`, `&[]` and a `SearchParams` can all be passed.
/// Names and values are given unencoded: the client percent-encodes them.
pub trait QueryParams {
    /// Calls `f` with each name and value, in order.
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &str));

    /// Whether there are no parameters.
    fn is_empty_params(&self) -> bool {
        let mut empty = true;
        self.for_each_param(&mut |_, _| empty = false);
        empty
    }
}

impl QueryParams for [(&str, &str)] {
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

impl<const N: usize> QueryParams for [(&str, &str); N] {
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &str)) {
        self.as_slice().for_each_param(f);
    }
}

impl QueryParams for Vec<(&str, &str)> {
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &str)) {
        self.as_slice().for_each_param(f);
    }
}

impl QueryParams for [(String, String)] {
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

impl QueryParams for Vec<(String, String)> {
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &str)) {
        self.as_slice().for_each_param(f);
    }
}

impl QueryParams for SearchParams {
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &str)) {
        self.pairs.as_slice().for_each_param(f);
    }
}

/// A builder of search parameters (SC-8.16): any `name=value` in order, plus shorthands for the
/// common result parameters.
///
/// ```
/// use smart_fhir_http::client::SearchParams;
///
/// let params = SearchParams::new()
///     .add("family", "Smith")
///     .add("birthdate", "ge1970-01-01")
///     .add("birthdate", "lt1980-01-01")
///     .count(50)
///     .sort("-_lastUpdated");
/// assert_eq!(params.len(), 5);
/// ```
///
/// Its `Debug` output shows the parameter names only: values can carry patient data.
#[derive(Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SearchParams {
    pairs: Vec<(String, String)>,
}

impl SearchParams {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `name=value` (a name may repeat: the values are ANDed by the server).
    pub fn add(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    /// `_count`: the page size wanted.
    pub fn count(self, n: u32) -> Self {
        self.add("_count", n.to_string())
    }

    /// `_sort`, e.g. `-date,status`.
    pub fn sort(self, spec: impl Into<String>) -> Self {
        self.add("_sort", spec)
    }

    /// `_include`, e.g. `Observation:subject`.
    pub fn include(self, spec: impl Into<String>) -> Self {
        self.add("_include", spec)
    }

    /// `_revinclude`, e.g. `Provenance:target`.
    pub fn rev_include(self, spec: impl Into<String>) -> Self {
        self.add("_revinclude", spec)
    }

    /// `_elements`, e.g. `id,name`.
    pub fn elements(self, list: impl Into<String>) -> Self {
        self.add("_elements", list)
    }

    /// `_summary`: `true`, `text`, `data`, `count` or `false`.
    pub fn summary(self, mode: impl Into<String>) -> Self {
        self.add("_summary", mode)
    }

    /// `_total`: `none`, `estimate` or `accurate`.
    pub fn total(self, mode: impl Into<String>) -> Self {
        self.add("_total", mode)
    }

    /// `_since` (history, SC-8.19): an instant, e.g. `2024-01-01T00:00:00Z`.
    pub fn since(self, instant: impl Into<String>) -> Self {
        self.add("_since", instant)
    }

    /// `_at` (history, SC-8.19).
    pub fn at(self, date_time: impl Into<String>) -> Self {
        self.add("_at", date_time)
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for SearchParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchParams")
            .field(
                "names",
                &self.pairs.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SearchParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            pairs: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// Where a history or an operation applies (SC-8.19, and FHIR operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Level<'a> {
    /// The whole server: `[base]/_history`, `[base]/$op`.
    System,
    /// A resource type: `[base]/[type]/_history`, `[base]/[type]/$op`.
    Type(&'a str),
    /// One resource, by type and id: `[base]/[type]/[id]/_history`, `[base]/[type]/[id]/$op`.
    Instance(&'a str, &'a str),
}

impl Level<'_> {
    /// The validated path prefix, with a trailing `/` unless empty.
    fn prefix(&self) -> Result<String, FhirError> {
        Ok(match *self {
            Level::System => String::new(),
            Level::Type(t) => format!("{}/", check_type(t)?),
            Level::Instance(t, id) => {
                format!("{}/{}/", check_type(t)?, check_id("resource id", id)?)
            }
        })
    }
}

/// Appends `params` to `url`'s query with the `application/x-www-form-urlencoded` serializer
/// (SC-8.1: UTF-8, percent-encoded). No `?` is added when there are none.
pub(crate) fn with_query(mut url: Url, params: &(impl QueryParams + ?Sized)) -> Url {
    if !params.is_empty_params() {
        let mut query = url.query_pairs_mut();
        params.for_each_param(&mut |k, v| {
            query.append_pair(k, v);
        });
    }
    url
}

fn form_body(params: &(impl QueryParams + ?Sized)) -> Bytes {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    params.for_each_param(&mut |k, v| {
        form.append_pair(k, v);
    });
    Bytes::from(form.finish())
}

/// Serializes a request body. The serde message is not kept: a custom `Serialize` could put
/// data into it.
fn json_body(body: &(impl Serialize + ?Sized)) -> Result<Bytes, FhirError> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| {
        FhirError::InvalidRequest(format!(
            "the request body cannot be serialized as JSON ({})",
            match e.classify() {
                serde_json::error::Category::Io => "I/O",
                _ => "unsupported data",
            }
        ))
    })
}

/// The members of a resource body that the URL must agree with.
#[derive(Deserialize)]
struct ResourceHead {
    #[serde(rename = "resourceType")]
    resource_type: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
    #[serde(rename = "type")]
    bundle_type: Option<serde_json::Value>,
}

fn resource_head(body: &[u8]) -> Result<ResourceHead, FhirError> {
    serde_json::from_slice(body)
        .map_err(|_| FhirError::InvalidRequest("the request body is not a JSON object".to_owned()))
}

/// SC-8.6, SC-8.13: a resource sent to `[type]` or `[type]/[id]` must be of that type and, for an
/// update, carry that id (when it carries one at all; the server decides whether one is needed).
fn check_body_matches(body: &[u8], resource_type: &str, id: Option<&str>) -> Result<(), FhirError> {
    let head = resource_head(body)?;
    match head.resource_type {
        Some(serde_json::Value::String(t)) if t == resource_type => {}
        None => {}
        Some(_) => {
            return Err(FhirError::InvalidRequest(format!(
                "the body's resourceType is not {resource_type}"
            )))
        }
    }
    if let (Some(url_id), Some(body_id)) = (id, head.id) {
        if body_id.as_str() != Some(url_id) {
            return Err(FhirError::InvalidRequest(
                "the body's id differs from the id in the URL (SC-8.6)".to_owned(),
            ));
        }
    }
    Ok(())
}

fn check_bundle(body: &[u8], kind: &str) -> Result<(), FhirError> {
    let head = resource_head(body)?;
    let is_bundle = head.resource_type.as_ref().and_then(|v| v.as_str()) == Some("Bundle");
    let is_kind = head.bundle_type.as_ref().and_then(|v| v.as_str()) == Some(kind);
    if is_bundle && is_kind {
        Ok(())
    } else {
        Err(FhirError::InvalidRequest(format!(
            "a {kind} needs a Bundle with \"type\": \"{kind}\""
        )))
    }
}

fn set_header(
    request: &mut http::Request<Bytes>,
    name: HeaderName,
    value: &str,
    what: &str,
) -> Result<(), FhirError> {
    let v = HeaderValue::from_str(value)
        .map_err(|_| FhirError::InvalidRequest(format!("{what} is not a valid header value")))?;
    request.headers_mut().insert(name, v);
    Ok(())
}

/// A missing body where one is required is a decoding error.
fn missing_body(line: &RequestLine, status: StatusCode) -> FhirError {
    FhirError::Decode {
        request: line.clone(),
        reason: format!("HTTP {status} with no body where a resource was expected"),
    }
}

/// Whether a URL would resolve `segment` as `.` or `..`.
fn is_dot_segment(segment: &str) -> bool {
    segment == "." || segment == ".."
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// How a search is sent (SC-8.16, SC-8.17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchMethod {
    Get,
    Post,
}

impl FhirClient {
    /// A client that sends `prefer` as the `Prefer` header of its writes instead of the one
    /// configured with [`FhirClientBuilder::prefer`](super::FhirClientBuilder::prefer) (`None`:
    /// no `Prefer` header), e.g. `return=minimal` for a bulk load or `return=OperationOutcome`
    /// (SC-8.22). It shares the transport, the token source and every other setting.
    pub fn with_prefer(&self, prefer: Option<&str>) -> Result<FhirClient, FhirError> {
        let prefer = match prefer {
            Some(p) => Some(
                HeaderValue::from_str(p)
                    .map_err(|_| FhirError::Config("invalid Prefer header value".to_owned()))?,
            ),
            None => None,
        };
        let i = &self.inner;
        Ok(FhirClient {
            inner: Arc::new(Inner {
                base: i.base.clone(),
                origin: i.origin.clone(),
                http: i.http.clone(),
                auth: i.auth.clone(),
                bearer: BearerCache::default(),
                version: i.version,
                accept: i.accept.clone(),
                prefer,
                retry: i.retry,
                retry_on_403: i.retry_on_403,
                timeout: i.timeout,
                max_response_bytes: i.max_response_bytes,
                clock: i.clock.clone(),
            }),
        })
    }

    /// Sends a request (as [`FhirClient::send_checked`]) and decodes its JSON body as `T`; `None`
    /// when the response has no body (`204`, `304`, `Prefer: return=minimal`).
    pub async fn send_decoded<T: DeserializeOwned>(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let line = RequestLine::new(request.method(), request.uri());
        let (parts, body) = self.send_decoded_parts(request, options, &line).await?;
        Ok(FhirResponse::new(parts.status, parts.headers, body))
    }

    /// [`FhirClient::send_decoded`] as the response head and the decoded body.
    async fn send_decoded_parts<T: DeserializeOwned>(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
        line: &RequestLine,
    ) -> Result<(http::response::Parts, Option<T>), FhirError> {
        let response = self.send_checked_line(request, options, line).await?;
        let (parts, body) = response.into_parts();
        let body = if parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED
            || is_blank(&body)
        {
            None
        } else {
            Some(Self::decode::<T>(line, &body)?)
        };
        Ok((parts, body))
    }

    async fn fetch<T: DeserializeOwned>(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
    ) -> Result<FhirResponse<T>, FhirError> {
        let line = RequestLine::new(request.method(), request.uri());
        let (parts, body) = self.send_decoded_parts(request, options, &line).await?;
        match body {
            Some(body) => Ok(FhirResponse::new(parts.status, parts.headers, body)),
            None => Err(missing_body(&line, parts.status)),
        }
    }

    /// `GET [base]/[segments joined by /]`, where every segment is a checked resource type, id
    /// or literal. Those hold unreserved characters only, so appending them to the base's
    /// serialization gives the URL [`FhirClient::url`] would: the URI is built from that string
    /// without a URL parse. A dot segment (`.`, `..`), which a URL resolves, and a base with a
    /// fragment take the general path.
    fn path_get_request(&self, segments: &[&str]) -> Result<http::Request<Bytes>, FhirError> {
        let base = self.base();
        if base.url().fragment().is_none() && !segments.iter().any(|s| is_dot_segment(s)) {
            let base = base.as_str();
            let len = base.len() + segments.iter().map(|s| s.len() + 1).sum::<usize>();
            let mut uri = String::with_capacity(len);
            uri.push_str(base);
            for segment in segments {
                uri.push('/');
                uri.push_str(segment);
            }
            if let Ok(uri) = http::Uri::try_from(uri) {
                return Ok(self.request_to(Method::GET, uri, None));
            }
        }
        self.get_request(&segments.join("/"), &[])
    }

    /// `[base]/relative`, or the base itself (no trailing slash) for an empty `relative`: a
    /// batch, a transaction and a system search go to `[base]` exactly (SC-8.16, SC-8.21).
    fn url_at(&self, relative: &str) -> Result<Url, FhirError> {
        if relative.is_empty() {
            Ok(self.base().url().clone())
        } else {
            self.url(relative)
        }
    }

    fn get_request(
        &self,
        relative: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<http::Request<Bytes>, FhirError> {
        let url = with_query(self.url_at(relative)?, params);
        self.request(Method::GET, &url, None)
    }

    /// A write request: a JSON body with `content_type` (default: the client's FHIR media type)
    /// and the client's default `Prefer` (SC-8.22).
    fn write_request(
        &self,
        method: Method,
        url: &Url,
        body: Bytes,
        content_type: Option<&'static str>,
    ) -> Result<http::Request<Bytes>, FhirError> {
        let mut request = self.request(method, url, Some(body))?;
        if let Some(ct) = content_type {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Some(p) = self.default_prefer() {
            request.headers_mut().insert(PREFER, p.clone());
        }
        Ok(request)
    }

    // ----- capabilities, read, vread -------------------------------------------------------

    /// `GET [base]/metadata[?mode=…]`: the server's CapabilityStatement (SC-8.20). `mode` is
    /// `full`, `normative` or `terminology` (a `TerminologyCapabilities`).
    pub async fn capabilities<T: DeserializeOwned>(
        &self,
        mode: Option<&str>,
    ) -> Result<FhirResponse<T>, FhirError> {
        let params: Vec<(&str, &str)> = mode.map(|m| ("mode", m)).into_iter().collect();
        let request = self.get_request("metadata", &params)?;
        self.fetch(request, &RequestOptions::default()).await
    }

    /// `GET [base]/[relative]`: any path under the base, with an optional query as given (e.g.
    /// `Patient/123/_history/2`, `metadata`, `Patient?name=Smith`). The raw form of a read, for
    /// tools; the typed methods validate their parts.
    pub async fn get<T: DeserializeOwned>(
        &self,
        relative: &str,
    ) -> Result<FhirResponse<T>, FhirError> {
        let url = self.url(relative)?;
        let request = self.request(Method::GET, &url, None)?;
        self.fetch(request, &RequestOptions::default()).await
    }

    /// `GET [base]/[type]/[id]` (SC-8.4). A `404` (unknown) or `410` (deleted) is a
    /// [`FhirError::Status`]; the `ETag` and `Last-Modified` are on the response.
    pub async fn read<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<FhirResponse<T>, FhirError> {
        let request =
            self.path_get_request(&[check_type(resource_type)?, check_id("resource id", id)?])?;
        self.fetch(request, &RequestOptions::default()).await
    }

    /// `GET [base]/[type]/[id]` with `If-None-Match: W/"version"` (SC-8.4): the body is `None`
    /// when the server answers `304 Not Modified` (the copy at `version` is current), else the
    /// current resource. `version` is a version id (`3`) or an ETag (`W/"3"`).
    pub async fn read_if_none_match<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let mut request =
            self.path_get_request(&[check_type(resource_type)?, check_id("resource id", id)?])?;
        let etag = etag_header(version)?;
        request.headers_mut().insert(IF_NONE_MATCH, etag);
        self.send_decoded(request, &RequestOptions::default()).await
    }

    /// `GET [base]/[type]/[id]/_history/[vid]` (SC-8.5).
    pub async fn vread<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        id: &str,
        version_id: &str,
    ) -> Result<FhirResponse<T>, FhirError> {
        let request = self.path_get_request(&[
            check_type(resource_type)?,
            check_id("resource id", id)?,
            "_history",
            check_id("version id", version_id)?,
        ])?;
        self.fetch(request, &RequestOptions::default()).await
    }

    // ----- search ---------------------------------------------------------------------------

    /// Builds a search request: `GET [prefix]?params` or `POST [prefix]/_search` with a form body.
    pub(crate) fn search_request(
        &self,
        prefix: &str,
        params: &(impl QueryParams + ?Sized),
        method: SearchMethod,
    ) -> Result<http::Request<Bytes>, FhirError> {
        match method {
            SearchMethod::Get => {
                let path = if prefix.is_empty() {
                    ""
                } else {
                    prefix.trim_end_matches('/')
                };
                let url = with_query(self.url_at(path)?, params);
                self.request(Method::GET, &url, None)
            }
            SearchMethod::Post => {
                let url = self.url(&format!("{prefix}_search"))?;
                let mut request = self.request(Method::POST, &url, Some(form_body(params)))?;
                request
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(FORM_MEDIA_TYPE));
                Ok(request)
            }
        }
    }

    /// A search at `prefix` (`""`, `Type/`, `Patient/1/Observation/`), trying the other method
    /// once when the server answers `405 Method Not Allowed` (or `414 URI Too Long` to a GET)
    /// (SC-8.16).
    async fn search_at<T: DeserializeOwned>(
        &self,
        prefix: &str,
        params: &(impl QueryParams + ?Sized),
        method: SearchMethod,
    ) -> Result<FhirResponse<T>, FhirError> {
        // A search changes nothing on the server: a POST `_search` is as safe to repeat as a GET.
        let options = RequestOptions::default().idempotent(true);
        let request = self.search_request(prefix, params, method)?;
        match self.fetch(request, &options).await {
            Err(e)
                if e.status() == Some(StatusCode::METHOD_NOT_ALLOWED)
                    || (method == SearchMethod::Get
                        && e.status() == Some(StatusCode::URI_TOO_LONG)) =>
            {
                let other = match method {
                    SearchMethod::Get => SearchMethod::Post,
                    SearchMethod::Post => SearchMethod::Get,
                };
                let request = self.search_request(prefix, params, other)?;
                self.fetch(request, &options).await
            }
            r => r,
        }
    }

    /// `GET [base]/[type]?params` (SC-8.16): a `searchset` Bundle. The parameters are
    /// percent-encoded as a form; names may repeat. On `405` (or `414`) the search is sent
    /// once more as `POST [type]/_search`. Follow the `next` links with
    /// [`FhirClient::search_pages`].
    pub async fn search<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let prefix = format!("{}/", check_type(resource_type)?);
        self.search_at(&prefix, params, SearchMethod::Get).await
    }

    /// `POST [base]/[type]/_search` with the parameters as a form body (SC-8.16): keeps them out
    /// of URLs, and so out of access logs (SC-8.17). Retried like a GET (a search changes
    /// nothing). On `405` the search is sent once more as a GET, as SC-8.16 advises: a caller for
    /// whom the parameters must never appear in a URL sends the request with
    /// [`FhirClient::send_decoded`] instead.
    pub async fn search_post<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let prefix = format!("{}/", check_type(resource_type)?);
        self.search_at(&prefix, params, SearchMethod::Post).await
    }

    /// `GET [base]?params` (SC-8.16): a search across all types (usually with `_type`).
    pub async fn search_system<T: DeserializeOwned>(
        &self,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        self.search_at("", params, SearchMethod::Get).await
    }

    /// `GET [base]/[compartment]/[id]/[type]?params`, or `…/[id]/*?params` for every type
    /// (SC-8.16), e.g. the Observations in `Patient/123`'s compartment.
    pub async fn search_compartment<T: DeserializeOwned>(
        &self,
        compartment: &str,
        compartment_id: &str,
        resource_type: Option<&str>,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let target = match resource_type {
            Some(t) => check_type(t)?,
            None => "*",
        };
        let prefix = format!(
            "{}/{}/{target}/",
            check_type(compartment)?,
            check_id("compartment id", compartment_id)?
        );
        self.search_at(&prefix, params, SearchMethod::Get).await
    }

    // ----- create, update, patch, delete ----------------------------------------------------

    /// `POST [base]/[type]` (SC-8.13): `201 Created` with `Location` and `ETag`. The body is
    /// `None` when the server returns none (`Prefer: return=minimal`).
    ///
    /// With `if_none_exist` (a search query such as `identifier=http://hospital|MRN-1`, sent as
    /// `If-None-Exist`) this is a conditional create (SC-8.14): no match → `201`, one match →
    /// `200` and nothing created, several → `412`. A conditional create is safe to retry and is
    /// retried on `5xx` and transport errors; a plain create never is, as a retry could create
    /// the resource twice.
    pub async fn create<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        resource: &(impl Serialize + ?Sized),
        if_none_exist: Option<&str>,
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let t = check_type(resource_type)?;
        let body = json_body(resource)?;
        check_body_matches(&body, t, None)?;
        let url = self.url(t)?;
        let mut request = self.write_request(Method::POST, &url, body, None)?;
        if let Some(query) = if_none_exist {
            set_header(
                &mut request,
                IF_NONE_EXIST,
                query.trim_start_matches('?'),
                "If-None-Exist",
            )?;
        }
        let options = RequestOptions::default().idempotent(if_none_exist.is_some());
        self.send_decoded(request, &options).await
    }

    /// `PUT [base]/[type]/[id]` (SC-8.6): `200` updated or `201` created. The body's id, if any,
    /// must be `id`. With `if_match` (a version id `3` or an ETag `W/"3"`) the update is
    /// version-aware (SC-8.7): the server answers `412` (or `409`) when the resource changed
    /// since; re-read it and try again.
    pub async fn update<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        id: &str,
        resource: &(impl Serialize + ?Sized),
        if_match: Option<&str>,
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let t = check_type(resource_type)?;
        let id = check_id("resource id", id)?;
        let body = json_body(resource)?;
        check_body_matches(&body, t, Some(id))?;
        let url = self.url(&format!("{t}/{id}"))?;
        let mut request = self.write_request(Method::PUT, &url, body, None)?;
        if let Some(v) = if_match {
            request.headers_mut().insert(IF_MATCH, etag_header(v)?);
        }
        self.send_decoded(request, &RequestOptions::default()).await
    }

    /// `PUT [base]/[type]?params` (SC-8.8): no match → `201`, one → `200`, several → `412`.
    /// `params` must not be empty.
    pub async fn conditional_update<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
        resource: &(impl Serialize + ?Sized),
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let t = check_type(resource_type)?;
        let url = self.conditional_url(t, params, "update")?;
        let body = json_body(resource)?;
        check_body_matches(&body, t, None)?;
        let request = self.write_request(Method::PUT, &url, body, None)?;
        self.send_decoded(request, &RequestOptions::default()).await
    }

    fn conditional_url(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
        what: &str,
    ) -> Result<Url, FhirError> {
        if params.is_empty_params() {
            return Err(FhirError::InvalidRequest(format!(
                "a conditional {what} needs search parameters"
            )));
        }
        Ok(with_query(self.url(resource_type)?, params))
    }

    async fn patch_at<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: Bytes,
        content_type: Option<&'static str>,
        if_match: Option<&str>,
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let mut request = self.write_request(Method::PATCH, url, body, content_type)?;
        if let Some(v) = if_match {
            request.headers_mut().insert(IF_MATCH, etag_header(v)?);
        }
        // A patch guarded by If-Match cannot apply twice (the second attempt meets a new
        // version and fails with 412), so it may be retried; an unguarded one may not.
        let options = RequestOptions::default().idempotent(if_match.is_some());
        self.send_decoded(request, &options).await
    }

    /// `PATCH [base]/[type]/[id]` with a JSON Patch document (`application/json-patch+json`,
    /// SC-8.9), e.g. `[{"op": "replace", "path": "/active", "value": false}]`. A failed `test`
    /// operation is a `422`. Send `if_match` to patch only the version you read; such a patch is
    /// retried on transient failures, an unguarded one is not.
    pub async fn patch_json<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        id: &str,
        patch: &(impl Serialize + ?Sized),
        if_match: Option<&str>,
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let url = self.url(&format!(
            "{}/{}",
            check_type(resource_type)?,
            check_id("resource id", id)?
        ))?;
        self.patch_at(
            &url,
            json_body(patch)?,
            Some(JSON_PATCH_MEDIA_TYPE),
            if_match,
        )
        .await
    }

    /// `PATCH [base]/[type]/[id]` with a FHIRPath Patch `Parameters` resource (sent as the FHIR
    /// media type, SC-8.9).
    pub async fn patch_fhirpath<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        id: &str,
        parameters: &(impl Serialize + ?Sized),
        if_match: Option<&str>,
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let url = self.url(&format!(
            "{}/{}",
            check_type(resource_type)?,
            check_id("resource id", id)?
        ))?;
        let body = json_body(parameters)?;
        check_body_matches(&body, "Parameters", None)?;
        self.patch_at(&url, body, None, if_match).await
    }

    /// `PATCH [base]/[type]?params` with a JSON Patch document (SC-8.10): applies to the one
    /// match; several matches → `412`. `params` must not be empty.
    pub async fn conditional_patch_json<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
        patch: &(impl Serialize + ?Sized),
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let url = self.conditional_url(check_type(resource_type)?, params, "patch")?;
        self.patch_at(&url, json_body(patch)?, Some(JSON_PATCH_MEDIA_TYPE), None)
            .await
    }

    /// `PATCH [base]/[type]?params` with a FHIRPath Patch `Parameters` resource (SC-8.10).
    pub async fn conditional_patch_fhirpath<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
        parameters: &(impl Serialize + ?Sized),
    ) -> Result<FhirResponse<Option<T>>, FhirError> {
        let url = self.conditional_url(check_type(resource_type)?, params, "patch")?;
        let body = json_body(parameters)?;
        check_body_matches(&body, "Parameters", None)?;
        self.patch_at(&url, body, None, None).await
    }

    /// `DELETE [base]/[type]/[id]` (SC-8.11): `200`, `202` or `204`; the body is the server's
    /// `OperationOutcome` when it sends one. A `405` (not allowed) or `409` (referential
    /// integrity) is a [`FhirError::Status`]. Deleting is idempotent and retried like a GET.
    pub async fn delete(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<FhirResponse<Option<OperationOutcome>>, FhirError> {
        let url = self.url(&format!(
            "{}/{}",
            check_type(resource_type)?,
            check_id("resource id", id)?
        ))?;
        self.delete_at(&url).await
    }

    /// `DELETE [base]/[type]?params` (SC-8.12): deletes the match (or, on servers that allow
    /// it, every match; others answer `412` to several). `params` must not be empty.
    pub async fn conditional_delete(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<Option<OperationOutcome>>, FhirError> {
        let url = self.conditional_url(check_type(resource_type)?, params, "delete")?;
        self.delete_at(&url).await
    }

    async fn delete_at(
        &self,
        url: &Url,
    ) -> Result<FhirResponse<Option<OperationOutcome>>, FhirError> {
        let request = self.request(Method::DELETE, url, None)?;
        let response = self
            .send_checked(request, &RequestOptions::default())
            .await?;
        let (parts, body) = response.into_parts();
        Ok(FhirResponse::new(
            parts.status,
            parts.headers,
            OperationOutcome::from_body(&body),
        ))
    }

    // ----- history -----------------------------------------------------------------------------

    pub(crate) fn history_request(
        &self,
        level: Level<'_>,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<http::Request<Bytes>, FhirError> {
        self.get_request(&format!("{}_history", level.prefix()?), params)
    }

    /// `GET [base]/[type]/[id]/_history?params` (SC-8.19): a `history` Bundle, newest first.
    /// Parameters: `_count`, `_since`, `_at` (see [`SearchParams::since`]). Deletions are entries
    /// with `request.method = DELETE` and no resource.
    pub async fn history_instance<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        id: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let request = self.history_request(Level::Instance(resource_type, id), params)?;
        self.fetch(request, &RequestOptions::default()).await
    }

    /// `GET [base]/[type]/_history?params` (SC-8.19).
    pub async fn history_type<T: DeserializeOwned>(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let request = self.history_request(Level::Type(resource_type), params)?;
        self.fetch(request, &RequestOptions::default()).await
    }

    /// `GET [base]/_history?params` (SC-8.19).
    pub async fn history_system<T: DeserializeOwned>(
        &self,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let request = self.history_request(Level::System, params)?;
        self.fetch(request, &RequestOptions::default()).await
    }

    // ----- batch and transaction -------------------------------------------------------------

    async fn post_bundle<T: DeserializeOwned>(
        &self,
        bundle: &(impl Serialize + ?Sized),
        kind: &str,
    ) -> Result<FhirResponse<T>, FhirError> {
        let body = json_body(bundle)?;
        check_bundle(&body, kind)?;
        let url = self.url_at("")?;
        let request = self.write_request(Method::POST, &url, body, None)?;
        self.fetch(request, &RequestOptions::default()).await
    }

    /// `POST [base]` with a `batch` Bundle (SC-8.21): the answer is a `batch-response` Bundle
    /// with one entry per request entry, in order, each with its own `response.status`; the
    /// HTTP status is `200` even when entries failed. Not retried (entries may create).
    pub async fn batch<T: DeserializeOwned>(
        &self,
        bundle: &(impl Serialize + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        self.post_bundle(bundle, "batch").await
    }

    /// `POST [base]` with a `transaction` Bundle (SC-8.21): all entries succeed together
    /// (a `transaction-response` Bundle), or none does and the error is a
    /// [`FhirError::Status`] with the server's `OperationOutcome`. `urn:uuid:` references
    /// between entries are resolved by the server. Not retried.
    pub async fn transaction<T: DeserializeOwned>(
        &self,
        bundle: &(impl Serialize + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        self.post_bundle(bundle, "transaction").await
    }

    // ----- operations --------------------------------------------------------------------------

    pub(crate) fn operation_request(
        &self,
        level: Level<'_>,
        name: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<http::Request<Bytes>, FhirError> {
        let path = format!("{}{}", level.prefix()?, operation_segment(name)?);
        self.get_request(&path, params)
    }

    /// `GET [base][/type[/id]]/$name?params`: a named operation that changes nothing, e.g.
    /// `Patient/123/$everything`. `name` may be given with or without the `$`. Retried like
    /// any GET. Page through a Bundle result with [`FhirClient::operation_pages`].
    pub async fn operation_get<T: DeserializeOwned>(
        &self,
        level: Level<'_>,
        name: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let request = self.operation_request(level, name, params)?;
        self.fetch(request, &RequestOptions::default()).await
    }

    /// `POST [base][/type[/id]]/$name` with `input` (usually a `Parameters` resource, or the
    /// resource itself for `$validate`) as the body, e.g. `Patient/$validate`. Not retried,
    /// since an operation may change data; use [`FhirClient::send_decoded`] with
    /// [`RequestOptions::idempotent`] for one known to be safe.
    pub async fn operation_post<T: DeserializeOwned>(
        &self,
        level: Level<'_>,
        name: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Result<FhirResponse<T>, FhirError> {
        let path = format!("{}{}", level.prefix()?, operation_segment(name)?);
        let url = self.url(&path)?;
        let request = self.request(Method::POST, &url, Some(json_body(input)?))?;
        self.fetch(request, &RequestOptions::default()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SC-8.4, SC-8.5: the URI built without a URL parse is the one `url()` gives.
    #[test]
    fn sc_8_4_path_uri_matches_the_joined_url() {
        use smart_fhir_core::{FhirBaseUrl, InsecureHttp};
        for base in [
            "https://ehr.example/fhir",
            "https://EHR.example:8443/api/FHIR/R4/",
            "https://ehr.example",
            "http://[::1]:9/r%20x",
        ] {
            let base = FhirBaseUrl::parse_with(base, InsecureHttp::AllowLoopback).unwrap();
            let client = FhirClient::builder(base).build().unwrap();
            for segments in [
                &["Patient", "1"][..],
                &["Patient", "a-b.C"],
                &["Patient", "."],
                &["Patient", ".."],
                &["Observation", "x", "_history", "2"],
            ] {
                let fast = client.path_get_request(segments).unwrap();
                let slow = client
                    .request(Method::GET, &client.url(&segments.join("/")).unwrap(), None)
                    .unwrap();
                assert_eq!(fast.uri(), slow.uri(), "{segments:?}");
                assert_eq!(fast.headers(), slow.headers());
                assert_eq!(fast.method(), Method::GET);
            }
        }
    }

    #[test]
    fn resource_type_names() {
        for ok in ["Patient", "Observation", "A", "MedicationRequest"] {
            assert!(is_valid_resource_type(ok), "{ok}");
        }
        for bad in [
            "",
            "patient",
            "Patient/1",
            "Pat ient",
            "Pätient",
            "Patient1",
            "../x",
            "$everything",
        ] {
            assert!(!is_valid_resource_type(bad), "{bad}");
        }
        assert!(!is_valid_resource_type(&"A".repeat(65)));
    }

    #[test]
    fn ids() {
        for ok in [
            "1",
            "abc-DEF.9",
            &"a".repeat(64),
            "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
        ] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "a_b",
            "a?x=1",
            "ü",
            &"a".repeat(65),
            "a%2F",
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn id_errors_do_not_echo_the_id() {
        let e = check_id("resource id", "MRN 12345")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("12345"), "{e}");
    }

    #[test]
    fn operation_names() {
        assert_eq!(operation_segment("everything").unwrap(), "$everything");
        assert_eq!(operation_segment("$validate").unwrap(), "$validate");
        assert_eq!(operation_segment("$member-match").unwrap(), "$member-match");
        for bad in ["", "$", "$a/b", "$1x", "a?b", "$$x"] {
            assert!(operation_segment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn levels() {
        assert_eq!(Level::System.prefix().unwrap(), "");
        assert_eq!(Level::Type("Patient").prefix().unwrap(), "Patient/");
        assert_eq!(
            Level::Instance("Patient", "1").prefix().unwrap(),
            "Patient/1/"
        );
        assert!(Level::Instance("Patient", "1/../2").prefix().is_err());
    }

    /// SC-8.1, SC-8.16: parameters are form-encoded, in order, with repeated names kept.
    #[test]
    fn sc_8_16_query_encoding() {
        let url = Url::parse("https://x/fhir/Patient").unwrap();
        let url = with_query(
            url,
            &[
                ("name", "Zoë Smith"),
                ("date", "ge2020"),
                ("date", "lt2021"),
                ("identifier", "a|b&c"),
            ],
        );
        assert_eq!(
            url.as_str(),
            "https://x/fhir/Patient?name=Zo%C3%AB+Smith&date=ge2020&date=lt2021&identifier=a%7Cb%26c"
        );
        let url = with_query(Url::parse("https://x/fhir/Patient").unwrap(), &[]);
        assert_eq!(url.as_str(), "https://x/fhir/Patient");
        assert_eq!(
            &form_body(&SearchParams::new().add("a b", "c=d").count(2))[..],
            b"a+b=c%3Dd&_count=2"
        );
    }

    #[test]
    fn search_params_debug_hides_values() {
        let p = SearchParams::new()
            .add("name", "Smith")
            .add("birthdate", "1970-01-01");
        let d = format!("{p:?}");
        assert!(d.contains("name") && d.contains("birthdate"), "{d}");
        assert!(!d.contains("Smith") && !d.contains("1970"), "{d}");
        let collected: SearchParams = [("a", "1"), ("b", "2")].into_iter().collect();
        assert_eq!(
            collected.iter().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2")]
        );
    }

    #[test]
    fn body_checks() {
        assert!(check_body_matches(
            br#"{"resourceType":"Patient","id":"1"}"#,
            "Patient",
            Some("1")
        )
        .is_ok());
        assert!(check_body_matches(br#"{"resourceType":"Patient"}"#, "Patient", Some("1")).is_ok());
        assert!(check_body_matches(
            br#"{"resourceType":"Patient","id":"2"}"#,
            "Patient",
            Some("1")
        )
        .is_err());
        assert!(check_body_matches(br#"{"resourceType":"Observation"}"#, "Patient", None).is_err());
        assert!(check_body_matches(b"[1,2]", "Patient", None).is_err());
        assert!(check_bundle(br#"{"resourceType":"Bundle","type":"batch"}"#, "batch").is_ok());
        assert!(check_bundle(
            br#"{"resourceType":"Bundle","type":"batch"}"#,
            "transaction"
        )
        .is_err());
        assert!(check_bundle(br#"{"resourceType":"Patient"}"#, "batch").is_err());
    }

    #[test]
    fn if_match_values() {
        assert_eq!(etag_header("3").unwrap(), "W/\"3\"");
        assert_eq!(etag_header("W/\"3\"").unwrap(), "W/\"3\"");
        assert!(etag_header("3\r\nX: y").is_err());
        assert!(etag_header("").is_err());
    }
}
