//! The transport against real servers on this machine: hyper behind tokio-rustls with a throw-away
//! CA made by rcgen, and raw TCP servers that misbehave on purpose. Every server binds 127.0.0.1.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, LOCATION, USER_AGENT};
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, SupportedProtocolVersion};
use smart_fhir_core::{HttpClient, HttpErrorKind, InsecureHttp, MaxResponseBytes, RequestTimeout};
use smart_fhir_http::{HyperHttpClient, Roots};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------------------------
// A throw-away PKI.

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        edit(&mut params);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

fn server_tls(
    leaf: Leaf,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert], leaf.key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

/// A CA and a server configuration for `localhost` and `127.0.0.1`, signed by it.
fn localhost_pki() -> (Ca, Arc<ServerConfig>) {
    let ca = Ca::new("smart-fhir test CA");
    let tls = server_tls(
        ca.leaf(&["localhost", "127.0.0.1"]),
        ALL_VERSIONS,
        H2_AND_H1,
    );
    (ca, tls)
}

// ---------------------------------------------------------------------------------------------
// Servers.

struct TestServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl TestServer {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    fn https(&self, path: &str) -> String {
        self.url("https", path)
    }

    fn http(&self, path: &str) -> String {
        self.url("http", path)
    }

    /// How many TCP connections the server accepted.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn listen() -> (TcpListener, SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr, Arc::new(AtomicUsize::new(0)))
}

/// A hyper server (HTTP/1.1 and HTTP/2), behind TLS when `tls` is given.
async fn serve<H>(tls: Option<Arc<ServerConfig>>, handler: H) -> TestServer
where
    H: Fn(Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let (listener, addr, accepted) = listen().await;
    let count = Arc::clone(&accepted);
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let handler = Arc::clone(&handler);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(config) => {
                        let Ok(stream) = TlsAcceptor::from(config).accept(tcp).await else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    TestServer { addr, accepted }
}

/// A plain-TCP server that reads each request head, then lets `respond` do what it likes with
/// the connection.
async fn serve_raw<F, Fut>(respond: F) -> TestServer
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (listener, addr, accepted) = listen().await;
    let count = Arc::clone(&accepted);
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let respond = Arc::clone(&respond);
            tokio::spawn(async move {
                if read_request_head(&mut tcp).await {
                    respond(tcp).await;
                }
            });
        }
    });
    TestServer { addr, accepted }
}

async fn read_request_head(tcp: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return false;
        }
    }
    true
}

/// Holds the connection open without ever writing to it again.
async fn stall(tcp: TcpStream) {
    let _held = tcp;
    std::future::pending::<()>().await;
}

fn text(body: &str) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(body.to_owned())))
}

// ---------------------------------------------------------------------------------------------
// Clients.

fn trusting(ca: &Ca) -> HyperHttpClient {
    HyperHttpClient::builder()
        .tls_roots(Roots::Only)
        .add_root_certificate_pem(ca.pem())
        .build()
        .unwrap()
}

fn loopback_http() -> HyperHttpClient {
    HyperHttpClient::builder()
        .insecure_http(InsecureHttp::AllowLoopback)
        .build()
        .unwrap()
}

