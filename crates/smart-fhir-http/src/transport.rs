//! The hyper + rustls implementation of [`HttpClient`].

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{
    Entry, HeaderName, HeaderValue, AUTHORIZATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use smart_fhir_core::{
    is_loopback_host, ChunkStream, HttpClient, HttpError, HttpErrorKind, InsecureHttp,
    MaxResponseBytes, RequestTimeout, StreamingBody,
};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const DEFAULT_USER_AGENT: &str = concat!("smart-fhir/", env!("CARGO_PKG_VERSION"));
/// The most memory reserved up front from a `Content-Length`: a larger body grows the buffer as
/// it arrives, so a lying header costs nothing.
const MAX_PREALLOCATION: usize = 256 * 1024;
/// Request headers whose values are credentials; hyper's HTTP/2 encoder keeps sensitive values
/// out of its compression tables.
const CREDENTIAL_HEADERS: [HeaderName; 2] = [AUTHORIZATION, PROXY_AUTHORIZATION];

/// TLS 1.3 and 1.2; nothing older (SC-2.14, SC-7.2, P7).
const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

type Connector = HttpsConnector<HttpConnector>;

/// Which root certificates the client trusts, before any added with
/// [`HyperHttpClientBuilder::add_root_certificate_pem`].
///
/// The default is the first available of [`Roots::Webpki`] (feature `webpki-roots`, on by default),
/// [`Roots::Native`] (feature `native-roots`) and [`Roots::Only`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Roots {
    /// Mozilla's root certificates, compiled into the binary (crate feature `webpki-roots`).
    Webpki,
    /// The operating system's certificate store, read once when the client is built (crate
    /// feature `native-roots`).
    Native,
    /// No built-in roots: only the certificates added with
    /// [`HyperHttpClientBuilder::add_root_certificate_pem`] (a private PKI). Building fails when
    /// none was added.
    Only,
}

impl Default for Roots {
    fn default() -> Self {
        if cfg!(feature = "webpki-roots") {
            Self::Webpki
        } else if cfg!(feature = "native-roots") {
            Self::Native
        } else {
            Self::Only
        }
    }
}

/// Why a [`HyperHttpClient`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A PEM document given to [`HyperHttpClientBuilder::add_root_certificate_pem`] holds no
    /// usable certificate.
    #[error("root certificate PEM #{index} is not usable: {reason}")]
    InvalidRootCertificate {
        /// Which call to `add_root_certificate_pem`, counting from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The trust store would be empty, so no server could be verified.
    #[error("no trusted root certificates: {reason}")]
    NoRootCertificates {
        /// Why the store is empty.
        reason: String,
    },
    /// The chosen [`Roots`] need a crate feature that is not enabled.
    #[error("{roots} needs the crate feature `{feature}`")]
    FeatureDisabled {
        /// The root store asked for.
        roots: &'static str,
        /// The feature that provides it.
        feature: &'static str,
    },
    /// No rustls crypto provider: neither the `ring` feature nor a process-wide default.
    #[error(
        "no TLS crypto provider: enable the `ring` feature or install a process-wide rustls \
         CryptoProvider"
    )]
    NoCryptoProvider,
    /// The crypto provider cannot do TLS 1.2 and 1.3.
    #[error("the TLS configuration could not be built: {reason}")]
    TlsConfig {
        /// The reason rustls gave.
        reason: String,
    },
    /// The configured `User-Agent` is not a valid header value.
    #[error("the user agent is not a valid header value")]
    InvalidUserAgent,
    /// A timeout was set to zero.
    #[error("{setting} must be greater than zero")]
    ZeroTimeout {
        /// Which setting.
        setting: &'static str,
    },
}

/// Builds a [`HyperHttpClient`]; start with [`HyperHttpClient::builder`].
#[derive(Clone)]
#[must_use]
pub struct HyperHttpClientBuilder {
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
    user_agent: Option<String>,
    roots: Roots,
    extra_roots_pem: Vec<Vec<u8>>,
    insecure_http: InsecureHttp,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

impl Default for HyperHttpClientBuilder {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: None,
            roots: Roots::default(),
            extra_roots_pem: Vec::new(),
            insecure_http: InsecureHttp::Deny,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: usize::MAX,
        }
    }
}

impl fmt::Debug for HyperHttpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperHttpClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("user_agent", &self.user_agent)
            .field("roots", &self.roots)
            .field("extra_roots", &self.extra_roots_pem.len())
            .field("insecure_http", &self.insecure_http)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .finish()
    }
}

