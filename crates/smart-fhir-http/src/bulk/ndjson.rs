//! Sans-IO pieces of the NDJSON download: `Content-Encoding` decoding and line splitting, both
//! in flat memory (SC-7.19–SC-7.21, P15).

use std::fmt;
use std::io::Write;

use bytes::{Buf, Bytes, BytesMut};
use flate2::write::MultiGzDecoder;

/// The most input handed to the gzip decoder at once; each call yields at most 32 KiB.
const GZIP_SLICE: usize = 16 * 1024;
/// The most identity-encoded input moved into the line buffer at once.
const IDENTITY_SLICE: usize = 64 * 1024;

/// Turns the body as received into the bytes of the NDJSON file.
pub(crate) struct BodyDecoder {
    state: DecoderState,
    /// The first bytes, while sniffing for a gzip stream without `Content-Encoding`.
    sniffed: Vec<u8>,
    /// Whether any input reached the gzip decoder.
    fed: bool,
}

enum DecoderState {
    /// No `Content-Encoding`: gzip if the body starts with the gzip magic bytes (a `.gz` file
    /// served as it is), else identity. NDJSON never starts with `0x1f`.
    Sniff,
    Identity,
    Gzip(Box<MultiGzDecoder<Vec<u8>>>),
    Finished,
}

impl fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            DecoderState::Sniff => "sniff",
            DecoderState::Identity => "identity",
            DecoderState::Gzip(_) => "gzip",
            DecoderState::Finished => "finished",
        };
        f.debug_struct("BodyDecoder")
            .field("state", &state)
            .finish()
    }
}

impl BodyDecoder {
    /// A decoder for a `Content-Encoding` header value (SC-7.20): `gzip`, `x-gzip`, `identity`
    /// or none. Anything else is refused with a reason.
    pub(crate) fn new(content_encoding: Option<&str>) -> Result<Self, String> {
        let state = match content_encoding.map(|v| v.trim().to_ascii_lowercase()) {
            None => DecoderState::Sniff,
            Some(v) if v.is_empty() || v == "identity" => DecoderState::Sniff,
            Some(v) if v == "gzip" || v == "x-gzip" => {
                DecoderState::Gzip(Box::new(MultiGzDecoder::new(Vec::new())))
            }
            Some(v) => {
                let shown: String = v.chars().filter(|c| !c.is_control()).take(40).collect();
                return Err(format!("unsupported Content-Encoding {shown:?}"));
            }
        };
        Ok(Self {
            state,
            sniffed: Vec::new(),
            fed: false,
        })
    }

