//! Fault injection against a real local server (`smart-fhir-testkit`): what the FHIR client does
//! when the network or the server misbehaves (SC-7.18, SC-8.13, SC-8.18, SC-8.24–SC-8.26, P6,
//! P15).
//!
//! Every test talks HTTP over loopback to a `TestServer`, so waits are real: the retry policies
//! here use millisecond backoffs, timeouts are a few hundred milliseconds, and the longest wait
//! is a `Retry-After: 1`. tokio's paused clock is not used: it would advance to the transport's
//! request timeout whenever the runtime waits for the socket, and fail requests at random (the
//! paused-clock retry tests are in `client_errors.rs`, with a scripted transport).

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use smart_fhir_core::StaticTokenProvider;
use smart_fhir_core::{
    AccessToken, FhirBaseUrl, FixedClock, HttpErrorKind, InsecureHttp, SharedHttpClient,
};
use smart_fhir_http::bulk::{DownloadOptions, FileKind, PollOptions};
use smart_fhir_http::client::SearchParams;
use smart_fhir_http::{
    FhirClient, FhirClientBuilder, FhirError, HyperHttpClient, RequestOptions, RetryPolicy,
};
use smart_fhir_jwt::{KeySpec, PrivateKey};
use smart_fhir_oauth::BackendServices;
use smart_fhir_testkit::{Fault, Method, Reply, TestServer};

// ----- set-up ----------------------------------------------------------------------------------

fn transport() -> HyperHttpClient {
    HyperHttpClient::builder()
        .insecure_http(InsecureHttp::AllowLoopback)
        .request_timeout(Duration::from_secs(20))
        .build()
        .expect("transport")
}

fn base(server: &TestServer) -> FhirBaseUrl {
    FhirBaseUrl::parse_with(server.fhir_base(), InsecureHttp::AllowLoopback).expect("base URL")
}

/// `max_retries` retries with millisecond backoffs: the default policy's logic, quickly.
fn quick_retries(max_retries: u32) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.max_retries = max_retries;
    policy.base_delay = Duration::from_millis(5);
    policy.max_delay = Duration::from_secs(5);
    policy
}

/// A client of `server` without a token source.
fn open_client(server: &TestServer) -> FhirClientBuilder {
    FhirClient::builder(base(server))
        .http_client(transport())
        .retry_policy(quick_retries(3))
}

/// A Backend Services token source using the server's built-in `/token` (no discovery; the
/// testkit does not check the assertion's signature unless asked, so any key does).
fn backend(server: &TestServer) -> BackendServices {
    BackendServices::builder()
        .fhir_base(base(server))
        .client_id("faults-client")
        .scope("system/*.rs")
        .private_key(PrivateKey::generate(KeySpec::P384).expect("key"))
        .token_endpoint(server.token_endpoint())
        .http_client(SharedHttpClient::new(transport()))
        .build()
        .expect("backend services")
}

/// A client of `server` that authorizes with Backend Services against the server's `/token`.
fn backend_client(server: &TestServer) -> FhirClient {
    open_client(server)
        .auth(backend(server))
        .build()
        .expect("client")
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "active": true})
}

fn searchset(ids: &[&str], next: Option<&str>) -> Value {
    let entries: Vec<Value> = ids
        .iter()
        .map(|id| json!({"fullUrl": format!("Patient/{id}"), "resource": patient(id)}))
        .collect();
    let mut links = vec![json!({"relation": "self", "url": "ignored"})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": next}));
    }
    json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})
}

fn ids_of(resources: &[Value]) -> Vec<&str> {
    resources.iter().filter_map(|r| r["id"].as_str()).collect()
}

/// The transport error kind inside a `FhirError::Http`.
fn http_kind(e: &FhirError) -> Option<HttpErrorKind> {
    match e {
        FhirError::Http { source, .. } => Some(source.kind()),
        _ => None,
    }
}

/// The `invalid_token` refusal a server sends for an expired token (RFC 6750 §3.1).
fn invalid_token() -> Reply {
    Reply::operation_outcome(401, "login", "token expired").header(
        "www-authenticate",
        "Bearer realm=\"ehr\", error=\"invalid_token\"",
    )
}

/// This process's peak resident set size, in bytes, where Linux tells it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

