//! Scripted replies and the faults they can carry.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{json, Value};

/// A way for a reply to go wrong on the wire.
///
/// Add one to a [`Reply`] with [`Reply::fault`], or turn it into a reply of its own with
/// `Reply::from(fault)` (a `200` FHIR searchset Bundle of a few hundred bytes carrying the fault).
/// Faults that cut the body act on the bytes as sent, that is after [`Reply::gzip`]; a `HEAD`
/// request or a status without a body (`204`, `304`) never reaches the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Sends the status line and headers with a `Content-Length` larger than what follows,
    /// writes the first `after_bytes` bytes of the body, then aborts the connection with a TCP
    /// reset (`SO_LINGER` 0). The client sees a broken connection (`HttpErrorKind::Io`).
    ///
    /// The declared length is the body's length, or `after_bytes + 1` when the body is shorter.
    ResetMidBody {
        /// How many body bytes are written before the reset.
        after_bytes: usize,
    },
    /// Sends valid headers with `Transfer-Encoding: chunked`, writes the first `after_bytes`
    /// bytes of the body (all of it, if shorter), then closes the connection without the final
    /// chunk: a JSON document cut in the middle (`HttpErrorKind::Io`).
    Truncate {
        /// How many body bytes are written before the connection is closed.
        after_bytes: usize,
    },
    /// Replaces the body with `bytes` bytes of filler (`x`), streamed chunk by chunk with
    /// chunked encoding and no `Content-Length`, never held in memory: the client has to enforce
    /// its size limit while reading (`HttpErrorKind::BodyTooLarge`). Script a plain
    /// [`Reply::bytes`] to test a declared `Content-Length` instead.
    Oversize {
        /// The body's length.
        bytes: u64,
    },
    /// Never answers: the request is read and recorded, then nothing is sent until the client
    /// gives up or the server shuts down (`HttpErrorKind::Timeout` with a request timeout).
    Hang,
    /// Waits this long before answering (the only waiting this crate does).
    Delay(Duration),
}

/// How a cut body ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutMode {
    /// A FIN after the last byte.
    Close,
    /// A TCP reset after the last byte.
    Reset,
}

/// Where a body is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) after: u64,
    pub(crate) mode: CutMode,
}

/// What a reply's body is made of.
#[derive(Clone)]
pub(crate) enum BodySpec {
    /// Bytes held in memory.
    Static(Bytes),
    /// Synthetic NDJSON Observations, produced while sending.
    Ndjson { lines: usize, line_len: usize },
    /// Filler bytes, produced while sending.
    Filler { bytes: u64 },
}

/// One scripted HTTP response: a status, headers, a body and optionally a [`Fault`].
///
/// Built by value: `Reply::fhir(200, json!({...})).header("ETag", "W/\"2\"").require_auth()`.
/// A status outside `100..=999` is served as `500` with a text body naming the problem, and so
/// is a header whose name or value is not valid HTTP: the test sees the mistake instead of a
/// panic inside the server.
#[derive(Clone)]
pub struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: BodySpec,
    pub(crate) gzip: bool,
    pub(crate) require_auth: bool,
    pub(crate) delay: Option<Duration>,
    pub(crate) hang: bool,
    pub(crate) cut: Option<Cut>,
}

impl fmt::Debug for Reply {
    // The body is summarised: a scripted token response holds a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            BodySpec::Static(b) => format!("{} bytes", b.len()),
            BodySpec::Ndjson { lines, line_len } => {
                format!("{lines} generated NDJSON lines of {line_len} bytes")
            }
            BodySpec::Filler { bytes } => format!("{bytes} filler bytes"),
        };
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("header_names", &header_names)
            .field("body", &body)
            .field("gzip", &self.gzip)
            .field("require_auth", &self.require_auth)
            .field("delay", &self.delay)
            .field("hang", &self.hang)
            .field("cut", &self.cut)
            .finish()
    }
}

pub(crate) const FHIR_JSON: &str = "application/fhir+json";
pub(crate) const FHIR_NDJSON: &str = "application/fhir+ndjson";

impl Reply {
    fn new(status: u16, content_type: Option<&str>, body: BodySpec) -> Self {
        Self {
            status,
            headers: content_type
                .map(|ct| vec![("content-type".to_owned(), ct.to_owned())])
                .unwrap_or_default(),
            body,
            gzip: false,
            require_auth: false,
            delay: None,
            hang: false,
            cut: None,
        }
    }