fn get(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// TLS.

/// SC-2.14, SC-7.2: HTTPS with a private root, HTTP/2 by ALPN.
#[tokio::test]
async fn private_root_verifies_the_server_sc_2_14() {
    let (ca, tls) = localhost_pki();
    let server = serve(Some(tls), |_| text("hello")).await;

    let response = trusting(&ca)
        .execute(get(&server.https("/fhir/metadata")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().as_ref(), b"hello");
    assert_eq!(response.version(), Version::HTTP_2);

    // An added root extends the built-in ones (here Mozilla's) rather than replacing them.
    let client = HyperHttpClient::builder()
        .add_root_certificate_pem(ca.pem().as_bytes())
        .build()
        .unwrap();
    let response = client.execute(get(&server.https("/"))).await.unwrap();
    assert_eq!(response.body().as_ref(), b"hello");
}

/// P7: a certificate from an unknown CA is refused with a `Tls` error (Mozilla's roots only).
#[tokio::test]
async fn unknown_issuer_is_a_tls_error_p7() {
    let (_ca, tls) = localhost_pki();
    let server = serve(Some(tls), |_| text("secret")).await;
    let client = HyperHttpClient::builder()
        .tls_roots(Roots::Webpki)
        .build()
        .unwrap();

    let error = client.execute(get(&server.https("/"))).await.unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Tls, "{error}");
    assert!(!error.is_transient());
    // Issue 11 §1: the project's words, with what to do; the chain ends there.
    let line = smart_fhir_core::text::error_chain(&error);
    assert!(line.contains("unknown issuer"), "{line}");
    assert!(line.contains("as a trusted root"), "{line}");
    assert!(!line.contains("client error"), "{line}");
    assert!(smart_fhir_http::is_unknown_issuer(&error));
}

/// P7: trusting another private CA does not make this one trusted.
#[tokio::test]
async fn another_private_ca_is_a_tls_error_p7() {
    let (_ca, tls) = localhost_pki();
    let server = serve(Some(tls), |_| text("secret")).await;
    let other = Ca::new("another CA");

    let error = trusting(&other)
        .execute(get(&server.https("/")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Tls, "{error}");
}

/// P7: a certificate for another name is refused.
#[tokio::test]
async fn certificate_for_another_host_is_a_tls_error_p7() {
    let ca = Ca::new("smart-fhir test CA");
    let tls = server_tls(ca.leaf(&["ehr.example"]), ALL_VERSIONS, H2_AND_H1);
    let server = serve(Some(tls), |_| text("secret")).await;

    let error = trusting(&ca)
        .execute(get(&server.https("/")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Tls, "{error}");
}

/// P7: an expired certificate is refused.
#[tokio::test]
async fn expired_certificate_is_a_tls_error_p7() {
    let ca = Ca::new("smart-fhir test CA");
    let leaf = ca.leaf_with(&["127.0.0.1"], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let server = serve(Some(server_tls(leaf, ALL_VERSIONS, H2_AND_H1)), |_| {
        text("x")
    })
    .await;

    let error = trusting(&ca)
        .execute(get(&server.https("/")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Tls, "{error}");
    // Issue 11 §1: dates, not UNIX seconds, and no HTTP library wording.
    let line = smart_fhir_core::text::error_chain(&error);
    assert!(
        line.contains("the server's certificate expired at 2002-01-01T00:00:00Z (it is now 20"),
        "{line}"
    );
    assert!(
        !line.contains("UNIX") && !line.contains("client error"),
        "{line}"
    );
    assert!(!smart_fhir_http::is_unknown_issuer(&error));
}

/// SC-2.14: TLS 1.2 is the floor and works (the client offers only 1.2 and 1.3; a unit test on
/// the configuration proves older versions are off).
#[tokio::test]
async fn tls_1_2_server_is_accepted_sc_2_14() {
    let ca = Ca::new("smart-fhir test CA");
    let leaf = ca.leaf(&["127.0.0.1"]);
    let tls = server_tls(leaf, &[&rustls::version::TLS12], H1_ONLY);
    let server = serve(Some(tls), |_| text("tls12")).await;

    let response = trusting(&ca)
        .execute(get(&server.https("/")))
        .await
        .unwrap();
    assert_eq!(response.body().as_ref(), b"tls12");
    assert_eq!(response.version(), Version::HTTP_11);
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP (P7).

/// P7: plain HTTP to loopback needs the explicit opt-in; without it nothing is sent.
#[tokio::test]
async fn plain_http_to_loopback_needs_the_opt_in_p7() {
    let server = serve(None, |_| text("plain")).await;

    let refused = HyperHttpClient::builder().build().unwrap();
    let error = refused.execute(get(&server.http("/"))).await.unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::InvalidRequest);
    assert_eq!(server.accepted(), 0);

    let response = loopback_http()
        .execute(get(&server.http("/")))
        .await
        .unwrap();
    assert_eq!(response.body().as_ref(), b"plain");
    assert_eq!(server.accepted(), 1);
}

/// P7: plain HTTP to a host that is not loopback is refused even with the opt-in, before any
/// connection attempt.
#[tokio::test]
async fn plain_http_to_other_hosts_is_refused_even_with_the_opt_in_p7() {
    let client = loopback_http();
    let start = Instant::now();
    let error = client
        .execute(get("http://10.255.255.1/fhir/Patient"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::InvalidRequest);
    assert!(start.elapsed() < Duration::from_secs(1));

    let streaming = client
        .execute_streaming(get("http://10.255.255.1/fhir/Patient"))
        .await
        .unwrap_err();
    assert_eq!(streaming.kind(), HttpErrorKind::InvalidRequest);
}

// ---------------------------------------------------------------------------------------------
// Body size (P15).

/// P15: a `Content-Length` over the limit is refused before the body is read (the server never
/// sends it, so anything but an early refusal would time out).
#[tokio::test]
async fn declared_length_over_the_limit_is_refused_early_p15() {
    let server = serve_raw(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
            .await;
        stall(tcp).await;
    })
    .await;
    // 10 000 000 bytes is over the default limit of 8 MiB. The timeout only bounds a failure.
    let mut request = get(&server.http("/"));
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_secs(10)));
    let error = loopback_http().execute(request).await.unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::BodyTooLarge, "{error}");
}

/// P15: a chunked body is abandoned as soon as it crosses the limit (the server never ends it).
#[tokio::test]
async fn chunked_body_over_the_limit_is_abandoned_p15() {
    let server = serve_raw(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let chunk = [b'x'; 1024];
        for _ in 0..8 {
            let _ = tcp.write_all(b"400\r\n").await;
            let _ = tcp.write_all(&chunk).await;
            let _ = tcp.write_all(b"\r\n").await;
        }
        stall(tcp).await;
    })
    .await;
    let client = HyperHttpClient::builder()
        .insecure_http(InsecureHttp::AllowLoopback)
        .max_response_bytes(4096)
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let error = client.execute(get(&server.http("/"))).await.unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::BodyTooLarge, "{error}");
}

