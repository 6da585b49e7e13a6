//! A routed, recording `HttpClient` fake with chunked (streaming) bodies, and a token source,
//! for the Bulk Data tests.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use smart_fhir_core::{
    AccessToken, ChunkStream, FhirBaseUrl, HttpClient, HttpError, HttpErrorKind, StreamingBody,
};
use smart_fhir_core::{AccessTokenProvider, ProviderError};
use smart_fhir_http::{FhirClient, FhirClientBuilder};

pub(crate) const BASE: &str = "https://ehr.example/fhir";
pub(crate) const STATUS: &str = "https://ehr.example/fhir/bulk-status/42";

/// A request as the transport saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was sent, on tokio's (possibly paused) clock.
    pub at: tokio::time::Instant,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn path(&self) -> String {
        self.uri.parse::<http::Uri>().unwrap().path().to_owned()
    }

    pub(crate) fn query(&self) -> Option<String> {
        self.uri
            .parse::<http::Uri>()
            .unwrap()
            .query()
            .map(str::to_owned)
    }

    pub(crate) fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON request body")
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<Bytes>,
        /// The body breaks after the chunks.
        then_fail: Option<HttpErrorKind>,
        /// Answer 401 unless the request carries `Bearer <this>`.
        require_token: Option<String>,
    },
    Fail(HttpErrorKind),
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self::Response {
            status,
            headers: vec![],
            chunks: vec![],
            then_fail: None,
            require_token: None,
        }
    }

    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self::status(status)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    pub(crate) fn outcome(status: u16, code: &str, diagnostics: &str) -> Self {
        Self::json(
            status,
            json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
            }),
        )
    }

    /// An NDJSON body, split into chunks of `chunk` bytes.
    pub(crate) fn ndjson(text: impl AsRef<[u8]>, chunk: usize) -> Self {
        Self::status(200)
            .header("content-type", "application/fhir+ndjson")
            .chunks(text.as_ref(), chunk)
    }

    /// A gzipped NDJSON body (`Content-Encoding: gzip`), split into chunks.
    pub(crate) fn ndjson_gzip(text: impl AsRef<[u8]>, chunk: usize) -> Self {
        Self::status(200)
            .header("content-type", "application/fhir+ndjson")
            .header("content-encoding", "gzip")
            .chunks(&gzip(text.as_ref()), chunk)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        if let Self::Response { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Bytes>) -> Self {
        if let Self::Response { chunks, .. } = &mut self {
            *chunks = vec![body.into()];
        }
        self
    }

    pub(crate) fn chunks(mut self, data: &[u8], size: usize) -> Self {
        if let Self::Response { chunks, .. } = &mut self {
            *chunks = data
                .chunks(size.max(1))
                .map(Bytes::copy_from_slice)
                .collect();
        }
        self
    }

    pub(crate) fn then_fail(mut self, kind: HttpErrorKind) -> Self {
        if let Self::Response { then_fail, .. } = &mut self {
            *then_fail = Some(kind);
        }
        self
    }

    pub(crate) fn require_token(mut self, token: &str) -> Self {
        if let Self::Response { require_token, .. } = &mut self {
            *require_token = Some(token.to_owned());
        }
        self
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[derive(Debug, Default)]
struct State {
    /// By method and path: replies in order; the last one repeats.
    routes: HashMap<(Method, String), VecDeque<Reply>>,
    seen: Vec<Seen>,
}

/// Answers by method and URL path (query ignored) from per-route scripts, and records every
/// request. Each route's last reply repeats; an unrouted request gets `599`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fake(Arc<Mutex<State>>);

impl Fake {
    /// Adds `reply` to the script of `method url` (`url` absolute or a path).
    pub(crate) fn on(&self, method: Method, url: &str, reply: Reply) -> &Self {
        let path = path_of(url);
        self.0
            .lock()
            .unwrap()
            .routes
            .entry((method, path))
            .or_default()
            .push_back(reply);
        self
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }

    pub(crate) fn seen_at(&self, method: Method, url: &str) -> Vec<Seen> {
        let path = path_of(url);
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path() == path)
            .collect()
    }

    fn answer(&self, parts: &http::request::Parts, body: Bytes) -> Option<Reply> {
        let mut s = self.0.lock().unwrap();
        s.seen.push(Seen {
            method: parts.method.clone(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body,
            at: tokio::time::Instant::now(),
        });
        let queue = s
            .routes
            .get_mut(&(parts.method.clone(), parts.uri.path().to_owned()))?;
        if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        }
    }

    fn respond(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<(http::response::Parts, FakeBody), HttpError> {
        let (parts, body) = request.into_parts();
        let reply = self.answer(&parts, body);
        let (status, headers, chunks, then_fail, require_token) = match reply {
            None => (
                599,
                vec![],
                vec![Bytes::from_static(b"no route")],
                None,
                None,
            ),
            Some(Reply::Fail(kind)) => {
                return Err(HttpError::new(kind, &parts.uri, "scripted failure"))
            }
            Some(Reply::Response {
                status,
                headers,
                chunks,
                then_fail,
                require_token,
            }) => (status, headers, chunks, then_fail, require_token),
        };
        if let Some(token) = require_token {
            let sent = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if sent != Some(format!("Bearer {token}").as_str()) {
                let r = http::Response::builder()
                    .status(401)
                    .header("www-authenticate", "Bearer error=\"invalid_token\"")
                    .body(())
                    .unwrap();
                let (p, ()) = r.into_parts();
                return Ok((
                    p,
                    FakeBody {
                        chunks: VecDeque::new(),
                        fail: None,
                    },
                ));
            }
        }
        let mut b = http::Response::builder().status(StatusCode::from_u16(status).unwrap());
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let (p, ()) = b.body(()).unwrap().into_parts();
        Ok((
            p,
            FakeBody {
                chunks: chunks.into(),
                fail: then_fail.map(|k| (k, parts.uri.clone())),
            },
        ))
    }
}

fn path_of(url: &str) -> String {
    url.parse::<http::Uri>().unwrap().path().to_owned()
}

#[derive(Debug)]
struct FakeBody {
    chunks: VecDeque<Bytes>,
    fail: Option<(HttpErrorKind, http::Uri)>,
}

#[async_trait]
impl ChunkStream for FakeBody {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        if let Some(c) = self.chunks.pop_front() {
            return Ok(Some(c));
        }
        match self.fail.take() {
            Some((kind, uri)) => Err(HttpError::new(kind, &uri, "connection reset by fake")),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl HttpClient for Fake {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, mut body) = self.respond(request)?;
        let mut all = Vec::new();
        while let Some(c) = body.next_chunk().await? {
            all.extend_from_slice(&c);
        }
        Ok(http::Response::from_parts(parts, Bytes::from(all)))
    }

    async fn execute_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<StreamingBody>, HttpError> {
        let (parts, body) = self.respond(request)?;
        Ok(http::Response::from_parts(parts, Box::new(body)))
    }
}

/// Hands out `tok-1`; after a rejection of the current token (or [`Tokens::expire`]), the
/// next one. Records what was handed out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tokens(Arc<Mutex<TokenState>>);

#[derive(Debug, Default)]
struct TokenState {
    current: u32,
    rejected: Vec<String>,
    handed_out: u32,
}

impl Tokens {
    pub(crate) fn rejected(&self) -> Vec<String> {
        self.0.lock().unwrap().rejected.clone()
    }

    /// The token's lifetime ran out on the client's side: the next call gets a new one.
    pub(crate) fn expire(&self) {
        self.0.lock().unwrap().current += 1;
    }
}

#[async_trait]
impl AccessTokenProvider for Tokens {
    async fn access_token(&self) -> Result<AccessToken, ProviderError> {
        let mut s = self.0.lock().unwrap();
        s.handed_out += 1;
        Ok(AccessToken::new(format!("tok-{}", s.current + 1)))
    }

    async fn token_rejected(&self, token: &AccessToken) {
        let mut s = self.0.lock().unwrap();
        s.rejected.push(token.secret().to_owned());
        if token.secret() == format!("tok-{}", s.current + 1) {
            s.current += 1;
        }
    }
}

pub(crate) fn builder(fake: &Fake) -> FhirClientBuilder {
    FhirClient::builder(FhirBaseUrl::parse(BASE).unwrap()).http_client(fake.clone())
}

/// A client with a [`Tokens`] source.
pub(crate) fn client(fake: &Fake) -> (FhirClient, Tokens) {
    let tokens = Tokens::default();
    let c = builder(fake).auth(tokens.clone()).build().unwrap();
    (c, tokens)
}

/// A kick-off answer naming [`STATUS`].
pub(crate) fn accepted() -> Reply {
    Reply::status(202).header("content-location", STATUS)
}

pub(crate) fn manifest(requires_token: bool, output: Value, error: Value) -> Value {
    json!({
        "transactionTime": "2024-05-01T10:00:00Z",
        "request": format!("{BASE}/$export?_type=Patient"),
        "requiresAccessToken": requires_token,
        "output": output,
        "error": error
    })
}

pub(crate) fn patients(range: std::ops::Range<u32>) -> String {
    range
        .map(|i| format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i}\"}}\n"))
        .collect()
}
