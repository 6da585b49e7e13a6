//! `login` and `logout`: a SMART standalone launch from a terminal, and the saved session that
//! later commands use.
//!
//! `login` is a native app in the sense of RFC 8252: it listens on a loopback redirect URI
//! (`http://127.0.0.1:<free port>/callback` by default, [`crate::loopback`]), prints the
//! authorize URL on a line of its own, waits for the browser to come back, answers it with a
//! small page, completes the flow with [`AppLaunch::callback`] (state, PKCE, code exchange,
//! `id_token`), and saves the session in a file readable only by its owner
//! ([`crate::credentials`]). `logout` revokes the tokens with [`AppLaunch::logout`] and deletes
//! the file. The FHIR commands use the saved session with `--session`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hyper::StatusCode;
use smart_fhir_core::text::printable;
use smart_fhir_core::{
    Clock, FhirBaseUrl, InsecureHttp, SharedClock, SharedHttpClient, SystemClock,
};
use smart_fhir_jwt::Algorithm;
use smart_fhir_oauth::{AppLaunch, AuthorizeRequest, LaunchError, Launched, LogoutOutcome};
use smart_fhir_store::{FileSessionStore, SharedSessionStore};
use zeroize::Zeroizing;

use crate::credentials::{
    build_app, open_session_file, remove_session_file, session_path, LoginRecord, SavedAuth,
    SESSION_ID,
};
use crate::keys::Alg;
use crate::loopback::{Answer, Listener, Page, RedirectTarget, Stopped};
use crate::transport::{rt, Transport};
use crate::{Failure, Result};

/// The scopes `login` asks for unless told otherwise: the user's identity, a patient picked at
/// sign-in, read and search on that patient's data, and a refresh token.
pub(crate) const DEFAULT_SCOPE: &str = "openid fhirUser launch/patient patient/*.rs offline_access";

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The FHIR base URL of the server to sign in to.
    #[arg(long, value_name = "URL", env = "SMART_FHIR_BASE")]
    fhir_base: String,
    /// The registered client id.
    #[arg(long, env = "SMART_CLIENT_ID")]
    client_id: String,
    /// The scopes to request, space-separated.
    #[arg(long, value_name = "SCOPES", env = "SMART_SCOPE", default_value = DEFAULT_SCOPE)]
    scope: String,
    /// A confidential asymmetric client (private_key_jwt): the private key file (PEM, JWK or
    /// JWKS). Its path, not the key, is saved with the session for refresh and logout.
    #[arg(
        long,
        value_name = "KEYFILE",
        env = "SMART_PRIVATE_KEY_FILE",
        conflicts_with = "client_secret_env"
    )]
    key: Option<PathBuf>,
    /// With --key: the kid header (default: the key's kid or its RFC 7638 thumbprint). Not
    /// used without a key.
    #[arg(long, env = "SMART_KID")]
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
    #[arg(long, value_name = "URL", env = "SMART_REDIRECT_URI")]
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
pub(crate) struct LogoutArgs {
    /// The session file (default: the one `login` writes).
    #[arg(long, value_name = "FILE")]
    session_file: Option<PathBuf>,
    #[command(flatten)]
    transport: Transport,
}

