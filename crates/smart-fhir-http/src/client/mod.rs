//! The FHIR REST client (SC-8): operations, paging, typed errors, token renewal on 401, and
//! retries with `Retry-After`.

mod error;
mod names;
mod ops;
mod paging;
mod response;
mod retry;
mod trace;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use smart_fhir_core::{
    AccessToken, Clock, FhirBaseUrl, HttpClient, HttpError, MaxResponseBytes, RequestTimeout,
    SharedClock, SharedHttpClient, StreamingBody,
};
use smart_fhir_core::{AccessTokenProvider, SharedAccessTokenProvider};
use tracing::Instrument;
use url::Url;

pub use error::{CodeableText, FhirError, OperationOutcome, OutcomeIssue, RequestLine};
pub use ops::{
    is_valid_id, is_valid_resource_type, Level, QueryParams, SearchParams, JSON_PATCH_MEDIA_TYPE,
};
pub use paging::{bundle_entries, BundleEntry, Entries, Pages, Resources};

pub use response::FhirResponse;
pub use retry::{retry_after, RetryPolicy};

use crate::transport::split_plain_authority;
use crate::HyperHttpClient;

/// The default bound on a response body read whole (search pages and resources).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// The FHIR version the client speaks, for `Accept` and `Content-Type` (SC-8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FhirVersion {
    /// `application/fhir+json` with no version parameter (the default: every R4+ server accepts it).
    #[default]
    Unspecified,
    /// DSTU2: `application/json+fhir`.
    Dstu2,
    /// STU3: `application/fhir+json; fhirVersion=3.0`.
    Stu3,
    /// R4: `application/fhir+json; fhirVersion=4.0`.
    R4,
    /// R4B: `application/fhir+json; fhirVersion=4.3`.
    R4B,
    /// R5: `application/fhir+json; fhirVersion=5.0`.
    R5,
}

impl FhirVersion {
    /// The media type for `Accept` and `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Unspecified => "application/fhir+json",
            Self::Dstu2 => "application/json+fhir",
            Self::Stu3 => "application/fhir+json; fhirVersion=3.0",
            Self::R4 => "application/fhir+json; fhirVersion=4.0",
            Self::R4B => "application/fhir+json; fhirVersion=4.3",
            Self::R5 => "application/fhir+json; fhirVersion=5.0",
        }
    }
}

/// Whether a request carries the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMode {
    /// The token, when the client has a provider and the URL has the FHIR base's origin (P6).
    #[default]
    Default,
    /// Never a token (e.g. Bulk files when `requiresAccessToken` is false, SC-7.18).
    Never,
}

/// Per-request settings for [`FhirClient::send`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RequestOptions {
    /// Whether the request may be repeated safely; `None`: by method (GET, HEAD, PUT, DELETE,
    /// OPTIONS are; POST and PATCH are not).
    pub idempotent: Option<bool>,
    /// Whether to send the token.
    pub auth: AuthMode,
    /// A body bound other than the client's.
    pub max_response_bytes: Option<usize>,
    /// A timeout other than the transport's.
    pub timeout: Option<Duration>,
    /// A retry policy other than the client's.
    pub retry: Option<RetryPolicy>,
}

impl RequestOptions {
    /// Marks the request as safe to repeat (e.g. a conditional create or a `_search` POST).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Sets whether the token is sent.
    pub fn auth(mut self, mode: AuthMode) -> Self {
        self.auth = mode;
        self
    }

    /// Sets the body bound.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = Some(bytes);
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
}

/// Builder for [`FhirClient`].
#[derive(Debug)]
#[must_use]
pub struct FhirClientBuilder {
    base: FhirBaseUrl,
    http: Option<SharedHttpClient>,
    auth: Option<SharedAccessTokenProvider>,
    version: FhirVersion,
    prefer: Option<String>,
    retry: RetryPolicy,
    retry_on_403: bool,
    timeout: Option<Duration>,
    max_response_bytes: usize,
    clock: SharedClock,
}