impl HyperHttpClientBuilder {
    /// The longest a TCP connection attempt may take (default 10 s). The TLS handshake that
    /// follows counts against the request timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest a whole exchange may take, from the first connection attempt to the last
    /// byte of the body (default 60 s). A request overrides it with the
    /// [`RequestTimeout`] extension.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The largest response body [`HttpClient::execute`] reads, in bytes (default 8 MiB). A
    /// request overrides it with the [`MaxResponseBytes`] extension.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The `User-Agent` sent when a request has none (default `smart-fhir/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Which built-in root certificates to trust (see [`Roots`] for the default).
    pub fn tls_roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// Also trusts the certificates in `pem` (one or more `CERTIFICATE` blocks), e.g. the root of
    /// a hospital's private PKI. Checked by [`build`](Self::build).
    pub fn add_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Whether plain `http://` may be used (default [`InsecureHttp::Deny`]). With
    /// [`InsecureHttp::AllowLoopback`], `http://` is sent to loopback hosts only (`localhost`,
    /// `127.0.0.0/8`, `::1`), for local development and tests (P7).
    pub fn insecure_http(mut self, insecure: InsecureHttp) -> Self {
        self.insecure_http = insecure;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per host (default unbounded; 0 disables pooling).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Builds the client. It needs a Tokio runtime with the time driver enabled when it is used,
    /// not when it is built.
    pub fn build(self) -> Result<HyperHttpClient, TransportError> {
        if self.connect_timeout.is_zero() {
            return Err(TransportError::ZeroTimeout {
                setting: "connect_timeout",
            });
        }
        if self.request_timeout.is_zero() {
            return Err(TransportError::ZeroTimeout {
                setting: "request_timeout",
            });
        }
        let user_agent = match &self.user_agent {
            Some(ua) => HeaderValue::from_str(ua).map_err(|_| TransportError::InvalidUserAgent)?,
            None => HeaderValue::from_static(DEFAULT_USER_AGENT),
        };
        let tls = self.tls_config()?;

        let mut http = HttpConnector::new();
        // The HTTPS connector hands `https://` URIs to the TCP connector.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        let schemes = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        // Without the opt-in, the connector itself refuses `http://` as a second line of defence.
        let schemes = if self.insecure_http == InsecureHttp::AllowLoopback {
            schemes.https_or_http()
        } else {
            schemes.https_only()
        };
        let connector = schemes.enable_http1().enable_http2().wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .build(connector);

        Ok(HyperHttpClient {
            client,
            settings: Arc::new(Settings {
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                max_response_bytes: self.max_response_bytes,
                user_agent,
                roots: self.roots,
                insecure_http: self.insecure_http,
            }),
        })
    }

    /// The rustls configuration: TLS 1.2 and 1.3 only (SC-2.14, SC-7.2, P7), certificates always
    /// verified against the chosen roots. ALPN is added by the connector.
    fn tls_config(&self) -> Result<rustls::ClientConfig, TransportError> {
        let mut store = RootCertStore::empty();
        match self.roots {
            Roots::Webpki => add_webpki_roots(&mut store)?,
            Roots::Native => add_native_roots(&mut store)?,
            Roots::Only => {}
        }
        for (index, pem) in self.extra_roots_pem.iter().enumerate() {
            add_pem_roots(&mut store, index, pem)?;
        }
        if store.is_empty() {
            return Err(TransportError::NoRootCertificates {
                reason: "Roots::Only needs at least one certificate from add_root_certificate_pem"
                    .to_owned(),
            });
        }
        let config = rustls::ClientConfig::builder_with_provider(crypto_provider()?)
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(|e| TransportError::TlsConfig {
                reason: e.to_string(),
            })?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(config)
    }
}

/// The process-wide rustls provider when the application installed one, else `ring`.
fn crypto_provider() -> Result<Arc<CryptoProvider>, TransportError> {
    if let Some(provider) = CryptoProvider::get_default() {
        return Ok(Arc::clone(provider));
    }
    #[cfg(feature = "ring")]
    let provider = Ok(Arc::new(rustls::crypto::ring::default_provider()));
    #[cfg(not(feature = "ring"))]
    let provider = Err(TransportError::NoCryptoProvider);
    provider
}

#[cfg(feature = "webpki-roots")]
fn add_webpki_roots(store: &mut RootCertStore) -> Result<(), TransportError> {
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(())
}

#[cfg(not(feature = "webpki-roots"))]
fn add_webpki_roots(_store: &mut RootCertStore) -> Result<(), TransportError> {
    Err(TransportError::FeatureDisabled {
        roots: "Roots::Webpki",
        feature: "webpki-roots",
    })
}

#[cfg(feature = "native-roots")]
fn add_native_roots(store: &mut RootCertStore) -> Result<(), TransportError> {
    let loaded = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = store.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let reason = loaded.errors.first().map_or_else(
            || "the operating system's store holds no usable certificate".to_owned(),
            |e| format!("the operating system's store could not be read: {e}"),
        );
        return Err(TransportError::NoRootCertificates { reason });
    }
    Ok(())
}

