//! `login` and `logout`: a SMART standalone launch from a terminal, and the saved session that
//! later commands use.
//!
//! `login` is a native app in the sense of RFC 8252: it listens on a loopback redirect URI
//! (`http://127.0.0.1:<free port>/callback` by default), prints the authorize URL on a line of its
//! own, waits for the browser to come back, answers it with a small page, completes the flow with
//! [`AppLaunch::callback`] (state, PKCE, code exchange, `id_token`), and saves the session in a
//! file readable only by its owner. `logout` revokes the tokens with [`AppLaunch::logout`] and
//! deletes the file. The FHIR commands use the saved session with `--session`.
//!
//! The session file holds the tokens and what is needed to refresh them: the client id, the
//! scopes, the redirect URI and how the client authenticates — the *name* of the environment
//! variable that holds a client secret and the *path* of a private key, never the secret or the
//! key itself.

use std::convert::Infallible;
use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use smart_fhir_core::{
    AccessToken, ClientSecret, Clock, FhirBaseUrl, InsecureHttp, SharedClock, SharedHttpClient,
    SystemClock, Url,
};
use smart_fhir_core::{AccessTokenProvider, ProviderError, ProviderErrorKind};
use smart_fhir_jwt::Algorithm;
use smart_fhir_oauth::{
    AppLaunch, AuthorizeRequest, ClientAuth, IssuerPolicy, LaunchClientConfig, LaunchError,
    Launched, PrivateKeyJwt, SessionClient,
};
use smart_fhir_store::{SessionStore, SharedSessionStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex, OnceCell};
use zeroize::Zeroize;

use crate::keys::{load_key, Alg};
use crate::server::{rt, Transport};
use crate::{Failure, Result};

/// The scopes `login` asks for unless told otherwise: the user's identity, a patient picked at
/// sign-in, read and search on that patient's data, and a refresh token.
pub const DEFAULT_SCOPE: &str = "openid fhirUser launch/patient patient/*.rs offline_access";

/// The session id under which the CLI keeps its one session in the session file.
const SESSION_ID: &str = "cli";

/// The version of the session file format.
const FILE_VERSION: u32 = 1;

/// How long a lock on the session file may be held before another process breaks it.
const STALE_LOCK: Duration = Duration::from_secs(30);

/// How long to wait for a lock on the session file.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The longest request head the loopback listener reads.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long one browser connection to the loopback listener may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The FHIR base URL of the server to sign in to.
    #[arg(long, value_name = "URL", env = "SMART_FHIR_BASE")]
    fhir_base: String,
    /// The registered client id.
    #[arg(long)]
    client_id: String,
    /// The scopes to request, space-separated.
    #[arg(long, value_name = "SCOPES", default_value = DEFAULT_SCOPE)]
    scope: String,
    /// A confidential asymmetric client (private_key_jwt): the private key (PEM, JWK or JWKS).
    /// Its path, not the key, is saved with the session for refresh and logout.
    #[arg(long, value_name = "KEYFILE", conflicts_with = "client_secret_env")]
    key: Option<PathBuf>,
    /// With --key: the kid header (default: the key's kid or its RFC 7638 thumbprint).
    #[arg(long, requires = "key")]
    kid: Option<String>,
    /// With --key: the signing algorithm (default: the best that the key and the server share).
    #[arg(long, value_enum, requires = "key")]
    alg: Option<Alg>,
    /// A confidential symmetric client: the name of the environment variable that holds the
    /// client secret (never on the command line). The name, not the secret, is saved with the
    /// session; the variable must be set again for refresh and logout.
    #[arg(long, value_name = "VAR")]
    client_secret_env: Option<String>,
    /// With --client-secret-env: send the secret in the form body (client_secret_post) instead
    /// of HTTP Basic authentication.
    #[arg(long, requires = "client_secret_env")]
    client_secret_post: bool,
    /// The registered loopback redirect URI, e.g. http://127.0.0.1:8123/callback. Without a
    /// port (or with port 0) a free port is used, as RFC 8252 allows. Default:
    /// http://127.0.0.1:<free port>/callback.
    #[arg(long, value_name = "URL")]
    redirect_uri: Option<String>,
    /// Also try to open the authorize URL in a browser (xdg-open, open).
    #[arg(long)]
    open: bool,
    /// How long to wait for the browser, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// Where to save the session (default: $XDG_STATE_HOME/smart-fhir/session.json, or
    /// ~/.local/state/smart-fhir/session.json).
    #[arg(long, value_name = "FILE")]
    session_file: Option<PathBuf>,
    #[command(flatten)]
    transport: Transport,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The session file (default: the one `login` writes).
    #[arg(long, value_name = "FILE")]
    session_file: Option<PathBuf>,
    #[command(flatten)]
    transport: Transport,
}

/// `smart-fhir login`.
pub fn login(a: LoginArgs) -> Result<u8> {
    let base = a.transport.base(&a.fhir_base)?;
    let http = a.transport.client()?;
    if a.timeout == 0 {
        return Err(Failure::new("--timeout must be at least 1 second"));
    }
    let auth = saved_auth(&a)?;
    // Fail before the browser step if the key or the secret cannot be used.
    auth.client_auth()?;
    let path = session_path(a.session_file.as_deref())?;
    let target = RedirectTarget::parse(a.redirect_uri.as_deref())?;
    let plan = LoginPlan {
        base,
        client_id: a.client_id,
        scope: a.scope,
        auth,
        target,
        path,
        timeout: Duration::from_secs(a.timeout),
    };
    let open = a.open;
    let launched = rt()?.block_on(async {
        tokio::select! {
            r = run_login(plan.clone(), http, SharedClock::new(SystemClock), |url| {
                eprintln!(
                    "smart-fhir: open this URL in a browser to sign in (waiting up to {} s):",
                    plan.timeout.as_secs()
                );
                outln!("{url}");
                if open {
                    open_browser(url);
                }
            }) => r,
            _ = tokio::signal::ctrl_c() => Err(Failure::new("interrupted; nothing was saved")),
        }
    })?;
    print_launched(&launched, &plan.path);
    Ok(0)
}

