//! Response bodies produced while sending, and the connection wrapper that carries out cuts.
//!
//! A cut (a `ResetMidBody` or `Truncate` fault) needs the bytes before it to reach the socket,
//! and only then the connection to end. hyper writes body frames into its buffer and flushes
//! them later, so the body cannot end the connection itself. Instead, once the body has yielded
//! its last byte before the cut, it arms the connection's [`ConnControl`] and stays pending.
//! hyper then flushes: [`ConnIo::poll_flush`] runs after hyper has written everything it buffered,
//! so when it sees the armed control it knows every byte is out, ends the connection (a reset or
//! a FIN) and fails the flush, which makes hyper drop the connection.

use std::convert::Infallible;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use flate2::write::GzEncoder;
use flate2::Compression;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::reply::{BodySpec, Cut, CutMode};

/// The size of the chunks generated bodies are produced in.
const CHUNK: usize = 64 * 1024;

/// Filler for padding and oversize bodies.
static FILLER: [u8; CHUNK] = [b'x'; CHUNK];

/// A synchronous producer of body chunks.
pub(crate) trait ChunkSource: Send {
    /// The next non-empty chunk, or `None` at the end.
    fn next_chunk(&mut self) -> Option<Bytes>;
}

/// A body held in memory, sent as one chunk.
struct StaticSource(Option<Bytes>);

impl ChunkSource for StaticSource {
    fn next_chunk(&mut self) -> Option<Bytes> {
        self.0.take().filter(|b| !b.is_empty())
    }
}

/// `remaining` filler bytes.
struct FillerSource {
    remaining: u64,
}

impl ChunkSource for FillerSource {
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = usize::try_from(self.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        self.remaining -= n as u64;
        Some(Bytes::from_static(&FILLER[..n]))
    }
}

/// The end of every generated line, after the padding.
const LINE_SUFFIX: &[u8] = b"\"}]}\n";

/// Synthetic NDJSON Observations (see `Reply::ndjson_generated`).
pub(crate) struct NdjsonSource {
    lines: usize,
    line_len: usize,
    next_line: usize,
    /// Padding still to write for the line in progress, if a line is in progress.
    pad_left: Option<usize>,
}

impl NdjsonSource {
    pub(crate) fn new(lines: usize, line_len: usize) -> Self {
        Self {
            lines,
            line_len,
            next_line: 0,
            pad_left: None,
        }
    }

    fn prefix(i: usize) -> String {
        format!(
            "{{\"resourceType\":\"Observation\",\"id\":\"obs-{i}\",\"status\":\"final\",\
             \"code\":{{\"text\":\"synthetic\"}},\"subject\":{{\"reference\":\"Patient/p-{}\"}},\
             \"valueQuantity\":{{\"value\":{i}}},\"note\":[{{\"text\":\"",
            i % 100
        )
    }
}

impl ChunkSource for NdjsonSource {
    fn next_chunk(&mut self) -> Option<Bytes> {
        let mut buf = BytesMut::with_capacity(CHUNK + 512);
        while buf.len() < CHUNK {
            let pad_left = match self.pad_left {
                Some(p) => p,
                None => {
                    if self.next_line >= self.lines {
                        break;
                    }
                    let prefix = Self::prefix(self.next_line);
                    buf.extend_from_slice(prefix.as_bytes());
                    // `line_len` counts the line without its newline.
                    let shortest = prefix.len() + LINE_SUFFIX.len() - 1;
                    self.line_len.saturating_sub(shortest)
                }
            };
            let room = CHUNK.saturating_sub(buf.len());
            let n = pad_left.min(room);
            buf.extend_from_slice(&FILLER[..n]);
            if pad_left > n {
                self.pad_left = Some(pad_left - n);
                break;
            }
            buf.extend_from_slice(LINE_SUFFIX);
            self.pad_left = None;
            self.next_line += 1;
        }
        (!buf.is_empty()).then(|| buf.freeze())
    }
}

/// Compresses another source with gzip as it goes.
struct GzipSource {
    inner: Box<dyn ChunkSource>,
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl ChunkSource for GzipSource {
    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let encoder = self.encoder.as_mut()?;
            match self.inner.next_chunk() {
                Some(chunk) => {
                    // Writing into a `Vec` cannot fail.
                    if encoder.write_all(&chunk).is_err() {
                        self.encoder = None;
                        return None;
                    }
                    // The encoder only appends to its `Vec`: taking what it wrote so far is safe.
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Some(Bytes::from(out));
                    }
                }
                None => {
                    let out = self.encoder.take()?.finish().ok()?;
                    return (!out.is_empty()).then(|| Bytes::from(out));
                }
            }
        }
    }
}