// ----- retries ---------------------------------------------------------------------------------

/// SC-8.25: a GET answered `503`, then `500`, then `200` is retried and succeeds.
#[tokio::test]
async fn sc_8_25_5xx_then_success_get_is_retried() {
    let server = TestServer::start().await;
    server.route(Method::GET, "/fhir/Patient/1").replies([
        Reply::operation_outcome(503, "transient", "warming up"),
        Reply::html(500, "<h1>oops</h1>"),
        Reply::fhir(200, patient("1")),
    ]);
    let client = open_client(&server).build().unwrap();
    let read = client.read::<Value>("Patient", "1").await.unwrap();
    assert_eq!(read.body()["id"], "1");
    assert_eq!(server.requests_to("/fhir/Patient/1").len(), 3);
}

/// SC-8.13, SC-8.14: a plain create answered `500` is not retried (it may have created the
/// resource); a conditional create is.
#[tokio::test]
async fn sc_8_13_5xx_plain_create_is_not_retried_conditional_create_is() {
    let server = TestServer::start().await;
    server.route(Method::POST, "/fhir/Patient").replies([
        Reply::operation_outcome(500, "exception", "database timeout"),
        Reply::fhir(201, patient("new")).header("location", "Patient/new/_history/1"),
    ]);
    let client = open_client(&server).build().unwrap();
    let body = json!({"resourceType": "Patient", "active": true});

    let e = client
        .create::<Value>("Patient", &body, None)
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(500), "{e}");
    assert_eq!(server.requests_to("/fhir/Patient").len(), 1);

    server.route(Method::POST, "/fhir/Patient").replies([
        Reply::operation_outcome(500, "exception", "database timeout"),
        Reply::fhir(201, patient("new")).header("location", "Patient/new/_history/1"),
    ]);
    let created = client
        .create::<Value>("Patient", &body, Some("identifier=urn:mrn|1"))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let posts = server.requests_to("/fhir/Patient");
    assert_eq!(posts.len(), 3);
    assert_eq!(
        posts[2].header("if-none-exist"),
        Some("identifier=urn:mrn|1")
    );
}

/// SC-8.25, SC-7.11: `429` with `Retry-After: 1` is retried after at least one second.
#[tokio::test]
async fn sc_8_25_429_retry_after_seconds_is_waited() {
    let server = TestServer::start().await;
    server.route(Method::GET, "/fhir/Patient/1").replies([
        Reply::retry_after_secs(429, 1),
        Reply::fhir(200, patient("1")),
    ]);
    let client = open_client(&server).build().unwrap();
    client.read::<Value>("Patient", "1").await.unwrap();
    let seen = server.requests_to("/fhir/Patient/1");
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
}

/// SC-8.25, SC-7.11: `Retry-After` as an HTTP date is read against the client's clock: with the
/// clock 400 ms before the date, the retry comes 400 ms later (with the system clock the date,
/// in 2025, would be long past and the retry immediate).
#[tokio::test]
async fn sc_8_25_429_retry_after_http_date_is_waited_by_the_client_clock() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let server = TestServer::start().await;
    server.route(Method::GET, "/fhir/Patient/1").replies([
        Reply::retry_after_date(429, at),
        Reply::fhir(200, patient("1")),
    ]);
    let client = open_client(&server)
        .clock(FixedClock::new(at - Duration::from_millis(400)))
        .build()
        .unwrap();
    client.read::<Value>("Patient", "1").await.unwrap();
    let seen = server.requests_to("/fhir/Patient/1");
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(gap >= Duration::from_millis(400), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
}

/// SC-8.25: a `Retry-After` longer than the policy's `max_delay` is not waited for: the `429`
/// comes back at once as a transient `Status` error.
#[tokio::test]
async fn sc_8_25_retry_after_beyond_the_bound_is_returned_at_once() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::retry_after_secs(429, 3600));
    let client = open_client(&server).build().unwrap();
    let started = Instant::now();
    let e = client.read::<Value>("Patient", "1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(e.status().map(|s| s.as_u16()), Some(429), "{e}");
    assert!(e.is_transient());
    assert!(e.outcome().is_some_and(|o| o.is_transient()), "{e:?}");
    assert_eq!(server.requests_to("/fhir/Patient/1").len(), 1);
}