#[cfg(not(feature = "native-roots"))]
fn add_native_roots(_store: &mut RootCertStore) -> Result<(), TransportError> {
    Err(TransportError::FeatureDisabled {
        roots: "Roots::Native",
        feature: "native-roots",
    })
}

fn add_pem_roots(
    store: &mut RootCertStore,
    index: usize,
    pem: &[u8],
) -> Result<(), TransportError> {
    let invalid = |reason: String| TransportError::InvalidRootCertificate { index, reason };
    let mut found = 0_usize;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(format!("malformed PEM: {e}")))?;
        store
            .add(cert)
            .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(invalid("no CERTIFICATE block found".to_owned()));
    }
    Ok(())
}

#[derive(Debug)]
struct Settings {
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
    user_agent: HeaderValue,
    roots: Roots,
    insecure_http: InsecureHttp,
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
    /// Scheme and authority (without user information): the only part of the URI errors show.
    origin: Uri,
    timeout: Duration,
    max_response_bytes: Option<usize>,
}

impl HyperHttpClient {
    /// A builder with the defaults.
    pub fn builder() -> HyperHttpClientBuilder {
        HyperHttpClientBuilder::default()
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
        let (request, exchange) = self.prepare(request)?;
        let sent = tokio::time::timeout(exchange.timeout, self.client.request(request)).await;
        let response = match sent {
            Ok(result) => result.map_err(|e| client_error(e, &exchange.origin))?,
            Err(_) => return Err(timeout_error(&exchange.origin, exchange.timeout)),
        };
        let (parts, body) = response.into_parts();
        if let Some(limit) = exchange.max_response_bytes {
            check_declared_length(&body, limit, &exchange.origin)?;
        }
        Ok(Response::from_parts(
            parts,
            BodyStream {
                body,
                origin: exchange.origin,
                chunk_timeout: exchange.timeout,
                limit: exchange.max_response_bytes,
                received: 0,
                state: StreamState::Open,
            },
        ))
    }

    /// Checks the URI and turns the caller's request into the one sent.
    fn prepare(
        &self,
        request: Request<Bytes>,
    ) -> Result<(Request<Full<Bytes>>, Exchange), HttpError> {
        let origin = origin_of(request.uri());
        check_uri(request.uri(), self.settings.insecure_http)
            .map_err(|msg| HttpError::new(HttpErrorKind::InvalidRequest, &origin, msg))?;
        if request.method() == Method::CONNECT {
            return Err(HttpError::new(
                HttpErrorKind::InvalidRequest,
                &origin,
                "the CONNECT method is not supported",
            ));
        }
        let timeout = request
            .extensions()
            .get::<RequestTimeout>()
            .map_or(self.settings.request_timeout, |t| t.0);
        let max_response_bytes = request.extensions().get::<MaxResponseBytes>().map(|m| m.0);

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
                origin,
                timeout,
                max_response_bytes,
            },
        ))
    }

    /// [`HttpClient::execute`]: the one path every request of every client takes.
    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (request, exchange) = self.prepare(request)?;
        let method = request.method().clone();
        let limit = exchange
            .max_response_bytes
            .unwrap_or(self.settings.max_response_bytes);
        let origin = &exchange.origin;
        let whole = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| client_error(e, origin))?;
            let (parts, body) = response.into_parts();
            let body = read_body(body, limit, origin).await?;
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let result = match tokio::time::timeout(exchange.timeout, whole).await {
            Ok(result) => result,
            Err(_) => Err(timeout_error(origin, exchange.timeout)),
        };
        match &result {
            Ok(response) => tracing::debug!(
                %method, origin = %origin, status = response.status().as_u16(), "HTTP exchange"
            ),
            Err(error) => {
                tracing::debug!(%method, origin = %origin, %error, "HTTP exchange failed")
            }
        }
        result
    }
}

#[async_trait]
impl HttpClient for HyperHttpClient {
    async fn execute(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.exchange(request).await
    }

    async fn execute_streaming(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<StreamingBody>, HttpError> {
        let response = HyperHttpClient::execute_streaming(self, request).await?;
        Ok(response.map(|body| Box::new(body) as StreamingBody))
    }
}

#[async_trait]
impl ChunkStream for BodyStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        BodyStream::next_chunk(self).await
    }
}

