//! The server: accept loop, routing, built-in endpoints.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::body::{ConnControl, ConnIo, ReplyBody};
use crate::record::{bearer_token, hide_credentials, RecordedRequest};
use crate::reply::{BodySpec, Reply};
use crate::tokens::{unauthorized, TokenBook};
use crate::TestkitError;

/// The path of the FHIR base on every server.
const FHIR_PATH: &str = "/fhir";
/// The path of the token endpoint.
const TOKEN_PATH: &str = "/token";
/// The path of the SMART configuration document.
const SMART_CONFIGURATION_PATH: &str = "/fhir/.well-known/smart-configuration";
/// The largest request body the server reads; a larger one is answered `413`.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// A scriptable SMART on FHIR server on `127.0.0.1`, plain HTTP, on a port of its own.
///
/// * `GET {fhir_base}/.well-known/smart-configuration` advertises the token endpoint,
///   `client_credentials`, `private_key_jwt` with `RS384`/`ES384`, and the capabilities
///   `client-confidential-asymmetric`, `permission-v1`, `permission-v2`.
/// * `POST /token` issues `tok-1`, `tok-2`, … for `grant_type=client_credentials`, with
///   `expires_in` from [`set_token_lifetime`](Self::set_token_lifetime) (3600 by default) and the
///   requested `scope` echoed (or the one from [`set_granted_scope`](Self::set_granted_scope)).
///   Client assertions are not checked unless
///   [`verify_client_assertions`](Self::verify_client_assertions) is called. Tokens never expire
///   by the clock (tests do not wait); end them with [`revoke`](Self::revoke),
///   [`revoke_all`](Self::revoke_all) or [`expire_after_requests`](Self::expire_after_requests).
/// * Everything else is scripted with [`route`](Self::route); a scripted route also overrides
///   the two built-in endpoints. An unscripted request gets a `404` OperationOutcome.
/// * Every request is recorded ([`requests`](Self::requests)).
///
/// The server runs on the Tokio runtime that started it, until [`shutdown`](Self::shutdown) or
/// drop. For a cross-origin test, start a second server: another port is another origin.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A scripted route, returned by [`TestServer::route`]: add its replies with
/// [`reply`](Self::reply).
pub struct Route<'a> {
    shared: &'a Shared,
    method: Method,
    pattern: String,
}

impl std::fmt::Debug for Route<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl Route<'_> {
    /// Queues a reply. Replies are served in order; the last one is repeated.
    pub fn reply(self, reply: impl Into<Reply>) -> Self {
        let reply = reply.into();
        let mut inner = self.shared.lock();
        if let Some(route) = inner
            .routes
            .iter_mut()
            .find(|r| r.method == self.method && r.pattern.text == self.pattern)
        {
            route.replies.push_back(reply);
        }
        drop(inner);
        self
    }

    /// Queues several replies, in order.
    pub fn replies<R: Into<Reply>>(self, replies: impl IntoIterator<Item = R>) -> Self {
        replies.into_iter().fold(self, |route, r| route.reply(r))
    }

    /// How many requests this route has answered (refused `401`s not counted).
    pub fn hits(&self) -> usize {
        self.shared
            .lock()
            .routes
            .iter()
            .find(|r| r.method == self.method && r.pattern.text == self.pattern)
            .map_or(0, |r| r.hits)
    }
}

/// How a route's pattern matches a request's path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    /// Ends in `*`: a prefix of the path and query.
    Prefix,
    /// Contains `?`: the path and query exactly.
    PathAndQuery,
    /// Otherwise: the path exactly, whatever the query.
    Path,
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    kind: PatternKind,
}

impl Pattern {
    fn parse(text: &str) -> Self {
        let kind = if text.ends_with('*') {
            PatternKind::Prefix
        } else if text.contains('?') {
            PatternKind::PathAndQuery
        } else {
            PatternKind::Path
        };
        Self {
            text: text.to_owned(),
            kind,
        }
    }

    /// How specific a match is (higher wins), or `None` for no match.
    fn rank(&self, path_and_query: &str) -> Option<(u8, usize)> {
        match self.kind {
            PatternKind::PathAndQuery => (path_and_query == self.text).then_some((3, 0)),
            PatternKind::Path => {
                let path = path_and_query
                    .split_once('?')
                    .map_or(path_and_query, |(p, _)| p);
                (path == self.text).then_some((2, 0))
            }
            PatternKind::Prefix => {
                let prefix = self.text.strip_suffix('*').unwrap_or(&self.text);
                path_and_query
                    .starts_with(prefix)
                    .then_some((1, prefix.len()))
            }
        }
    }
}

