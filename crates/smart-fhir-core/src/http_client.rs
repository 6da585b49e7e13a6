use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// The transport every network-speaking `smart-fhir` crate calls.
///
/// Implementations send one request and return the response with its whole body, read up to a
/// bound. They never follow redirects: the callers decide what a redirect means (token and
/// discovery requests refuse them; the FHIR client strips credentials on a cross-origin hop).
///
/// Per-request settings travel in the request's extensions: [`MaxResponseBytes`] and
/// [`RequestTimeout`], or as the arguments of [`HttpClient::execute_bounded`].
#[async_trait]
pub trait HttpClient: Send + Sync + fmt::Debug {
    /// Sends `request` and returns the response.
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError>;

    /// As [`HttpClient::execute`] with these bounds instead of any [`MaxResponseBytes`] and
    /// [`RequestTimeout`] extensions of `request` (`timeout: None`: the transport's own).
    ///
    /// The FHIR client sends every request this way. The default inserts the bounds as
    /// extensions and calls [`HttpClient::execute`], so a transport implements `execute` alone;
    /// one that reads the bounds from the arguments (as `smart-fhir-http`'s does) saves their
    /// allocations on every request.
    async fn execute_bounded(
        &self,
        mut request: http::Request<Bytes>,
        max_response_bytes: MaxResponseBytes,
        timeout: Option<RequestTimeout>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let extensions = request.extensions_mut();
        extensions.insert(max_response_bytes);
        if let Some(timeout) = timeout {
            extensions.insert(timeout);
        }
        self.execute(request).await
    }

    /// Sends `request` and returns the response with a body read chunk by chunk, for downloads
    /// too large to hold (Bulk Data files). [`MaxResponseBytes`] applies to the whole stream
    /// when set.
    ///
    /// The default reads the whole body with [`HttpClient::execute`] and yields it as one chunk;
    /// transports that can stream override it.
    async fn execute_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<StreamingBody>, HttpError> {
        let response = self.execute(request).await?;
        Ok(response.map(|body| Box::new(OneChunk(Some(body))) as StreamingBody))
    }
}

/// A response body read chunk by chunk.
#[async_trait]
pub trait ChunkStream: Send + fmt::Debug {
    /// The next chunk, or `None` at the end of the body.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError>;
}

/// A boxed [`ChunkStream`].
pub type StreamingBody = Box<dyn ChunkStream>;

/// A body already in memory, yielded as one chunk.
#[derive(Debug)]
struct OneChunk(Option<Bytes>);

#[async_trait]
impl ChunkStream for OneChunk {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        Ok(self.0.take().filter(|b| !b.is_empty()))
    }
}

/// A cheaply cloneable, shared [`HttpClient`].
#[derive(Debug, Clone)]
pub struct SharedHttpClient(Arc<dyn HttpClient>);

impl SharedHttpClient {
    /// Wraps a client; an already shared one is not wrapped again, so one setter takes either.
    pub fn new(client: impl HttpClient + 'static) -> Self {
        if let Some(shared) = (&client as &dyn std::any::Any).downcast_ref::<Self>() {
            return shared.clone();
        }
        Self(Arc::new(client))
    }

    /// Wraps an already shared client.
    pub fn from_arc(client: Arc<dyn HttpClient>) -> Self {
        Self(client)
    }