/// A response body read chunk by chunk, from [`HyperHttpClient::execute_streaming`].
///
/// Each [`next_chunk`](Self::next_chunk) call may wait at most the request timeout. Dropping the
/// stream before its end closes the connection instead of returning it to the pool.
pub struct BodyStream {
    body: Incoming,
    origin: Uri,
    chunk_timeout: Duration,
    limit: Option<usize>,
    received: u64,
    state: StreamState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Open,
    Finished,
    Failed(HttpErrorKind),
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("origin", &self.origin)
            .field("received", &self.received)
            .field("limit", &self.limit)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl BodyStream {
    /// The next piece of the body, or `None` at its end.
    ///
    /// Fails with [`HttpErrorKind::Timeout`] when no data arrives within the request timeout,
    /// [`HttpErrorKind::BodyTooLarge`] when the body would exceed the request's
    /// [`MaxResponseBytes`] (the chunk that would cross it is not returned), and
    /// [`HttpErrorKind::Io`] when the connection breaks. After an error every call fails.
    /// Cancelling the call (dropping its future) loses no data.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        match self.state {
            StreamState::Open => {}
            StreamState::Finished => return Ok(None),
            StreamState::Failed(kind) => {
                return Err(HttpError::new(
                    kind,
                    &self.origin,
                    "the response body failed earlier",
                ))
            }
        }
        let timeout = self.chunk_timeout;
        let result = match tokio::time::timeout(timeout, self.next_data()).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::new(
                HttpErrorKind::Timeout,
                &self.origin,
                format!("no body data within {timeout:?}"),
            )),
        };
        match &result {
            Ok(Some(_)) => {}
            Ok(None) => self.state = StreamState::Finished,
            Err(e) => self.state = StreamState::Failed(e.kind()),
        }
        result
    }

    /// How many body bytes have been returned so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    async fn next_data(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| body_error(e, &self.origin))?;
            // Trailers and empty frames carry nothing for the caller.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
            let total = self.received.saturating_add(len);
            if let Some(limit) = self.limit {
                if total > u64::try_from(limit).unwrap_or(u64::MAX) {
                    return Err(too_large_error(&self.origin, limit));
                }
            }
            self.received = total;
            return Ok(Some(data));
        }
    }
}

/// Reads a whole body, failing as soon as it would exceed `limit`: at most `limit` bytes are
/// kept, plus the one frame that crossed the bound.
async fn read_body<B>(mut body: B, limit: usize, origin: &Uri) -> Result<Bytes, HttpError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: StdError + Send + Sync + 'static,
{
    check_declared_length(&body, limit, origin)?;
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut buffer = BytesMut::with_capacity(declared.min(limit).min(MAX_PREALLOCATION));
    let mut single: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(e, origin))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let held = buffer.len() + single.as_ref().map_or(0, Bytes::len);
        if data.len() > limit.saturating_sub(held) {
            return Err(too_large_error(origin, limit));
        }
        // A body of one frame (the common case for small JSON documents) is returned without a
        // copy; only a second frame starts the buffer.
        if buffer.is_empty() && single.is_none() {
            single = Some(data);
        } else {
            if let Some(first) = single.take() {
                buffer.extend_from_slice(&first);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(single.unwrap_or_else(|| buffer.freeze()))
}

/// Refuses a body whose declared length (`Content-Length`, as hyper knows it) exceeds `limit`
/// before reading any of it. hyper reports no length for bodies that cannot exist (`HEAD`,
/// `204`, `304`).
fn check_declared_length<B: Body>(body: &B, limit: usize, origin: &Uri) -> Result<(), HttpError> {
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(too_large_error(origin, limit));
    }
    Ok(())
}

/// The scheme and authority of `uri`, without user information, for error messages.
fn origin_of(uri: &Uri) -> Uri {
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Uri::default();
    };
    // The common case, an authority that is `host` or `host:port` already, shares the request
    // URI's bytes instead of formatting and parsing a new one.
    if split_plain_authority(authority.as_str()).is_some() {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        if let Ok(origin) = Uri::from_parts(parts) {
            return origin;
        }
    }
    let host_port = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    Uri::builder()
        .scheme(scheme.clone())
        .authority(host_port)
        .path_and_query("/")
        .build()
        .unwrap_or_default()
}