#[derive(Debug)]
struct ScriptedRoute {
    method: Method,
    pattern: Pattern,
    replies: VecDeque<Reply>,
    hits: usize,
}

/// State shared by the server's handle and its connections. No `Debug`: it holds tokens.
struct Shared {
    origin: String,
    fhir_base: String,
    token_endpoint: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    routes: Vec<ScriptedRoute>,
    requests: Vec<RecordedRequest>,
    tokens: TokenBook,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere (a failed assertion in a test) leaves the state usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the request and decides the reply, all under one lock so that the token book,
    /// the route queues and the record agree.
    fn dispatch(&self, request: RecordedRequest) -> Reply {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let path = request.path().to_owned();
        if path == TOKEN_PATH {
            inner.tokens.requests += 1;
        }
        let reply = self.answer(inner, &request, &path);
        inner.requests.push(request);
        reply
    }

    fn answer(&self, inner: &mut Inner, request: &RecordedRequest, path: &str) -> Reply {
        let best = inner
            .routes
            .iter_mut()
            .filter(|r| r.method == request.method && !r.replies.is_empty())
            .filter_map(|r| {
                r.pattern
                    .rank(&request.path_and_query)
                    .map(|rank| (rank, r))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, r)| r);
        if let Some(route) = best {
            let needs_auth = route.replies.front().is_some_and(|r| r.require_auth);
            if needs_auth {
                if let Err(refusal) = inner.tokens.authorize(bearer_token(&request.headers)) {
                    return unauthorized(refusal);
                }
            }
            route.hits += 1;
            let reply = if route.replies.len() > 1 {
                route.replies.pop_front()
            } else {
                route.replies.front().cloned()
            };
            if let Some(reply) = reply {
                return reply;
            }
        }
        match (path, &request.method) {
            (TOKEN_PATH, &Method::POST) => inner
                .tokens
                .token_request(&request.body, &self.token_endpoint),
            (TOKEN_PATH, _) => {
                Reply::operation_outcome(405, "not-supported", "the token endpoint takes POST")
                    .header("allow", "POST")
            }
            (SMART_CONFIGURATION_PATH, &Method::GET) => {
                Reply::json(200, self.smart_configuration())
            }
            _ => Reply::operation_outcome(
                404,
                "not-found",
                &format!("no reply is scripted for {} {path}", request.method),
            ),
        }
    }

    fn smart_configuration(&self) -> Value {
        json!({
            "token_endpoint": self.token_endpoint,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["system/*.rs", "system/*.read"],
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
            "code_challenge_methods_supported": ["S256"]
        })
    }
}

impl TestServer {
    /// Starts a server on `127.0.0.1` on a free port.
    ///
    /// # Panics
    ///
    /// When no port can be bound on `127.0.0.1` (a broken test machine); use
    /// [`try_start`](Self::try_start) to handle that. Must be called within a Tokio runtime.
    pub async fn start() -> TestServer {
        match Self::try_start().await {
            Ok(server) => server,
            Err(e) => panic!("smart-fhir-testkit: {e}"),
        }
    }

