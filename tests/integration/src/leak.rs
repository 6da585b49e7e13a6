//! The leak test's tools: a `tracing` capture of every target at TRACE, a transport that
//! remembers every secret that passes through it, the set of secrets with a search for them
//! (whole, and any 16-character piece), and the CLI run at full verbosity.
//!
//! Used by `tests/leak.rs`; nothing here prints a secret (failures name where a piece of which
//! kind of secret was found, with the secret replaced).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use smart_fhir_core::{HttpClient, HttpError, SharedHttpClient, StreamingBody};

use crate::{cli_bin, http, origin, Browser};

/// The length of the pieces of a secret that are searched for: a secret whose prefix (or any
/// part) of this length was printed counts as leaked.
pub const PIECE: usize = 16;

// ---------------------------------------------------------------------------------------------
// The capture.

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every `tracing` event and span (and `log` record, through `tracing-log`) of this process, of
/// every target, at TRACE, with the span and event fields, as the `fmt` layer writes them.
pub struct Capture {
    sink: Sink,
}

impl std::fmt::Debug for Capture {
    // The captured text is what the test searches for secrets: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").finish_non_exhaustive()
    }
}

impl Capture {
    /// Installs the capture as the global subscriber (once per process) and returns it.
    pub fn install() -> &'static Capture {
        static CAPTURE: OnceLock<Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            use tracing_subscriber::fmt::format::FmtSpan;
            let sink = Sink::default();
            let writer = sink.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_target(true)
                .with_thread_names(true)
                // Span fields appear with every event inside the span; creation and close show
                // them also for spans without events (and the fields recorded later).
                .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
                .with_writer(move || writer.clone())
                .try_init()
                .expect("the capture is the process's only subscriber");
            Capture { sink }
        })
    }

    /// What was captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.sink.0.lock().expect("capture")).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// The secrets.

/// Every secret the flows used or received, by kind.
#[derive(Default)]
pub struct Secrets {
    values: Mutex<BTreeMap<String, &'static str>>,
}

/// A secret (or a piece of one) found in a text.
#[derive(Debug)]
pub struct Found {
    /// Which kind of secret.
    pub kind: &'static str,
    /// Where it was found (the haystack's name).
    pub place: String,
    /// The text around it, with the secret's piece replaced by `<KIND>`.
    pub context: String,
    /// Whether the whole value was there (otherwise a piece of it).
    pub whole: bool,
}

impl Secrets {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Remembers `value` as a secret of `kind`; values shorter than 8 characters are refused
    /// (they are not secrets of the flows and would match by chance).
    pub fn add(&self, kind: &'static str, value: &str) {
        let value = value.trim();
        if value.len() >= 8 {
            self.values
                .lock()
                .expect("secrets")
                .entry(value.to_owned())
                .or_insert(kind);
        }
    }

    /// How many secrets of each kind are known.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for kind in self.values.lock().expect("secrets").values() {
            *out.entry(*kind).or_insert(0) += 1;
        }
        out
    }

    /// The secrets of `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<String> {
        self.values
            .lock()
            .expect("secrets")
            .iter()
            .filter(|(_, k)| **k == kind)
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// Every place in `haystacks` (name, text) where a secret appears whole, or a
    /// [`PIECE`]-character piece of one whose kind is searched in pieces (`pieces(kind)`).
    pub fn find_in(
        &self,
        haystacks: &[(String, String)],
        pieces: impl Fn(&str) -> bool,
    ) -> Vec<Found> {
        let values = self.values.lock().expect("secrets").clone();
        // Every piece of every secret, to look up each window of a haystack once.
        let mut index: HashMap<&[u8], (&str, &'static str)> = HashMap::new();
        for (value, kind) in &values {
            if value.len() >= PIECE && pieces(kind) {
                for w in value.as_bytes().windows(PIECE) {
                    index.entry(w).or_insert((value.as_str(), kind));
                }
            }
        }
        let mut found = Vec::new();
        for (place, text) in haystacks {
            for (value, kind) in &values {
                if let Some(at) = text.find(value.as_str()) {
                    found.push(Found {
                        kind,
                        place: place.clone(),
                        context: context(text, at, value.len(), kind),
                        whole: true,
                    });
                }
            }
            for (at, w) in text.as_bytes().windows(PIECE).enumerate() {
                if let Some((value, kind)) = index.get(w) {
                    if !text.contains(*value) {
                        found.push(Found {
                            kind,
                            place: place.clone(),
                            context: context(text, at, PIECE, kind),
                            whole: false,
                        });
                        // One report per piece is enough to see where it came from.
                        break;
                    }
                }
            }
        }
        found
    }
}