// ----- broken connections ----------------------------------------------------------------------

/// A connection reset in the middle of a body: the GET is retried on a new connection and
/// succeeds.
#[tokio::test]
async fn reset_mid_body_get_is_retried_then_succeeds() {
    let server = TestServer::start().await;
    server.route(Method::GET, "/fhir/Patient/1").replies([
        Reply::fhir(200, patient("1")).fault(Fault::ResetMidBody { after_bytes: 10 }),
        Reply::fhir(200, patient("1")),
    ]);
    let client = open_client(&server).build().unwrap();
    let read = client.read::<Value>("Patient", "1").await.unwrap();
    assert_eq!(read.body()["id"], "1");
    assert_eq!(server.requests_to("/fhir/Patient/1").len(), 2);
}

/// Resets on every attempt: after the retries the error is a transient `Http` error of kind
/// `Io`, whose message names neither the query nor the token (P5). A plain create that meets a
/// reset is not retried.
#[tokio::test]
async fn reset_mid_body_retries_exhausted_is_an_io_error() {
    let server = TestServer::start().await;
    server.route(Method::GET, "/fhir/Patient").reply(
        Reply::fhir(200, searchset(&["a"], None)).fault(Fault::ResetMidBody { after_bytes: 30 }),
    );
    let client = open_client(&server)
        .retry_policy(quick_retries(2))
        .auth(StaticTokenProvider::new(AccessToken::new(
            "tok-secret-value",
        )))
        .build()
        .unwrap();
    let e = client
        .search::<Value>("Patient", &[("name", "Jane Secretname")])
        .await
        .unwrap_err();
    assert_eq!(http_kind(&e), Some(HttpErrorKind::Io), "{e}");
    assert!(e.is_transient());
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("Secretname"), "{shown}");
    assert!(!shown.contains("tok-secret-value"), "{shown}");
    assert_eq!(server.requests_to("/fhir/Patient").len(), 3);

    server
        .route(Method::POST, "/fhir/Patient")
        .reply(Reply::fhir(201, patient("x")).fault(Fault::ResetMidBody { after_bytes: 5 }));
    let e = client
        .create::<Value>("Patient", &json!({"resourceType": "Patient"}), None)
        .await
        .unwrap_err();
    assert_eq!(http_kind(&e), Some(HttpErrorKind::Io), "{e}");
    let posts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::POST)
        .collect();
    assert_eq!(posts.len(), 1);
}

/// P15: an endless body (8 GiB streamed, no `Content-Length`) stops at the client's bound with a
/// `BodyTooLarge` error that is not retried, and memory stays small; a declared
/// `Content-Length` over the bound is refused before the body is read; a streamed read stops
/// at the bound too.
#[tokio::test]
async fn p15_oversize_body_is_body_too_large_with_bounded_memory() {
    const LIMIT: usize = 256 * 1024;
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/huge")
        .reply(Reply::fhir(200, patient("huge")).fault(Fault::Oversize { bytes: 8 << 30 }));
    server.route(Method::GET, "/fhir/Patient/declared").reply(
        Reply::bytes(200, vec![b' '; LIMIT + 1]).header("content-type", "application/fhir+json"),
    );
    let client = open_client(&server)
        .max_response_bytes(LIMIT)
        .build()
        .unwrap();

    let e = client.read::<Value>("Patient", "huge").await.unwrap_err();
    assert_eq!(http_kind(&e), Some(HttpErrorKind::BodyTooLarge), "{e}");
    assert!(!e.is_transient());
    assert_eq!(server.requests_to("/fhir/Patient/huge").len(), 1);

    let e = client
        .read::<Value>("Patient", "declared")
        .await
        .unwrap_err();
    assert_eq!(http_kind(&e), Some(HttpErrorKind::BodyTooLarge), "{e}");

    // The streaming path: chunks are handed out up to the bound, then the error.
    let url = client.url("Patient/huge").unwrap();
    let request = client.request(Method::GET, &url, None).unwrap();
    let options = RequestOptions::default().max_response_bytes(LIMIT);
    let mut body = client
        .send_streaming(request, &options)
        .await
        .unwrap()
        .into_body();
    let mut received = 0usize;
    let e = loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("an 8 GiB body ended after {received} bytes"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), HttpErrorKind::BodyTooLarge, "{e}");
    assert!(received <= LIMIT, "{received}");

    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
    }
}