/// `smart-fhir logout`.
pub fn logout(a: LogoutArgs) -> Result<u8> {
    let path = session_path(a.session_file.as_deref())?;
    if !path.exists() {
        eprintln!("smart-fhir: no saved session at {}", path.display());
        return Ok(0);
    }
    let store = Arc::new(FileSessionStore::open(
        &path,
        SharedClock::new(SystemClock),
    )?);
    let login = store.login().clone();
    let base = a.transport.base(&login.fhir_base)?;
    let http = a.transport.client()?;
    let app = build_app(&login, &base, store, http, SharedClock::new(SystemClock))?;
    let result = rt()?.block_on(app.logout(SESSION_ID));
    // The session is gone from the file whatever the revocation's outcome; remove the file too.
    remove_session_file(&path)?;
    match result {
        Ok(()) => {
            outln!("signed out of {base}; removed {}", path.display());
            Ok(0)
        }
        Err(e) => Err(Failure::from_error(
            &format!(
                "removed {}, but the tokens could not be revoked at the server",
                path.display()
            ),
            &e,
        )),
    }
}

/// A FHIR client's token provider from a saved session (`--session` on the FHIR commands), and
/// the session's FHIR base.
pub fn saved_session(
    file: Option<&Path>,
    transport: &Transport,
    http: SharedHttpClient,
) -> Result<(FhirBaseUrl, SavedSession)> {
    let path = session_path(file)?;
    if !path.exists() {
        return Err(Failure::new(format!(
            "no saved session at {}; run `smart-fhir login` first",
            path.display()
        )));
    }
    let store = Arc::new(FileSessionStore::open(
        &path,
        SharedClock::new(SystemClock),
    )?);
    let login = store.login().clone();
    let base = transport.base(&login.fhir_base)?;
    let app = build_app(&login, &base, store, http, SharedClock::new(SystemClock))?;
    Ok((
        base,
        SavedSession {
            app,
            client: OnceCell::new(),
        },
    ))
}

/// The access tokens of a saved session: loaded on first use, refreshed (and the rotated refresh
/// token saved) when they expire.
#[derive(Debug)]
pub struct SavedSession {
    app: AppLaunch,
    client: OnceCell<SessionClient>,
}

impl SavedSession {
    async fn client(&self) -> std::result::Result<&SessionClient, ProviderError> {
        self.client
            .get_or_try_init(|| self.app.ready(SESSION_ID))
            .await
            .map_err(|e| {
                let kind = if e.is_relaunch_needed() {
                    ProviderErrorKind::RelaunchNeeded
                } else {
                    ProviderErrorKind::Unavailable
                };
                ProviderError::new(
                    kind,
                    "the saved session cannot be used; run `smart-fhir login`",
                )
                .with_source(e)
            })
    }
}

#[async_trait]
impl AccessTokenProvider for SavedSession {
    async fn access_token(&self) -> std::result::Result<AccessToken, ProviderError> {
        let client = self.client().await?;
        AccessTokenProvider::access_token(client).await
    }