/// Up to 120 bytes either side of `text[at..at + len]`, which is replaced by `<kind>`.
fn context(text: &str, at: usize, len: usize, kind: &str) -> String {
    let b = text.as_bytes();
    let start = at.saturating_sub(120);
    let end = (at + len + 120).min(b.len());
    format!(
        "{}<{kind}>{}",
        String::from_utf8_lossy(&b[start..at]),
        String::from_utf8_lossy(&b[at + len..end])
    )
}

/// Remembers the secrets of a form body or query string (`code`, `state`, `code_verifier`,
/// `client_assertion`, `client_secret`, `refresh_token`, `token`, `access_token`, `id_token`).
pub fn add_form_secrets(secrets: &Secrets, form: &str) {
    for (k, v) in url::form_urlencoded::parse(form.as_bytes()) {
        let kind = match k.as_ref() {
            "code" => "authorization code",
            "state" => "state",
            "code_verifier" => "PKCE verifier",
            "client_assertion" => "client assertion",
            "client_secret" => "client secret",
            "refresh_token" => "refresh token",
            "token" => "revoked token",
            "access_token" => "access token",
            "id_token" => "id token",
            _ => continue,
        };
        secrets.add(kind, &v);
    }
}

/// Remembers the secrets of a JSON document: every string under a token member, at any depth.
pub fn add_json_secrets(secrets: &Secrets, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let kind = match k.as_str() {
                    "access_token" => Some("access token"),
                    "refresh_token" => Some("refresh token"),
                    "id_token" => Some("id token"),
                    "code_verifier" | "verifier" | "pkce_verifier" => Some("PKCE verifier"),
                    "client_secret" => Some("client secret"),
                    _ => None,
                };
                match (kind, v) {
                    (Some(kind), Value::String(s)) => secrets.add(kind, s),
                    (_, other) => add_json_secrets(secrets, other),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| add_json_secrets(secrets, i)),
        _ => {}
    }
}

/// Remembers the credential of an `Authorization` header value (bearer token, or the secret of
/// HTTP Basic).
fn add_authorization(secrets: &Secrets, value: &str) {
    if let Some(token) = value.strip_prefix("Bearer ") {
        secrets.add("access token", token);
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        secrets.add("basic credentials", basic);
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) {
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            if let Some((_, secret)) = decoded.split_once(':') {
                let secret: String = url::form_urlencoded::parse(format!("s={secret}").as_bytes())
                    .map(|(_, v)| v.into_owned())
                    .next()
                    .unwrap_or_default();
                secrets.add("client secret", &secret);
            }
        }
    }
}

/// The private-key material of a PEM file: its base64 lines, and the private JWK members
/// (`d`, `p`, `q`, `dp`, `dq`, `qi`) of the key.
pub fn add_key_secrets(secrets: &Secrets, pem: &str) {
    // josekit wants the PEM block alone, without the blank line the CLI writes after it.
    let pem = pem.trim();
    for line in pem.lines().map(str::trim) {
        if !line.is_empty() && !line.starts_with("-----") {
            secrets.add("private key (PEM)", line);
        }
    }
    let jwk = if pem.contains("EC PRIVATE KEY") || is_ec(pem) {
        josekit::jwk::alg::ec::EcKeyPair::from_pem(pem, None).map(|k| k.to_jwk_private_key())
    } else {
        josekit::jwk::alg::rsa::RsaKeyPair::from_pem(pem).map(|k| k.to_jwk_private_key())
    };
    let jwk = jwk.expect("the key parses as a JWK");
    let mut members = 0;
    for name in ["d", "p", "q", "dp", "dq", "qi"] {
        if let Some(Value::String(v)) = jwk.parameter(name) {
            secrets.add("private key (JWK)", v);
            members += 1;
        }
    }
    assert!(members >= 1, "the private JWK has its private members");
}

fn is_ec(pem: &str) -> bool {
    josekit::jwk::alg::ec::EcKeyPair::from_pem(pem, None).is_ok()
}

// ---------------------------------------------------------------------------------------------
// The recording transport.