    /// Starts a server on `127.0.0.1` on a free port, or says why it cannot.
    pub async fn try_start() -> Result<TestServer, TestkitError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|source| TestkitError::Bind { source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| TestkitError::Bind { source })?;
        let origin = format!("http://{addr}");
        let shared = Arc::new(Shared {
            fhir_base: format!("{origin}{FHIR_PATH}"),
            token_endpoint: format!("{origin}{TOKEN_PATH}"),
            origin,
            inner: Mutex::new(Inner::default()),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(TestServer {
            shared,
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The socket address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The origin, `http://127.0.0.1:port`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.shared.origin
    }

    /// The origin followed by `path` (which should start with `/`).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.shared.origin)
    }

    /// The FHIR base URL, `http://127.0.0.1:port/fhir`.
    pub fn fhir_base(&self) -> &str {
        &self.shared.fhir_base
    }

    /// The token endpoint, `http://127.0.0.1:port/token`.
    pub fn token_endpoint(&self) -> &str {
        &self.shared.token_endpoint
    }

    /// The discovery URL, `{fhir_base}/.well-known/smart-configuration`.
    pub fn smart_configuration_url(&self) -> String {
        format!("{}{SMART_CONFIGURATION_PATH}", self.shared.origin)
    }

    /// Scripts the replies to `method` requests whose path and query match `pattern`, and
    /// returns the route to add them to. Scripting the same method and pattern again starts
    /// its queue afresh.
    ///
    /// * `"/fhir/Patient/1"`: this path, whatever the query;
    /// * `"/fhir/Patient?name=x"` (with a `?`): this path and query exactly;
    /// * `"/fhir/Binary/*"` (ending in `*`): any path and query starting with the rest.
    ///
    /// When several routes match, an exact path and query wins over an exact path, which wins
    /// over a prefix, and a longer prefix over a shorter one. A route whose queue is empty is
    /// skipped.
    #[must_use = "add replies with `.reply(…)`; a route without replies is skipped"]
    pub fn route(&self, method: Method, pattern: &str) -> Route<'_> {
        let mut inner = self.shared.lock();
        match inner
            .routes
            .iter_mut()
            .find(|r| r.method == method && r.pattern.text == pattern)
        {
            Some(route) => {
                route.replies.clear();
                route.hits = 0;
            }
            None => inner.routes.push(ScriptedRoute {
                method: method.clone(),
                pattern: Pattern::parse(pattern),
                replies: VecDeque::new(),
                hits: 0,
            }),
        }
        drop(inner);
        Route {
            shared: &self.shared,
            method,
            pattern: pattern.to_owned(),
        }
    }

    /// Removes every scripted route.
    pub fn clear_routes(&self) {
        self.shared.lock().routes.clear();
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The requests whose path and query start with `path_prefix`, oldest first.
    pub fn requests_to(&self, path_prefix: &str) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path_and_query.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// The `expires_in` of the tokens issued from now on, in seconds (3600 by default). The
    /// server itself does not expire tokens by the clock.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.shared.lock().tokens.lifetime_secs = secs;
    }

    /// The `scope` of the token responses from now on; `None` (the default) echoes the
    /// requested scope (SC-5.13: a client must read what was granted).
    pub fn set_granted_scope(&self, scope: Option<&str>) {
        self.shared.lock().tokens.granted_scope = scope.map(str::to_owned);
    }

    /// How many requests reached the token endpoint path (`/token`), whatever their method and
    /// whether or not they were granted or scripted.
    pub fn token_requests(&self) -> u64 {
        self.shared.lock().tokens.requests
    }

    /// How many tokens the built-in token endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.lock().tokens.issued()
    }

    /// Ends one token: requests carrying it get `401` with
    /// `WWW-Authenticate: Bearer error="invalid_token"`. Unknown tokens are ignored.
    pub fn revoke(&self, token: &str) {
        self.shared.lock().tokens.revoke(token);
    }

    /// Ends every token issued so far; tokens issued later work.
    pub fn revoke_all(&self) {
        self.shared.lock().tokens.revoke_all();
    }

    /// Lets each token (issued already or later) pass [`Reply::require_auth`] for `n` requests
    /// in all; the next request with it gets `401` `invalid_token`, as if it had expired.
    /// `expire_after_requests(1)` ends a token after each page of a search; `None` lifts the
    /// limit (uses made meanwhile still count).
    pub fn expire_after_requests(&self, n: impl Into<Option<u64>>) {
        self.shared.lock().tokens.max_uses = n.into();
    }

    /// Whether `token` would pass [`Reply::require_auth`] now.
    pub fn is_token_live(&self, token: &str) -> bool {
        self.shared.lock().tokens.is_live(token)
    }

    /// Makes the token endpoint check `private_key_jwt` client authentication against `jwks`
    /// (a JSON Web Key Set, `{"keys": [...]}`): `client_assertion_type`, the signature (`RS384`
    /// or `ES384`), `typ: JWT`, `iss` = `sub` (= `client_id` when sent), `aud` = exactly
    /// [`token_endpoint`](Self::token_endpoint), `exp` in the future and at most five minutes
    /// ahead, and a `jti` never seen before (SC-2.9 – SC-2.13, P8, P11). A failing request gets
    /// `401` `invalid_client` with an `error_description` saying which check failed.
    ///
    /// Times are read from the system clock unless [`set_clock`](Self::set_clock) gives another.
    #[cfg(feature = "jwt")]
    pub fn verify_client_assertions(&self, jwks: &Value) -> Result<(), TestkitError> {
        let jwks = smart_fhir_jwt::Jwks::from_value(jwks)
            .map_err(|source| TestkitError::InvalidJwks { source })?;
        let mut inner = self.shared.lock();
        let clock = inner
            .tokens
            .assertions
            .as_ref()
            .map(|a| a.clock.clone())
            .unwrap_or_default();
        inner.tokens.assertions = Some(crate::assertion::AssertionCheck::new(jwks, clock));
        Ok(())
    }