impl FhirClientBuilder {
    /// The transport: any [`HttpClient`], or a [`SharedHttpClient`] already shared with other
    /// clients (default: the token source's, else a [`HyperHttpClient`] with the base URL's
    /// insecure-HTTP policy).
    pub fn http_client(mut self, http: impl HttpClient + 'static) -> Self {
        self.http = Some(SharedHttpClient::new(http));
        self
    }

    /// Where access tokens come from (none: an open server). A source that names its server
    /// (every token source of this library does) must name this client's: [`build`] refuses
    /// another, since where credentials go is a security property (P6).
    ///
    /// [`build`]: FhirClientBuilder::build
    pub fn auth(mut self, provider: impl AccessTokenProvider + 'static) -> Self {
        self.auth = Some(SharedAccessTokenProvider::new(provider));
        self
    }

    /// The FHIR version for `Accept` and `Content-Type` (SC-8.2).
    pub fn fhir_version(mut self, version: FhirVersion) -> Self {
        self.version = version;
        self
    }

    /// A default `Prefer` header for writes, e.g. `return=representation` (SC-8.22).
    pub fn prefer(mut self, prefer: impl Into<String>) -> Self {
        self.prefer = Some(prefer.into());
        self
    }

    /// The retry policy (default: 3 retries from 250 ms, waits up to 60 s).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whether a 403 also drops and renews the token once, as a 401 does (default true: some
    /// servers answer 403 to an expired token). A 403 whose `WWW-Authenticate` says
    /// `insufficient_scope` never does (SC-8.26).
    pub fn renew_on_403(mut self, yes: bool) -> Self {
        self.retry_on_403 = yes;
        self
    }

    /// A timeout for each request (default: the transport's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The largest response body read whole (default 16 MiB).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The clock, for `Retry-After` dates (default: the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = SharedClock::new(clock);
        self
    }

    /// Builds the client.
    ///
    /// Fails when the token source is bound to another FHIR server than this client's.
    pub fn build(self) -> Result<FhirClient, FhirError> {
        if let Some(bound) = self.auth.as_ref().and_then(|a| a.fhir_base()) {
            if bound != &self.base {
                return Err(FhirError::Config(format!(
                    "the token source is for {bound}, not for this client's server {}",
                    self.base
                )));
            }
        }
        let from_source = self.auth.as_ref().and_then(|a| a.http_client()).cloned();
        let http = match self.http.or(from_source) {
            Some(h) => h,
            None => SharedHttpClient::new(
                HyperHttpClient::builder()
                    .insecure_http(self.base.insecure_http())
                    .build()
                    .map_err(|e| FhirError::Config(e.to_string()))?,
            ),
        };
        let accept = HeaderValue::from_static(self.version.media_type());
        let prefer = match self.prefer {
            Some(p) => Some(
                HeaderValue::from_str(&p)
                    .map_err(|_| FhirError::Config("invalid Prefer header value".to_owned()))?,
            ),
            None => None,
        };
        Ok(FhirClient {
            inner: Arc::new(Inner {
                origin: BaseOrigin::of(&self.base),
                base: self.base,
                http,
                auth: self.auth,
                bearer: BearerCache::default(),
                version: self.version,
                accept,
                prefer,
                retry: self.retry,
                retry_on_403: self.retry_on_403,
                timeout: self.timeout,
                max_response_bytes: self.max_response_bytes,
                clock: self.clock,
            }),
        })
    }
}

/// A FHIR REST client for one server.
///
/// Cheap to clone; clones share the connection pool and the token source.
#[derive(Debug, Clone)]
pub struct FhirClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: FhirBaseUrl,
    /// The base's origin, to check request URIs against without parsing them (P6).
    origin: BaseOrigin,
    http: SharedHttpClient,
    auth: Option<SharedAccessTokenProvider>,
    /// The `Authorization` value for the token the provider returned last.
    bearer: BearerCache,
    version: FhirVersion,
    accept: HeaderValue,
    prefer: Option<HeaderValue>,
    retry: RetryPolicy,
    retry_on_403: bool,
    timeout: Option<Duration>,
    max_response_bytes: usize,
    clock: SharedClock,
}