/// A JSON body cut in the middle: a chunked body that ends without its last chunk is an `Io`
/// error (retried for a GET, then returned); a complete response holding half a document is a
/// `Decode` error that quotes nothing of it. No panic either way.
#[tokio::test]
async fn truncated_json_is_a_typed_error() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/cut")
        .reply(Reply::fhir(200, patient("cut")).fault(Fault::Truncate { after_bytes: 25 }));
    server.route(Method::GET, "/fhir/Patient/half").reply(
        Reply::bytes(200, r#"{"resourceType":"Patient","name":[{"family":"Sec"#)
            .header("content-type", "application/fhir+json"),
    );
    let client = open_client(&server)
        .retry_policy(quick_retries(1))
        .build()
        .unwrap();

    let e = client.read::<Value>("Patient", "cut").await.unwrap_err();
    assert_eq!(http_kind(&e), Some(HttpErrorKind::Io), "{e}");
    assert_eq!(server.requests_to("/fhir/Patient/cut").len(), 2);

    let e = client.read::<Value>("Patient", "half").await.unwrap_err();
    match &e {
        FhirError::Decode { reason, .. } => assert!(reason.contains("truncated"), "{reason}"),
        other => panic!("expected a Decode error, got {other:?}"),
    }
    assert!(!e.to_string().contains("Sec"), "{e}");
    assert_eq!(server.requests_to("/fhir/Patient/half").len(), 1);
}

/// SC-8.18: a search whose second page is cut mid-JSON yields the first page's resources, then
/// the error.
#[tokio::test]
async fn sc_8_18_truncated_second_page_ends_paging_with_an_error() {
    let server = TestServer::start().await;
    let next = format!("{}/Patient?page=2", server.fhir_base());
    server
        .route(Method::GET, "/fhir/Patient?_count=2")
        .reply(Reply::fhir(200, searchset(&["a", "b"], Some(&next))));
    server.route(Method::GET, "/fhir/Patient?page=2").reply(
        Reply::fhir(200, searchset(&["c", "d"], None)).fault(Fault::Truncate { after_bytes: 60 }),
    );
    let client = open_client(&server)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let mut resources = client
        .search_pages("Patient", &SearchParams::new().count(2))
        .unwrap()
        .resources::<Value>();
    let mut got = Vec::new();
    let e = loop {
        match resources.next_resource().await {
            Ok(Some(r)) => got.push(r),
            Ok(None) => panic!("paging ended without the error"),
            Err(e) => break e,
        }
    };
    assert_eq!(ids_of(&got), ["a", "b"]);
    assert_eq!(http_kind(&e), Some(HttpErrorKind::Io), "{e}");
    assert!(resources.next_resource().await.unwrap().is_none());
}

/// SC-8.24, SC-8.25: an HTML error page (a proxy's `502`, 200 KB with control characters) is a
/// `Status` error with a bounded, printable excerpt, not the page; the `502` is retried first,
/// a `404` page is not.
#[tokio::test]
async fn sc_8_24_html_error_page_is_a_status_error_with_a_bounded_excerpt() {
    let mut page = String::from("<html><head><title>502 Bad Gateway</title></head>\r\n<body>\t");
    while page.len() < 200_000 {
        page.push_str("<p>upstream\u{7} connect error or disconnect/reset before headers</p>\n");
    }
    page.push_str("</body></html>");
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::html(502, page.clone()));
    server
        .route(Method::GET, "/fhir/Patient/2")
        .reply(Reply::html(404, page));
    let client = open_client(&server)
        .retry_policy(quick_retries(2))
        .build()
        .unwrap();

    for (id, status, attempts) in [("1", 502, 3), ("2", 404, 1)] {
        let e = client.read::<Value>("Patient", id).await.unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{e}");
        assert!(e.outcome().is_none());
        let FhirError::Status {
            excerpt: Some(excerpt),
            ..
        } = &e
        else {
            panic!("expected a Status error with an excerpt, got {e:?}");
        };
        assert!(excerpt.starts_with("<html>"), "{excerpt}");
        assert!(excerpt.chars().count() <= 201, "{}", excerpt.len());
        assert!(!excerpt.chars().any(char::is_control), "{excerpt:?}");
        let shown = e.to_string();
        assert!(shown.len() < 400, "{} bytes: {shown}", shown.len());
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            server.requests_to(&format!("/fhir/Patient/{id}")).len(),
            attempts
        );
    }
}