/// `host` and the port of an authority written `host` or `host:port` (a port of 1 to 5 digits
/// below 65536); `None` for any other (user information, an empty or invalid port). The host is
/// the one [`http::uri::Authority::host`] reads.
pub(crate) fn split_plain_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    // One pass over the (short) authority: no `@`, and where the host ends.
    let bracketed = authority.starts_with('[');
    let mut host_end = None;
    for (i, b) in authority.bytes().enumerate() {
        match b {
            b'@' => return None,
            b']' if bracketed && host_end.is_none() => host_end = Some(i + 1),
            b':' if !bracketed && host_end.is_none() => host_end = Some(i),
            _ => {}
        }
    }
    let host_end = match host_end {
        Some(end) => end,
        None if bracketed => return None,
        None => authority.len(),
    };
    let (host, rest) = authority.split_at_checked(host_end)?;
    if host.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some((host, None));
    }
    let digits = rest.strip_prefix(':')?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, Some(digits.parse().ok()?)))
}

/// Which URIs may be sent: `https://`, and `http://` to a loopback host with the opt-in (P7).
fn check_uri(uri: &Uri, insecure: InsecureHttp) -> Result<(), &'static str> {
    let Some(authority) = uri.authority() else {
        return Err("the request URI must be absolute (scheme and host)");
    };
    if authority.as_str().contains('@') {
        return Err("the request URI must not carry user credentials");
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("the request URI has no host");
    }
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Ok(()),
        Some(s) if s.eq_ignore_ascii_case("http") => {
            if !host_is_loopback(host) {
                Err("plain http:// is refused for a host that is not loopback")
            } else if insecure == InsecureHttp::AllowLoopback {
                Ok(())
            } else {
                Err("plain http:// to a loopback host needs InsecureHttp::AllowLoopback")
            }
        }
        Some(_) => Err("only https:// (and http:// to loopback, by explicit opt-in) can be sent"),
        None => Err("the request URI must be absolute (scheme and host)"),
    }
}

fn host_is_loopback(host: &str) -> bool {
    // The usual spellings first, without the URL host parser (IDNA processing): a dotted-quad
    // IPv4 address, a bracketed IPv6 address, `localhost`. They read the same in both.
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return ip.is_loopback();
    }
    if let Some(ip) = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
    {
        return is_loopback_host(&url::Host::Ipv6(ip));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match url::Host::parse(host) {
        Ok(url::Host::Domain(d)) => is_loopback_host(&url::Host::Domain(d.as_str())),
        Ok(url::Host::Ipv4(ip)) => is_loopback_host(&url::Host::Ipv4(ip)),
        Ok(url::Host::Ipv6(ip)) => is_loopback_host(&url::Host::Ipv6(ip)),
        Err(_) => false,
    }
}

fn timeout_error(origin: &Uri, timeout: Duration) -> HttpError {
    HttpError::new(
        HttpErrorKind::Timeout,
        origin,
        format!("no response within {timeout:?}"),
    )
}

fn too_large_error(origin: &Uri, limit: usize) -> HttpError {
    HttpError::new(
        HttpErrorKind::BodyTooLarge,
        origin,
        format!("the body exceeds the limit of {limit} bytes"),
    )
}

/// Maps an error of the pooled client. Its `Display` and its sources' never carry the URI, but
/// they stay out of the message anyway: the message is built from the error's classification.
fn client_error(error: hyper_util::client::legacy::Error, origin: &Uri) -> HttpError {
    let (kind, message) = classify(&error, error.is_connect());
    HttpError::new(kind, origin, message).with_source(error)
}

fn body_error<E: StdError + Send + Sync + 'static>(error: E, origin: &Uri) -> HttpError {
    let (kind, message) = classify(&error, false);
    HttpError::new(kind, origin, message).with_source(error)
}

/// The error and its causes. `io::Error` hides the error it wraps from `source()` (it returns
/// that error's own source), so the walk steps into it explicitly: that is where rustls's
/// certificate errors sit.
fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| {
        let e: &'a (dyn StdError + 'static) = *e;
        match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        }
    })
    .take(32)
}

