//! [`HyperHttpClient`]: one exchange, from the checked request to the bounded response.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{
    Entry, HeaderName, HeaderValue, AUTHORIZATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use smart_fhir_core::{
    HttpClient, HttpError, HttpErrorKind, InsecureHttp, MaxResponseBytes, RequestTimeout,
    StreamingBody,
};

use super::body::{check_declared_length, read_body, BodyStream};
use super::classify::{client_error, timeout_error};
use super::tls::Roots;
use super::uri::{check_uri, origin_of};

/// Request headers whose values are credentials; hyper's HTTP/2 encoder keeps sensitive values
/// out of its compression tables.
const CREDENTIAL_HEADERS: [HeaderName; 2] = [AUTHORIZATION, PROXY_AUTHORIZATION];

type Connector = HttpsConnector<HttpConnector>;

/// What the builder decided, shared by the clones of a client.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) max_response_bytes: usize,
    pub(super) user_agent: HeaderValue,
    pub(super) roots: Roots,
    pub(super) insecure_http: InsecureHttp,
}

/// An [`HttpClient`] on hyper and rustls: pooled connections, HTTP/1.1 and HTTP/2 (by ALPN),
/// TLS 1.2+ with verified certificates, bounded bodies, timeouts, and no redirects followed.
///
/// Cloning is cheap and clones share the connection pool. It must be used inside a Tokio runtime
/// with the time driver enabled.
///
/// * Only `https://` is sent, and `http://` to a loopback host when the builder was given
///   [`InsecureHttp::AllowLoopback`]; any other URI fails with
///   [`HttpErrorKind::InvalidRequest`] before a connection is attempted (P7).
/// * Redirects are returned to the caller as they are (`3xx` with its `Location`).
/// * The request's HTTP version is ignored: HTTP/2 is used when the server offers it by ALPN.
/// * `Authorization` and `Proxy-Authorization` values are marked sensitive before sending.
/// * Error messages name the scheme and host only, never the path, query or a header value (P5).
/// * Dropping a returned future drops the connection attempt or the exchange; no task of this
///   crate outlives it. (hyper's own connection tasks keep pooled connections alive; a request
///   handed to one is dropped with that connection or once written.)
#[derive(Clone)]
pub struct HyperHttpClient {
    client: Client<Connector, Full<Bytes>>,
    settings: Arc<Settings>,
}

impl fmt::Debug for HyperHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("HyperHttpClient")
            .field("connect_timeout", &s.connect_timeout)
            .field("request_timeout", &s.request_timeout)
            .field("max_response_bytes", &s.max_response_bytes)
            .field("user_agent", &s.user_agent)
            .field("roots", &s.roots)
            .field("insecure_http", &s.insecure_http)
            .finish_non_exhaustive()
    }
}

/// What one exchange needs besides the request.
#[derive(Debug)]
struct Exchange {
    /// The request URI (a shared copy), for errors: [`HttpError`] shows its scheme and host
    /// only, never the path or the query.
    uri: Uri,
    timeout: Duration,
    max_response_bytes: Option<usize>,
}

impl Exchange {
    /// Scheme and authority, without user information: what a stream and events keep.
    fn origin(&self) -> Uri {
        origin_of(&self.uri)
    }
}

/// The bounds a request carries as extensions (see [`HttpClient::execute_bounded`] for the
/// way without them).
fn extension_bounds(request: &Request<Bytes>) -> (Option<usize>, Option<Duration>) {
    let extensions = request.extensions();
    (
        extensions.get::<MaxResponseBytes>().map(|m| m.0),
        extensions.get::<RequestTimeout>().map(|t| t.0),
    )
}

impl HyperHttpClient {
    pub(super) fn new(client: Client<Connector, Full<Bytes>>, settings: Settings) -> Self {
        Self {
            client,
            settings: Arc::new(settings),
        }
    }