// ----- tokens ----------------------------------------------------------------------------------

/// P6, SC-3.11, SC-8.18: a `next` link to another origin (a second server) is followed without
/// the `Authorization` header; the first origin got the token.
#[tokio::test]
async fn p6_cross_origin_next_link_carries_no_authorization() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let next = format!("{}/Patient?page=2&_getpages=abc", other.fhir_base());
    server
        .route(Method::GET, "/fhir/Patient")
        .reply(Reply::fhir(200, searchset(&["a", "b"], Some(&next))).require_auth());
    other
        .route(Method::GET, "/fhir/Patient")
        .reply(Reply::fhir(200, searchset(&["c"], None)));
    let client = backend_client(&server);

    let all = client
        .search_pages("Patient", &[("_count", "2")])
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(ids_of(&all), ["a", "b", "c"]);

    let first = server.requests_to("/fhir/Patient");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].bearer_token(), Some("tok-1"));
    let followed = other.requests();
    assert_eq!(followed.len(), 1, "{followed:?}");
    assert_eq!(
        followed[0].path_and_query,
        "/fhir/Patient?page=2&_getpages=abc"
    );
    assert!(followed[0].headers.get("authorization").is_none());
    assert_eq!(other.token_requests(), 0);
}

/// SC-8.26, SC-3.8: the token expires between two pages: the second page is refused once with
/// `401 invalid_token`, the token is renewed once from `/token`, and paging goes on.
#[tokio::test]
async fn sc_8_26_token_expiring_between_pages_is_renewed_once() {
    let server = TestServer::start().await;
    let next = format!("{}/Patient?page=2", server.fhir_base());
    server
        .route(Method::GET, "/fhir/Patient?_count=2")
        .reply(Reply::fhir(200, searchset(&["a", "b"], Some(&next))).require_auth());
    server
        .route(Method::GET, "/fhir/Patient?page=2")
        .reply(Reply::fhir(200, searchset(&["c"], None)).require_auth());
    server.expire_after_requests(1);
    let client = backend_client(&server);

    let all = client
        .search_pages("Patient", &SearchParams::new().count(2))
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(ids_of(&all), ["a", "b", "c"]);
    assert_eq!(server.token_requests(), 2);
    let tokens: Vec<Option<String>> = server
        .requests_to("/fhir/Patient")
        .iter()
        .map(|r| r.bearer_token().map(str::to_owned))
        .collect();
    assert_eq!(
        tokens,
        [Some("tok-1"), Some("tok-1"), Some("tok-2")].map(|t| t.map(str::to_owned))
    );
}

/// SC-8.26: a server that refuses every token: one renewal, then the `401` is the caller's
/// error; no loop.
#[tokio::test]
async fn sc_8_26_401_twice_is_an_error_not_a_loop() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(invalid_token());
    let client = backend_client(&server);
    let e = client.read::<Value>("Patient", "1").await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(401), "{e}");
    assert!(!e.is_transient());
    let seen = server.requests_to("/fhir/Patient/1");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].bearer_token(), Some("tok-1"));
    assert_eq!(seen[1].bearer_token(), Some("tok-2"));
    assert_eq!(server.token_requests(), 2);
}

// ----- cancellation ----------------------------------------------------------------------------

/// Dropping a request future while the server hangs (a caller's timeout) leaves the client
/// usable: the next requests succeed on the same client with the cached token, and a hung
/// request cancelled beside a running one does not disturb it.
#[tokio::test]
async fn dropping_a_hung_request_leaves_the_client_usable() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient/hang")
        .reply(Reply::from(Fault::Hang).require_auth());
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::fhir(200, patient("1")).require_auth());
    let client = backend_client(&server);

    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        client.read::<Value>("Patient", "hang"),
    )
    .await;
    assert!(hung.is_err(), "the hung request completed: {hung:?}");

    let read = client.read::<Value>("Patient", "1").await.unwrap();
    assert_eq!(read.body()["id"], "1");

    let (hung, read) = tokio::join!(
        tokio::time::timeout(
            Duration::from_millis(200),
            client.read::<Value>("Patient", "hang")
        ),
        client.read::<Value>("Patient", "1"),
    );
    assert!(hung.is_err());
    assert_eq!(read.unwrap().body()["id"], "1");
    assert_eq!(server.requests_to("/fhir/Patient/hang").len(), 2);
    assert_eq!(server.token_requests(), 1);
}

