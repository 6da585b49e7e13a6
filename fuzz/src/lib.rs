//! Shared pieces of the fuzz targets: one tokio runtime per process, a fake [`HttpClient`] that
//! answers with the fuzz input, and a small text format for a fuzzed HTTP response.
//!
//! # The response format
//!
//! An input that starts with an ASCII digit is read as
//!
//! ```text
//! 200
//! Cache-Control: max-age=60
//! Content-Type: application/json
//!
//! {"body": "..."}
//! ```
//!
//! a status line, header lines up to an empty line, then the body. Any other input is the body
//! of a `200` JSON response, so JSON documents copied from the tests are seeds as they are.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use smart_fhir_core::{ChunkStream, HttpClient, HttpError, StreamingBody};

/// The process's one current-thread runtime (not one per input: building a runtime costs far
/// more than most inputs take to parse).
pub fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime")
        })
        .block_on(future)
}

/// A response read from fuzz input in the format described in the crate docs.
pub fn response(data: &[u8]) -> http::Response<Bytes> {
    let (status, headers, body) = split_response(data);
    let mut builder = http::Response::builder().status(status);
    let mut has_type = false;
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        has_type |= name == http::header::CONTENT_TYPE;
        builder = builder.header(name, value);
    }
    if !has_type {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    builder
        .body(Bytes::copy_from_slice(body))
        .expect("status and headers were checked")
}

/// Status, header lines and body of fuzz input in the response format.
pub fn split_response(data: &[u8]) -> (http::StatusCode, Vec<(&[u8], &[u8])>, &[u8]) {
    if !data.first().is_some_and(u8::is_ascii_digit) {
        return (http::StatusCode::OK, Vec::new(), data);
    }
    let mut rest = data;
    let mut next_line = || {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
        line.strip_suffix(b"\r").unwrap_or(line)
    };
    let status_line = next_line();
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .unwrap_or(http::StatusCode::OK);
    let mut headers = Vec::new();
    loop {
        let line = next_line();
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let value = &line[colon + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            headers.push((&line[..colon], value));
        }
    }
    (status, headers, rest)
}

/// Splits fuzz input into parts at a separator line `\n--\n` (at most `max` parts).
pub fn parts(data: &[u8], max: usize) -> Vec<&[u8]> {
    const SEP: &[u8] = b"\n--\n";
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < max {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

type Responder = dyn Fn(&http::Request<Bytes>) -> http::Response<Bytes> + Send + Sync;

/// A fake HTTP client: each request is answered by the current responder, which a target
/// replaces per input. A streaming response is cut into chunks of `chunk` bytes.
#[derive(Clone)]
pub struct FakeHttp {
    responder: Arc<Mutex<Arc<Responder>>>,
    chunk: Arc<Mutex<usize>>,
}

impl fmt::Debug for FakeHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FakeHttp")
    }
}

impl Default for FakeHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHttp {
    /// A client that answers 404 until told otherwise.
    pub fn new() -> Self {
        Self {
            responder: Arc::new(Mutex::new(Arc::new(|_| {
                http::Response::builder()
                    .status(404)
                    .body(Bytes::new())
                    .expect("a plain 404")
            }))),
            chunk: Arc::new(Mutex::new(usize::MAX)),
        }
    }

    /// Answers every request with `f`.
    pub fn respond(
        &self,
        f: impl Fn(&http::Request<Bytes>) -> http::Response<Bytes> + Send + Sync + 'static,
    ) {
        *self.responder.lock().expect("not poisoned") = Arc::new(f);
    }

    /// Cuts streaming bodies into chunks of this many bytes (at least one).
    pub fn chunk_size(&self, size: usize) {
        *self.chunk.lock().expect("not poisoned") = size.max(1);
    }
}

#[async_trait]
impl HttpClient for FakeHttp {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let responder = Arc::clone(&self.responder.lock().expect("not poisoned"));
        Ok(responder(&request))
    }

    async fn execute_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<StreamingBody>, HttpError> {
        let size = *self.chunk.lock().expect("not poisoned");
        let response = self.execute(request).await?;
        Ok(response.map(|body| Box::new(Chunks { body, size }) as StreamingBody))
    }
}

