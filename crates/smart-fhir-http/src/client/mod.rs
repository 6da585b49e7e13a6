//! The FHIR REST client (SC-8): operations, paging, typed errors, token renewal on 401, and
//! retries with `Retry-After`.

mod error;
mod launch;
mod ops;
mod paging;
mod response;
mod retry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use smart_fhir_core::{
    AccessToken, Clock, FhirBaseUrl, HttpClient, HttpError, MaxResponseBytes, RequestTimeout,
    SharedClock, SharedHttpClient, StreamingBody,
};
use smart_fhir_store::{AccessTokenProvider, SharedAccessTokenProvider};
use url::Url;

pub use error::{CodeableText, FhirError, OperationOutcome, OutcomeIssue, RequestLine};
pub use ops::{
    is_valid_id, is_valid_resource_type, Level, QueryParams, SearchParams, JSON_PATCH_MEDIA_TYPE,
};
pub use paging::{bundle_entries, BundleEntry, Entries, Pages, Resources};

pub use response::FhirResponse;
pub use retry::{retry_after, RetryPolicy};

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
    /// The transport (default: a [`HyperHttpClient`] with the base URL's insecure-HTTP policy).
    pub fn http_client(mut self, http: impl HttpClient + 'static) -> Self {
        self.http = Some(SharedHttpClient::new(http));
        self
    }

    /// The transport, already shared.
    pub fn shared_http_client(mut self, http: SharedHttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// Where access tokens come from (none: an open server).
    pub fn auth(mut self, provider: impl AccessTokenProvider + 'static) -> Self {
        self.auth = Some(SharedAccessTokenProvider::new(provider));
        self
    }

    /// Where access tokens come from, already shared.
    pub fn shared_auth(mut self, provider: SharedAccessTokenProvider) -> Self {
        self.auth = Some(provider);
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
    pub fn build(self) -> Result<FhirClient, FhirError> {
        let http = match self.http {
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
                base: self.base,
                http,
                auth: self.auth,
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
    http: SharedHttpClient,
    auth: Option<SharedAccessTokenProvider>,
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
        let mut b = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(ACCEPT, self.inner.accept.clone());
        if body.is_some() {
            b = b.header(CONTENT_TYPE, self.inner.accept.clone());
        }
        b.body(body.unwrap_or_default())
            .map_err(|e| FhirError::InvalidRequest(format!("cannot build the request: {e}")))
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
        let http = &self.inner.http;
        self.send_with(request, options, |r| http.execute(r)).await
    }

    /// As [`FhirClient::send`], but the body is read chunk by chunk (large downloads).
    pub async fn send_streaming(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
    ) -> Result<http::Response<StreamingBody>, FhirError> {
        let http = &self.inner.http;
        self.send_with(request, options, |r| http.execute_streaming(r))
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
        let response = self.send(request, options).await?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            Ok(response)
        } else {
            Err(FhirError::from_response(line, status, response.body()))
        }
    }

    /// Decodes a JSON body as `T` (the error says where, never quoting the body).
    pub fn decode<T: DeserializeOwned>(line: &RequestLine, body: &[u8]) -> Result<T, FhirError> {
        serde_json::from_slice(body).map_err(|e| FhirError::Decode {
            request: line.clone(),
            reason: describe_json_error(&e),
        })
    }

    async fn send_with<B, F, Fut>(
        &self,
        request: http::Request<Bytes>,
        options: &RequestOptions,
        exec: F,
    ) -> Result<http::Response<B>, FhirError>
    where
        F: Fn(http::Request<Bytes>) -> Fut,
        Fut: Future<Output = Result<http::Response<B>, HttpError>>,
    {
        let line = RequestLine::new(request.method(), request.uri());
        let (mut parts, body) = request.into_parts();
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|e| FhirError::InvalidRequest(format!("{line}: not an absolute URL: {e}")))?;
        let same_origin = self.inner.base.same_origin(&url);
        if !same_origin {
            // Never hand credentials to another origin (P6, SC-3.11).
            parts.headers.remove(AUTHORIZATION);
        }
        parts.extensions.insert(MaxResponseBytes(
            options
                .max_response_bytes
                .unwrap_or(self.inner.max_response_bytes),
        ));
        if let Some(t) = options.timeout.or(self.inner.timeout) {
            parts.extensions.insert(RequestTimeout(t));
        }
        let provider = match (options.auth, same_origin) {
            (AuthMode::Default, true) => self.inner.auth.as_ref(),
            _ => None,
        };
        let idempotent = options.idempotent.unwrap_or(matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ));
        let policy = options.retry.unwrap_or(self.inner.retry);
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
            let request = build(&parts, body.clone(), token.as_ref(), &line)?;
            let response = match exec(request).await {
                Ok(r) => r,
                Err(e) => {
                    if e.is_transient() && idempotent && attempt < policy.max_retries {
                        tokio::time::sleep(policy.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(FhirError::Http {
                        request: line,
                        source: Box::new(e),
                    });
                }
            };
            let status = response.status();
            if let (Some(p), Some(t)) = (provider, token.as_ref()) {
                if !renewed && self.should_renew(status, response.headers()) {
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
                    drop(response);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            return Ok(response);
        }
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

fn build(
    parts: &http::request::Parts,
    body: Bytes,
    token: Option<&AccessToken>,
    line: &RequestLine,
) -> Result<http::Request<Bytes>, FhirError> {
    let mut b = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version);
    if let Some(h) = b.headers_mut() {
        *h = parts.headers.clone();
        if let Some(t) = token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.secret())).map_err(|_| {
                FhirError::InvalidRequest(format!(
                    "{line}: the access token is not a valid header value"
                ))
            })?;
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
    }
    let mut request = b
        .body(body)
        .map_err(|e| FhirError::InvalidRequest(format!("{line}: {e}")))?;
    *request.extensions_mut() = parts.extensions.clone();
    Ok(request)
}

/// A serde error described without quoting the input (a FHIR body can carry patient data).
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "the JSON is truncated".to_owned(),
        Category::Syntax => "the body is not valid JSON".to_owned(),
        Category::Io => "the body could not be read".to_owned(),
        Category::Data => {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or("");
            format!("unexpected content: {}", strip_quoted(msg))
        }
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Replaces every `"…"` or `` `…` `` quoted run except field names in backticks with `…`.
fn strip_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for c in msg.chars() {
        if c == '"' {
            if !in_quote {
                out.push_str("\"…\"");
            }
            in_quote = !in_quote;
        } else if !in_quote {
            out.push(c);
        }
    }
    out
}
