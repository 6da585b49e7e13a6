//! The loopback redirect listener of `login` (RFC 8252, OAuth 2.0 for native apps): a small
//! HTTP/1.1 server on `127.0.0.1`, `[::1]` or `localhost` that waits for the browser to come
//! back to the redirect URI, answers every request with a small static page, and hands the
//! callback's query to the sign-in flow.
//!
//! It knows nothing of OAuth: the flow decides what a callback means ([`Answer`]). What it
//! guarantees is the shape of the wait: only `GET`, a bounded request head, one request a
//! connection, a connection that stays silent cannot hold up the result, and the wait ends at a
//! timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use smart_fhir_core::text::escape_html;
use smart_fhir_core::Url;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::{Failure, Result};

/// The longest request head the listener reads.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long one browser connection to the listener may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the listener binds, and the redirect URI it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectTarget {
    /// The host as written in the redirect URI (`127.0.0.1`, `[::1]` or `localhost`).
    host: String,
    ip: IpAddr,
    /// `0`: any free port.
    port: u16,
    path: String,
}

impl RedirectTarget {
    /// Parses `--redirect-uri`: plain `http` to a loopback host (RFC 8252 §7.3), a path, no
    /// query, no fragment, no user info. `None`: `http://127.0.0.1:<free port>/callback`.
    pub(crate) fn parse(text: Option<&str>) -> Result<Self> {
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

/// A static page the listener answers with.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    status: StatusCode,
    title: &'static str,
    message: String,
}

impl Page {
    /// A page with a title and a message, both HTML-escaped when written.
    pub(crate) fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            title,
            message: message.into(),
        }
    }
}

/// What the flow makes of a request to the redirect URI.
pub(crate) enum Answer<T> {
    /// Show the page and keep waiting (a stray or foreign request).
    Wait(Page),
    /// Show the page and end the wait with this outcome, once the page is written.
    Done(Page, T),
}

/// Why the wait ended without an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// No callback ended the wait in time.
    TimedOut,
    /// The listener could not go on accepting connections.
    ListenerFailed,
}

/// A bound loopback listener.
pub(crate) struct Listener {
    tcp: TcpListener,
    target: RedirectTarget,
    port: u16,
}

impl Listener {
    /// Binds the target's address (its port, or a free one).
    pub(crate) async fn bind(target: &RedirectTarget) -> Result<Self> {
        let addr = SocketAddr::new(target.ip, target.port);
        let cannot = |e: std::io::Error| Failure::new(format!("cannot listen on {addr}: {e}"));
        let tcp = TcpListener::bind(addr).await.map_err(cannot)?;
        let port = tcp.local_addr().map_err(cannot)?.port();
        Ok(Self {
            tcp,
            target: target.clone(),
            port,
        })
    }

    /// The redirect URI this listener answers, with the port it is bound to.
    pub(crate) fn redirect_uri(&self) -> String {
        self.target.uri(self.port)
    }

    /// The listener's own page that posts an authorize form (see [`wait`](Self::wait)).
    pub(crate) fn start_url(&self) -> String {
        format!("http://{}:{}/start", self.target.host, self.port)
    }