impl FhirClient {
    /// A builder for a client of the server a token source is for, with its tokens and its
    /// transport (one connection pool for tokens and FHIR requests).
    ///
    /// Fails when the source names no server (a [`StaticTokenProvider`] not bound with
    /// [`StaticTokenProvider::for_fhir_base`]).
    ///
    /// [`StaticTokenProvider`]: smart_fhir_core::StaticTokenProvider
    /// [`StaticTokenProvider::for_fhir_base`]: smart_fhir_core::StaticTokenProvider::for_fhir_base
    pub fn for_token_source(
        provider: impl AccessTokenProvider + 'static,
    ) -> Result<FhirClientBuilder, FhirError> {
        let provider = SharedAccessTokenProvider::new(provider);
        let base = provider
            .fhir_base()
            .cloned()
            .ok_or_else(|| FhirError::Config("the token source names no FHIR server".to_owned()))?;
        let mut builder = Self::builder(base);
        builder.auth = Some(provider);
        Ok(builder)
    }

    /// A builder for a client of the server at `base`.
    pub fn builder(base: FhirBaseUrl) -> FhirClientBuilder {
        FhirClientBuilder {
            base,
            http: None,
            auth: None,
            version: FhirVersion::default(),
            prefer: None,
            retry: RetryPolicy::default(),
            retry_on_403: true,
            timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            clock: SharedClock::default(),
        }
    }

    /// The FHIR base URL.
    pub fn base(&self) -> &FhirBaseUrl {
        &self.inner.base
    }

    /// The FHIR version in use.
    pub fn fhir_version(&self) -> FhirVersion {
        self.inner.version
    }

    /// The clock the client reads `Retry-After` dates with.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// `[base]/relative` as a URL.
    pub fn url(&self, relative: &str) -> Result<Url, FhirError> {
        Ok(self.inner.base.join(relative)?)
    }

    /// A request to `url` with the client's `Accept` header (and `Content-Type` when there is a
    /// body). Add headers to it and pass it to [`FhirClient::send`].
    pub fn request(
        &self,
        method: Method,
        url: &Url,
        body: Option<Bytes>,
    ) -> Result<http::Request<Bytes>, FhirError> {
        let uri = Uri::try_from(url.as_str())
            .map_err(|e| FhirError::InvalidRequest(format!("cannot build the request: {e}")))?;
        Ok(self.request_to(method, uri, body))
    }

    /// As [`FhirClient::request`], to a URI already built.
    pub(crate) fn request_to(
        &self,
        method: Method,
        uri: Uri,
        body: Option<Bytes>,
    ) -> http::Request<Bytes> {
        let has_body = body.is_some();
        let mut request = http::Request::new(body.unwrap_or_default());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(ACCEPT, self.inner.accept.clone());
        if has_body {
            headers.insert(CONTENT_TYPE, self.inner.accept.clone());
        }
        request
    }

    /// The default `Prefer` header, if configured.
    pub(crate) fn default_prefer(&self) -> Option<&HeaderValue> {
        self.inner.prefer.as_ref()
    }