    async fn token_rejected(&self, token: &AccessToken) {
        if let Ok(client) = self.client().await {
            AccessTokenProvider::token_rejected(client, token).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The login flow.

/// Everything `login` needs, checked.
#[derive(Clone)]
struct LoginPlan {
    base: FhirBaseUrl,
    client_id: String,
    scope: String,
    auth: SavedAuth,
    target: RedirectTarget,
    path: PathBuf,
    timeout: Duration,
}

/// Where the loopback listener binds, and the redirect URI it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RedirectTarget {
    /// The host as written in the redirect URI (`127.0.0.1`, `[::1]` or `localhost`).
    host: String,
    ip: IpAddr,
    /// `0`: any free port.
    port: u16,
    path: String,
}

impl RedirectTarget {
    /// Parses `--redirect-uri`: plain `http` to a loopback host (RFC 8252 §7.3), a path, no
    /// query, no fragment, no user info.
    fn parse(text: Option<&str>) -> Result<Self> {
        let Some(text) = text else {
            return Ok(Self {
                host: "127.0.0.1".to_owned(),
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 0,
                path: "/callback".to_owned(),
            });
        };
        let bad = |why: &str| Failure::new(format!("invalid --redirect-uri: {why}"));
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad(
                "a terminal app listens on http://127.0.0.1, http://[::1] or http://localhost (RFC 8252)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("no user name or password"));
        }
        let (host, ip) = match url.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => (ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => (format!("[{ip}]"), IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
                ("localhost".to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            _ => return Err(bad("the host must be 127.0.0.1, [::1] or localhost")),
        };
        Ok(Self {
            host,
            ip,
            port: url.port().unwrap_or(0),
            path: url.path().to_owned(),
        })
    }

    fn uri(&self, port: u16) -> String {
        format!("http://{}:{port}{}", self.host, self.path)
    }
}

/// The outcome of the loopback listener: a session, or why not.
type Finished = Result<Launched>;

/// What each connection to the loopback listener needs.
struct Listener {
    app: AppLaunch,
    store: Arc<FileSessionStore>,
    path: PathBuf,
    callback_path: String,
    /// The page that posts the authorize form, when the server wants a POST.
    form_page: Option<String>,
}

/// Runs the standalone launch: listens, tells `show_url` where the browser must go, and waits
/// for the callback until `plan.timeout`. The session is saved to `plan.path` before the
/// browser is told it is signed in.
async fn run_login(
    plan: LoginPlan,
    http: SharedHttpClient,
    clock: SharedClock,
    show_url: impl FnOnce(&str),
) -> Result<Launched> {
    let addr = SocketAddr::new(plan.target.ip, plan.target.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::new(format!("cannot listen on {addr}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::new(format!("cannot listen on {addr}: {e}")))?
        .port();
    let redirect_uri = plan.target.uri(port);
    let login = LoginRecord {
        fhir_base: plan.base.as_str().to_owned(),
        client_id: plan.client_id.clone(),
        scope: plan.scope.clone(),
        redirect_uri: redirect_uri.clone(),
        auth: plan.auth.clone(),
        insecure_http: plan.base.insecure_http() == InsecureHttp::AllowLoopback,
    };
    // The flow's state (PKCE verifier, state, nonce) stays in memory; the file is written only
    // once the sign-in succeeded, so a failed login leaves an earlier session as it was.
    let store = Arc::new(FileSessionStore::in_memory(login.clone(), clock.clone()));
    let app = build_app(&login, &plan.base, store.clone(), http, clock)?;
    let start = app
        .standalone(SESSION_ID, plan.base.as_str())
        .await
        .map_err(|e| Failure::from_error("cannot start the sign-in", &e))?;
    let (url, form_page) = match &start {
        AuthorizeRequest::Redirect(url) => (url.to_string(), None),
        // A long request to a server that takes a POST: the browser gets a page from the
        // listener that posts the form.
        other => (
            format!("http://{}:{port}/start", plan.target.host),
            other.auto_submit_html(),
        ),
    };
    let shared = Arc::new(Listener {
        app,
        store,
        path: plan.path.clone(),
        callback_path: plan.target.path.clone(),
        form_page,
    });
    show_url(&url);
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(1);
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                if let Some(finished) = serve_connection(stream, shared).await {
                    let _ = done_tx.send(finished).await;
                }
            });
        }
    };
    tokio::select! {
        // The connection that finished the flow reports after its page was written.
        finished = done_rx.recv() => match finished {
            Some(result) => result,
            None => Err(Failure::new("the loopback listener stopped")),
        },
        () = accept => Err(Failure::new("the loopback listener stopped")),
        () = tokio::time::sleep(plan.timeout) => Err(Failure::new(format!(
            "no sign-in within {} s; nothing was saved (--timeout to wait longer)",
            plan.timeout.as_secs()
        ))),
    }
}

/// Serves one connection; returns the outcome of the flow if this connection's request ended it,
/// once its page has been written (or the connection failed).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Listener>,
) -> Option<Finished> {
    let slot: Arc<StdMutex<Option<Finished>>> = Arc::new(StdMutex::new(None));
    let service_slot = slot.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let slot = service_slot.clone();
        async move {
            let (response, finished) = handle(&shared, &req).await;
            if let Some(f) = finished {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    // A browser that keeps a connection open without a request must not hold up the result.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
    let mut finished = slot.lock().unwrap_or_else(|p| p.into_inner());
    finished.take()
}

/// Answers one request to the loopback listener.
async fn handle(
    shared: &Listener,
    req: &Request<Incoming>,
) -> (Response<Full<Bytes>>, Option<Finished>) {
    if req.method() != hyper::Method::GET {
        return (
            page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "Only GET is served here.",
            ),
            None,
        );
    }
    let path = req.uri().path();
    if path == "/start" {
        if let Some(form) = &shared.form_page {
            return (html(StatusCode::OK, form.clone()), None);
        }
    }
    if path != shared.callback_path {
        return (
            page(StatusCode::NOT_FOUND, "Not found", "Nothing here."),
            None,
        );
    }
    let query = req.uri().query().unwrap_or("");
    // A request without a state (a stray or forged one) does not end the wait.
    if !url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "state") {
        return (
            page(
                StatusCode::BAD_REQUEST,
                "Not a sign-in response",
                "This address waits for the authorization server's answer.",
            ),
            None,
        );
    }
    match shared.app.callback(SESSION_ID, query).await {
        Ok(launched) => match shared.store.save_to(&shared.path).await {
            Ok(()) => (
                page(
                    StatusCode::OK,
                    "Signed in",
                    "You are signed in. You can close this window and return to the terminal.",
                ),
                Some(Ok(launched)),
            ),
            Err(e) => {
                let failure = Failure::from_error(
                    &format!("cannot save the session to {}", shared.path.display()),
                    &e,
                );
                (
                    page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Sign-in failed",
                        "The session could not be saved; see the terminal.",
                    ),
                    Some(Err(failure)),
                )
            }
        },
        // Not this terminal's sign-in (another flow's state, or one used already): keep waiting
        // for the right one.
        Err(LaunchError::UnknownState | LaunchError::StateMismatch) => (
            page(
                StatusCode::BAD_REQUEST,
                "Not this sign-in",
                "This answer belongs to no sign-in this terminal is waiting for.",
            ),
            None,
        ),
        Err(e) => {
            let failure = Failure::from_error("sign-in failed", &e);
            let body = page(StatusCode::BAD_REQUEST, "Sign-in failed", &failure.0);
            (body, Some(Err(failure)))
        }
    }
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
    ] {
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    }
    response
}

fn page(status: StatusCode, title: &str, message: &str) -> Response<Full<Bytes>> {
    let mut response = html(
        status,
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>smart-fhir: {t}</title></head>\
             <body><h1>{t}</h1><p>{m}</p></body></html>",
            t = escape_html(title),
            m = escape_html(message)
        ),
    );
    // Static pages run no script.
    response.headers_mut().insert(
        "content-security-policy",
        hyper::header::HeaderValue::from_static("default-src 'none'"),
    );
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        eprintln!("smart-fhir: could not start {opener}; open the URL yourself");
    }
}