    /// Serves until a request to the redirect URI's path gets [`Answer::Done`] from
    /// `on_callback` (called with the request's query, which holds the authorization code), or
    /// `timeout` passes. With `form_page`, `GET /start` answers with that HTML (a page that
    /// posts an authorize form, for a server that wants a POST).
    pub(crate) async fn wait<T, H, Fut>(
        self,
        form_page: Option<String>,
        timeout: Duration,
        on_callback: H,
    ) -> std::result::Result<T, Stopped>
    where
        T: Send + 'static,
        H: Fn(Zeroizing<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Answer<T>> + Send,
    {
        tracing::info!(redirect_uri = %self.redirect_uri(), "waiting for the browser");
        let routes = Arc::new(Routes {
            callback_path: self.target.path.clone(),
            form_page,
            on_callback,
        });
        let (done_tx, mut done_rx) = mpsc::channel::<T>(1);
        let accept = async {
            loop {
                let Ok((stream, _)) = self.tcp.accept().await else {
                    continue;
                };
                let routes = routes.clone();
                let done_tx = done_tx.clone();
                tokio::spawn(async move {
                    if let Some(outcome) = serve_connection(stream, routes).await {
                        let _ = done_tx.send(outcome).await;
                    }
                });
            }
        };
        tokio::select! {
            // The connection that ended the flow reports after its page was written.
            outcome = done_rx.recv() => outcome.ok_or(Stopped::ListenerFailed),
            () = accept => Err(Stopped::ListenerFailed),
            () = tokio::time::sleep(timeout) => Err(Stopped::TimedOut),
        }
    }
}

/// What each connection needs.
struct Routes<H> {
    callback_path: String,
    form_page: Option<String>,
    on_callback: H,
}

/// Serves one connection; returns the outcome if this connection's request ended the wait,
/// once its page has been written (or the connection failed).
async fn serve_connection<T, H, Fut>(
    stream: tokio::net::TcpStream,
    routes: Arc<Routes<H>>,
) -> Option<T>
where
    T: Send + 'static,
    H: Fn(Zeroizing<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer<T>> + Send,
{
    let slot: Arc<StdMutex<Option<T>>> = Arc::new(StdMutex::new(None));
    let service_slot = slot.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let routes = routes.clone();
        let slot = service_slot.clone();
        async move {
            let (response, outcome) = handle(&routes, &req).await;
            // The path only: the query holds the authorization code.
            tracing::debug!(
                method = %req.method(),
                path = req.uri().path(),
                status = response.status().as_u16(),
                "loopback request"
            );
            if let Some(outcome) = outcome {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
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
    let mut outcome = slot.lock().unwrap_or_else(|p| p.into_inner());
    outcome.take()
}

/// Answers one request.
async fn handle<T, H, Fut>(
    routes: &Routes<H>,
    req: &Request<Incoming>,
) -> (Response<Full<Bytes>>, Option<T>)
where
    H: Fn(Zeroizing<String>) -> Fut,
    Fut: Future<Output = Answer<T>>,
{
    if req.method() != hyper::Method::GET {
        let page = Page::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "Only GET is served here.",
        );
        return (page.response(), None);
    }
    let path = req.uri().path();
    if path == "/start" {
        if let Some(form) = &routes.form_page {
            return (html(StatusCode::OK, form.clone()), None);
        }
    }
    if path != routes.callback_path {
        let page = Page::new(StatusCode::NOT_FOUND, "Not found", "Nothing here.");
        return (page.response(), None);
    }
    let query = Zeroizing::new(req.uri().query().unwrap_or("").to_owned());
    match (routes.on_callback)(query).await {
        Answer::Wait(page) => (page.response(), None),
        Answer::Done(page, outcome) => (page.response(), Some(outcome)),
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

impl Page {
    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = html(
            self.status,
            format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>smart-fhir: {t}</title></head>\
                 <body><h1>{t}</h1><p>{m}</p></body></html>",
                t = escape_html(self.title),
                m = escape_html(&self.message)
            ),
        );
        // Static pages run no script.
        response.headers_mut().insert(
            "content-security-policy",
            hyper::header::HeaderValue::from_static("default-src 'none'"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

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

    /// P15: a page quotes a message (a server's error text) escaped, and runs no script.
    #[test]
    fn pages_escape_messages() {
        let r = Page::new(StatusCode::BAD_REQUEST, "T<", "<script>alert(1)</script>").response();
        let body = format!("{:?}", r.body());
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{body}"
        );
        assert!(body.contains("smart-fhir: T&lt;"), "{body}");
        assert!(!body.contains("<script>"), "{body}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["content-security-policy"], "default-src 'none'");
    }

    /// A bound listener names its real port in the redirect URI and the start page's URL.
    #[tokio::test]
    async fn the_redirect_uri_names_the_bound_port() {
        let listener = Listener::bind(&RedirectTarget::parse(None).unwrap())
            .await
            .unwrap();
        let port = listener.tcp.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(
            listener.redirect_uri(),
            format!("http://127.0.0.1:{port}/callback")
        );
        assert_eq!(
            listener.start_url(),
            format!("http://127.0.0.1:{port}/start")
        );
    }
}