#[derive(Debug)]
struct Chunks {
    body: Bytes,
    size: usize,
}

#[async_trait]
impl ChunkStream for Chunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        if self.body.is_empty() {
            return Ok(None);
        }
        let n = self.size.min(self.body.len());
        Ok(Some(self.body.split_to(n)))
    }
}

/// Whether `text` holds no control character: server text in an error message must not be
/// able to move a terminal's cursor or start a log line of its own.
pub fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// A fixed P-256 signing key (kid `fuzz-ec`) made once per process, the public key set with it
/// and an RSA key (kid `fuzz-rsa`), and a signer over arbitrary bytes, so that a target can
/// sign a fuzzed header and claims and reach past the signature check.
pub struct Keys {
    /// `{"keys": [EC, RSA]}`, public parts.
    pub jwks_json: serde_json::Value,
    /// The key set as the library reads it.
    pub jwks: smart_fhir_jwt::Jwks,
    signer: josekit::jws::alg::ecdsa::EcdsaJwsSigner,
}

impl Keys {
    /// The process's keys.
    pub fn get() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            use smart_fhir_jwt::{KeySpec, PrivateKey};
            let ec = PrivateKey::generate(KeySpec::P256)
                .and_then(|k| k.with_kid("fuzz-ec"))
                .expect("a P-256 key");
            let rsa = PrivateKey::generate(KeySpec::Rsa2048)
                .and_then(|k| k.with_kid("fuzz-rsa"))
                .expect("an RSA key");
            let jwks_json = serde_json::json!({"keys": [ec.public_jwk(), rsa.public_jwk()]});
            let jwks = smart_fhir_jwt::Jwks::from_value(&jwks_json).expect("a key set");
            let signer = josekit::jws::ES256
                .signer_from_pem(ec.to_pkcs8_pem().as_bytes())
                .expect("an ES256 signer");
            Keys {
                jwks_json,
                jwks,
                signer,
            }
        })
    }

    /// `BASE64URL(header).BASE64URL(claims).BASE64URL(ES256 signature)` over the bytes given.
    pub fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        use josekit::jws::JwsSigner as _;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.signer.sign(input.as_bytes()).expect("ES256 signs");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// The FHIR base of the targets that drive a `FhirClient`.
pub const FHIR_BASE: &str = "https://ehr.example/fhir";

/// The access token the targets' `FhirClient`s send.
pub const ACCESS_TOKEN: &str = "fuzz-access-token";

/// A `FhirClient` for [`FHIR_BASE`] over `http`, with a static access token, no retries and
/// a fixed clock.
pub fn fhir_client(http: &FakeHttp) -> smart_fhir_http::FhirClient {
    use smart_fhir_core::{AccessToken, FhirBaseUrl, FixedClock, StaticTokenProvider};
    let base = FhirBaseUrl::parse(FHIR_BASE).expect("a base");
    smart_fhir_http::FhirClient::builder(base)
        .http_client(http.clone())
        .auth(StaticTokenProvider::new(AccessToken::new(ACCESS_TOKEN)))
        .retry_policy(smart_fhir_http::RetryPolicy::none())
        .clock(FixedClock::at_unix(1_750_000_000))
        .build()
        .expect("a FHIR client")
}

/// Panics when `request` carries the access token to another origin than the FHIR server's
/// (P6): the check every target that drives a `FhirClient` makes on every request.
pub fn check_credentials(request: &http::Request<Bytes>) {
    if let Some(auth) = request.headers().get(http::header::AUTHORIZATION) {
        let uri = request.uri();
        assert!(
            uri.scheme_str() == Some("https")
                && uri.authority().map(|a| a.as_str()) == Some("ehr.example"),
            "the access token was sent to {}://{:?}",
            uri.scheme_str().unwrap_or(""),
            uri.authority()
        );
        assert_eq!(
            auth.to_str().ok(),
            Some(format!("Bearer {ACCESS_TOKEN}").as_str())
        );
    }
}