    #[cfg(test)]
    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends `request` and returns the response head at once, with a body to read chunk by
    /// chunk: for large downloads (Bulk Data NDJSON files) in flat memory.
    ///
    /// The request timeout (the client's, or the request's [`RequestTimeout`]) bounds the wait
    /// for the response head and then each [`BodyStream::next_chunk`] separately: it is an idle
    /// timeout for the body, so a long download that keeps moving never times out. The body has
    /// no size bound unless the request carries a [`MaxResponseBytes`] extension.
    pub async fn execute_streaming(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<BodyStream>, HttpError> {
        let (max_response_bytes, timeout) = extension_bounds(&request);
        let (request, exchange) = self.prepare(request, max_response_bytes, timeout)?;
        let origin = exchange.origin();
        let sent = tokio::time::timeout(exchange.timeout, self.client.request(request)).await;
        let response = match sent {
            Ok(result) => result.map_err(|e| client_error(e, &origin))?,
            Err(_) => return Err(timeout_error(&origin, exchange.timeout)),
        };
        let (parts, body) = response.into_parts();
        if let Some(limit) = exchange.max_response_bytes {
            check_declared_length(&body, limit, &origin)?;
        }
        Ok(Response::from_parts(
            parts,
            BodyStream::new(body, origin, exchange.timeout, exchange.max_response_bytes),
        ))
    }

    /// Checks the URI and turns the caller's request into the one sent, with its bounds (`None`:
    /// the client's).
    fn prepare(
        &self,
        request: Request<Bytes>,
        max_response_bytes: Option<usize>,
        timeout: Option<Duration>,
    ) -> Result<(Request<Full<Bytes>>, Exchange), HttpError> {
        let uri = request.uri();
        check_uri(uri, self.settings.insecure_http)
            .map_err(|msg| HttpError::new(HttpErrorKind::InvalidRequest, uri, msg))?;
        if request.method() == Method::CONNECT {
            return Err(HttpError::new(
                HttpErrorKind::InvalidRequest,
                uri,
                "the CONNECT method is not supported",
            ));
        }
        let uri = uri.clone();
        let (mut parts, body) = request.into_parts();
        // ALPN chooses between HTTP/1.1 and HTTP/2; a request asking for a version the
        // connection does not speak would otherwise fail.
        parts.version = Version::HTTP_11;
        if !parts.headers.contains_key(USER_AGENT) {
            parts
                .headers
                .insert(USER_AGENT, self.settings.user_agent.clone());
        }
        for name in CREDENTIAL_HEADERS {
            if let Entry::Occupied(mut values) = parts.headers.entry(name) {
                for value in values.iter_mut() {
                    value.set_sensitive(true);
                }
            }
        }
        Ok((
            Request::from_parts(parts, Full::new(body)),
            Exchange {
                uri,
                timeout: timeout.unwrap_or(self.settings.request_timeout),
                max_response_bytes,
            },
        ))
    }

    /// The one path every whole-body request of every client takes.
    async fn exchange(
        &self,
        request: Request<Bytes>,
        max_response_bytes: Option<usize>,
        timeout: Option<Duration>,
    ) -> Result<Response<Bytes>, HttpError> {
        let (request, exchange) = self.prepare(request, max_response_bytes, timeout)?;
        // The clock is read and the method kept only for a subscriber that wants the event.
        let traced = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (request.method().clone(), Instant::now()));
        let limit = exchange
            .max_response_bytes
            .unwrap_or(self.settings.max_response_bytes);
        let uri = &exchange.uri;
        let whole = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| client_error(e, uri))?;
            let (parts, body) = response.into_parts();
            let body = read_body(body, limit, uri).await?;
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let result = match tokio::time::timeout(exchange.timeout, whole).await {
            Ok(result) => result,
            Err(_) => Err(timeout_error(uri, exchange.timeout)),
        };
        // Method, origin and status only: never the path, the query, a header or the body.
        if let Some((method, started)) = traced {
            let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            match &result {
                Ok(response) => tracing::debug!(
                    %method,
                    origin = %exchange.origin(),
                    status = response.status().as_u16(),
                    elapsed_us,
                    "HTTP exchange"
                ),
                Err(error) => tracing::debug!(
                    %method,
                    origin = %exchange.origin(),
                    %error,
                    elapsed_us,
                    "HTTP exchange failed"
                ),
            }
        }
        result
    }
}

#[async_trait]
impl HttpClient for HyperHttpClient {
    async fn execute(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (max_response_bytes, timeout) = extension_bounds(&request);
        self.exchange(request, max_response_bytes, timeout).await
    }

    async fn execute_bounded(
        &self,
        request: Request<Bytes>,
        max_response_bytes: MaxResponseBytes,
        timeout: Option<RequestTimeout>,
    ) -> Result<Response<Bytes>, HttpError> {
        self.exchange(request, Some(max_response_bytes.0), timeout.map(|t| t.0))
            .await
    }