/// Compresses a whole body held in memory.
pub(crate) fn gzip_all(data: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a `Vec` cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Shared between a connection's [`ConnIo`] and the bodies sent on it: `0` until a body arms a
/// cut.
#[derive(Debug, Default)]
pub(crate) struct ConnControl(AtomicU8);

const CUT_CLOSE: u8 = 1;
const CUT_RESET: u8 = 2;

impl ConnControl {
    fn arm(&self, mode: CutMode) {
        let v = match mode {
            CutMode::Close => CUT_CLOSE,
            CutMode::Reset => CUT_RESET,
        };
        self.0.store(v, Ordering::SeqCst);
    }

    fn armed(&self) -> Option<CutMode> {
        match self.0.load(Ordering::SeqCst) {
            CUT_CLOSE => Some(CutMode::Close),
            CUT_RESET => Some(CutMode::Reset),
            _ => None,
        }
    }
}

/// A response body: chunks from a source, cut where a fault says.
pub(crate) struct ReplyBody {
    source: Option<Box<dyn ChunkSource>>,
    cut: Option<Cut>,
    sent: u64,
    hint: SizeHint,
    control: Arc<ConnControl>,
    armed: bool,
}

impl ReplyBody {
    /// The body for `spec`, compressed when `gzip`, cut by `cut`.
    pub(crate) fn new(
        spec: &BodySpec,
        gzip: bool,
        cut: Option<Cut>,
        control: Arc<ConnControl>,
    ) -> Self {
        let (source, len): (Box<dyn ChunkSource>, Option<u64>) = match spec {
            BodySpec::Static(bytes) => {
                let bytes = if gzip { gzip_all(bytes) } else { bytes.clone() };
                let len = bytes.len() as u64;
                (Box::new(StaticSource(Some(bytes))), Some(len))
            }
            BodySpec::Ndjson { lines, line_len } => {
                (Box::new(NdjsonSource::new(*lines, *line_len)), None)
            }
            BodySpec::Filler { bytes } => (Box::new(FillerSource { remaining: *bytes }), None),
        };
        let streamed_gzip = gzip && !matches!(spec, BodySpec::Static(_));
        let source: Box<dyn ChunkSource> = if streamed_gzip {
            Box::new(GzipSource {
                inner: source,
                encoder: Some(GzEncoder::new(Vec::new(), Compression::fast())),
            })
        } else {
            source
        };
        let hint = match (cut, len) {
            // A reset declares more than it sends.
            (
                Some(Cut {
                    after,
                    mode: CutMode::Reset,
                }),
                len,
            ) => SizeHint::with_exact(len.unwrap_or(0).max(after.saturating_add(1))),
            // A truncation and a generated body are chunked.
            (Some(_), _) | (None, None) => SizeHint::new(),
            (None, Some(len)) => SizeHint::with_exact(len),
        };
        Self {
            source: Some(source),
            cut,
            sent: 0,
            hint,
            control,
            armed: false,
        }
    }

    fn arm(&mut self, mode: CutMode) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.armed = true;
        self.control.arm(mode);
        // No waker is kept: hyper flushes next, and the armed connection ends there.
        Poll::Pending
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.armed {
            return Poll::Pending;
        }
        if let Some(cut) = this.cut {
            if this.sent >= cut.after {
                return this.arm(cut.mode);
            }
        }
        let Some(chunk) = this.source.as_mut().and_then(|s| s.next_chunk()) else {
            this.source = None;
            return match this.cut {
                Some(cut) => this.arm(cut.mode),
                None => Poll::Ready(None),
            };
        };
        let chunk = match this.cut {
            Some(cut) => {
                let room = cut.after.saturating_sub(this.sent);
                match usize::try_from(room) {
                    Ok(room) if room < chunk.len() => chunk.slice(..room),
                    _ => chunk,
                }
            }
            None => chunk,
        };
        this.sent = this.sent.saturating_add(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() && (self.source.is_none() || self.hint.exact() == Some(0))
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// A server connection's socket, which ends the connection when a body armed a cut.
pub(crate) struct ConnIo {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

impl ConnIo {
    pub(crate) fn new(stream: TcpStream, control: Arc<ConnControl>) -> Self {
        Self { stream, control }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        match this.control.armed() {
            None => Poll::Ready(Ok(())),
            Some(CutMode::Reset) => {
                // With a zero linger, closing the socket (when hyper drops it after this error)
                // sends a reset instead of a FIN. A zero linger never blocks the thread.
                let _ = this.stream.set_zero_linger();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "scripted connection reset",
                )))
            }
            Some(CutMode::Close) => {
                ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "scripted truncation",
                )))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn drain(source: &mut dyn ChunkSource) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = source.next_chunk() {
            assert!(!chunk.is_empty());
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn generated_ndjson_lines_are_valid_and_exactly_padded_sc_7_21() {
        let mut source = NdjsonSource::new(1_000, 300);
        let out = drain(&mut source);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1_000);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line.len(), 300, "line {i}");
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["resourceType"], "Observation");
            assert_eq!(v["id"], format!("obs-{i}"));
            assert_eq!(v["valueQuantity"]["value"], i);
        }
    }

    #[test]
    fn generated_ndjson_handles_short_and_huge_lines() {
        let out = drain(&mut NdjsonSource::new(3, 0));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3);
        for line in text.lines() {
            assert!(serde_json::from_str::<serde_json::Value>(line).is_ok());
        }
        // A line longer than a chunk spans several chunks.
        let mut source = NdjsonSource::new(2, 3 * CHUNK + 17);
        let mut chunks = 0;
        let mut out = Vec::new();
        while let Some(c) = source.next_chunk() {
            assert!(c.len() <= CHUNK + 512);
            chunks += 1;
            out.extend_from_slice(&c);
        }
        assert!(chunks >= 6, "{chunks}");
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == 3 * CHUNK + 17));
        assert!(drain(&mut NdjsonSource::new(0, 100)).is_empty());
    }

    #[test]
    fn filler_source_streams_exactly_the_requested_bytes() {
        let mut source = FillerSource {
            remaining: 2 * CHUNK as u64 + 5,
        };
        let sizes: Vec<usize> =
            std::iter::from_fn(|| source.next_chunk().map(|c| c.len())).collect();
        assert_eq!(sizes, [CHUNK, CHUNK, 5]);
    }

    #[test]
    fn streaming_gzip_round_trips() {
        let plain = drain(&mut NdjsonSource::new(500, 1_000));
        let mut gz = GzipSource {
            inner: Box::new(NdjsonSource::new(500, 1_000)),
            encoder: Some(GzEncoder::new(Vec::new(), Compression::fast())),
        };
        let compressed = drain(&mut gz);
        assert!(compressed.len() < plain.len() / 10);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain);
        assert!(gz.next_chunk().is_none());
    }

    #[test]
    fn size_hints_follow_the_cut() {
        let control = Arc::new(ConnControl::default());
        let spec = BodySpec::Static(Bytes::from_static(b"0123456789"));
        let plain = ReplyBody::new(&spec, false, None, control.clone());
        assert_eq!(plain.size_hint().exact(), Some(10));
        let reset = Cut {
            after: 4,
            mode: CutMode::Reset,
        };
        let body = ReplyBody::new(&spec, false, Some(reset), control.clone());
        assert_eq!(body.size_hint().exact(), Some(10));
        let long_reset = Cut {
            after: 40,
            mode: CutMode::Reset,
        };
        let body = ReplyBody::new(&spec, false, Some(long_reset), control.clone());
        assert_eq!(body.size_hint().exact(), Some(41));
        let close = Cut {
            after: 4,
            mode: CutMode::Close,
        };
        let body = ReplyBody::new(&spec, false, Some(close), control.clone());
        assert_eq!(body.size_hint().exact(), None);
        let generated = BodySpec::Ndjson {
            lines: 1,
            line_len: 1,
        };
        let body = ReplyBody::new(&generated, false, None, control);
        assert_eq!(body.size_hint().exact(), None);
    }

    #[tokio::test]
    async fn a_cut_body_sends_its_bytes_then_arms_the_connection() {
        use http_body_util::BodyExt as _;

        let control = Arc::new(ConnControl::default());
        let spec = BodySpec::Static(Bytes::from_static(b"0123456789"));
        let cut = Cut {
            after: 4,
            mode: CutMode::Close,
        };
        let mut body = ReplyBody::new(&spec, false, Some(cut), control.clone());
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.as_ref(), b"0123");
        assert_eq!(control.armed(), None);
        // The next poll arms the connection and never completes.
        let next = futures_poll_once(&mut body);
        assert!(next.is_pending());
        assert_eq!(control.armed(), Some(CutMode::Close));
    }

    fn futures_poll_once(body: &mut ReplyBody) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        Pin::new(body).poll_frame(&mut cx)
    }
}