    /// Decodes a bounded part of `input` into `out` and returns how many input bytes it
    /// consumed: more than zero whenever `input` is not empty.
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut BytesMut) -> Result<usize, String> {
        if input.is_empty() {
            return Ok(0);
        }
        match &mut self.state {
            DecoderState::Sniff => {
                let need = 2usize.saturating_sub(self.sniffed.len());
                let take = need.min(input.len());
                self.sniffed
                    .extend_from_slice(input.get(..take).unwrap_or_default());
                if self.sniffed.len() >= 2 {
                    self.state = Self::sniffed_state(&self.sniffed);
                    let head = std::mem::take(&mut self.sniffed);
                    self.feed_head(&head, out)?;
                }
                Ok(take)
            }
            DecoderState::Identity => {
                let take = input.len().min(IDENTITY_SLICE);
                out.extend_from_slice(input.get(..take).unwrap_or_default());
                Ok(take)
            }
            DecoderState::Gzip(decoder) => {
                self.fed = true;
                let slice = input.get(..input.len().min(GZIP_SLICE)).unwrap_or_default();
                let n = decoder.write(slice).map_err(|_| corrupt())?;
                if n == 0 {
                    return Err(corrupt());
                }
                drain(decoder, out);
                if n == input.len() {
                    // Everything given is consumed: push out what the decoder still holds, so
                    // that complete lines reach the caller without waiting for more input.
                    decoder.flush().map_err(|_| corrupt())?;
                    drain(decoder, out);
                }
                Ok(n)
            }
            DecoderState::Finished => Err("data after the end of the body".to_owned()),
        }
    }

    /// The end of the body: checks that a gzip stream is complete (a truncated one is an
    /// error) and writes out the rest.
    pub(crate) fn finish(&mut self, out: &mut BytesMut) -> Result<(), String> {
        let state = std::mem::replace(&mut self.state, DecoderState::Finished);
        match state {
            DecoderState::Sniff => {
                out.extend_from_slice(&std::mem::take(&mut self.sniffed));
                Ok(())
            }
            DecoderState::Identity | DecoderState::Finished => Ok(()),
            // An empty body is an empty file, also when the server says it is gzipped.
            DecoderState::Gzip(_) if !self.fed => Ok(()),
            DecoderState::Gzip(mut decoder) => {
                decoder.try_finish().map_err(|_| corrupt())?;
                drain(&mut decoder, out);
                Ok(())
            }
        }
    }

    /// Whether the body is known to be identity-encoded (sniffing done), so that its bytes
    /// are the file's and lines can be cut from them directly
    /// ([`LineSplitter::next_line_from`]).
    pub(crate) fn is_identity(&self) -> bool {
        matches!(self.state, DecoderState::Identity)
    }

    /// Decides, without consuming anything, whether a body without `Content-Encoding` is
    /// gzipped, when `head` is its start and holds two bytes or more; otherwise the first
    /// [`decode`](Self::decode) calls sniff. Deciding here lets an identity body's first line
    /// be cut from its chunk like the others instead of being copied.
    pub(crate) fn sniff(&mut self, head: &[u8]) {
        if matches!(self.state, DecoderState::Sniff) && self.sniffed.is_empty() && head.len() >= 2 {
            self.state = Self::sniffed_state(head);
        }
    }

    fn sniffed_state(head: &[u8]) -> DecoderState {
        if head.starts_with(&[0x1f, 0x8b]) {
            DecoderState::Gzip(Box::new(MultiGzDecoder::new(Vec::new())))
        } else {
            DecoderState::Identity
        }
    }

    fn feed_head(&mut self, head: &[u8], out: &mut BytesMut) -> Result<(), String> {
        let mut rest = head;
        while !rest.is_empty() {
            let n = self.decode(rest, out)?;
            rest = rest.get(n..).unwrap_or_default();
        }
        Ok(())
    }
}

fn drain(decoder: &mut MultiGzDecoder<Vec<u8>>, out: &mut BytesMut) {
    let produced = decoder.get_mut();
    out.extend_from_slice(produced);
    produced.clear();
}

fn corrupt() -> String {
    "the gzip stream is corrupt or truncated".to_owned()
}

/// Splits decoded bytes into lines, holding at most one line (plus one decoded piece) in
/// memory. A line longer than the bound is an error, never unbounded growth (P15).
pub(crate) struct LineSplitter {
    buf: BytesMut,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    max_line: usize,
    /// Physical lines returned or skipped so far.
    line: u64,
}

impl fmt::Debug for LineSplitter {
    // The buffer holds patient data: never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineSplitter")
            .field("buffered", &self.buf.len())
            .field("max_line", &self.max_line)
            .field("line", &self.line)
            .finish()
    }
}

/// A line over the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong {
    /// Its 1-based number.
    pub(crate) line: u64,
}