fn print_launched(l: &Launched, path: &Path) {
    outln!("signed in to:   {}", l.fhir_base);
    outln!("granted scope:  {}", l.granted_scopes);
    let diff = l.requested_scopes.difference(&l.granted_scopes);
    if !diff.missing().is_empty() {
        outln!("not granted:    {}", diff.missing());
    }
    outln!(
        "patient:        {}",
        l.context.patient.as_deref().unwrap_or("(none)")
    );
    if let Some(encounter) = &l.context.encounter {
        outln!("encounter:      {encounter}");
    }
    outln!(
        "user:           {}",
        l.user.as_ref().map_or("(none)", |u| u.as_str())
    );
    let secs = l
        .expires_at
        .duration_since(SystemClock.now())
        .unwrap_or(Duration::ZERO)
        .as_secs();
    outln!("expires in:     {secs} s");
    outln!(
        "refresh token:  {}",
        if l.has_refresh_token { "yes" } else { "no" }
    );
    outln!("session saved:  {}", path.display());
}

// ---------------------------------------------------------------------------------------------
// The client configuration saved with the session.

/// How the client authenticates, as saved: names and paths, never secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
enum SavedAuth {
    None,
    ClientSecretBasic {
        secret_env: String,
    },
    ClientSecretPost {
        secret_env: String,
    },
    PrivateKeyJwt {
        key: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alg: Option<String>,
    },
}

impl fmt::Debug for SavedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::ClientSecretBasic { secret_env } => write!(f, "ClientSecretBasic(${secret_env})"),
            Self::ClientSecretPost { secret_env } => write!(f, "ClientSecretPost(${secret_env})"),
            Self::PrivateKeyJwt { key, .. } => write!(f, "PrivateKeyJwt({})", key.display()),
        }
    }
}

impl SavedAuth {
    /// The client authentication: reads the secret from its environment variable, or the key
    /// from its file.
    fn client_auth(&self) -> Result<ClientAuth> {
        let secret = |var: &str| -> Result<ClientSecret> {
            match std::env::var(var) {
                Ok(s) if !s.is_empty() => Ok(ClientSecret::new(s)),
                _ => Err(Failure::new(format!(
                    "the environment variable {var} (the client secret) is not set or empty"
                ))),
            }
        };
        Ok(match self {
            Self::None => ClientAuth::Public,
            Self::ClientSecretBasic { secret_env } => {
                ClientAuth::ClientSecretBasic(secret(secret_env)?)
            }
            Self::ClientSecretPost { secret_env } => {
                ClientAuth::ClientSecretPost(secret(secret_env)?)
            }
            Self::PrivateKeyJwt { key, kid, alg } => {
                let private = load_key(key, kid.as_deref())?;
                let alg = match alg {
                    Some(name) => Some(name.parse::<Algorithm>().map_err(|_| {
                        Failure::new(format!("unknown signing algorithm {name:?}"))
                    })?),
                    None => None,
                };
                let mut credential = PrivateKeyJwt::new(private);
                if let Some(alg) = alg {
                    credential = credential.algorithm(alg);
                }
                if let Some(kid) = kid {
                    credential = credential.kid(kid.clone());
                }
                ClientAuth::PrivateKeyJwt(credential)
            }
        })
    }
}

fn saved_auth(a: &LoginArgs) -> Result<SavedAuth> {
    if let Some(key) = &a.key {
        // Saved as an absolute path, so later commands find it from any directory.
        let key = std::fs::canonicalize(key)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", key.display())))?;
        return Ok(SavedAuth::PrivateKeyJwt {
            key,
            kid: a.kid.clone(),
            alg: a.alg.map(|alg| Algorithm::from(alg).to_string()),
        });
    }
    if let Some(var) = &a.client_secret_env {
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            return Err(Failure::new(
                "--client-secret-env takes the NAME of an environment variable",
            ));
        }
        return Ok(if a.client_secret_post {
            SavedAuth::ClientSecretPost {
                secret_env: var.clone(),
            }
        } else {
            SavedAuth::ClientSecretBasic {
                secret_env: var.clone(),
            }
        });
    }
    Ok(SavedAuth::None)
}

/// The client and server of a saved session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoginRecord {
    fhir_base: String,
    client_id: String,
    scope: String,
    redirect_uri: String,
    auth: SavedAuth,
    insecure_http: bool,
}

/// The App Launch flow of the CLI: one issuer (the server signed in to), the loopback redirect
/// URI, and the session store.
fn build_app(
    login: &LoginRecord,
    base: &FhirBaseUrl,
    store: Arc<FileSessionStore>,
    http: SharedHttpClient,
    clock: SharedClock,
) -> Result<AppLaunch> {
    let config = LaunchClientConfig::builder()
        .client_id(login.client_id.clone())
        .scope(login.scope.clone())
        .redirect_uri(login.redirect_uri.clone())
        // Nothing is sent there: the listener answers the callback itself.
        .landing_url(login.redirect_uri.clone())
        .client_auth(login.auth.client_auth()?)
        .issuer_policy(IssuerPolicy::allow_list([base.clone()]))
        // The redirect URI is plain http on a loopback host (RFC 8252 §7.3, §8.3). The FHIR
        // server keeps its own policy: it is the allow-listed base, parsed with --insecure-http
        // or without.
        .insecure_http(InsecureHttp::AllowLoopback)
        .session_store(SharedSessionStore::from_arc(store))
        .http_client(http)
        .clock(clock)
        .build()
        .map_err(|e| Failure::from_error("invalid sign-in settings", &e))?;
    Ok(AppLaunch::new(config))
}

// ---------------------------------------------------------------------------------------------
// Where the session is saved.

/// `--session-file`, else `$XDG_STATE_HOME/smart-fhir/session.json`, else
/// `$HOME/.local/state/smart-fhir/session.json`.
fn session_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    default_session_path(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
        .ok_or_else(|| Failure::new("neither XDG_STATE_HOME nor HOME is set: pass --session-file"))
}

fn default_session_path(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    // The XDG spec says to ignore a relative path.
    let state = xdg_state_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local").join("state"))
        })?;
    Some(state.join("smart-fhir").join("session.json"))
}