fn classify(error: &(dyn StdError + 'static), connecting: bool) -> (HttpErrorKind, String) {
    let mut io_kind = None;
    let mut hyper_error = None;
    for cause in causes(error) {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            // rustls messages name certificate problems and server names, never the request.
            return (HttpErrorKind::Tls, format!("TLS handshake failed: {tls}"));
        }
        if io_kind.is_none() {
            io_kind = cause.downcast_ref::<io::Error>().map(io::Error::kind);
        }
        if hyper_error.is_none() {
            hyper_error = cause.downcast_ref::<hyper::Error>();
        }
    }
    if connecting {
        let message = match io_kind {
            Some(io::ErrorKind::TimedOut) => "the connection attempt timed out".to_owned(),
            Some(kind) => format!("could not connect: {kind}"),
            None => "could not connect".to_owned(),
        };
        return (HttpErrorKind::Connect, message);
    }
    match hyper_error {
        Some(e) if e.is_timeout() => (HttpErrorKind::Timeout, "hyper timed out".to_owned()),
        Some(e) if e.is_parse() || e.is_parse_status() => (
            HttpErrorKind::Other,
            "the server sent a malformed HTTP response".to_owned(),
        ),
        Some(e) if e.is_user() => (
            HttpErrorKind::InvalidRequest,
            "the request could not be encoded".to_owned(),
        ),
        Some(e) if e.is_incomplete_message() => (
            HttpErrorKind::Io,
            "the connection closed before the response was complete".to_owned(),
        ),
        Some(_) | None => match io_kind {
            Some(kind) => (HttpErrorKind::Io, format!("the connection broke: {kind}")),
            None if hyper_error.is_some() => (HttpErrorKind::Io, "the connection broke".to_owned()),
            None => (
                HttpErrorKind::Other,
                "the request could not be sent".to_owned(),
            ),
        },
    }
}

