//! Each fault observed through the real transport, with the `HttpErrorKind` a client gets (P15).

use std::time::{Duration, Instant};

use serde_json::json;
use smart_fhir_core::{
    http, Bytes, HttpClient, HttpErrorKind, InsecureHttp, MaxResponseBytes, RequestTimeout,
};
use smart_fhir_http::HyperHttpClient;
use smart_fhir_testkit::{Fault, Method, Reply, TestServer};

fn client() -> HyperHttpClient {
    HyperHttpClient::builder()
        .insecure_http(InsecureHttp::AllowLoopback)
        .request_timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn get(url: &str) -> http::Request<Bytes> {
    http::Request::get(url).body(Bytes::new()).unwrap()
}

/// A FHIR Bundle of about 2 KB.
fn bundle() -> serde_json::Value {
    let entries: Vec<_> = (0..20)
        .map(|i| json!({"resource": {"resourceType": "Patient", "id": format!("p{i}"), "active": true}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "entry": entries})
}

#[tokio::test]
async fn reset_mid_body_is_an_io_error() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient")
        .reply(Reply::fhir(200, bundle()).fault(Fault::ResetMidBody { after_bytes: 100 }));
    let url = format!("{}/Patient", server.fhir_base());
    let client = client();
    let e = client.execute(get(&url)).await.unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Io, "{e}");
    assert!(e.is_transient());

    // The head declared the whole body's length; the server recorded the request.
    let response = client.execute_streaming(get(&url)).await.unwrap();
    let declared: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(declared, serde_json::to_vec(&bundle()).unwrap().len());
    let mut body = response.into_body();
    let mut received = 0;
    let e = loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("the body ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), HttpErrorKind::Io, "{e}");
    assert!(received <= 100, "{received}");
    assert_eq!(server.requests_to("/fhir/Patient").len(), 2);
}

#[tokio::test]
async fn reset_before_any_body_byte_and_a_fault_only_reply() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/a")
        .reply(Fault::ResetMidBody { after_bytes: 0 });
    let e = client()
        .execute(get(&server.url_for("/a")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Io, "{e}");
}

#[tokio::test]
async fn truncated_chunked_body_is_an_io_error_after_the_exact_bytes() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Observation")
        .reply(Reply::fhir(200, bundle()).fault(Fault::Truncate { after_bytes: 321 }));
    let url = format!("{}/Observation", server.fhir_base());
    let client = client();
    let e = client.execute(get(&url)).await.unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Io, "{e}");

    let response = client.execute_streaming(get(&url)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert!(response.headers().get("content-length").is_none());
    let mut body = response.into_body();
    let mut received = Vec::new();
    let e = loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), HttpErrorKind::Io, "{e}");
    // Exactly the scripted prefix arrived: a JSON document cut in the middle.
    let full = serde_json::to_vec(&bundle()).unwrap();
    assert_eq!(received, &full[..321]);
    assert!(serde_json::from_slice::<serde_json::Value>(&received).is_err());
}

#[tokio::test]
async fn truncating_past_the_end_still_leaves_the_body_unfinished() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/small")
        .reply(
            Reply::json(200, json!({"ok": true})).fault(Fault::Truncate {
                after_bytes: 10_000,
            }),
        );
    let e = client()
        .execute(get(&server.url_for("/small")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Io, "{e}");
}

#[tokio::test]
async fn oversize_body_trips_the_size_limit_p15() {
    let server = TestServer::start().await;
    // 1 GiB, never held in memory by either side.
    server
        .route(Method::GET, "/fhir/Binary/huge")
        .reply(Fault::Oversize { bytes: 1 << 30 });
    let mut request = get(&format!("{}/Binary/huge", server.fhir_base()));
    request
        .extensions_mut()
        .insert(MaxResponseBytes(256 * 1024));
    let started = Instant::now();
    let e = client().execute(request).await.unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::BodyTooLarge, "{e}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn oversize_body_is_chunked_and_exactly_that_long() {
    let server = TestServer::start().await;
    let size = 3 * 64 * 1024 + 11;
    server
        .route(Method::GET, "/big")
        .reply(Reply::bytes(200, Bytes::new()).fault(Fault::Oversize { bytes: size }));
    let mut response = client()
        .execute_streaming(get(&server.url_for("/big")))
        .await
        .unwrap();
    assert!(response.headers().get("content-length").is_none());
    let body = response.body_mut();
    while let Some(chunk) = body.next_chunk().await.unwrap() {
        assert!(chunk.iter().all(|&b| b == b'x'));
    }
    assert_eq!(body.bytes_received(), size);
}