    /// `application/json` with `value` as the body.
    pub fn json(status: u16, value: Value) -> Self {
        Self::new(
            status,
            Some("application/json"),
            BodySpec::Static(json_bytes(&value)),
        )
    }

    /// `application/fhir+json` with `value` as the body.
    pub fn fhir(status: u16, value: Value) -> Self {
        Self::new(
            status,
            Some(FHIR_JSON),
            BodySpec::Static(json_bytes(&value)),
        )
    }

    /// An `application/fhir+json` OperationOutcome with one `error` issue of the given
    /// `code` (`not-found`, `transient`, `throttled`, …) and `diagnostics` text.
    pub fn operation_outcome(status: u16, code: &str, diagnostics: &str) -> Self {
        Self::fhir(status, operation_outcome(code, diagnostics))
    }

    /// `text/html; charset=utf-8`: what a proxy or a login page sends instead of JSON.
    pub fn html(status: u16, text: impl Into<String>) -> Self {
        Self::new(
            status,
            Some("text/html; charset=utf-8"),
            BodySpec::Static(Bytes::from(text.into())),
        )
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(
            status,
            Some("text/plain; charset=utf-8"),
            BodySpec::Static(Bytes::from(text.into())),
        )
    }

    /// Raw bytes, with no `Content-Type` (add one with [`header`](Self::header)).
    pub fn bytes(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, None, BodySpec::Static(body.into()))
    }

    /// No body and no `Content-Type`: for `202`, `204`, `304` and the like.
    pub fn empty(status: u16) -> Self {
        Self::bytes(status, Bytes::new())
    }

    /// `200` `application/fhir+ndjson`: each value on its own line, each line ending in `\n`.
    pub fn ndjson(lines: impl IntoIterator<Item = Value>) -> Self {
        let mut body = Vec::new();
        for line in lines {
            body.extend_from_slice(&json_bytes(&line));
            body.push(b'\n');
        }
        Self::new(200, Some(FHIR_NDJSON), BodySpec::Static(Bytes::from(body)))
    }

    /// `200` `application/fhir+ndjson` with `lines` synthetic Observation resources, produced
    /// while sending (chunked, never held in memory): for benchmarks and large Bulk Data files.
    ///
    /// Line `i` (from 0) is an Observation with id `obs-{i}` and `valueQuantity.value` `i`,
    /// padded in `note[0].text` to exactly `line_len` bytes before its `\n` (or left at its
    /// shortest, about 200 bytes, when `line_len` is smaller). Combine with
    /// [`gzip`](Self::gzip) for a compressed stream.
    pub fn ndjson_generated(lines: usize, line_len: usize) -> Self {
        Self::new(200, Some(FHIR_NDJSON), BodySpec::Ndjson { lines, line_len })
    }

    /// A `status` (`429` or `503`, usually) OperationOutcome with `Retry-After: secs`.
    pub fn retry_after_secs(status: u16, secs: u64) -> Self {
        Self::retry_later(status).header("retry-after", secs.to_string())
    }

    /// A `status` (`429` or `503`, usually) OperationOutcome with `Retry-After` as an HTTP-date
    /// (`Sun, 06 Nov 1994 08:49:37 GMT`). A time before 1970 is sent as the epoch.
    pub fn retry_after_date(status: u16, at: SystemTime) -> Self {
        let at = at.max(SystemTime::UNIX_EPOCH);
        Self::retry_later(status).header("retry-after", httpdate::fmt_http_date(at))
    }

    fn retry_later(status: u16) -> Self {
        let code = if status == 429 {
            "throttled"
        } else {
            "transient"
        };
        Self::operation_outcome(status, code, "try again later")
    }

    /// Changes the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets a header, replacing any values of the same name (names compare case-insensitively).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a header value, keeping the values already set under that name.
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Compresses the body with gzip and sends `Content-Encoding: gzip`.
    pub fn gzip(mut self) -> Self {
        self.gzip = true;
        self
    }

    /// Answers `401` with `WWW-Authenticate: Bearer …` instead, unless the request carries a live
    /// bearer token from this server's token endpoint (SC-3.10, SC-8.26).
    ///
    /// A refused request does not use up the reply: after renewing its token, the client gets
    /// the reply it was refused.
    pub fn require_auth(mut self) -> Self {
        self.require_auth = true;
        self
    }

    /// Adds a fault. Several combine: `Delay` with any other; the last cut
    /// (`ResetMidBody`/`Truncate`) wins.
    pub fn fault(mut self, fault: Fault) -> Self {
        match fault {
            Fault::ResetMidBody { after_bytes } => {
                self.cut = Some(Cut {
                    after: to_u64(after_bytes),
                    mode: CutMode::Reset,
                });
            }
            Fault::Truncate { after_bytes } => {
                self.cut = Some(Cut {
                    after: to_u64(after_bytes),
                    mode: CutMode::Close,
                });
            }
            Fault::Oversize { bytes } => self.body = BodySpec::Filler { bytes },
            Fault::Hang => self.hang = true,
            Fault::Delay(d) => self.delay = Some(d),
        }
        self
    }
}