/// A transport that passes every request on and remembers the secrets in it (the form fields it
/// forwards, the query, `Authorization`) and in the answer (token members of a JSON body, the
/// query of a `Location`), and the answers of the token endpoint whole.
pub struct Recorder {
    inner: SharedHttpClient,
    secrets: Arc<Secrets>,
    token_responses: Mutex<Vec<(u16, Bytes)>>,
    requests: Mutex<usize>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What it recorded are secrets: the clients that hold it print their transport.
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(secrets: Arc<Secrets>) -> Arc<Self> {
        Arc::new(Self {
            inner: http(),
            secrets,
            token_responses: Mutex::new(Vec::new()),
            requests: Mutex::new(0),
        })
    }

    /// This recorder as a transport.
    pub fn shared(self: &Arc<Self>) -> SharedHttpClient {
        SharedHttpClient::from_arc(self.clone())
    }

    /// The token endpoint's answers (status, body), in order.
    pub fn token_responses(&self) -> Vec<(u16, Bytes)> {
        self.token_responses.lock().expect("log").clone()
    }

    /// How many requests went through.
    pub fn requests(&self) -> usize {
        *self.requests.lock().expect("log")
    }

    fn record_request(&self, request: &http::Request<Bytes>) {
        *self.requests.lock().expect("log") += 1;
        if let Some(q) = request.uri().query() {
            add_form_secrets(&self.secrets, q);
        }
        if let Some(a) = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            add_authorization(&self.secrets, a);
        }
        let body = String::from_utf8_lossy(request.body());
        if body.contains('=') && !body.trim_start().starts_with('{') {
            add_form_secrets(&self.secrets, &body);
        }
    }

    fn record_response(&self, token: bool, response: &http::Response<Bytes>) {
        if let Some(l) = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
        {
            if let Some((_, q)) = l.split_once('?') {
                add_form_secrets(&self.secrets, q);
            }
        }
        if let Ok(v) = serde_json::from_slice::<Value>(response.body()) {
            add_json_secrets(&self.secrets, &v);
        }
        if token {
            self.token_responses
                .lock()
                .expect("log")
                .push((response.status().as_u16(), response.body().clone()));
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Recorder {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        self.record_request(&request);
        let token = request.uri().path().ends_with("/oidc/token");
        let response = self.inner.execute(request).await?;
        self.record_response(token, &response);
        Ok(response)
    }

    async fn execute_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<StreamingBody>, HttpError> {
        self.record_request(&request);
        self.inner.execute_streaming(request).await
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI at full verbosity.

/// What a CLI run printed.
pub struct CliRun {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for CliRun {
    // The output is searched for secrets: only its size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliRun")
            .field("status", &self.status)
            .field("stdout_bytes", &self.stdout.len())
            .field("stderr_bytes", &self.stderr.len())
            .finish()
    }
}

/// `smart-fhir -vvv ARGS` with `RUST_LOG=trace` (every target) and `env`.
pub fn cli_verbose(args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let mut cmd = Command::new(cli_bin());
    cmd.arg("-vvv").args(args).env("RUST_LOG", "trace");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run smart-fhir");
    CliRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `smart-fhir -vvv login ARGS` with `RUST_LOG=trace`: answers the browser step from the URL it
/// prints and returns what it printed and the callback URL the browser was sent to (with the
/// code and state in its query).
pub async fn cli_login_verbose(args: &[&str], env: &[(&str, &str)]) -> (CliRun, String) {
    let mut cmd = Command::new(cli_bin());
    cmd.arg("-vvv")
        .arg("login")
        .args(args)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run smart-fhir login");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    // Read stderr all along: at TRACE it outgrows a pipe's buffer.
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let out_reader = std::thread::spawn(move || {
        let mut url_tx = Some(url_tx);
        let mut all = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("http") {
                if let Some(tx) = url_tx.take() {
                    let _ = tx.send(line.clone());
                }
            }
            all.push(line);
        }
        all.join("\n")
    });
    let url = tokio::time::timeout(Duration::from_secs(60), url_rx)
        .await
        .expect("the CLI prints the authorize URL")
        .expect("the authorize URL line");
    assert!(url.starts_with(&format!("{}/oidc/auth?", origin())));
    let redirect_uri = smart_fhir_core::Url::parse(&url)
        .expect("authorize URL")
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("a redirect_uri");
    let browser = Browser::new();
    let response = browser.get(&url).await;
    // Stop before the loopback listener to learn the callback URL, then deliver it.
    let callback = browser
        .follow_until(&url, response, &format!("{redirect_uri}?"))
        .await;
    let page = browser.get(&callback).await;
    assert_eq!(page.status(), 200, "the loopback listener answers");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("wait task")
        .expect("login exits");
    let run = CliRun {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    };
    (run, callback)
}