    /// Sends a request as it is, returning any status: the escape hatch under every operation.
    ///
    /// Adds the bearer token when a provider is configured, the URL has the base's origin and
    /// `options.auth` allows it; removes any `Authorization` header the caller set for another
    /// origin (P6). On `401` (and `403` unless disabled or `insufficient_scope`) the token is
    /// reported as rejected, renewed and the request sent once more, never in a loop (SC-8.26).
    /// Idempotent requests are retried after transport errors, `429`, `500`, `502`, `503` and
    /// `504`, waiting `Retry-After` when given, else a jittered exponential backoff.
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
    ) -> Result<http::Response<Bytes>, FhirError> {
        let line = RequestLine::new(request.method(), request.uri());
        self.send_line(request, options, &line).await
    }

    /// As [`FhirClient::send`], with the request line already taken.
    pub(crate) async fn send_line(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
        line: &RequestLine,
    ) -> Result<http::Response<Bytes>, FhirError> {
        let http = &self.inner.http;
        self.send_with(request, options, line, |r, max, timeout| {
            http.execute_bounded(r, max, timeout)
        })
        .await
    }

    /// As [`FhirClient::send`], but the body is read chunk by chunk (large downloads).
    pub async fn send_streaming(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
    ) -> Result<http::Response<StreamingBody>, FhirError> {
        let line = RequestLine::new(request.method(), request.uri());
        let http = &self.inner.http;
        self.send_with(request, options, &line, |mut r, max, timeout| {
            // Streaming is for large downloads: the bounds travel as extensions.
            r.extensions_mut().insert(max);
            if let Some(t) = timeout {
                r.extensions_mut().insert(t);
            }
            http.execute_streaming(r)
        })
        .await
    }

    /// Sends and checks the status: a non-2xx answer (other than `304`) is a
    /// [`FhirError::Status`] with the `OperationOutcome` when the body is one.
    pub async fn send_checked(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
    ) -> Result<http::Response<Bytes>, FhirError> {
        let line = RequestLine::new(request.method(), request.uri());
        self.send_checked_line(request, options, &line).await
    }

    /// As [`FhirClient::send_checked`], with the request line already taken.
    pub(crate) async fn send_checked_line(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
        line: &RequestLine,
    ) -> Result<http::Response<Bytes>, FhirError> {
        let response = self.send_line(request, options, line).await?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            Ok(response)
        } else {
            Err(FhirError::from_response(
                line.clone(),
                status,
                response.body(),
            ))
        }
    }

    /// Decodes a JSON body as `T` (the error says where, never quoting the body).
    pub fn decode<T: DeserializeOwned>(line: &RequestLine, body: &[u8]) -> Result<T, FhirError> {
        serde_json::from_slice(body).map_err(|e| FhirError::Decode {
            request: line.clone(),
            reason: smart_fhir_core::text::describe_json_error(&e),
        })
    }

    async fn send_with<B, F, Fut>(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
        line: &RequestLine,
        exec: F,
    ) -> Result<http::Response<B>, FhirError>
    where
        F: Fn(http::Request<Bytes>, MaxResponseBytes, Option<RequestTimeout>) -> Fut,
        Fut: Future<Output = Result<http::Response<B>, HttpError>>,
    {
        let (mut parts, body) = request.into_parts();
        let same_origin = self.same_origin(&parts.uri, line)?;
        if !same_origin {
            // Never hand credentials to another origin (P6, SC-3.11).
            parts.headers.remove(AUTHORIZATION);
            parts.headers.remove(http::header::PROXY_AUTHORIZATION);
            parts.headers.remove(http::header::COOKIE);
        }
        // The fields are formatted only when a subscriber wants the span: the path template is
        // written from the URI then, never the path itself or the query (P5).
        let span = tracing::debug_span!(
            "fhir_request",
            method = %parts.method,
            origin = %trace::Origin(&parts.uri),
            path = %trace::PathTemplate::new(self.inner.base.url().path(), &parts.uri),
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            elapsed_us = tracing::field::Empty,
        );
        // Without a subscriber the attempts run bare: no clock read, no wrapper to move them into.
        if span.is_disabled() {
            return self
                .attempts(parts, body, options, line, same_origin, exec)
                .await
                .map(|(response, _)| response);
        }
        let started = std::time::Instant::now();
        let result = self
            .attempts(parts, body, options, line, same_origin, exec)
            .instrument(span.clone())
            .await;
        let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.record("elapsed_us", elapsed);
        match &result {
            Ok((response, attempts)) => {
                span.record("status", response.status().as_u16());
                span.record("attempts", attempts);
            }
            // Not the error's `Display`: it names the path, which can hold an id.
            Err(FhirError::Http { source, .. }) => {
                let _in = span.enter();
                tracing::debug!(error = %source, "FHIR request failed");
            }
            Err(FhirError::Auth { source, .. }) => {
                let _in = span.enter();
                tracing::debug!(error = %source.kind(), "FHIR request failed: no access token");
            }
            Err(_) => {
                let _in = span.enter();
                tracing::debug!("FHIR request failed");
            }
        }
        result.map(|(response, _)| response)
    }

    /// Sends the request until it has an answer to return: renewing a rejected token once, and
    /// retrying transient failures of an idempotent request. Returns the answer and the number
    /// of attempts made.
    async fn attempts<B, F, Fut>(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        options: &RequestOptions,
        line: &RequestLine,
        same_origin: bool,
        exec: F,
    ) -> Result<(http::Response<B>, u32), FhirError>
    where
        F: Fn(http::Request<Bytes>, MaxResponseBytes, Option<RequestTimeout>) -> Fut,
        Fut: Future<Output = Result<http::Response<B>, HttpError>>,
    {
        let max_response_bytes = MaxResponseBytes(self.max_response_bytes(options));
        let timeout = self.timeout(options).map(RequestTimeout);
        let provider = match (options.auth, same_origin) {
            (AuthMode::Default, true) => self.inner.auth.as_ref(),
            _ => None,
        };
        let idempotent = options.idempotent.unwrap_or(matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ));
        let policy = options.retry.unwrap_or(self.inner.retry);
        // The request is kept for another attempt only while one can follow; the last possible
        // attempt sends it without a copy.
        let mut kept = Some(parts);
        let mut attempt: u32 = 0;
        let mut renewed = false;
        loop {
            let token = match provider {
                Some(p) => Some(p.access_token().await.map_err(|source| FhirError::Auth {
                    request: line.clone(),
                    source,
                })?),
                None => None,
            };
            let authorization = match &token {
                Some(t) => Some(self.inner.bearer.header_for(t).ok_or_else(|| {
                    FhirError::InvalidRequest(format!(
                        "{line}: the access token is not a valid header value"
                    ))
                })?),
                None => None,
            };
            let may_repeat =
                (provider.is_some() && !renewed) || (idempotent && attempt < policy.max_retries);
            let parts = match (may_repeat, &kept) {
                (true, Some(parts)) => parts.clone(),
                _ => kept.take().ok_or_else(|| {
                    FhirError::InvalidRequest(format!("{line}: no request left to repeat"))
                })?,
            };
            let mut request = http::Request::from_parts(parts, body.clone());
            if let Some(v) = authorization {
                request.headers_mut().insert(AUTHORIZATION, v);
            }
            let response = match exec(request, max_response_bytes, timeout).await {
                Ok(r) => r,
                Err(e) => {
                    if e.is_transient() && idempotent && attempt < policy.max_retries {
                        let wait = policy.backoff(attempt);
                        tracing::debug!(
                            attempt = attempt + 1,
                            error = %e,
                            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                            "retrying after a transport error"
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(FhirError::Http {
                        request: line.clone(),
                        source: Box::new(e),
                    });
                }
            };
            let status = response.status();
            if let (Some(p), Some(t)) = (provider, token.as_ref()) {
                if !renewed && self.should_renew(status, response.headers()) {
                    tracing::debug!(
                        attempt = attempt + 1,
                        status = status.as_u16(),
                        "token rejected; renewing it and sending once more"
                    );
                    p.token_rejected(t).await;
                    renewed = true;
                    continue;
                }
            }
            let retryable = matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504);
            if retryable && idempotent && attempt < policy.max_retries {
                let wait = retry_after(response.headers(), self.inner.clock.now())
                    .unwrap_or_else(|| policy.backoff(attempt));
                if wait <= policy.max_delay {
                    tracing::debug!(
                        attempt = attempt + 1,
                        status = status.as_u16(),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "retrying after a transient status"
                    );
                    drop(response);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            let attempts = attempt + 1 + u32::from(renewed);
            return Ok((response, attempts));
        }
    }

    /// The body bound for a request.
    fn max_response_bytes(&self, options: &RequestOptions) -> usize {
        options
            .max_response_bytes
            .unwrap_or(self.inner.max_response_bytes)
    }

    /// The timeout for a request, if other than the transport's.
    fn timeout(&self, options: &RequestOptions) -> Option<Duration> {
        options.timeout.or(self.inner.timeout)
    }

    /// Whether `uri` has the base's origin. A URI written as the base writes its origin is
    /// answered without parsing; any other is parsed as a URL and compared as before (an
    /// unusual spelling of the same origin, a relative URI: an error).
    fn same_origin(&self, uri: &Uri, line: &RequestLine) -> Result<bool, FhirError> {
        if self.inner.origin.matches(uri) {
            return Ok(true);
        }
        let url = Url::parse(&uri.to_string())
            .map_err(|e| FhirError::InvalidRequest(format!("{line}: not an absolute URL: {e}")))?;
        Ok(self.inner.base.same_origin(&url))
    }

    fn should_renew(&self, status: StatusCode, headers: &http::HeaderMap) -> bool {
        match status {
            StatusCode::UNAUTHORIZED => true,
            StatusCode::FORBIDDEN if self.inner.retry_on_403 => !headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .any(|v| v.to_str().is_ok_and(|s| s.contains("insufficient_scope"))),
            _ => false,
        }
    }
}

/// The scheme, host and port of the FHIR base as its URL serializes them, for
/// [`BaseOrigin::matches`].
#[derive(Debug, Clone)]
struct BaseOrigin {
    scheme: String,
    /// The host as serialized (IPv6 in brackets), lower case.
    host: String,
    /// The port, explicit or the scheme's default.
    port: Option<u16>,
}

impl BaseOrigin {
    fn of(base: &FhirBaseUrl) -> Self {
        let url = base.url();
        Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port_or_known_default(),
        }
    }

    /// Whether `uri` certainly has this origin: the same scheme, the same host (ASCII case
    /// aside) and the same port (given in digits, or the scheme's default), and nothing else in
    /// its authority. `false` means "not certain" (the caller then compares parsed URLs).
    fn matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        let Some((host, port)) = split_plain_authority(authority.as_str()) else {
            return false;
        };
        !self.host.is_empty()
            && scheme.eq_ignore_ascii_case(&self.scheme)
            && host.eq_ignore_ascii_case(&self.host)
            && port
                .or_else(|| default_port(scheme))
                .is_some_and(|p| Some(p) == self.port)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

/// The `Authorization: Bearer …` value (marked sensitive) of the token the provider returned
/// last, so that a cached token is not formatted and validated again on every request.
#[derive(Default)]
struct BearerCache(Mutex<Option<(AccessToken, HeaderValue)>>);

impl std::fmt::Debug for BearerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerCache([redacted])")
    }
}