/// P15: the `MaxResponseBytes` extension sets the bound for one request; a body exactly at the
/// bound is accepted.
#[tokio::test]
async fn max_response_bytes_extension_sets_the_bound_p15() {
    let (ca, tls) = localhost_pki();
    let server = serve(Some(tls), |_| text(&"y".repeat(10_240))).await;
    let client = trusting(&ca);

    let mut small = get(&server.https("/"));
    small.extensions_mut().insert(MaxResponseBytes(10_239));
    let error = client.execute(small).await.unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::BodyTooLarge);

    let mut exact = get(&server.https("/"));
    exact.extensions_mut().insert(MaxResponseBytes(10_240));
    assert_eq!(client.execute(exact).await.unwrap().body().len(), 10_240);
}

// ---------------------------------------------------------------------------------------------
// Timeouts and broken connections.

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let server = serve_raw(stall).await;
    let client = HyperHttpClient::builder()
        .insecure_http(InsecureHttp::AllowLoopback)
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client.execute(get(&server.http("/"))).await.unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Timeout);
    assert!(error.is_transient());
}

/// The request timeout covers the body too, and the `RequestTimeout` extension overrides the
/// client's 60 s.
#[tokio::test]
async fn request_timeout_extension_covers_the_body() {
    let server = serve_raw(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            .await;
        stall(tcp).await;
    })
    .await;
    let mut request = get(&server.http("/"));
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(200)));
    let error = loopback_http().execute(request).await.unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Timeout);
}

/// P5: errors name the scheme and host, never the path or the query.
#[tokio::test]
async fn error_text_has_no_path_or_query_p5() {
    let server = serve_raw(stall).await;
    let mut request = get(&server.http("/fhir/Patient?name=Smith&birthdate=1970-01-01"));
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(100)));
    let error = loopback_http().execute(request).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(
        !text.contains("Patient") && !text.contains("Smith"),
        "{text}"
    );
}

