//! Reading response bodies: whole and bounded, or chunk by chunk ([`BodyStream`]).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Uri;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use smart_fhir_core::{ChunkStream, HttpError, HttpErrorKind};

use super::classify::{body_error, too_large_error};

/// The most memory reserved up front from a `Content-Length`: a larger body grows the buffer as
/// it arrives, so a lying header costs nothing.
const MAX_PREALLOCATION: usize = 256 * 1024;

#[async_trait]
impl ChunkStream for BodyStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        BodyStream::next_chunk(self).await
    }
}

/// A response body read chunk by chunk, from
/// [`HyperHttpClient::execute_streaming`](super::HyperHttpClient::execute_streaming).
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
    pub(super) fn new(
        body: Incoming,
        origin: Uri,
        chunk_timeout: Duration,
        limit: Option<usize>,
    ) -> Self {
        Self {
            body,
            origin,
            chunk_timeout,
            limit,
            received: 0,
            state: StreamState::Open,
        }
    }

    /// The next piece of the body, or `None` at its end.
    ///
    /// Fails with [`HttpErrorKind::Timeout`] when no data arrives within the request timeout,
    /// [`HttpErrorKind::BodyTooLarge`] when the body would exceed the request's
    /// [`MaxResponseBytes`](smart_fhir_core::MaxResponseBytes) (the chunk that would cross it
    /// is not returned), and [`HttpErrorKind::Io`] when the connection breaks. After an error every call fails.
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
pub(super) async fn read_body<B>(
    mut body: B,
    limit: usize,
    origin: &Uri,
) -> Result<Bytes, HttpError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: StdError + Send + Sync + 'static,
{
    check_declared_length(&body, limit, origin)?;
    // The buffer is reserved only when a second frame arrives: a body of one frame (the common
    // case for small JSON documents) is returned as it is, without a copy or an allocation.
    let mut buffer = BytesMut::new();
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
                let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
                let wanted = declared
                    .saturating_add(first.len())
                    .max(first.len() + data.len());
                buffer.reserve(wanted.min(limit).min(MAX_PREALLOCATION));
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
pub(super) fn check_declared_length<B: Body>(
    body: &B,
    limit: usize,
    origin: &Uri,
) -> Result<(), HttpError> {
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(too_large_error(origin, limit));
    }
    Ok(())
}

// The tests build clients with the default features' provider and roots.
#[cfg(all(test, feature = "ring", feature = "webpki-roots"))]
mod tests {
    use std::collections::VecDeque;
    use std::io;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use hyper::body::{Frame, SizeHint};

    use super::*;

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