// The tests build clients with the default features' provider and roots.
#[cfg(all(test, feature = "ring", feature = "webpki-roots"))]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use hyper::body::{Frame, SizeHint};

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

    /// The `supported_versions` extension (RFC 8446 §4.2.1) of the ClientHello the configuration
    /// sends, read from the bytes on the wire.
    fn offered_versions(config: rustls::ClientConfig) -> Vec<u16> {
        fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
            let (head, rest) = data.split_at(n);
            *data = rest;
            head
        }
        fn len8(data: &mut &[u8]) -> usize {
            usize::from(take(data, 1)[0])
        }
        fn len16(data: &mut &[u8]) -> usize {
            let b = take(data, 2);
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        }
        let name = rustls::pki_types::ServerName::try_from("ehr.example").unwrap();
        let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut wire = Vec::new();
        connection.write_tls(&mut wire).unwrap();
        let mut data = &wire[..];
        assert_eq!(take(&mut data, 1), [22], "a handshake record");
        take(&mut data, 4); // record version and length
        assert_eq!(take(&mut data, 1), [1], "a ClientHello");
        take(&mut data, 3 + 2 + 32); // length, legacy_version, random
        let n = len8(&mut data);
        take(&mut data, n); // legacy_session_id
        let n = len16(&mut data);
        take(&mut data, n); // cipher_suites
        let n = len8(&mut data);
        take(&mut data, n); // legacy_compression_methods
        let n = len16(&mut data);
        let mut extensions = take(&mut data, n);
        while !extensions.is_empty() {
            let kind = len16(&mut extensions);
            let n = len16(&mut extensions);
            let mut body = take(&mut extensions, n);
            if kind == 0x002b {
                let n = len8(&mut body);
                return take(&mut body, n)
                    .chunks(2)
                    .map(|v| u16::from_be_bytes([v[0], v[1]]))
                    .collect();
            }
        }
        panic!("no supported_versions extension");
    }

    #[test]
    fn tls_versions_are_1_2_and_1_3_only_sc_2_14_sc_7_2_p7() {
        let config = HyperHttpClient::builder().tls_config().unwrap();
        // The connector adds ALPN itself and refuses a configuration that already has it.
        assert!(config.alpn_protocols.is_empty());
        // TLS 1.3 (0x0304) and TLS 1.2 (0x0303), nothing older.
        assert_eq!(offered_versions(config), [0x0304, 0x0303]);
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
    }

    #[test]
    fn defaults() {
        let b = HyperHttpClient::builder();
        assert_eq!(b.connect_timeout, Duration::from_secs(10));
        assert_eq!(b.request_timeout, Duration::from_secs(60));
        assert_eq!(b.max_response_bytes, 8 * 1024 * 1024);
        assert_eq!(b.insecure_http, InsecureHttp::Deny);
        assert_eq!(b.roots, Roots::Webpki);
        let c = b.build().unwrap();
        assert_eq!(
            c.settings.user_agent,
            format!("smart-fhir/{}", env!("CARGO_PKG_VERSION")).as_str()
        );
    }

    #[test]
    fn builds_outside_a_runtime() {
        let c = HyperHttpClient::builder().build();
        assert!(c.is_ok());
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let e = HyperHttpClient::builder()
            .connect_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            TransportError::ZeroTimeout {
                setting: "connect_timeout"
            }
        ));
        let e = HyperHttpClient::builder()
            .request_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            TransportError::ZeroTimeout {
                setting: "request_timeout"
            }
        ));
    }

    #[test]
    fn invalid_user_agent_is_refused() {
        let e = HyperHttpClient::builder()
            .user_agent("bad\nagent")
            .build()
            .unwrap_err();
        assert!(matches!(e, TransportError::InvalidUserAgent));
    }

    #[test]
    fn pem_without_certificate_is_refused() {
        for pem in [
            &b""[..],
            b"not a pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let e = HyperHttpClient::builder()
                .add_root_certificate_pem(pem)
                .build()
                .unwrap_err();
            assert!(
                matches!(e, TransportError::InvalidRootCertificate { index: 0, .. }),
                "{e:?}"
            );
        }
    }

    #[test]
    fn malformed_certificate_is_refused() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = HyperHttpClient::builder()
            .tls_roots(Roots::Only)
            .add_root_certificate_pem(pem)
            .build()
            .unwrap_err();
        assert!(
            matches!(e, TransportError::InvalidRootCertificate { index: 0, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn only_roots_without_certificates_are_refused() {
        let e = HyperHttpClient::builder()
            .tls_roots(Roots::Only)
            .build()
            .unwrap_err();
        assert!(matches!(e, TransportError::NoRootCertificates { .. }));
    }

    #[cfg(not(feature = "native-roots"))]
    #[test]
    fn native_roots_without_the_feature_are_refused() {
        let e = HyperHttpClient::builder()
            .tls_roots(Roots::Native)
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            TransportError::FeatureDisabled {
                feature: "native-roots",
                ..
            }
        ));
    }

    #[test]
    fn uri_policy_p7() {
        use InsecureHttp::{AllowLoopback, Deny};
        let cases: &[(&str, InsecureHttp, bool)] = &[
            ("https://ehr.example/fhir", Deny, true),
            ("HTTPS://ehr.example/fhir", Deny, true),
            ("https://127.0.0.1:8443/", Deny, true),
            ("http://127.0.0.1:8080/", Deny, false),
            ("http://127.0.0.1:8080/", AllowLoopback, true),
            ("http://127.8.9.10/", AllowLoopback, true),
            ("http://localhost/", AllowLoopback, true),
            ("http://LOCALHOST:1/", AllowLoopback, true),
            ("http://[::1]:8080/", AllowLoopback, true),
            ("http://[::1]:8080/", Deny, false),
            ("http://10.255.255.1/", AllowLoopback, false),
            ("http://ehr.example/", AllowLoopback, false),
            ("http://localhost.ehr.example/", AllowLoopback, false),
            ("http://[::2]/", AllowLoopback, false),
            ("ftp://127.0.0.1/", AllowLoopback, false),
            ("ws://127.0.0.1/", AllowLoopback, false),
            ("/fhir/Patient", AllowLoopback, false),
            ("https://user:pass@ehr.example/", Deny, false),
        ];
        for (uri, insecure, ok) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(
                check_uri(&uri, *insecure).is_ok(),
                *ok,
                "{uri} with {insecure:?}"
            );
        }
    }

    #[test]
    fn refused_uri_is_invalid_request_without_path_or_credentials_p5() {
        let c = client(InsecureHttp::AllowLoopback);
        for uri in [
            "http://10.255.255.1/Patient?name=Smith",
            "https://user:secret@ehr.example/Patient?name=Smith",
            "ftp://127.0.0.1/Patient?name=Smith",
        ] {
            let e = c.prepare(get(uri)).unwrap_err();
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
            c.prepare(req).unwrap_err().kind(),
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
        let (sent, _) = c.prepare(req).unwrap();
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
        let (sent, _) = c.prepare(get("https://ehr.example/")).unwrap();
        assert_eq!(sent.headers()[USER_AGENT], "my-app/2.0");
        let req = Request::get("https://ehr.example/")
            .header(USER_AGENT, "caller/1")
            .body(Bytes::new())
            .unwrap();
        let (sent, _) = c.prepare(req).unwrap();
        assert_eq!(sent.headers().get_all(USER_AGENT).iter().count(), 1);
        assert_eq!(sent.headers()[USER_AGENT], "caller/1");
    }

    #[test]
    fn per_request_extensions_override_defaults() {
        let c = client(InsecureHttp::Deny);
        let (sent, ex) = c.prepare(get("https://ehr.example:8443/a?b=c")).unwrap();
        assert_eq!(ex.timeout, Duration::from_secs(60));
        assert_eq!(ex.max_response_bytes, None);
        assert_eq!(ex.origin, "https://ehr.example:8443/");
        assert_eq!(sent.version(), Version::HTTP_11);

        let mut req = get("https://ehr.example/");
        req.extensions_mut()
            .insert(RequestTimeout(Duration::from_millis(5)));
        req.extensions_mut().insert(MaxResponseBytes(7));
        *req.version_mut() = Version::HTTP_2;
        let (sent, ex) = c.prepare(req).unwrap();
        assert_eq!(ex.timeout, Duration::from_millis(5));
        assert_eq!(ex.max_response_bytes, Some(7));
        assert_eq!(sent.version(), Version::HTTP_11);
    }

    #[test]
    fn plain_authority_split() {
        assert_eq!(
            split_plain_authority("h.example"),
            Some(("h.example", None))
        );
        assert_eq!(
            split_plain_authority("h.example:8443"),
            Some(("h.example", Some(8443)))
        );
        assert_eq!(split_plain_authority("[::1]:9"), Some(("[::1]", Some(9))));
        assert_eq!(split_plain_authority("[::1]"), Some(("[::1]", None)));
        for refused in [
            "u@h", "u:p@h:1", "h:", "h:99999", "h:123456", "h:+1", "[::1", "",
        ] {
            assert_eq!(split_plain_authority(refused), None, "{refused}");
        }
    }

    /// P7: the fast spellings agree with the URL host parser.
    #[test]
    fn p7_loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "localhost",
            "LocalHost",
            "0x7f.1",
        ] {
            assert!(host_is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "[::2]", "localhost.evil", "ehr.example"] {
            assert!(!host_is_loopback(host), "{host}");
        }
    }

    #[test]
    fn origin_drops_user_information_and_path() {
        let uri: Uri = "https://u:p@[::1]:9/x?y".parse().unwrap();
        assert_eq!(origin_of(&uri), "https://[::1]:9/");
        assert_eq!(origin_of(&"/relative".parse().unwrap()), "/");
    }

    #[test]
    fn certificate_errors_inside_io_errors_are_tls() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, tls));
        let (kind, message) = classify(&wrapped, true);
        assert_eq!(kind, HttpErrorKind::Tls);
        assert!(message.contains("UnknownIssuer"), "{message}");

        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(classify(&refused, true).0, HttpErrorKind::Connect);
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "slow");
        let (kind, message) = classify(&timed_out, true);
        assert_eq!(kind, HttpErrorKind::Connect);
        assert!(message.contains("timed out"));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&reset, false).0, HttpErrorKind::Io);
    }

    /// A body that hands out prepared frames and counts how often it was polled.
    struct Frames {
        frames: VecDeque<Result<Frame<Bytes>, io::Error>>,
        polls: Arc<AtomicUsize>,
        hint: SizeHint,
    }

    impl Frames {
        fn new(chunks: &[&'static [u8]]) -> (Self, Arc<AtomicUsize>) {
            let polls = Arc::new(AtomicUsize::new(0));
            let body = Self {
                frames: chunks
                    .iter()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c))))
                    .collect(),
                polls: Arc::clone(&polls),
                hint: SizeHint::default(),
            };
            (body, polls)
        }
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            let this = self.get_mut();
            this.polls.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(this.frames.pop_front())
        }

        fn size_hint(&self) -> SizeHint {
            self.hint
        }
    }

    fn origin() -> Uri {
        "https://ehr.example/".parse().unwrap()
    }

    #[tokio::test]
    async fn body_within_limit_is_joined() {
        let (body, _) = Frames::new(&[b"abc", b"", b"def", b"g"]);
        assert_eq!(read_body(body, 7, &origin()).await.unwrap(), "abcdefg");
        let (body, _) = Frames::new(&[b"only"]);
        assert_eq!(read_body(body, 4, &origin()).await.unwrap(), "only");
        let (body, _) = Frames::new(&[]);
        assert_eq!(read_body(body, 0, &origin()).await.unwrap(), "");
    }

    #[tokio::test]
    async fn body_reading_stops_at_the_first_frame_over_the_limit_p15() {
        let (body, polls) = Frames::new(&[b"abcd", b"efgh", b"ijkl", b"mnop"]);
        let e = read_body(body, 6, &origin()).await.unwrap_err();
        assert_eq!(e.kind(), HttpErrorKind::BodyTooLarge);
        assert_eq!(polls.load(Ordering::SeqCst), 2, "read past the bound");
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_unread_p15() {
        let (mut body, polls) = Frames::new(&[b"abcd"]);
        body.hint = SizeHint::with_exact(1_000_000);
        let e = read_body(body, 1000, &origin()).await.unwrap_err();
        assert_eq!(e.kind(), HttpErrorKind::BodyTooLarge);
        assert_eq!(polls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn broken_body_is_io() {
        let (mut body, _) = Frames::new(&[b"abcd"]);
        body.frames
            .push_back(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
        let e = read_body(body, 1000, &origin()).await.unwrap_err();
        assert_eq!(e.kind(), HttpErrorKind::Io);
    }
}