#[tokio::test]
async fn hang_meets_the_request_timeout() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/fhir/Patient")
        .reply(Fault::Hang);
    let mut request = get(&format!("{}/Patient", server.fhir_base()));
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(200)));
    let e = client().execute(request).await.unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Timeout, "{e}");
    assert_eq!(
        server.requests_to("/fhir/Patient").len(),
        1,
        "a hung request is recorded"
    );
}

#[tokio::test]
async fn delay_then_reply() {
    let server = TestServer::start().await;
    let delay = Duration::from_millis(150);
    server
        .route(Method::GET, "/slow")
        .reply(Reply::fhir(200, json!({"resourceType": "Patient"})).fault(Fault::Delay(delay)));
    let client = client();
    let started = Instant::now();
    let r = client.execute(get(&server.url_for("/slow"))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= delay);

    // With a shorter timeout the delay is a timeout.
    let mut request = get(&server.url_for("/slow"));
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(20)));
    let e = client.execute(request).await.unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Timeout, "{e}");
}

#[tokio::test]
async fn a_fault_on_one_connection_leaves_the_server_serving() {
    let server = TestServer::start().await;
    server.route(Method::GET, "/flaky").replies([
        Reply::from(Fault::ResetMidBody { after_bytes: 10 }),
        Reply::from(Fault::Truncate { after_bytes: 10 }),
        Reply::fhir(200, json!({"resourceType": "Patient"})),
    ]);
    let client = client();
    let url = server.url_for("/flaky");
    assert_eq!(
        client.execute(get(&url)).await.unwrap_err().kind(),
        HttpErrorKind::Io
    );
    assert_eq!(
        client.execute(get(&url)).await.unwrap_err().kind(),
        HttpErrorKind::Io
    );
    for _ in 0..3 {
        assert_eq!(client.execute(get(&url)).await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn gzip_with_a_cut_cuts_the_compressed_bytes() {
    let server = TestServer::start().await;
    server.route(Method::GET, "/gz").reply(
        Reply::ndjson_generated(1_000, 200)
            .gzip()
            .fault(Fault::Truncate { after_bytes: 50 }),
    );
    let response = client()
        .execute_streaming(get(&server.url_for("/gz")))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    let mut received = Vec::new();
    let e = loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), HttpErrorKind::Io);
    assert_eq!(received.len(), 50);
    assert_eq!(&received[..2], [0x1f, 0x8b], "a gzip header");
}

/// Sends a bare HTTP/1.1 GET and reads until the connection ends: what arrived, and how it
/// ended (`Ok` for a FIN, the error for a reset).
async fn raw_get(server: &TestServer, path: &str) -> (Vec<u8>, std::io::Result<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match stream.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    (received, end)
}

#[tokio::test]
async fn on_the_wire_a_reset_is_a_tcp_reset_and_a_truncation_a_fin() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/reset")
        .reply(Reply::text(200, "0123456789").fault(Fault::ResetMidBody { after_bytes: 4 }));
    server
        .route(Method::GET, "/truncate")
        .reply(Reply::text(200, "0123456789").fault(Fault::Truncate { after_bytes: 4 }));

    let (received, end) = raw_get(&server, "/reset").await;
    let e = end.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    let text = String::from_utf8_lossy(&received);
    // Whatever arrived before the reset is the head declaring all ten bytes and at most four.
    if !text.is_empty() {
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("content-length: 10\r\n"),
            "{text}"
        );
        assert!(!text.contains("01234"), "{text}");
    }

    let (received, end) = raw_get(&server, "/truncate").await;
    end.unwrap();
    let text = String::from_utf8(received).unwrap();
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked\r\n"),
        "{text}"
    );
    // One chunk of four bytes, and no final zero-length chunk.
    assert!(text.ends_with("\r\n\r\n4\r\n0123\r\n"), "{text:?}");
}