/// Dropping a request while its token request hangs leaves the client usable: the next request
/// fetches a token and succeeds. It waits first for the abandoned fetch's store lease, up to half
/// the load timeout (the lease of a cancelled fetch is not released), so the token source here
/// has a 1 s load timeout.
#[tokio::test]
async fn dropping_a_request_while_its_token_request_hangs_leaves_the_client_usable() {
    const LOAD_TIMEOUT: Duration = Duration::from_secs(1);
    let server = TestServer::start().await;
    server.route(Method::POST, "/token").reply(Fault::Hang);
    let client = open_client(&server)
        .auth(
            BackendServices::builder()
                .fhir_base(base(&server))
                .client_id("faults-client")
                .scope("system/*.rs")
                .private_key(PrivateKey::generate(KeySpec::P384).expect("key"))
                .token_endpoint(server.token_endpoint())
                .http_client(SharedHttpClient::new(transport()))
                .load_timeout(LOAD_TIMEOUT)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        client.read::<Value>("Patient", "1"),
    )
    .await;
    assert!(hung.is_err(), "the request completed: {hung:?}");
    assert_eq!(server.token_requests(), 1);

    // The token endpoint answers again (the built-in one).
    server.clear_routes();
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::fhir(200, patient("1")).require_auth());
    let started = Instant::now();
    let read = client.read::<Value>("Patient", "1").await.unwrap();
    assert_eq!(read.body()["id"], "1");
    assert!(started.elapsed() < LOAD_TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(server.token_requests(), 2);
    assert_eq!(
        server.requests_to("/fhir/Patient/1")[0].bearer_token(),
        Some("tok-1")
    );
}

/// A server slower than the client's timeout: the GET times out (`Timeout`, transient), is
/// retried, and succeeds when the server answers in time.
#[tokio::test]
async fn slow_server_times_out_and_the_get_is_retried() {
    let server = TestServer::start().await;
    server.route(Method::GET, "/fhir/Patient/1").replies([
        Reply::fhir(200, patient("1")).fault(Fault::Delay(Duration::from_secs(2))),
        Reply::fhir(200, patient("1")),
    ]);
    let client = open_client(&server)
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let read = client.read::<Value>("Patient", "1").await.unwrap();
    assert_eq!(read.body()["id"], "1");
    assert_eq!(server.requests_to("/fhir/Patient/1").len(), 2);

    server
        .route(Method::GET, "/fhir/Patient/2")
        .reply(Reply::from(Fault::Hang));
    let e = open_client(&server)
        .timeout(Duration::from_millis(100))
        .retry_policy(quick_retries(1))
        .build()
        .unwrap()
        .read::<Value>("Patient", "2")
        .await
        .unwrap_err();
    assert_eq!(http_kind(&e), Some(HttpErrorKind::Timeout), "{e}");
    assert!(e.is_transient());
    assert_eq!(server.requests_to("/fhir/Patient/2").len(), 2);
}

/// A token endpoint that fails: the FHIR request is an `Auth` error and never reaches the FHIR
/// server without a token.
#[tokio::test]
async fn failing_token_endpoint_is_an_auth_error() {
    let server = TestServer::start().await;
    server
        .route(Method::POST, "/token")
        .reply(Reply::html(503, "<h1>maintenance</h1>"));
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::fhir(200, patient("1")));
    let client = backend_client(&server);
    let e = client.read::<Value>("Patient", "1").await.unwrap_err();
    assert!(matches!(e, FhirError::Auth { .. }), "{e:?}");
    assert!(server.requests_to("/fhir/Patient/1").is_empty());
}

// ----- Bulk Data -------------------------------------------------------------------------------