impl LineSplitter {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max_line: max_line.max(1),
            line: 0,
        }
    }

    /// Where the decoder appends.
    pub(crate) fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next complete, non-blank line (without `\n` or `\r\n`), with its 1-based number.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, Bytes)>, LineTooLong> {
        loop {
            let from = self.scanned.min(self.buf.len());
            let found = self
                .buf
                .get(from..)
                .and_then(|rest| memchr::memchr(b'\n', rest));
            let Some(offset) = found else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line {
                    return Err(LineTooLong {
                        line: self.line.saturating_add(1),
                    });
                }
                return Ok(None);
            };
            let end = from + offset;
            let mut line = self.buf.split_to(end + 1);
            self.scanned = 0;
            line.truncate(end);
            self.line = self.line.saturating_add(1);
            if let Some(l) = self.finish_line(line.freeze())? {
                return Ok(Some(l));
            }
        }
    }

    /// The fast path of [`Self::next_line_from`], for the common line: nothing buffered, the
    /// line complete inside `chunk`, not blank, not over the bound, and not the first line (which
    /// may start with a byte order mark). Cuts it from `chunk` and returns it with its number;
    /// returns `None`, consuming nothing, for any other case, which
    /// [`Self::next_line_from`] then handles.
    #[inline]
    pub(crate) fn cut_line(&mut self, chunk: &mut Bytes) -> Option<(u64, Bytes)> {
        if !self.buf.is_empty() || self.line == 0 {
            return None;
        }
        let end = memchr::memchr(b'\n', chunk)?;
        let len = if end > 0 && chunk.get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        };
        // A line starting with white space may be blank: the general path decides.
        if len == 0 || len > self.max_line || chunk.first()?.is_ascii_whitespace() {
            return None;
        }
        let mut line = chunk.split_to(end + 1);
        line.truncate(len);
        self.line += 1;
        Some((self.line, line))
    }

    /// The next complete, non-blank line of identity-encoded input: the buffered lines first,
    /// then lines cut from `chunk` itself without copying them; only a line that `chunk` does
    /// not complete is copied into the buffer (bounded as by [`Self::next_line`]). `None` once
    /// `chunk` is used up.
    pub(crate) fn next_line_from(
        &mut self,
        chunk: &mut Bytes,
    ) -> Result<Option<(u64, Bytes)>, LineTooLong> {
        loop {
            // Once per line: skip the buffered path (a search of an empty buffer) when it is
            // empty, as it is between lines that lie inside one chunk.
            if !self.buf.is_empty() {
                if let Some(line) = self.next_line()? {
                    return Ok(Some(line));
                }
            }
            if chunk.is_empty() {
                return Ok(None);
            }
            match memchr::memchr(b'\n', chunk) {
                Some(end) if self.buf.is_empty() => {
                    let mut line = chunk.split_to(end + 1);
                    line.truncate(end);
                    self.line = self.line.saturating_add(1);
                    if let Some(l) = self.finish_line(line)? {
                        return Ok(Some(l));
                    }
                }
                Some(end) => {
                    // The end of the buffered line: the next `next_line` returns it whole.
                    self.buf
                        .extend_from_slice(chunk.get(..=end).unwrap_or_default());
                    chunk.advance(end + 1);
                }
                None => {
                    let take = chunk.len().min(IDENTITY_SLICE);
                    self.buf
                        .extend_from_slice(chunk.get(..take).unwrap_or_default());
                    chunk.advance(take);
                }
            }
        }
    }

    /// After the end of the input: the last line when it had no trailing newline.
    pub(crate) fn finish(&mut self) -> Result<Option<(u64, Bytes)>, LineTooLong> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let line = self.buf.split();
        self.scanned = 0;
        self.line = self.line.saturating_add(1);
        self.finish_line(line.freeze())
    }

    #[inline]
    fn finish_line(&self, mut line: Bytes) -> Result<Option<(u64, Bytes)>, LineTooLong> {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_line {
            return Err(LineTooLong { line: self.line });
        }
        if self.line == 1 && line.starts_with(b"\xEF\xBB\xBF") {
            // A UTF-8 byte order mark some writers put at the start of a file.
            line.advance(3);
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(None);
        }
        Ok(Some((self.line, line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    fn lines_of(splitter: &mut LineSplitter) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while let Some((n, l)) = splitter.next_line().unwrap() {
            out.push((n, String::from_utf8(l.to_vec()).unwrap()));
        }
        out
    }

    /// SC-7.21: lines split across pushes, CRLF, blank lines, a last line without newline.
    #[test]
    fn sc_7_21_splits_lines_across_chunks() {
        let mut s = LineSplitter::new(100);
        s.buffer_mut().extend_from_slice(b"{\"a\":1}\r\n\n{\"b\"");
        assert_eq!(lines_of(&mut s), vec![(1, "{\"a\":1}".to_owned())]);
        s.buffer_mut().extend_from_slice(b":2}\n  \n{\"c\":3}");
        assert_eq!(lines_of(&mut s), vec![(3, "{\"b\":2}".to_owned())]);
        let last = s.finish().unwrap().unwrap();
        assert_eq!((last.0, &last.1[..]), (5, &b"{\"c\":3}"[..]));
        assert!(s.finish().unwrap().is_none());
    }

    #[test]
    fn bom_is_stripped_from_the_first_line_only() {
        let mut s = LineSplitter::new(100);
        s.buffer_mut()
            .extend_from_slice(b"\xEF\xBB\xBF{}\n\xEF\xBB\xBF{}\n");
        let lines = lines_of(&mut s);
        assert_eq!(lines[0].1, "{}");
        assert_eq!(lines[1].1, "\u{feff}{}");
    }

    /// P15: a line over the bound fails, whether or not its newline has arrived.
    #[test]
    fn p15_over_long_line_fails() {
        let mut s = LineSplitter::new(8);
        s.buffer_mut().extend_from_slice(b"{}\n0123456789");
        assert_eq!(s.next_line().unwrap().unwrap().0, 1);
        assert_eq!(s.next_line(), Err(LineTooLong { line: 2 }));

        let mut s = LineSplitter::new(8);
        s.buffer_mut().extend_from_slice(b"0123456789\n");
        assert_eq!(s.next_line(), Err(LineTooLong { line: 1 }));

        let mut s = LineSplitter::new(8);
        s.buffer_mut().extend_from_slice(b"0123456789");
        assert_eq!(s.next_line(), Err(LineTooLong { line: 1 }));
    }

    /// Every line of `input` fed in chunks of `step` through `next_line_from`, then `finish`.
    fn lines_from(
        input: &[u8],
        step: usize,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LineTooLong> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            let mut chunk = Bytes::copy_from_slice(piece);
            while let Some((n, l)) = s.next_line_from(&mut chunk)? {
                out.push((n, l.to_vec()));
            }
            assert!(chunk.is_empty());
        }
        if let Some((n, l)) = s.finish()? {
            out.push((n, l.to_vec()));
        }
        Ok(out)
    }

    /// SC-7.21: cutting lines from the chunks gives the lines and numbers of the buffered
    /// path, whatever the chunk boundaries (CRLF cut in two, blank lines, BOM, no final newline).
    #[test]
    fn sc_7_21_lines_from_chunks_match_the_buffered_split() {
        let input = b"\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \n{\"b\":22}\n\n{\"c\":333}\r\n{\"d\":4}";
        let mut s = LineSplitter::new(100);
        s.buffer_mut().extend_from_slice(input);
        let mut expected: Vec<(u64, Vec<u8>)> = Vec::new();
        while let Some((n, l)) = s.next_line().unwrap() {
            expected.push((n, l.to_vec()));
        }
        let (n, l) = s.finish().unwrap().unwrap();
        expected.push((n, l.to_vec()));
        assert_eq!(expected.len(), 4);
        assert_eq!(expected[0], (1, b"{\"a\":1}".to_vec()));
        assert_eq!(expected[3], (7, b"{\"d\":4}".to_vec()));
        for step in 1..=input.len() {
            assert_eq!(
                lines_from(input, step, 100).unwrap(),
                expected,
                "step {step}"
            );
        }
    }

    /// The fast path gives the lines and numbers of the general one, and leaves to it every
    /// line it does not handle (the first, blank ones, CRLF cut by a chunk, over-long ones).
    #[test]
    fn sc_7_21_fast_path_matches_the_general_path() {
        let input =
            b"\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \n{\"b\":22}\n\n{\"c\":333}\r\n {\"d\":4}\n{\"e\":5}";
        for step in 1..=input.len() {
            let mut general = LineSplitter::new(100);
            let mut fast = LineSplitter::new(100);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for piece in input.chunks(step) {
                let mut chunk = Bytes::copy_from_slice(piece);
                while let Some((n, l)) = general.next_line_from(&mut chunk).unwrap() {
                    a.push((n, l.to_vec()));
                }
                let mut chunk = Bytes::copy_from_slice(piece);
                loop {
                    if let Some((n, l)) = fast.cut_line(&mut chunk) {
                        b.push((n, l.to_vec()));
                        continue;
                    }
                    match fast.next_line_from(&mut chunk).unwrap() {
                        Some((n, l)) => b.push((n, l.to_vec())),
                        None => break,
                    }
                }
            }
            a.extend(general.finish().unwrap().map(|(n, l)| (n, l.to_vec())));
            b.extend(fast.finish().unwrap().map(|(n, l)| (n, l.to_vec())));
            assert_eq!(a, b, "step {step}");
            assert_eq!(b.len(), 5, "step {step}");
            assert_eq!(b[3], (7, b" {\"d\":4}".to_vec()), "step {step}");
        }
        let mut s = LineSplitter::new(4);
        s.line = 1;
        let mut chunk = Bytes::from_static(b"{\"a\":1}\n");
        assert_eq!(s.cut_line(&mut chunk), None, "over the bound: not cut");
        assert_eq!(chunk.len(), 8, "nothing consumed");
        assert_eq!(s.next_line_from(&mut chunk), Err(LineTooLong { line: 2 }));
    }

    /// P15: a line over the bound fails on the direct path too, whether it sits inside one
    /// chunk, spans chunks, or never ends.
    #[test]
    fn p15_over_long_line_fails_when_cut_from_chunks() {
        let input = b"{}\n0123456789\n{}\n";
        for step in [1, 3, 5, input.len()] {
            assert_eq!(
                lines_from(input, step, 8),
                Err(LineTooLong { line: 2 }),
                "step {step}"
            );
        }
        let endless = vec![b'x'; 3 * IDENTITY_SLICE];
        for step in [7, IDENTITY_SLICE + 1, endless.len()] {
            assert_eq!(
                lines_from(&endless, step, IDENTITY_SLICE),
                Err(LineTooLong { line: 1 }),
                "step {step}"
            );
        }
    }

    /// A line inside one chunk is handed out as part of that chunk, not a copy.
    #[test]
    fn lines_inside_a_chunk_are_not_copied() {
        let mut s = LineSplitter::new(100);
        let mut chunk = Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n");
        let start = chunk.as_ptr();
        let (_, first) = s.next_line_from(&mut chunk).unwrap().unwrap();
        let (_, second) = s.next_line_from(&mut chunk).unwrap().unwrap();
        assert_eq!(first.as_ptr(), start);
        assert_eq!(second.as_ptr(), start.wrapping_add(8));
        assert!(s.next_line_from(&mut chunk).unwrap().is_none());
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode_all(d: &mut BodyDecoder, input: &[u8], step: usize) -> Result<Vec<u8>, String> {
        let mut out = BytesMut::new();
        for chunk in input.chunks(step.max(1)) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let n = d.decode(rest, &mut out)?;
                assert!(n > 0);
                rest = &rest[n..];
            }
        }
        d.finish(&mut out)?;
        Ok(out.to_vec())
    }

    /// SC-7.20: gzip is decoded in pieces, also a body that is several gzip members.
    #[test]
    fn sc_7_20_gzip_in_pieces_and_multi_member() {
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("{{\"id\":\"{i}\"}}\n").into_bytes())
            .collect();
        let gz = gzip(&text);
        for step in [1, 7, 4096, gz.len()] {
            let mut d = BodyDecoder::new(Some("gzip")).unwrap();
            assert_eq!(decode_all(&mut d, &gz, step).unwrap(), text, "step {step}");
        }
        let mut two = gzip(b"{\"a\":1}\n");
        two.extend(gzip(b"{\"b\":2}\n"));
        let mut d = BodyDecoder::new(Some("x-gzip")).unwrap();
        assert_eq!(
            decode_all(&mut d, &two, 3).unwrap(),
            b"{\"a\":1}\n{\"b\":2}\n"
        );
    }

    /// SC-7.20: a truncated or corrupt gzip stream is an error, never a short file.
    #[test]
    fn sc_7_20_truncated_gzip_fails() {
        let gz = gzip(&b"{\"id\":\"x\"}\n".repeat(100));
        for cut in [5, 12, gz.len() / 2, gz.len() - 4, gz.len() - 1] {
            let mut d = BodyDecoder::new(Some("gzip")).unwrap();
            assert!(decode_all(&mut d, &gz[..cut], 64).is_err(), "cut at {cut}");
        }
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad[mid + 1] ^= 0xff;
        let mut d = BodyDecoder::new(Some("gzip")).unwrap();
        assert!(decode_all(&mut d, &bad, 64).is_err());
    }

    #[test]
    fn sniffs_gzip_without_content_encoding_and_passes_text() {
        let gz = gzip(b"{\"a\":1}\n");
        let mut d = BodyDecoder::new(None).unwrap();
        assert_eq!(decode_all(&mut d, &gz, 1).unwrap(), b"{\"a\":1}\n");
        assert!(matches!(d.state, DecoderState::Finished));
        let mut d = BodyDecoder::new(Some("identity")).unwrap();
        assert_eq!(decode_all(&mut d, b"{}\n{}", 1).unwrap(), b"{}\n{}");
        let mut d = BodyDecoder::new(None).unwrap();
        assert_eq!(decode_all(&mut d, b"{", 1).unwrap(), b"{");
        let mut d = BodyDecoder::new(Some("gzip")).unwrap();
        assert_eq!(decode_all(&mut d, b"", 1).unwrap(), b"");
    }

    /// Sniffing from a chunk's head decides without consuming: the whole chunk still decodes.
    #[test]
    fn sniffing_a_head_consumes_nothing() {
        let gz = gzip(b"{\"a\":1}\n");
        let mut d = BodyDecoder::new(None).unwrap();
        d.sniff(&gz);
        assert!(matches!(d.state, DecoderState::Gzip(_)));
        assert_eq!(decode_all(&mut d, &gz, 5).unwrap(), b"{\"a\":1}\n");
        let mut d = BodyDecoder::new(None).unwrap();
        d.sniff(b"{}\n");
        assert!(d.is_identity());
        let mut d = BodyDecoder::new(None).unwrap();
        d.sniff(b"{");
        assert!(!d.is_identity(), "one byte decides nothing");
        let mut d = BodyDecoder::new(Some("gzip")).unwrap();
        d.sniff(b"{}\n");
        assert!(!d.is_identity(), "the header wins");
    }

    #[test]
    fn unknown_encodings_are_refused() {
        assert!(BodyDecoder::new(Some("br")).is_err());
        assert!(BodyDecoder::new(Some("deflate")).is_err());
        assert!(BodyDecoder::new(Some("GZIP")).is_ok());
    }

    /// P15: a gzip bomb is decoded in bounded pieces.
    #[test]
    fn p15_decoded_output_per_step_is_bounded() {
        let gz = gzip(&vec![b' '; 8 * 1024 * 1024]);
        let mut d = BodyDecoder::new(Some("gzip")).unwrap();
        let mut rest = &gz[..];
        let mut largest = 0;
        while !rest.is_empty() {
            let mut out = BytesMut::new();
            let n = d.decode(rest, &mut out).unwrap();
            largest = largest.max(out.len());
            rest = &rest[n..];
        }
        assert!(largest <= 256 * 1024, "one step produced {largest} bytes");
    }
}