    /// The clock client assertions are checked against (the system clock by default); give
    /// the client's `FixedClock` so both sides agree. Call it after
    /// [`verify_client_assertions`](Self::verify_client_assertions).
    #[cfg(feature = "jwt")]
    pub fn set_clock(&self, clock: impl smart_fhir_core::Clock + 'static) {
        if let Some(check) = self.shared.lock().tokens.assertions.as_mut() {
            check.clock = smart_fhir_core::SharedClock::new(clock);
        }
    }

    /// Stops accepting connections, closes the open ones and waits until the port is released.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Aborting drops the listener and the set of connection tasks, which aborts them too.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Also taken when the server handle is dropped.
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Out of file descriptors, say: let other tasks close some.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let control = Arc::new(ConnControl::default());
    let io = TokioIo::new(ConnIo::new(stream, Arc::clone(&control)));
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let control = Arc::clone(&control);
        async move { Ok::<_, Infallible>(handle(&shared, control, request).await) }
    });
    // The connection ends with an error after a scripted cut; there is nobody to tell.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service)
        .await;
}

async fn handle(
    shared: &Shared,
    control: Arc<ConnControl>,
    request: Request<Incoming>,
) -> Response<ReplyBody> {
    let (parts, body) = request.into_parts();
    let (body, too_large) = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    let mut headers = parts.headers;
    hide_credentials(&mut headers);
    let recorded = RecordedRequest {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        headers,
        body,
        at: Instant::now(),
    };
    let reply = if too_large {
        let mut inner = shared.lock();
        inner.requests.push(recorded);
        Reply::operation_outcome(413, "too-costly", "the request body is too large")
    } else {
        shared.dispatch(recorded)
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    if reply.hang {
        std::future::pending::<()>().await;
    }
    build_response(&reply, control)
}

/// Turns a reply into a response. Mistakes in the script (a bad status or header) become a
/// `500` that says so.
fn build_response(reply: &Reply, control: Arc<ConnControl>) -> Response<ReplyBody> {
    let Ok(status) = StatusCode::from_u16(reply.status) else {
        return script_error(&format!("invalid status {}", reply.status), control);
    };
    let mut response = Response::new(ReplyBody::new(
        &reply.body,
        reply.gzip,
        reply.cut,
        Arc::clone(&control),
    ));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in &reply.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return script_error(&format!("invalid header name {name:?}"), control);
        };
        let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) else {
            return script_error(&format!("invalid value for header {name}"), control);
        };
        headers.append(name, value);
    }
    if reply.gzip {
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
    }
    response
}

fn script_error(message: &str, control: Arc<ConnControl>) -> Response<ReplyBody> {
    let text = format!("smart-fhir-testkit: the scripted reply is broken: {message}");
    let body = BodySpec::Static(Bytes::from(text));
    let mut response = Response::new(ReplyBody::new(&body, false, None, control));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_rank_exact_query_over_path_over_prefix() {
        let exact_q = Pattern::parse("/fhir/Patient?page=2");
        let exact = Pattern::parse("/fhir/Patient");
        let prefix = Pattern::parse("/fhir/*");
        let longer = Pattern::parse("/fhir/Pat*");
        let pq = "/fhir/Patient?page=2";
        assert_eq!(exact_q.rank(pq), Some((3, 0)));
        assert_eq!(exact.rank(pq), Some((2, 0)));
        assert_eq!(prefix.rank(pq), Some((1, 6)));
        assert!(longer.rank(pq) > prefix.rank(pq));
        assert!(exact.rank(pq) > longer.rank(pq));
        assert_eq!(exact_q.rank("/fhir/Patient?page=3"), None);
        assert_eq!(exact.rank("/fhir/Patient/1"), None);
        assert_eq!(exact.rank("/fhir/Patient"), Some((2, 0)));
        assert_eq!(prefix.rank("/other"), None);
    }

    #[test]
    fn broken_scripts_become_500s_not_panics() {
        let control = Arc::new(ConnControl::default());
        let r = build_response(&Reply::empty(42), Arc::clone(&control));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = build_response(
            &Reply::empty(200).header("bad name", "x"),
            Arc::clone(&control),
        );
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = build_response(
            &Reply::empty(200).header("x-ok", "a\nb"),
            Arc::clone(&control),
        );
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = build_response(&Reply::empty(204).header("x-ok", "fine"), control);
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["x-ok"], "fine");
    }
}