/// Scripts an export: kick-off, a complete status with `requires_token`, and two NDJSON files,
/// every route protected when `requires_token`.
fn script_export(server: &TestServer, requires_token: bool) {
    let protect = |r: Reply| if requires_token { r.require_auth() } else { r };
    let status_url = server.url_for("/fhir/bulk-status/7");
    server.route(Method::GET, "/fhir/$export").reply(protect(
        Reply::empty(202).header("content-location", status_url),
    ));
    let file = |name: &str| server.url_for(&format!("/fhir/bulk-files/{name}"));
    let manifest = json!({
        "transactionTime": "2025-06-01T00:00:00Z",
        "request": format!("{}/$export", server.fhir_base()),
        "requiresAccessToken": requires_token,
        "output": [
            {"type": "Patient", "url": file("Patient.ndjson"), "count": 2},
            {"type": "Observation", "url": file("Observation.ndjson"), "count": 3}
        ],
        "error": []
    });
    server
        .route(Method::GET, "/fhir/bulk-status/7")
        .reply(protect(Reply::json(200, manifest)));
    server
        .route(Method::GET, "/fhir/bulk-files/Patient.ndjson")
        .reply(protect(Reply::ndjson([patient("p1"), patient("p2")])));
    server
        .route(Method::GET, "/fhir/bulk-files/Observation.ndjson")
        .reply(protect(Reply::ndjson((1..=3).map(
            |i| json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final"}),
        ))));
}

fn quick_polls() -> PollOptions {
    PollOptions::default()
        .initial_interval(Duration::from_millis(10))
        .min_interval(Duration::from_millis(10))
        .timeout(Duration::from_secs(10))
}

/// SC-7.1, SC-7.18, SC-8.26: the token expires between the two file downloads of an export
/// (three uses: kick-off, status, first file); the second file is refused once, the token
/// renewed, and the export completes.
#[tokio::test]
async fn sc_7_18_token_expiring_between_file_downloads_is_renewed() {
    let server = TestServer::start().await;
    script_export(&server, true);
    server.expire_after_requests(3);
    let client = backend_client(&server);

    let job = client
        .bulk_export()
        .poll_options(quick_polls())
        .download_options(DownloadOptions::default().concurrency(1))
        .start()
        .await
        .unwrap();
    let manifest = job.wait().await.unwrap();
    assert!(manifest.requires_access_token);
    let dir = tempfile::tempdir().unwrap();
    let summary = job.download_to_dir(dir.path()).await.unwrap();
    assert_eq!(summary.resources(FileKind::Output), 5);
    let observations = std::fs::read_to_string(dir.path().join("Observation.1.ndjson")).unwrap();
    assert_eq!(observations.lines().count(), 3);

    assert_eq!(server.token_requests(), 2);
    let second: Vec<Option<String>> = server
        .requests_to("/fhir/bulk-files/Observation.ndjson")
        .iter()
        .map(|r| r.bearer_token().map(str::to_owned))
        .collect();
    assert_eq!(second, [Some("tok-1".to_owned()), Some("tok-2".to_owned())]);
    let first = server.requests_to("/fhir/bulk-files/Patient.ndjson");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].bearer_token(), Some("tok-1"));
}

/// SC-7.18, P6: with `requiresAccessToken: false` the files are fetched without a token, while
/// the kick-off and status requests carry it.
#[tokio::test]
async fn sc_7_18_p6_files_without_token_when_not_required() {
    let server = TestServer::start().await;
    script_export(&server, false);
    let client = backend_client(&server);

    let job = client
        .bulk_export()
        .poll_options(quick_polls())
        .start()
        .await
        .unwrap();
    let manifest = job.wait().await.unwrap();
    assert!(!manifest.requires_access_token);
    let mut total = 0;
    for file in &manifest.output {
        let mut stream = job.open_file::<Value>(file).await.unwrap();
        while let Some(resource) = stream.next_resource().await.unwrap() {
            assert_eq!(resource["resourceType"], file.resource_type.as_str());
            total += 1;
        }
    }
    assert_eq!(total, 5);

    for r in server.requests() {
        let has_token = r.headers.get("authorization").is_some();
        if r.path().starts_with("/fhir/bulk-files/") {
            assert!(!has_token, "token sent with {}", r.path());
        } else if r.path() != "/token" {
            assert_eq!(r.bearer_token(), Some("tok-1"), "{}", r.path());
        }
    }
    assert_eq!(server.requests_to("/fhir/bulk-files/").len(), 2);
}