impl BearerCache {
    const PREFIX: &'static [u8] = b"Bearer ";

    /// The header value for `token`: the cached one when it was built from the same token, else a
    /// new one (which replaces it). `None` when the token cannot be a header value.
    fn header_for(&self, token: &AccessToken) -> Option<HeaderValue> {
        let secret = token.secret().as_bytes();
        {
            let cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((cached_token, value)) = cached.as_ref() {
                // A clone of the same token (the usual case: a cached token handed out again)
                // is recognised without reading the secret.
                if cached_token.is_same_value(token)
                    || value
                        .as_bytes()
                        .strip_prefix(Self::PREFIX)
                        .is_some_and(|t| same_bytes(t, secret))
                {
                    return Some(value.clone());
                }
            }
        }
        let mut bytes = Vec::with_capacity(Self::PREFIX.len() + secret.len());
        bytes.extend_from_slice(Self::PREFIX);
        bytes.extend_from_slice(secret);
        let mut value = HeaderValue::from_maybe_shared(Bytes::from(bytes)).ok()?;
        value.set_sensitive(true);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((token.clone(), value.clone()));
        Some(value)
    }
}

/// Whether `a` and `b` are equal, reading every byte (no exit at the first difference): the
/// token from the provider is compared with the cached one this way, not with `==`.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use smart_fhir_core::InsecureHttp;

    use super::*;

    fn base(s: &str) -> FhirBaseUrl {
        FhirBaseUrl::parse_with(s, InsecureHttp::AllowLoopback).unwrap()
    }

    /// P6: the check without parsing never says "same origin" where the URL comparison would not.
    #[test]
    fn p6_origin_fast_path_agrees_with_url_origin() {
        let bases = [
            "https://ehr.example/fhir",
            "https://ehr.example:8443/fhir",
            "http://127.0.0.1:8080/fhir",
            "http://[::1]:9/r4",
            "https://EHR.Example",
        ];
        let uris = [
            "https://ehr.example/fhir/Patient/1",
            "https://EHR.EXAMPLE/fhir/Patient/1",
            "https://ehr.example:443/fhir",
            "https://ehr.example:8443/fhir",
            "https://ehr.example:08443/x",
            "https://ehr.example:99999/x",
            "https://u@ehr.example/fhir",
            "https://ehr.example.evil/fhir",
            "https://ehr.exampl/fhir",
            "http://ehr.example/fhir",
            "http://127.0.0.1:8080/fhir/Patient/1",
            "http://127.0.0.1/fhir",
            "http://[::1]:9/r4/Patient/1",
            "http://[::1]/r4",
        ];
        for b in bases {
            let base = base(b);
            let origin = BaseOrigin::of(&base);
            for u in uris {
                let uri: Uri = u.parse().unwrap();
                let by_url = Url::parse(u).is_ok_and(|url| base.same_origin(&url));
                if origin.matches(&uri) {
                    assert!(by_url, "{b} vs {u}");
                }
            }
        }
        let origin = BaseOrigin::of(&base("https://ehr.example:8443/fhir"));
        assert!(origin.matches(&"https://EHR.example:8443/fhir/Patient/1".parse().unwrap()));
        assert!(!origin.matches(&"https://ehr.example/fhir".parse().unwrap()));
        assert!(!origin.matches(&"https://u@ehr.example:8443/fhir".parse().unwrap()));
        assert!(!origin.matches(&"/fhir/Patient/1".parse().unwrap()));
    }

    /// SC-8.26: a renewed token gives a new header value; the same token reuses the cached one.
    #[test]
    fn sc_8_26_bearer_cache_follows_the_token() {
        let cache = BearerCache::default();
        let a = cache.header_for(&AccessToken::new("token-a")).unwrap();
        assert_eq!(a, "Bearer token-a");
        assert!(a.is_sensitive());
        assert_eq!(
            cache.header_for(&AccessToken::new("token-a")).unwrap(),
            "Bearer token-a"
        );
        let b = cache.header_for(&AccessToken::new("token-b")).unwrap();
        assert_eq!(b, "Bearer token-b");
        assert!(b.is_sensitive());
        assert_eq!(
            cache.header_for(&AccessToken::new("token-")).unwrap(),
            "Bearer token-"
        );
        assert!(cache.header_for(&AccessToken::new("bad\ntoken")).is_none());
        assert!(!format!("{cache:?}").contains("token"));
    }

    /// P5: a decoding error quotes no value of the body: not one with an escaped quote, not an
    /// unknown enum value in backticks (with backticks of its own); a missing field is named.
    #[test]
    fn p5_decode_errors_quote_no_body_value() {
        #[derive(Debug, serde::Deserialize)]
        enum Gender {
            Male,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Resource {
            #[serde(rename = "id")]
            _id: String,
            #[serde(rename = "gender")]
            _gender: Option<Gender>,
            #[serde(rename = "count")]
            _count: Option<u32>,
        }
        let line = RequestLine::new(&Method::GET, &"https://x/fhir/Patient/1".parse().unwrap());
        for body in [
            r#"{"id":"1","count":"Jane \" SECRET-1 Doe"}"#,
            r#"{"id":"1","gender":"SECRET-2"}"#,
            r#"{"id":"1","gender":"SE`CRET-3`, expected `x"}"#,
            r#"{"id":"1","count":"a\\\" SECRET-4 \""}"#,
        ] {
            let e = FhirClient::decode::<Resource>(&line, body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("unexpected content"), "{e}");
            assert!(!e.contains("SECRET") && !e.contains("CRET"), "{body}: {e}");
        }
        let e = FhirClient::decode::<Resource>(&line, b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `id`"), "{e}");
        let _ = Gender::Male;
    }

    #[test]
    fn same_bytes_compares_whole_slices() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
        assert!(same_bytes(b"", b""));
    }
}