#[tokio::test]
async fn connection_reset_mid_body_is_io() {
    let server = serve_raw(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            .await;
        let _ = tcp.flush().await;
        // Closing with a zero linger sends RST instead of FIN.
        let _ = tcp.set_zero_linger();
        drop(tcp);
    })
    .await;
    let error = loopback_http()
        .execute(get(&server.http("/")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Io, "{error}");
}

#[tokio::test]
async fn connection_closed_mid_body_is_io() {
    let server = serve_raw(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            .await;
        let _ = tcp.shutdown().await;
    })
    .await;
    let error = loopback_http()
        .execute(get(&server.http("/")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Io, "{error}");
}

#[tokio::test]
async fn refused_connection_is_connect() {
    // Bind, learn a free port, and close it again: nothing listens there.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = loopback_http()
        .execute(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::Connect, "{error}");
    let line = smart_fhir_core::text::error_chain(&error);
    assert!(line.contains("the connection was refused"), "{line}");
    assert!(!line.contains("client error (Connect)"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Protocol behaviour.

/// Redirects are the caller's business (token and discovery requests refuse them; the FHIR
/// client strips credentials across origins, P6).
#[tokio::test]
async fn redirect_is_not_followed_p6() {
    let (ca, tls) = localhost_pki();
    let followed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&followed);
    let server = serve(Some(tls), move |req| {
        if req.uri().path() == "/target" {
            seen.fetch_add(1, Ordering::SeqCst);
            return text("target");
        }
        let mut response = text("");
        *response.status_mut() = StatusCode::FOUND;
        response
            .headers_mut()
            .insert(LOCATION, "/target".parse().unwrap());
        response
    })
    .await;

    let response = trusting(&ca)
        .execute(get(&server.https("/start")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[LOCATION], "/target");
    assert_eq!(followed.load(Ordering::SeqCst), 0);
}

fn echo_header(
    name: http::header::HeaderName,
) -> impl Fn(Request<Incoming>) -> Response<Full<Bytes>> {
    move |req| {
        let value = req
            .headers()
            .get_all(&name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
            .join(" | ");
        text(&value)
    }
}

#[tokio::test]
async fn user_agent_is_sent() {
    let (ca, tls) = localhost_pki();
    let server = serve(Some(tls), echo_header(USER_AGENT)).await;

    let default = trusting(&ca)
        .execute(get(&server.https("/")))
        .await
        .unwrap();
    let expected = format!("smart-fhir/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(default.body().as_ref(), expected.as_bytes());

    let custom = HyperHttpClient::builder()
        .tls_roots(Roots::Only)
        .add_root_certificate_pem(ca.pem())
        .user_agent("my-ehr-app/3.1")
        .build()
        .unwrap();
    let response = custom.execute(get(&server.https("/"))).await.unwrap();
    assert_eq!(response.body().as_ref(), b"my-ehr-app/3.1");

    let own = Request::get(server.https("/"))
        .header(USER_AGENT, "caller/9")
        .body(Bytes::new())
        .unwrap();
    let response = custom.execute(own).await.unwrap();
    assert_eq!(response.body().as_ref(), b"caller/9");
}

/// SC-3.10: the bearer token reaches the server intact (over HTTP/2 and HTTP/1.1).
#[tokio::test]
async fn authorization_header_reaches_the_server_sc_3_10() {
    for alpn in [H2_AND_H1, H1_ONLY] {
        let ca = Ca::new("smart-fhir test CA");
        let tls = server_tls(ca.leaf(&["127.0.0.1"]), ALL_VERSIONS, alpn);
        let server = serve(Some(tls), echo_header(AUTHORIZATION)).await;
        let request = Request::get(server.https("/fhir/Patient/1"))
            .header(AUTHORIZATION, "Bearer eyJ0eXAiOiJKV1QifQ.e30.c2ln")
            .body(Bytes::new())
            .unwrap();
        let response = trusting(&ca).execute(request).await.unwrap();
        assert_eq!(
            response.body().as_ref(),
            b"Bearer eyJ0eXAiOiJKV1QifQ.e30.c2ln"
        );
    }
}

/// Sequential requests share one pooled connection, over HTTP/2 and over HTTP/1.1.
#[tokio::test]
async fn pooled_connection_is_reused() {
    for (alpn, version) in [(H2_AND_H1, Version::HTTP_2), (H1_ONLY, Version::HTTP_11)] {
        let ca = Ca::new("smart-fhir test CA");
        let tls = server_tls(ca.leaf(&["127.0.0.1"]), ALL_VERSIONS, alpn);
        let server = serve(Some(tls), |_| text("pooled")).await;
        let client = trusting(&ca);
        for _ in 0..5 {
            let response = client.execute(get(&server.https("/"))).await.unwrap();
            assert_eq!(response.body().as_ref(), b"pooled");
            assert_eq!(response.version(), version);
        }
        assert_eq!(server.accepted(), 1, "{version:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming.

/// SC-7.21: a large download arrives in pieces, unbounded by the client's buffered limit.
#[tokio::test]
async fn streaming_reads_a_large_body_in_chunks_sc_7_21() {
    let (ca, tls) = localhost_pki();
    let server = serve(Some(tls), |_| {
        Response::new(Full::new(Bytes::from(vec![b'n'; 2 * 1024 * 1024])))
    })
    .await;
    let client = HyperHttpClient::builder()
        .tls_roots(Roots::Only)
        .add_root_certificate_pem(ca.pem())
        .max_response_bytes(1024)
        .build()
        .unwrap();

    let mut response = client
        .execute_streaming(get(&server.https("/file.ndjson")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.body_mut();
    let (mut total, mut chunks, mut largest) = (0, 0, 0);
    while let Some(chunk) = body.next_chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == b'n'));
        total += chunk.len();
        largest = largest.max(chunk.len());
        chunks += 1;
    }
    assert_eq!(total, 2 * 1024 * 1024);
    assert_eq!(body.bytes_received(), 2 * 1024 * 1024);
    assert!(chunks > 1 && largest < total);
    assert!(body.next_chunk().await.unwrap().is_none());
}

/// P15: with a `MaxResponseBytes` extension the stream stops before returning more than that.
#[tokio::test]
async fn streaming_honours_max_response_bytes_p15() {
    let server = serve_raw(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let chunk = [b'z'; 1024];
        for _ in 0..8 {
            let _ = tcp.write_all(b"400\r\n").await;
            let _ = tcp.write_all(&chunk).await;
            let _ = tcp.write_all(b"\r\n").await;
        }
        let _ = tcp.write_all(b"0\r\n\r\n").await;
        stall(tcp).await;
    })
    .await;
    let mut request = get(&server.http("/"));
    request.extensions_mut().insert(MaxResponseBytes(3000));
    let mut response = loopback_http().execute_streaming(request).await.unwrap();
    let body = response.body_mut();
    let mut returned = 0;
    let error = loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => returned += chunk.len(),
            Ok(None) => panic!("the whole body was returned"),
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), HttpErrorKind::BodyTooLarge);
    assert!(returned <= 3000);
    assert_eq!(
        body.next_chunk().await.unwrap_err().kind(),
        HttpErrorKind::BodyTooLarge
    );

    // A declared length over the bound is refused before the body is handed out.
    let server = serve(None, |_| text(&"q".repeat(5000))).await;
    let mut request = get(&server.http("/"));
    request.extensions_mut().insert(MaxResponseBytes(4999));
    let error = loopback_http()
        .execute_streaming(request)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HttpErrorKind::BodyTooLarge);
}

/// The request timeout bounds each chunk of a streamed body.
#[tokio::test]
async fn streaming_times_out_when_the_body_stalls() {
    let server = serve_raw(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            .await;
        stall(tcp).await;
    })
    .await;
    let mut request = get(&server.http("/"));
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(200)));
    let mut response = loopback_http().execute_streaming(request).await.unwrap();
    let body = response.body_mut();
    assert_eq!(
        body.next_chunk().await.unwrap().unwrap().as_ref(),
        b"0123456789"
    );
    assert_eq!(
        body.next_chunk().await.unwrap_err().kind(),
        HttpErrorKind::Timeout
    );
    assert_eq!(
        body.next_chunk().await.unwrap_err().kind(),
        HttpErrorKind::Timeout
    );
}