fn remove_session_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::new(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// The file-backed session store.

/// One stored value, with its expiry in milliseconds since the Unix epoch.
#[derive(Serialize, Deserialize)]
struct Entry {
    session: String,
    key: String,
    value: Value,
    expires_at_ms: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        scrub(&mut self.value);
    }
}

/// The session file.
#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    login: LoginRecord,
    #[serde(default)]
    entries: Vec<Entry>,
}

/// Overwrites every string of a JSON value with zeros: the values hold tokens.
fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

/// A [`SessionStore`] kept in a JSON file that only its owner can read (mode 0600), for a
/// session that outlives the process that signed in.
///
/// It starts in memory ([`in_memory`](Self::in_memory)) while the flow runs, so that the PKCE
/// verifier and `state` never reach the disk; [`save_to`](Self::save_to) then writes it, and
/// from then on every operation re-reads the file and writes it back (to a temporary file that
/// is renamed over it, so a reader never sees half a file) under a lock file, so that several
/// CLI processes sharing the session agree on one refresh-token rotation.
struct FileSessionStore {
    state: Mutex<StoreState>,
    login: LoginRecord,
    clock: SharedClock,
}

struct StoreState {
    entries: Vec<Entry>,
    path: Option<PathBuf>,
}

impl fmt::Debug for FileSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSessionStore")
            .field("client_id", &self.login.client_id)
            .finish_non_exhaustive()
    }
}

impl FileSessionStore {
    fn in_memory(login: LoginRecord, clock: SharedClock) -> Self {
        Self {
            state: Mutex::new(StoreState {
                entries: Vec::new(),
                path: None,
            }),
            login,
            clock,
        }
    }

    /// Opens a saved session.
    fn open(path: &Path, clock: SharedClock) -> Result<Self> {
        let document = read_document(path)
            .map_err(|e| Failure::from_error(&format!("cannot use {}", path.display()), &e))?;
        let mut document = document;
        let login = document.login.clone();
        Ok(Self {
            state: Mutex::new(StoreState {
                entries: std::mem::take(&mut document.entries),
                path: Some(path.to_path_buf()),
            }),
            login,
            clock,
        })
    }

    fn login(&self) -> &LoginRecord {
        &self.login
    }

    /// Writes the store to `path` and keeps it there from now on.
    async fn save_to(&self, path: &Path) -> std::result::Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let _lock = FileLock::acquire(path, &self.clock).await?;
        let now = now_ms(&self.clock);
        state.entries.retain(|e| e.expires_at_ms > now);
        write_document(path, &self.login, &state.entries)?;
        state.path = Some(path.to_path_buf());
        Ok(())
    }

    /// Runs `f` on the live entries: in memory, or on the file re-read under its lock, which is
    /// written back when `f` says it changed something.
    async fn update<R>(
        &self,
        f: impl FnOnce(&mut Vec<Entry>, u64) -> std::result::Result<(R, bool), StoreError>,
    ) -> std::result::Result<R, StoreError> {
        let mut state = self.state.lock().await;
        let now = now_ms(&self.clock);
        let Some(path) = state.path.clone() else {
            state.entries.retain(|e| e.expires_at_ms > now);
            return f(&mut state.entries, now).map(|(r, _)| r);
        };
        let _lock = FileLock::acquire(&path, &self.clock).await?;
        let mut document = match read_document(&path) {
            Ok(d) => d,
            // Removed by `logout` meanwhile: never bring a signed-out session back.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::backend_message(
                    "the session file was removed (signed out)",
                ))
            }
            Err(e) => return Err(StoreError::backend("cannot read the session file", e)),
        };
        let mut entries = std::mem::take(&mut document.entries);
        let before = entries.len();
        entries.retain(|e| e.expires_at_ms > now);
        let expired = entries.len() != before;
        let (result, changed) = f(&mut entries, now)?;
        if changed || expired {
            write_document(&path, &self.login, &entries)?;
        }
        state.entries = entries;
        Ok(result)
    }
}

fn now_ms(clock: &SharedClock) -> u64 {
    clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn expiry(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

fn position(entries: &[Entry], session_id: &str, key: &str) -> Option<usize> {
    entries
        .iter()
        .position(|e| e.session == session_id && e.key == key)
}

#[async_trait]
impl SessionStore for FileSessionStore {
    async fn put(
        &self,
        session_id: &str,
        key: &str,
        value: Value,
        ttl: Duration,
    ) -> std::result::Result<(), StoreError> {
        self.update(|entries, now| {
            if let Some(i) = position(entries, session_id, key) {
                entries.remove(i);
            }
            if !ttl.is_zero() {
                entries.push(Entry {
                    session: session_id.to_owned(),
                    key: key.to_owned(),
                    value,
                    expires_at_ms: expiry(now, ttl),
                });
            }
            Ok(((), true))
        })
        .await
    }

    async fn get(
        &self,
        session_id: &str,
        key: &str,
    ) -> std::result::Result<Option<Value>, StoreError> {
        self.update(|entries, _| {
            let value = position(entries, session_id, key).map(|i| entries[i].value.clone());
            Ok((value, false))
        })
        .await
    }

    async fn take(
        &self,
        session_id: &str,
        key: &str,
    ) -> std::result::Result<Option<Value>, StoreError> {
        self.update(|entries, _| {
            Ok(match position(entries, session_id, key) {
                Some(i) => {
                    let mut entry = entries.remove(i);
                    (Some(std::mem::take(&mut entry.value)), true)
                }
                None => (None, false),
            })
        })
        .await
    }

    async fn delete(&self, session_id: &str, key: &str) -> std::result::Result<(), StoreError> {
        self.update(|entries, _| {
            let found = position(entries, session_id, key).map(|i| entries.remove(i));
            Ok(((), found.is_some()))
        })
        .await
    }

    async fn delete_session(&self, session_id: &str) -> std::result::Result<(), StoreError> {
        self.update(|entries, _| {
            let before = entries.len();
            entries.retain(|e| e.session != session_id);
            Ok(((), entries.len() != before))
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        session_id: &str,
        key: &str,
        expected: Option<&Value>,
        new: Value,
        ttl: Duration,
    ) -> std::result::Result<bool, StoreError> {
        self.update(|entries, now| {
            let at = position(entries, session_id, key);
            if at.map(|i| &entries[i].value) != expected {
                return Ok((false, false));
            }
            if let Some(i) = at {
                entries.remove(i);
            }
            if !ttl.is_zero() {
                entries.push(Entry {
                    session: session_id.to_owned(),
                    key: key.to_owned(),
                    value: new,
                    expires_at_ms: expiry(now, ttl),
                });
            }
            Ok((true, true))
        })
        .await
    }
}

fn read_document(path: &Path) -> std::io::Result<Document> {
    let mut bytes = zeroize::Zeroizing::new(std::fs::read(path)?);
    let document: Document = serde_json::from_slice(&bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a smart-fhir session file",
        )
    })?;
    bytes.zeroize();
    if document.version != FILE_VERSION {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a session file of another smart-fhir version; run `smart-fhir login` again",
        ));
    }
    Ok(document)
}