    async fn execute_streaming(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<StreamingBody>, HttpError> {
        let response = HyperHttpClient::execute_streaming(self, request).await?;
        Ok(response.map(|body| Box::new(body) as StreamingBody))
    }
}

// The tests build clients with the default features' provider and roots.
#[cfg(all(test, feature = "ring", feature = "webpki-roots"))]
mod tests {
    use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION, USER_AGENT};

    use super::*;

    fn client(insecure: InsecureHttp) -> HyperHttpClient {
        HyperHttpClient::builder()
            .insecure_http(insecure)
            .build()
            .unwrap()
    }

    fn get(uri: &str) -> Request<Bytes> {
        Request::get(uri).body(Bytes::new()).unwrap()
    }

    #[test]
    fn refused_uri_is_invalid_request_without_path_or_credentials_p5() {
        let c = client(InsecureHttp::AllowLoopback);
        for uri in [
            "http://10.255.255.1/Patient?name=Smith",
            "https://user:secret@ehr.example/Patient?name=Smith",
            "ftp://127.0.0.1/Patient?name=Smith",
        ] {
            let e = c.prepare(get(uri), None, None).unwrap_err();
            assert_eq!(e.kind(), HttpErrorKind::InvalidRequest, "{uri}");
            let text = e.to_string();
            assert!(
                !text.contains("Smith") && !text.contains("Patient"),
                "{text}"
            );
            assert!(
                !text.contains("secret") && !text.contains("user:"),
                "{text}"
            );
        }
    }

    #[test]
    fn connect_method_is_refused() {
        let c = client(InsecureHttp::Deny);
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("https://ehr.example:443")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            c.prepare(req, None, None).unwrap_err().kind(),
            HttpErrorKind::InvalidRequest
        );
    }

    #[test]
    fn authorization_is_marked_sensitive_p5() {
        let c = client(InsecureHttp::Deny);
        let req = Request::get("https://ehr.example/fhir/Patient/1")
            .header(AUTHORIZATION, "Bearer abc")
            .header(PROXY_AUTHORIZATION, "Basic def")
            .header("accept", "application/fhir+json")
            .body(Bytes::new())
            .unwrap();
        let (sent, _) = c.prepare(req, None, None).unwrap();
        assert!(sent.headers()[AUTHORIZATION].is_sensitive());
        assert!(sent.headers()[PROXY_AUTHORIZATION].is_sensitive());
        assert!(!sent.headers()["accept"].is_sensitive());
        assert_eq!(sent.headers()[AUTHORIZATION], "Bearer abc");
    }

    #[test]
    fn user_agent_is_added_only_when_missing() {
        let c = HyperHttpClient::builder()
            .user_agent("my-app/2.0")
            .build()
            .unwrap();
        let (sent, _) = c.prepare(get("https://ehr.example/"), None, None).unwrap();
        assert_eq!(sent.headers()[USER_AGENT], "my-app/2.0");
        let req = Request::get("https://ehr.example/")
            .header(USER_AGENT, "caller/1")
            .body(Bytes::new())
            .unwrap();
        let (sent, _) = c.prepare(req, None, None).unwrap();
        assert_eq!(sent.headers().get_all(USER_AGENT).iter().count(), 1);
        assert_eq!(sent.headers()[USER_AGENT], "caller/1");
    }

    #[test]
    fn per_request_extensions_override_defaults() {
        let c = client(InsecureHttp::Deny);
        let (sent, ex) = c
            .prepare(get("https://ehr.example:8443/a?b=c"), None, None)
            .unwrap();
        assert_eq!(ex.timeout, Duration::from_secs(60));
        assert_eq!(ex.max_response_bytes, None);
        assert_eq!(ex.origin(), "https://ehr.example:8443/");
        assert_eq!(sent.version(), Version::HTTP_11);

        let mut req = get("https://ehr.example/");
        req.extensions_mut()
            .insert(RequestTimeout(Duration::from_millis(5)));
        req.extensions_mut().insert(MaxResponseBytes(7));
        *req.version_mut() = Version::HTTP_2;
        let (max, timeout) = extension_bounds(&req);
        assert_eq!((max, timeout), (Some(7), Some(Duration::from_millis(5))));
        let (sent, ex) = c.prepare(req, max, timeout).unwrap();
        assert_eq!(ex.timeout, Duration::from_millis(5));
        assert_eq!(ex.max_response_bytes, Some(7));
        assert_eq!(sent.version(), Version::HTTP_11);
    }
}