    /// Whether `self` and `other` are the same transport (clones of one shared client), for
    /// caches shared per transport.
    pub fn same_client(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The future of a forwarded call: the inner client's own boxed future, handed on as it is.
type Forwarded<'a, T> =
    Pin<Box<dyn Future<Output = Result<http::Response<T>, HttpError>> + Send + 'a>>;

// The methods are written out instead of `async fn`: an `async fn` here would box a second
// future around the inner client's on every request.
impl HttpClient for SharedHttpClient {
    fn execute<'a, 'f>(&'a self, request: http::Request<Bytes>) -> Forwarded<'f, Bytes>
    where
        'a: 'f,
        Self: 'f,
    {
        self.0.execute(request)
    }

    fn execute_bounded<'a, 'f>(
        &'a self,
        request: http::Request<Bytes>,
        max_response_bytes: MaxResponseBytes,
        timeout: Option<RequestTimeout>,
    ) -> Forwarded<'f, Bytes>
    where
        'a: 'f,
        Self: 'f,
    {
        self.0.execute_bounded(request, max_response_bytes, timeout)
    }

    fn execute_streaming<'a, 'f>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> Forwarded<'f, StreamingBody>
    where
        'a: 'f,
        Self: 'f,
    {
        self.0.execute_streaming(request)
    }
}

/// Request extension: the largest response body the caller accepts, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxResponseBytes(pub usize);

/// Request extension: the longest the whole exchange may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// What went wrong in the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The URL cannot be sent (bad scheme, no host, plain HTTP not allowed).
    InvalidRequest,
    /// DNS or TCP connection failure.
    Connect,
    /// TLS handshake or certificate failure.
    Tls,
    /// The exchange did not finish in time.
    Timeout,
    /// The response body exceeded the allowed size.
    BodyTooLarge,
    /// The connection broke while sending the request or reading the response.
    Io,
    /// Anything else.
    Other,
}

impl HttpErrorKind {
    /// Whether retrying the same request could succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Connect | Self::Timeout | Self::Io)
    }
}

/// A transport error. Its message names the host, never the query string (which may carry
/// patient data) and never a header value.
#[derive(Debug, thiserror::Error)]
#[error("{kind_text} ({host}): {message}")]
pub struct HttpError {
    kind: HttpErrorKind,
    kind_text: &'static str,
    host: String,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl HttpError {
    /// A new error. `uri` is reduced to its scheme and authority for display.
    pub fn new(kind: HttpErrorKind, uri: &http::Uri, message: impl Into<String>) -> Self {
        // The authority without any `user:password@` part.
        let authority = uri.authority().map(|a| {
            let a = a.as_str();
            a.rsplit_once('@').map_or(a, |(_, host)| host).to_owned()
        });
        let host = match (uri.scheme_str(), authority) {
            (Some(s), Some(a)) => format!("{s}://{a}"),
            (_, Some(a)) => a,
            _ => "no host".to_owned(),
        };
        let kind_text = match kind {
            HttpErrorKind::InvalidRequest => "invalid request",
            HttpErrorKind::Connect => "connection failed",
            HttpErrorKind::Tls => "TLS failure",
            HttpErrorKind::Timeout => "timed out",
            HttpErrorKind::BodyTooLarge => "response body too large",
            HttpErrorKind::Io => "connection broken",
            HttpErrorKind::Other => "transport error",
        };
        Self {
            kind,
            kind_text,
            host,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause (reachable through `Error::source`, not in `Display`).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> HttpErrorKind {
        self.kind
    }

    /// Whether retrying the same request could succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_has_no_path_or_query_p5() {
        let uri: http::Uri = "https://ehr.example/fhir/Patient?name=Smith&birthdate=1970"
            .parse()
            .unwrap();
        let e = HttpError::new(HttpErrorKind::Timeout, &uri, "after 30 s");
        let s = e.to_string();
        assert_eq!(s, "timed out (https://ehr.example): after 30 s");
        assert!(e.is_transient());
        let with_credentials: http::Uri = "https://user:pa55@ehr.example:8443/x".parse().unwrap();
        let s = HttpError::new(HttpErrorKind::Connect, &with_credentials, "refused").to_string();
        assert_eq!(s, "connection failed (https://ehr.example:8443): refused");
        assert!(!HttpError::new(HttpErrorKind::BodyTooLarge, &uri, "x").is_transient());
    }

    #[derive(Debug)]
    struct Echo;

    #[async_trait]
    impl HttpClient for Echo {
        async fn execute(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            Ok(http::Response::new(request.into_body()))
        }
    }

    #[tokio::test]
    async fn default_streaming_yields_the_body_once() {
        let c = SharedHttpClient::new(Echo);
        let mut r = c
            .execute_streaming(http::Request::new(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        assert_eq!(
            r.body_mut().next_chunk().await.unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert!(r.body_mut().next_chunk().await.unwrap().is_none());
    }

    /// Answers with the bounds the request's extensions carry.
    #[derive(Debug)]
    struct Bounds;

    #[async_trait]
    impl HttpClient for Bounds {
        async fn execute(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            let max = request.extensions().get::<MaxResponseBytes>().map(|m| m.0);
            let timeout = request.extensions().get::<RequestTimeout>().map(|t| t.0);
            Ok(http::Response::new(Bytes::from(format!(
                "{max:?} {timeout:?}"
            ))))
        }
    }

    /// P15: a transport that implements `execute` alone still sees the bounds of
    /// `execute_bounded`, as extensions (through a `SharedHttpClient` too), and they win over
    /// the request's own.
    #[tokio::test]
    async fn p15_default_bounded_execute_passes_the_bounds_as_extensions() {
        let c = SharedHttpClient::new(Bounds);
        let mut request = http::Request::new(Bytes::new());
        request.extensions_mut().insert(MaxResponseBytes(1));
        let r = c
            .execute_bounded(
                request,
                MaxResponseBytes(7),
                Some(RequestTimeout(Duration::from_secs(2))),
            )
            .await
            .unwrap();
        assert_eq!(r.body().as_ref(), b"Some(7) Some(2s)");
        let r = c
            .execute_bounded(http::Request::new(Bytes::new()), MaxResponseBytes(9), None)
            .await
            .unwrap();
        assert_eq!(r.body().as_ref(), b"Some(9) None");
    }

    #[test]
    fn sharing_a_shared_client_does_not_wrap_it_again() {
        let shared = SharedHttpClient::new(Echo);
        let again = SharedHttpClient::new(shared.clone());
        assert!(Arc::ptr_eq(&shared.0, &again.0));
    }

    #[tokio::test]
    async fn shared_client_is_object_safe_and_forwards() {
        let c = SharedHttpClient::new(Echo);
        let r = c
            .execute(http::Request::new(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        assert_eq!(r.body().as_ref(), b"hi");
    }
}