/// Writes the document to a temporary file (mode 0600) next to `path`, then renames it over
/// `path`.
fn write_document(
    path: &Path,
    login: &LoginRecord,
    entries: &[Entry],
) -> std::result::Result<(), StoreError> {
    #[derive(Serialize)]
    struct Out<'a> {
        version: u32,
        login: &'a LoginRecord,
        entries: &'a [Entry],
    }
    let bytes = zeroize::Zeroizing::new(
        serde_json::to_vec(&Out {
            version: FILE_VERSION,
            login,
            entries,
        })
        .map_err(|e| StoreError::backend("cannot serialize the session", e))?,
    );
    let tmp = sibling(path, &format!("tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| StoreError::backend("cannot write the session file", e);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        // A leftover temporary file keeps its old mode: set it explicitly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// `path` with `.suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates `dir` (and its parents) readable only by its owner, if it does not exist.
fn create_private_dir(dir: &Path) -> std::result::Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::backend("cannot create the session directory", e))
}

/// An exclusive lock on a session file between processes: a `.lock` file created with
/// `O_EXCL`, removed on drop. A lock older than [`STALE_LOCK`] (its holder died) is broken.
#[derive(Debug)]
struct FileLock {
    path: PathBuf,
}

impl FileLock {
    async fn acquire(file: &Path, clock: &SharedClock) -> std::result::Result<Self, StoreError> {
        let path = sibling(file, "lock");
        let started = clock.now();
        let mut step = Duration::from_millis(5);
        loop {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(_) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let now = clock.now();
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_LOCK));
                    if stale {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if now.duration_since(started).unwrap_or(Duration::ZERO) > LOCK_WAIT {
                        return Err(StoreError::backend_message(format!(
                            "the session file is locked by another process ({} exists)",
                            path.display()
                        )));
                    }
                    tokio::time::sleep(step).await;
                    step = (step * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(StoreError::backend("cannot lock the session file", e)),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    use serde_json::json;
    use smart_fhir_core::{FixedClock, HttpClient, HttpError};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MINUTE: Duration = Duration::from_secs(60);

    fn record() -> LoginRecord {
        LoginRecord {
            fhir_base: "https://ehr.example/fhir".into(),
            client_id: "cli-app".into(),
            scope: "launch/patient patient/*.rs".into(),
            redirect_uri: "http://127.0.0.1:1234/callback".into(),
            auth: SavedAuth::ClientSecretBasic {
                secret_env: "MY_SECRET".into(),
            },
            insecure_http: false,
        }
    }

    fn clock() -> (FixedClock, SharedClock) {
        let c = FixedClock::at_unix(1_700_000_000);
        (c.clone(), SharedClock::new(c))
    }

    #[tokio::test]
    async fn store_semantics_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("session.json");
        let (fixed, clock) = clock();
        let store = FileSessionStore::in_memory(record(), clock.clone());
        store
            .put("s", "a", json!({"t": "one"}), MINUTE)
            .await
            .unwrap();
        assert!(!path.exists(), "nothing on disk before save_to");
        store.save_to(&path).await.unwrap();
        assert!(path.exists());

        // A second process sees the file, and both agree on compare-and-swap (P12).
        let other = FileSessionStore::open(&path, clock.clone()).unwrap();
        assert_eq!(
            other.get("s", "a").await.unwrap(),
            Some(json!({"t": "one"}))
        );
        assert!(other
            .compare_and_swap(
                "s",
                "a",
                Some(&json!({"t": "one"})),
                json!({"t": "two"}),
                MINUTE
            )
            .await
            .unwrap());
        assert!(!store
            .compare_and_swap(
                "s",
                "a",
                Some(&json!({"t": "one"})),
                json!({"t": "x"}),
                MINUTE
            )
            .await
            .unwrap());
        assert_eq!(
            store.get("s", "a").await.unwrap(),
            Some(json!({"t": "two"}))
        );

        // take is one-time (P3); None expects absence.
        store.put("s", "b", json!(1), MINUTE).await.unwrap();
        assert_eq!(other.take("s", "b").await.unwrap(), Some(json!(1)));
        assert_eq!(store.take("s", "b").await.unwrap(), None);
        assert!(store
            .compare_and_swap("s", "b", None, json!(2), MINUTE)
            .await
            .unwrap());

        // Expiry by the injected clock; a zero ttl removes.
        fixed.advance(MINUTE);
        assert_eq!(store.get("s", "a").await.unwrap(), None);
        store.put("s", "c", json!(3), MINUTE).await.unwrap();
        store.put("s", "c", json!(3), Duration::ZERO).await.unwrap();
        assert_eq!(other.get("s", "c").await.unwrap(), None);

        store.put("s", "d", json!(4), MINUTE).await.unwrap();
        store.put("t", "d", json!(5), MINUTE).await.unwrap();
        store.delete("t", "d").await.unwrap();
        store.delete_session("s").await.unwrap();
        assert_eq!(other.get("s", "d").await.unwrap(), None);

        assert_eq!(other.login().client_id, "cli-app");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            leftovers,
            ["session.json"],
            "no lock or temporary file left"
        );
    }