impl From<Fault> for Reply {
    fn from(fault: Fault) -> Self {
        Reply::fhir(200, sample_bundle()).fault(fault)
    }
}

/// A searchset Bundle of three Patients: the body of `Reply::from(fault)`.
fn sample_bundle() -> Value {
    let entries: Vec<Value> = (1..=3)
        .map(|i| {
            json!({
                "fullUrl": format!("Patient/p{i}"),
                "resource": {"resourceType": "Patient", "id": format!("p{i}"), "active": true}
            })
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": 3, "entry": entries})
}

pub(crate) fn operation_outcome(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
    })
}

fn json_bytes(value: &Value) -> Bytes {
    // Serialising a `Value` cannot fail: its map keys are strings.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(reply: &'a Reply, name: &str) -> Vec<&'a str> {
        reply
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn constructors_set_content_types() {
        assert_eq!(
            header(&Reply::json(200, json!({})), "content-type"),
            ["application/json"]
        );
        assert_eq!(
            header(&Reply::fhir(200, json!({})), "content-type"),
            [FHIR_JSON]
        );
        assert_eq!(
            header(&Reply::html(502, "<h1>Bad gateway</h1>"), "content-type"),
            ["text/html; charset=utf-8"]
        );
        assert!(header(&Reply::bytes(200, "x"), "content-type").is_empty());
        assert_eq!(
            header(&Reply::ndjson_generated(1, 1), "content-type"),
            [FHIR_NDJSON]
        );
    }

    #[test]
    fn header_replaces_case_insensitively_and_append_keeps() {
        let r = Reply::fhir(200, json!({}))
            .header("Content-Type", "application/json+fhir")
            .append_header("Link", "<a>")
            .append_header("link", "<b>");
        assert_eq!(header(&r, "content-type"), ["application/json+fhir"]);
        assert_eq!(header(&r, "link"), ["<a>", "<b>"]);
    }

    #[test]
    fn ndjson_puts_one_value_per_line() {
        let r = Reply::ndjson([json!({"a": 1}), json!({"b": 2})]);
        let BodySpec::Static(body) = &r.body else {
            panic!("static body expected");
        };
        assert_eq!(body.as_ref(), b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn retry_after_helpers_sc_7_10_sc_7_11() {
        let r = Reply::retry_after_secs(429, 7);
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), ["7"]);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let r = Reply::retry_after_date(503, at);
        assert_eq!(header(&r, "retry-after"), ["Sun, 06 Nov 1994 08:49:37 GMT"]);
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        let r = Reply::retry_after_date(503, leap);
        assert_eq!(header(&r, "retry-after"), ["Tue, 29 Feb 2000 00:00:00 GMT"]);
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(10);
        let r = Reply::retry_after_date(503, before);
        assert_eq!(header(&r, "retry-after"), ["Thu, 01 Jan 1970 00:00:00 GMT"]);
    }

    #[test]
    fn faults_combine() {
        let r = Reply::from(Fault::Delay(Duration::from_millis(5)))
            .fault(Fault::Truncate { after_bytes: 3 })
            .fault(Fault::ResetMidBody { after_bytes: 9 });
        assert_eq!(r.delay, Some(Duration::from_millis(5)));
        assert_eq!(
            r.cut,
            Some(Cut {
                after: 9,
                mode: CutMode::Reset
            })
        );
        assert!(!r.hang);
        assert!(Reply::from(Fault::Hang).hang);
        let r = Reply::from(Fault::Oversize { bytes: 10 });
        assert!(matches!(r.body, BodySpec::Filler { bytes: 10 }));
    }

    #[test]
    fn debug_does_not_show_the_body() {
        let r = Reply::json(200, json!({"access_token": "secret-token-value"}));
        let s = format!("{r:?}");
        assert!(!s.contains("secret-token-value"), "{s}");
        assert!(s.contains("bytes"), "{s}");
    }
}