/// `smart-fhir login`.
pub(crate) fn login(a: LoginArgs) -> Result<u8> {
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
pub(crate) fn logout(a: LogoutArgs) -> Result<u8> {
    let path = session_path(a.session_file.as_deref())?;
    if !path.exists() {
        eprintln!("smart-fhir: no saved session at {}", path.display());
        return Ok(0);
    }
    let (store, login) = open_session_file(&path)?;
    let base = a.transport.base(&login.fhir_base)?;
    let http = a.transport.client()?;
    let note = rt()?.block_on(run_logout(&path, store, &login, &base, http))?;
    outln!("signed out of {base}; removed {}", path.display());
    if let Some(note) = note {
        eprintln!("smart-fhir: note: {note}");
    }
    Ok(0)
}

/// What `logout` says when the server has no revocation endpoint.
const NOT_REVOCABLE: &str = "the server has no revocation endpoint: the tokens were deleted \
                             here but stay valid at the server until they expire";

/// What `logout` says when the file held no signed-in session.
const NO_SESSION: &str = "the file held no signed-in session: there was nothing to revoke";

/// Signs the session out (revoking its tokens where the server can), removes the file, and
/// returns a note for the user when the tokens stay valid at the server (the library's
/// [`LogoutOutcome`] says whether it revoked them).
async fn run_logout(
    path: &Path,
    store: Arc<FileSessionStore>,
    login: &LoginRecord,
    base: &FhirBaseUrl,
    http: SharedHttpClient,
) -> Result<Option<&'static str>> {
    let app = build_app(
        login,
        base,
        SharedSessionStore::from_arc(store),
        http,
        SharedClock::new(SystemClock),
    )?;
    let result = app.logout(SESSION_ID).await;
    // The session is gone from the file whatever the revocation's outcome; remove the file too.
    remove_session_file(path)?;
    let outcome = result.map_err(|e| {
        Failure::from_error(
            &format!(
                "removed {}, but the tokens could not be revoked at the server",
                path.display()
            ),
            &e,
        )
    })?;
    Ok(match outcome {
        LogoutOutcome::NotRevocable { .. } => Some(NOT_REVOCABLE),
        LogoutOutcome::NoSession => Some(NO_SESSION),
        _ => None,
    })
}

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

/// The sign-in in progress, as the callback needs it.
struct Flow {
    app: AppLaunch,
    /// The `state` of this sign-in's authorize request: only a callback that carries it,
    /// exactly once, reaches the flow.
    state: Zeroizing<String>,
    store: Arc<FileSessionStore>,
    path: PathBuf,
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
    let listener = Listener::bind(&plan.target).await?;
    let login = LoginRecord {
        fhir_base: plan.base.as_str().to_owned(),
        client_id: plan.client_id.clone(),
        scope: plan.scope.clone(),
        redirect_uri: listener.redirect_uri(),
        auth: plan.auth.clone(),
        insecure_http: plan.base.insecure_http() == InsecureHttp::AllowLoopback,
    };
    // The flow's state (PKCE verifier, state, nonce) stays in memory; the file is written only
    // once the sign-in succeeded, so a failed login leaves an earlier session as it was.
    let store = Arc::new(login.new_store(clock.clone())?);
    let app = build_app(
        &login,
        &plan.base,
        SharedSessionStore::from_arc(store.clone()),
        http,
        clock,
    )?;
    let start = app
        .standalone(SESSION_ID, plan.base.as_str())
        .await
        .map_err(|e| Failure::from_error("cannot start the sign-in", &e))?;
    let (url, form_page) = match &start {
        AuthorizeRequest::Redirect(url) => (url.to_string(), None),
        // A long request to a server that takes a POST: the browser gets a page from the
        // listener that posts the form.
        other => (listener.start_url(), other.auto_submit_html()),
    };
    let state = authorize_state(&start)
        .ok_or_else(|| Failure::new("cannot start the sign-in: the request carries no state"))?;
    let flow = Arc::new(Flow {
        app,
        state,
        store,
        path: plan.path.clone(),
    });
    show_url(&url);
    let waited = listener
        .wait(form_page, plan.timeout, move |query| {
            let flow = flow.clone();
            async move { on_callback(&flow, &query).await }
        })
        .await;
    match waited {
        Ok(outcome) => outcome,
        Err(Stopped::ListenerFailed) => Err(Failure::new("the loopback listener stopped")),
        Err(Stopped::TimedOut) => Err(Failure::new(format!(
            "no sign-in within {} s; nothing was saved (--timeout to wait longer)",
            plan.timeout.as_secs()
        ))),
    }
}