    /// SC-4.26, SC-2.16: the file and its new directory are readable by the owner only, and the
    /// saved client configuration names the secret's variable, never a secret.
    #[cfg(unix)]
    #[tokio::test]
    async fn sc_4_26_session_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new-dir").join("session.json");
        let (_, clock) = clock();
        let store = FileSessionStore::in_memory(record(), clock);
        store
            .put("cli", "k", json!("token-value"), MINUTE)
            .await
            .unwrap();
        store.save_to(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"secret_env\":\"MY_SECRET\""), "{text}");
        assert!(!format!("{store:?}").contains("token-value"));
    }

    #[tokio::test]
    async fn a_removed_file_is_not_brought_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let (_, clock) = clock();
        let store = FileSessionStore::in_memory(record(), clock);
        store.save_to(&path).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(store.put("cli", "k", json!(1), MINUTE).await.is_err());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn stale_lock_is_broken_and_a_live_one_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let (fixed, clock) = clock();
        std::fs::write(sibling(&path, "lock"), b"").unwrap();
        // The lock file's mtime is the real time; the clock is far ahead of it: stale.
        fixed.set(SystemClock.now() + 2 * STALE_LOCK);
        let lock = FileLock::acquire(&path, &clock).await.unwrap();
        // Held by someone alive: after LOCK_WAIT the wait ends with an error, and the lock is
        // not broken. Each reading of this clock moves it past LOCK_WAIT, never past
        // STALE_LOCK of the lock file's age.
        let stepping = SharedClock::new(StepClock(
            StdMutex::new(SystemClock.now()),
            LOCK_WAIT + Duration::from_secs(1),
        ));
        let err = FileLock::acquire(&path, &stepping).await.unwrap_err();
        assert!(
            format!("{err:?}").contains("locked by another process"),
            "{err:?}"
        );
        assert!(sibling(&path, "lock").exists());
        drop(lock);
        assert!(!sibling(&path, "lock").exists());
    }

    /// A clock that moves forward by a fixed step each time it is read.
    #[derive(Debug)]
    struct StepClock(StdMutex<SystemTime>, Duration);

    impl Clock for StepClock {
        fn now(&self) -> SystemTime {
            let mut t = self.0.lock().unwrap();
            *t += self.1;
            *t
        }
    }

    #[test]
    fn garbage_and_other_versions_are_refused_with_a_clear_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let (_, clock) = clock();
        std::fs::write(&path, "secret-looking garbage").unwrap();
        let e = FileSessionStore::open(&path, clock.clone()).unwrap_err();
        assert!(e.0.contains("not a smart-fhir session file"), "{}", e.0);
        assert!(!e.0.contains("garbage"));
        let mut v = serde_json::to_value(Document {
            version: 1,
            login: record(),
            entries: vec![],
        })
        .unwrap();
        v["version"] = json!(99);
        std::fs::write(&path, v.to_string()).unwrap();
        let e = FileSessionStore::open(&path, clock).unwrap_err();
        assert!(e.0.contains("another smart-fhir version"), "{}", e.0);
    }

    #[test]
    fn default_path_follows_xdg_then_home() {
        let p = default_session_path(Some("/x/state".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, PathBuf::from("/x/state/smart-fhir/session.json"));
        let p = default_session_path(Some("relative".into()), Some("/home/u".into())).unwrap();
        assert_eq!(
            p,
            PathBuf::from("/home/u/.local/state/smart-fhir/session.json")
        );
        let p = default_session_path(None, Some("/home/u".into())).unwrap();
        assert_eq!(
            p,
            PathBuf::from("/home/u/.local/state/smart-fhir/session.json")
        );
        assert!(default_session_path(None, None).is_none());
        assert!(default_session_path(None, Some("rel".into())).is_none());
    }

    /// SC-4.1, P7: only a loopback http redirect URI is accepted (RFC 8252 §7.3).
    #[test]
    fn sc_4_1_redirect_uri_is_loopback_only() {
        let d = RedirectTarget::parse(None).unwrap();
        assert_eq!(d.uri(5000), "http://127.0.0.1:5000/callback");
        let t = RedirectTarget::parse(Some("http://127.0.0.1:8123/cb")).unwrap();
        assert_eq!((t.port, t.path.as_str()), (8123, "/cb"));
        let t = RedirectTarget::parse(Some("http://[::1]/cb")).unwrap();
        assert_eq!((t.port, t.uri(7)), (0, "http://[::1]:7/cb".to_owned()));
        assert_eq!(t.ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
        let t = RedirectTarget::parse(Some("http://LOCALHOST:9/x")).unwrap();
        assert_eq!(t.uri(9), "http://localhost:9/x");
        for bad in [
            "https://127.0.0.1/callback",
            "http://app.example/callback",
            "http://10.0.0.1/callback",
            "http://127.0.0.1/callback?x=1",
            "http://127.0.0.1/callback#f",
            "http://u:p@127.0.0.1/callback",
            "not a url",
        ] {
            assert!(RedirectTarget::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_escape_messages() {
        let r = page(StatusCode::BAD_REQUEST, "T<", "<script>alert(1)</script>");
        let body = format!("{:?}", r.body());
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{body}"
        );
        assert!(!body.contains("<script>"), "{body}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["content-security-policy"], "default-src 'none'");
    }

    #[test]
    fn saved_auth_debug_names_no_secret() {
        let a = SavedAuth::ClientSecretPost {
            secret_env: "VAR".into(),
        };
        assert_eq!(format!("{a:?}"), "ClientSecretPost($VAR)");
    }

    // -----------------------------------------------------------------------------------------
    // The whole login against a scripted authorization server.

    /// Answers discovery and the token endpoint of `https://ehr.example/fhir`; records the token
    /// request bodies.
    #[derive(Debug, Default)]
    struct FakeServer {
        token_bodies: StdMutex<Vec<String>>,
    }

    #[async_trait]
    impl HttpClient for FakeServer {
        async fn execute(
            &self,
            request: http::Request<Bytes>,
        ) -> std::result::Result<http::Response<Bytes>, HttpError> {
            let uri = request.uri().to_string();
            let body = if uri == "https://ehr.example/fhir/.well-known/smart-configuration" {
                json!({
                    "issuer": "https://as.example",
                    "authorization_endpoint": "https://as.example/authorize",
                    "token_endpoint": "https://as.example/token",
                    "grant_types_supported": ["authorization_code"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                    "capabilities": ["launch-standalone", "client-public", "client-confidential-symmetric",
                        "context-standalone-patient", "permission-offline", "permission-patient", "permission-v2"]
                })
            } else if uri == "https://as.example/token" {
                self.token_bodies
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(request.body()).into_owned());
                json!({
                    "access_token": "AT-1", "token_type": "Bearer", "expires_in": 300,
                    "scope": "launch/patient patient/*.rs offline_access", "refresh_token": "RT-1",
                    "patient": "p-42"
                })
            } else {
                return Ok(http::Response::builder()
                    .status(404)
                    .body(Bytes::new())
                    .unwrap());
            };
            Ok(http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Bytes::from(body.to_string()))
                .unwrap())
        }
    }

    async fn raw_get(addr: &str, target: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn query_param(url: &str, name: &str) -> String {
        Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    /// SC-4.4, SC-4.5, SC-4.8, SC-4.13, SC-4.18, P3: the CLI prints the authorize URL, ignores
    /// a callback with a foreign state (and keeps waiting), completes the flow with the right
    /// one, answers the browser, and saves the session (tokens, client settings) to the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sc_4_13_login_completes_on_the_right_callback_and_saves() {
        std::env::set_var("SMART_FHIR_TEST_LOGIN_SECRET", "s3cret");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let server = Arc::new(FakeServer::default());
        let plan = LoginPlan {
            base: FhirBaseUrl::parse("https://ehr.example/fhir").unwrap(),
            client_id: "cli-app".into(),
            scope: "launch/patient patient/*.rs offline_access".into(),
            auth: SavedAuth::ClientSecretBasic {
                secret_env: "SMART_FHIR_TEST_LOGIN_SECRET".into(),
            },
            target: RedirectTarget::parse(None).unwrap(),
            path: path.clone(),
            timeout: Duration::from_secs(30),
        };
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        let http = SharedHttpClient::from_arc(server.clone());
        let login = tokio::spawn(run_login(
            plan,
            http,
            SharedClock::new(SystemClock),
            move |u| {
                let _ = url_tx.send(u.to_owned());
            },
        ));
        let url = url_rx.await.unwrap();
        assert!(url.starts_with("https://as.example/authorize?"), "{url}");
        let redirect = query_param(&url, "redirect_uri");
        assert_eq!(query_param(&url, "code_challenge_method"), "S256");
        assert_eq!(query_param(&url, "aud"), "https://ehr.example/fhir");
        let state = query_param(&url, "state");
        let addr = redirect
            .strip_prefix("http://")
            .and_then(|r| r.strip_suffix("/callback"))
            .unwrap()
            .to_owned();

        // Stray requests: no state, a forged state, another path. The wait goes on.
        assert!(raw_get(&addr, "/callback?code=x")
            .await
            .starts_with("HTTP/1.1 400"));
        let forged = raw_get(&addr, "/callback?code=x&state=forged").await;
        assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
        assert!(forged.contains("Not this sign-in"));
        assert!(raw_get(&addr, "/other").await.starts_with("HTTP/1.1 404"));
        assert!(!path.exists());

        let ok = raw_get(&addr, &format!("/callback?code=the-code&state={state}")).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("You are signed in"));
        let launched = login.await.unwrap().unwrap();
        assert_eq!(launched.context.patient.as_deref(), Some("p-42"));
        assert!(launched.has_refresh_token);

        let bodies = server.token_bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1);
        assert!(bodies[0].contains("code=the-code"), "{}", bodies[0]);
        assert!(bodies[0].contains("code_verifier="), "{}", bodies[0]);

        // Saved: the tokens under the CLI's session, the client settings without the secret.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("RT-1"));
        assert!(!text.contains("s3cret"), "no secret in the file");
        assert!(!text.contains(state.as_str()), "no state left in the file");
        let store = FileSessionStore::open(&path, SharedClock::new(SystemClock)).unwrap();
        assert_eq!(store.login().redirect_uri, redirect);
    }

    /// The wait ends at the timeout, and nothing is saved (time is paused and advanced by the
    /// runtime, not waited for).
    #[tokio::test(start_paused = true)]
    async fn login_times_out_without_saving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let plan = LoginPlan {
            base: FhirBaseUrl::parse("https://ehr.example/fhir").unwrap(),
            client_id: "cli-app".into(),
            scope: "launch/patient patient/*.rs".into(),
            auth: SavedAuth::None,
            target: RedirectTarget::parse(None).unwrap(),
            path: path.clone(),
            timeout: Duration::from_secs(300),
        };
        let http = SharedHttpClient::new(FakeServer::default());
        let err = run_login(plan, http, SharedClock::new(SystemClock), |_| {})
            .await
            .unwrap_err();
        assert!(err.0.contains("no sign-in within"), "{}", err.0);
        assert!(!path.exists());
    }
}