/// SC-7.21: a file whose connection is reset mid-download yields the resources before the break,
/// then an `Io` error, then nothing (no panic, no endless retry of a half-read stream).
#[tokio::test]
async fn sc_7_21_file_reset_mid_download_is_an_io_error_after_the_complete_lines() {
    let server = TestServer::start().await;
    script_export(&server, false);
    // Two complete lines of 41 bytes, then part of the third.
    let lines: Vec<Value> = (1..=50)
        .map(|i| json!({"resourceType": "Observation", "id": format!("o{i}")}))
        .collect();
    server
        .route(Method::GET, "/fhir/bulk-files/Observation.ndjson")
        .reply(Reply::ndjson(lines).fault(Fault::ResetMidBody { after_bytes: 100 }));
    let client = open_client(&server).build().unwrap();
    let job = client
        .bulk_job(&server.url_for("/fhir/bulk-status/7"))
        .unwrap()
        .with_poll_options(quick_polls());
    let manifest = job.wait().await.unwrap();
    let file = manifest
        .output
        .iter()
        .find(|f| f.resource_type == "Observation")
        .unwrap();
    let mut stream = job.open_file::<Value>(file).await.unwrap();
    let mut ids = Vec::new();
    let e = loop {
        match stream.next_resource().await {
            Ok(Some(r)) => ids.push(r["id"].as_str().unwrap_or_default().to_owned()),
            Ok(None) => panic!("the file ended cleanly after {ids:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(ids, ["o1", "o2"]);
    assert_eq!(http_kind(&e), Some(HttpErrorKind::Io), "{e}");
    assert!(stream.next_resource().await.unwrap().is_none());
    assert_eq!(
        server
            .requests_to("/fhir/bulk-files/Observation.ndjson")
            .len(),
        1
    );
}

/// SC-7.20, P15: a gzipped file cut short (complete HTTP framing, incomplete gzip stream) yields
/// its complete lines, then a `Download` error; a line over `max_line_bytes` is an `Ndjson`
/// error naming the line, not unbounded growth.
#[tokio::test]
async fn sc_7_20_truncated_gzip_and_overlong_line_are_typed_errors() {
    use std::io::Write as _;

    let server = TestServer::start().await;
    script_export(&server, false);
    let mut ndjson = Vec::new();
    for i in 1..=2000 {
        writeln!(
            ndjson,
            r#"{{"resourceType":"Patient","id":"p{i}","active":true}}"#
        )
        .unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&ndjson).unwrap();
    let gz = gz.finish().unwrap();
    server
        .route(Method::GET, "/fhir/bulk-files/Patient.ndjson")
        .reply(
            Reply::bytes(200, gz[..gz.len() - 20].to_vec())
                .header("content-type", "application/fhir+ndjson")
                .header("content-encoding", "gzip"),
        );
    server
        .route(Method::GET, "/fhir/bulk-files/Observation.ndjson")
        .reply(Reply::ndjson_generated(3, 100_000));
    let client = open_client(&server).build().unwrap();
    let job = client
        .bulk_job(&server.url_for("/fhir/bulk-status/7"))
        .unwrap()
        .with_poll_options(quick_polls())
        .with_download_options(DownloadOptions::default().max_line_bytes(10_000));
    let manifest = job.wait().await.unwrap();

    let mut patients = job.open_file::<Value>(&manifest.output[0]).await.unwrap();
    let mut read = 0;
    let e = loop {
        match patients.next_resource().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("a truncated gzip stream ended cleanly after {read} lines"),
            Err(e) => break e,
        }
    };
    assert!(matches!(e, FhirError::Download { .. }), "{e:?}");
    assert!(read < 2000, "{read}");

    let mut observations = job.open_file::<Value>(&manifest.output[1]).await.unwrap();
    match observations.next_resource().await {
        Err(FhirError::Ndjson { line, reason, .. }) => {
            assert_eq!(line, 1);
            assert!(reason.contains("max_line_bytes"), "{reason}");
        }
        other => panic!("expected an Ndjson error, got {other:?}"),
    }
}