/// What a request to the redirect URI means for the sign-in: the end of it (signed in and
/// saved, or failed), or a stray request to answer while the wait goes on.
async fn on_callback(flow: &Flow, query: &Zeroizing<String>) -> Answer<Result<Launched>> {
    // Only a request that carries this sign-in's state, exactly once, reaches the flow: any
    // other (no state, a forged one, a repeated one, which the flow would refuse as malformed
    // and so end the sign-in) is answered and the wait goes on, so that nobody else on the
    // machine can abort the login.
    let mut states = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "state")
        .map(|(_, v)| Zeroizing::new(v.into_owned()));
    let first = states.next();
    let repeated = states.next().is_some();
    match first {
        None => {
            return Answer::Wait(Page::new(
                StatusCode::BAD_REQUEST,
                "Not a sign-in response",
                "This address waits for the authorization server's answer.",
            ))
        }
        Some(state) if repeated || !same_secret(&state, &flow.state) => {
            return Answer::Wait(not_this_sign_in());
        }
        Some(_) => {}
    }
    match flow.app.callback(SESSION_ID, query).await {
        Ok(launched) => match flow.store.save_to(&flow.path).await {
            Ok(()) => {
                tracing::info!(file = %flow.path.display(), "session saved");
                Answer::Done(
                    Page::new(
                        StatusCode::OK,
                        "Signed in",
                        "You are signed in. You can close this window and return to the terminal.",
                    ),
                    Ok(launched),
                )
            }
            Err(e) => Answer::Done(
                Page::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sign-in failed",
                    "The session could not be saved; see the terminal.",
                ),
                Err(Failure::from_error(
                    &format!("cannot save the session to {}", flow.path.display()),
                    &e,
                )),
            ),
        },
        // Not this terminal's sign-in (another flow's state, or one used already): keep waiting
        // for the right one.
        Err(LaunchError::UnknownState | LaunchError::StateMismatch) => {
            Answer::Wait(not_this_sign_in())
        }
        Err(e) => {
            let failure = Failure::from_error("sign-in failed", &e);
            let page = Page::new(StatusCode::BAD_REQUEST, "Sign-in failed", failure.0.clone());
            Answer::Done(page, Err(failure))
        }
    }
}

fn not_this_sign_in() -> Page {
    Page::new(
        StatusCode::BAD_REQUEST,
        "Not this sign-in",
        "This answer belongs to no sign-in this terminal is waiting for.",
    )
}

/// The `state` of an authorize request (in the URL, or among the form fields).
fn authorize_state(start: &AuthorizeRequest) -> Option<Zeroizing<String>> {
    match start {
        AuthorizeRequest::Redirect(url) => url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| Zeroizing::new(v.into_owned())),
        AuthorizeRequest::FormPost { fields, .. } => fields
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| Zeroizing::new(v.clone())),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
        printable(l.context.patient.as_deref().unwrap_or("(none)"), 200)
    );
    if let Some(encounter) = &l.context.encounter {
        outln!("encounter:      {}", printable(encounter, 200));
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

/// How the client authenticates, from the options: what is saved with the session.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use serde_json::json;
    use smart_fhir_core::{HttpClient, HttpError, Url};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        // Issue 11 §1: a repeated state (which the flow refuses as malformed, ending the
        // sign-in) is ignored too, with or without the right one among them.
        for repeated in [
            "/callback?code=x&state=a&state=b".to_owned(),
            format!("/callback?code=x&state={state}&state={state}"),
            format!("/callback?error=access_denied&state=x&state={state}"),
        ] {
            let answer = raw_get(&addr, &repeated).await;
            assert!(answer.contains("Not this sign-in"), "{repeated}: {answer}");
        }
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
        let (store, saved) = open_session_file(&path).unwrap();
        assert_eq!(saved.redirect_uri, redirect);

        // Issue 11 §1: logout on a server without a revocation endpoint says that the tokens
        // stay valid there; the file is removed.
        let base = FhirBaseUrl::parse("https://ehr.example/fhir").unwrap();
        let http = SharedHttpClient::from_arc(server.clone());
        let note = run_logout(&path, store, &saved, &base, http).await.unwrap();
        assert_eq!(note, Some(NOT_REVOCABLE));
        assert!(NOT_REVOCABLE.contains("stay valid"));
        assert!(!path.exists());
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
