//! The test server observed through the real transport (`HyperHttpClient`): discovery, tokens,
//! scripted replies, the record of requests, and shutdown.

use std::io::Read as _;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use smart_fhir_core::{http, Bytes, HttpClient, HttpErrorKind, InsecureHttp, RequestTimeout};
use smart_fhir_http::HyperHttpClient;
use smart_fhir_testkit::{Method, Reply, TestServer};

fn client() -> HyperHttpClient {
    HyperHttpClient::builder()
        .insecure_http(InsecureHttp::AllowLoopback)
        .request_timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn get(url: &str, token: Option<&str>) -> http::Request<Bytes> {
    let mut b = http::Request::get(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Bytes::new()).unwrap()
}

fn token_request(server: &TestServer, scope: &str) -> http::Request<Bytes> {
    let form = format!(
        "grant_type=client_credentials&scope={}",
        scope.replace('/', "%2F")
    );
    http::Request::post(server.token_endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from(form))
        .unwrap()
}

fn json_of(response: &http::Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

fn header<'a>(response: &'a http::Response<Bytes>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn urls_and_discovery_document_sc_1_1_sc_1_7_sc_1_13() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.fhir_base(), format!("{}/fhir", server.url()));
    assert_eq!(server.token_endpoint(), format!("{}/token", server.url()));
    assert_ne!(
        server.url(),
        other.url(),
        "a second server is another origin"
    );
    assert_eq!(
        server.smart_configuration_url(),
        format!("{}/.well-known/smart-configuration", server.fhir_base())
    );

    let r = client()
        .execute(get(&server.smart_configuration_url(), None))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let config = json_of(&r);
    assert_eq!(config["token_endpoint"], server.token_endpoint());
    assert_eq!(
        config["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        config["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        config["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384"])
    );
    let caps = config["capabilities"].as_array().unwrap();
    assert!(caps.contains(&json!("client-confidential-asymmetric")));
    assert_eq!(config["code_challenge_methods_supported"], json!(["S256"]));
}

#[tokio::test]
async fn token_endpoint_issues_counts_and_honours_lifetime_sc_3_2_sc_3_4() {
    let server = TestServer::start().await;
    let client = client();
    server.set_token_lifetime(7);
    let r = client
        .execute(token_request(&server, "system/Patient.rs"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    let body = json_of(&r);
    assert_eq!(body["access_token"], "tok-1");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7);
    assert_eq!(body["scope"], "system/Patient.rs");

    server.set_granted_scope(Some("system/Patient.r"));
    server.set_token_lifetime(3600);
    let body = json_of(
        &client
            .execute(token_request(&server, "system/*.rs"))
            .await
            .unwrap(),
    );
    assert_eq!(body["access_token"], "tok-2");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "system/Patient.r");

    // Another grant is refused; a GET is not the token endpoint's method. Both are counted.
    let refused = client
        .execute(
            http::Request::post(server.token_endpoint())
                .body(Bytes::from("grant_type=password"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(json_of(&refused)["error"], "unsupported_grant_type");
    let r = client
        .execute(get(server.token_endpoint(), None))
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(server.token_requests(), 4);
    assert_eq!(server.tokens_issued(), 2);
}

#[tokio::test]
async fn scripted_token_errors_override_the_built_in_endpoint_sc_3_7() {
    let server = TestServer::start().await;
    server.route(Method::POST, "/token").replies([
        Reply::json(401, json!({"error": "invalid_client"})),
        Reply::retry_after_secs(503, 2),
    ]);
    let client = client();
    let first = client
        .execute(token_request(&server, "system/*.rs"))
        .await
        .unwrap();
    assert_eq!(first.status(), 401);
    assert_eq!(json_of(&first)["error"], "invalid_client");
    for _ in 0..2 {
        let r = client
            .execute(token_request(&server, "system/*.rs"))
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "the last reply repeats");
        assert_eq!(header(&r, "retry-after"), Some("2"));
    }
    assert_eq!(server.token_requests(), 3);
    assert_eq!(server.tokens_issued(), 0);
    // Scripting the route afresh with nothing restores the built-in endpoint.
    let _ = server.route(Method::POST, "/token");
    let r = client
        .execute(token_request(&server, "system/*.rs"))
        .await
        .unwrap();
    assert_eq!(json_of(&r)["access_token"], "tok-1");
}

#[tokio::test]
async fn require_auth_refuses_missing_revoked_and_worn_out_tokens_sc_8_26_sc_3_10() {
    let server = TestServer::start().await;
    let client = client();
    let url = format!("{}/Patient/1", server.fhir_base());
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::fhir(200, json!({"resourceType": "Patient", "id": "1"})).require_auth());
    for _ in 0..2 {
        client
            .execute(token_request(&server, "system/*.rs"))
            .await
            .unwrap();
    }

    let none = client.execute(get(&url, None)).await.unwrap();
    assert_eq!(none.status(), 401);
    let challenge = header(&none, "www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");

    let unknown = client.execute(get(&url, Some("tok-99"))).await.unwrap();
    assert_eq!(unknown.status(), 401);
    assert!(header(&unknown, "www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(json_of(&unknown)["resourceType"], "OperationOutcome");

    assert_eq!(
        client
            .execute(get(&url, Some("tok-1")))
            .await
            .unwrap()
            .status(),
        200
    );
    // The scheme is case-insensitive.
    let lower = http::Request::get(&url)
        .header("authorization", "bearer tok-1")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(client.execute(lower).await.unwrap().status(), 200);

    server.revoke("tok-1");
    assert!(!server.is_token_live("tok-1"));
    assert_eq!(
        client
            .execute(get(&url, Some("tok-1")))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .execute(get(&url, Some("tok-2")))
            .await
            .unwrap()
            .status(),
        200
    );
    server.revoke_all();
    assert_eq!(
        client
            .execute(get(&url, Some("tok-2")))
            .await
            .unwrap()
            .status(),
        401
    );
    client
        .execute(token_request(&server, "system/*.rs"))
        .await
        .unwrap();
    assert_eq!(
        client
            .execute(get(&url, Some("tok-3")))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_token_expiring_between_pages_keeps_the_refused_page_sc_8_18_sc_8_26() {
    let server = TestServer::start().await;
    let client = client();
    let page = |n: u32| {
        Reply::fhir(
            200,
            json!({"resourceType": "Bundle", "type": "searchset", "id": format!("page-{n}")}),
        )
        .require_auth()
    };
    server
        .route(Method::GET, "/fhir/Observation")
        .replies([page(1), page(2), page(3)]);
    server.expire_after_requests(1);
    let url = format!("{}/Observation?_count=1", server.fhir_base());
    let mut seen = Vec::new();
    for n in 1..=3 {
        client
            .execute(token_request(&server, "system/*.rs"))
            .await
            .unwrap();
        let token = format!("tok-{n}");
        let ok = client.execute(get(&url, Some(&token))).await.unwrap();
        assert_eq!(ok.status(), 200);
        seen.push(json_of(&ok)["id"].as_str().unwrap().to_owned());
        // The next page with the same token is refused, and not used up.
        let refused = client.execute(get(&url, Some(&token))).await.unwrap();
        assert_eq!(refused.status(), 401);
        assert!(header(&refused, "www-authenticate")
            .unwrap()
            .contains("invalid_token"));
    }
    assert_eq!(seen, ["page-1", "page-2", "page-3"]);
    server.expire_after_requests(None);
    client
        .execute(token_request(&server, "system/*.rs"))
        .await
        .unwrap();
    for _ in 0..3 {
        let r = client.execute(get(&url, Some("tok-4"))).await.unwrap();
        assert_eq!(json_of(&r)["id"], "page-3", "the last reply repeats");
    }
}

#[tokio::test]
async fn routes_queue_match_and_fall_back_to_404() {
    let server = TestServer::start().await;
    let client = client();
    let base = server.fhir_base().to_owned();
    server.route(Method::GET, "/fhir/Patient").replies([
        Reply::fhir(200, json!({"n": 1})),
        Reply::fhir(200, json!({"n": 2})),
    ]);
    server
        .route(Method::GET, "/fhir/Patient?page=2")
        .reply(Reply::fhir(200, json!({"n": "page-2"})));
    server
        .route(Method::GET, "/fhir/Binary/*")
        .reply(Reply::bytes(200, "short prefix"));
    let route = server
        .route(Method::GET, "/fhir/Binary/big*")
        .reply(Reply::bytes(200, "long prefix"));
    server
        .route(Method::DELETE, "/fhir/Patient")
        .reply(Reply::empty(204));

    let n = |r: http::Response<Bytes>| json_of(&r)["n"].clone();
    let patient = format!("{base}/Patient?name=x");
    assert_eq!(n(client.execute(get(&patient, None)).await.unwrap()), 1);
    assert_eq!(n(client.execute(get(&patient, None)).await.unwrap()), 2);
    assert_eq!(n(client.execute(get(&patient, None)).await.unwrap()), 2);
    let page2 = format!("{base}/Patient?page=2");
    assert_eq!(
        n(client.execute(get(&page2, None)).await.unwrap()),
        "page-2"
    );

    let r = client
        .execute(get(&format!("{base}/Binary/big-1"), None))
        .await
        .unwrap();
    assert_eq!(r.body().as_ref(), b"long prefix");
    let r = client
        .execute(get(&format!("{base}/Binary/1"), None))
        .await
        .unwrap();
    assert_eq!(r.body().as_ref(), b"short prefix");
    assert_eq!(route.hits(), 1);

    let delete = http::Request::delete(format!("{base}/Patient"))
        .body(Bytes::new())
        .unwrap();
    assert_eq!(client.execute(delete).await.unwrap().status(), 204);

    let missing = client
        .execute(get(&format!("{base}/Encounter/9"), None))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        header(&missing, "content-type"),
        Some("application/fhir+json")
    );
    let outcome = json_of(&missing);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "not-found");

    // Scripting a route again replaces its queue; clearing removes every route.
    server
        .route(Method::GET, "/fhir/Patient")
        .reply(Reply::fhir(200, json!({"n": 3})));
    assert_eq!(n(client.execute(get(&patient, None)).await.unwrap()), 3);
    server.clear_routes();
    assert_eq!(
        client.execute(get(&patient, None)).await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn every_reply_kind_arrives_as_scripted_sc_8_2_sc_8_24() {
    let server = TestServer::start().await;
    let client = client();
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let cases: Vec<(&str, Reply)> = vec![
        ("/json", Reply::json(200, json!({"a": 1}))),
        (
            "/fhir",
            Reply::fhir(201, json!({"resourceType": "Patient"})),
        ),
        ("/html", Reply::html(502, "<h1>Bad gateway</h1>")),
        ("/text", Reply::text(500, "oops")),
        ("/bytes", Reply::bytes(200, vec![0u8, 255, 1])),
        (
            "/ndjson",
            Reply::ndjson([json!({"id": "a"}), json!({"id": "b"})]),
        ),
        (
            "/empty",
            Reply::empty(202).header("Content-Location", "http://x/status"),
        ),
        ("/secs", Reply::retry_after_secs(429, 30)),
        ("/date", Reply::retry_after_date(503, date)),
        (
            "/headers",
            Reply::fhir(200, json!({}))
                .header("ETag", "W/\"3\"")
                .append_header("Link", "<a>")
                .append_header("Link", "<b>")
                .status(203),
        ),
        (
            "/outcome",
            Reply::operation_outcome(422, "processing", "bad field"),
        ),
    ];
    for (path, reply) in cases {
        server.route(Method::GET, path).reply(reply);
    }
    let fetch = |path: &str| client.execute(get(&server.url_for(path), None));

    let r = fetch("/json").await.unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "content-type")),
        (200, Some("application/json"))
    );
    assert_eq!(json_of(&r), json!({"a": 1}));
    let r = fetch("/fhir").await.unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "content-type")),
        (201, Some("application/fhir+json"))
    );
    let r = fetch("/html").await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.body().as_ref(), b"<h1>Bad gateway</h1>");
    let r = fetch("/text").await.unwrap();
    assert_eq!(
        header(&r, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(r.body().as_ref(), b"oops");
    let r = fetch("/bytes").await.unwrap();
    assert_eq!(header(&r, "content-type"), None);
    assert_eq!(header(&r, "content-length"), Some("3"));
    assert_eq!(r.body().as_ref(), [0u8, 255, 1]);
    let r = fetch("/ndjson").await.unwrap();
    assert_eq!(header(&r, "content-type"), Some("application/fhir+ndjson"));
    assert_eq!(r.body().as_ref(), b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
    let r = fetch("/empty").await.unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.body().is_empty());
    assert_eq!(header(&r, "content-location"), Some("http://x/status"));
    let r = fetch("/secs").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), Some("30"));
    assert_eq!(json_of(&r)["issue"][0]["code"], "throttled");
    let r = fetch("/date").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        header(&r, "retry-after"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    assert_eq!(json_of(&r)["issue"][0]["code"], "transient");
    let r = fetch("/headers").await.unwrap();
    assert_eq!(r.status(), 203);
    assert_eq!(header(&r, "etag"), Some("W/\"3\""));
    let links: Vec<&str> = r
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(links, ["<a>", "<b>"]);
    let r = fetch("/outcome").await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(json_of(&r)["issue"][0]["diagnostics"], "bad field");
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn gzip_round_trips_static_and_generated_bodies_sc_7_20() {
    let server = TestServer::start().await;
    let client = client();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": []});
    server
        .route(Method::GET, "/fhir/Patient")
        .reply(Reply::fhir(200, bundle.clone()).gzip());
    server
        .route(Method::GET, "/files/obs.ndjson")
        .reply(Reply::ndjson_generated(2_000, 400).gzip());

    let r = client
        .execute(get(&format!("{}/Patient", server.fhir_base()), None))
        .await
        .unwrap();
    assert_eq!(header(&r, "content-encoding"), Some("gzip"));
    assert_eq!(
        header(&r, "content-length"),
        Some(r.body().len().to_string().as_str())
    );
    let plain: Value = serde_json::from_slice(&gunzip(r.body())).unwrap();
    assert_eq!(plain, bundle);

    let r = client
        .execute(get(&server.url_for("/files/obs.ndjson"), None))
        .await
        .unwrap();
    assert_eq!(header(&r, "content-encoding"), Some("gzip"));
    assert_eq!(header(&r, "transfer-encoding"), Some("chunked"));
    let text = String::from_utf8(gunzip(r.body())).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2_000);
    assert!(lines.iter().all(|l| l.len() == 400));
    let last: Value = serde_json::from_str(lines[1_999]).unwrap();
    assert_eq!(last["id"], "obs-1999");
}

#[tokio::test]
async fn generated_ndjson_streams_in_chunks_sc_7_21() {
    let server = TestServer::start().await;
    let lines = 20_000;
    server
        .route(Method::GET, "/files/big.ndjson")
        .reply(Reply::ndjson_generated(lines, 500));
    let mut response = client()
        .execute_streaming(get(&server.url_for("/files/big.ndjson"), None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none());
    let body = response.body_mut();
    let (mut newlines, mut chunks, mut largest) = (0usize, 0usize, 0usize);
    while let Some(chunk) = body.next_chunk().await.unwrap() {
        chunks += 1;
        largest = largest.max(chunk.len());
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(newlines, lines);
    assert_eq!(body.bytes_received(), (lines * 501) as u64);
    assert!(chunks > 10, "{chunks} chunks");
    assert!(largest <= 128 * 1024, "a chunk of {largest} bytes");
}

#[tokio::test]
async fn requests_are_recorded_in_order_with_lowercase_headers() {
    let server = TestServer::start().await;
    let client = client();
    server
        .route(Method::POST, "/fhir/Patient")
        .reply(Reply::fhir(201, json!({})));
    let before = std::time::Instant::now();
    client
        .execute(token_request(&server, "system/Patient.rs"))
        .await
        .unwrap();
    let create = http::Request::post(format!("{}/Patient?_pretty=true", server.fhir_base()))
        .header("Content-Type", "application/fhir+json")
        .header("X-Request-Id", "req-7")
        .header("Authorization", "Bearer tok-1")
        .body(Bytes::from_static(br#"{"resourceType":"Patient"}"#))
        .unwrap();
    client.execute(create).await.unwrap();
    client
        .execute(get(&format!("{}/metadata", server.fhir_base()), None))
        .await
        .unwrap();

    let all = server.requests();
    assert_eq!(all.len(), 3);
    let token = &all[0];
    assert_eq!(token.method, Method::POST);
    assert_eq!(token.path_and_query, "/token");
    assert_eq!(
        token.form_param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        token.form_param("scope").as_deref(),
        Some("system/Patient.rs")
    );
    assert!(token.at >= before);

    let create = &all[1];
    assert_eq!(create.path_and_query, "/fhir/Patient?_pretty=true");
    assert_eq!(create.path(), "/fhir/Patient");
    assert_eq!(create.query_param("_pretty").as_deref(), Some("true"));
    assert!(create.headers.contains_key("x-request-id"));
    assert_eq!(create.header("X-Request-Id"), Some("req-7"));
    assert_eq!(create.bearer_token(), Some("tok-1"));
    assert_eq!(create.json(), Some(json!({"resourceType": "Patient"})));
    assert!(create.at >= token.at && all[2].at >= create.at);
    assert!(!format!("{create:?}").contains("tok-1"), "P5");

    assert_eq!(server.requests_to("/fhir/").len(), 2);
    assert_eq!(server.requests_to("/fhir/metadata").len(), 1);
    assert_eq!(server.requests_to("/token").len(), 1);
    server.clear_requests();
    assert!(server.requests().is_empty());
    assert_eq!(
        server.token_requests(),
        1,
        "clearing the record keeps the counter"
    );
}

#[tokio::test]
async fn shutdown_closes_hanging_connections_and_releases_the_port() {
    let server = TestServer::start().await;
    server
        .route(Method::GET, "/hang")
        .reply(smart_fhir_testkit::Fault::Hang);
    let client = client();
    let url = server.url_for("/hang");
    let pending = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.execute(get(&url, None)).await }
    });
    // Wait (without sleeping) until the server holds the request.
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.requests_to("/hang").is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    server.shutdown().await;
    let e = pending.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Io, "{e}");

    let mut again = get(&url, None);
    again
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_secs(5)));
    let e = client.execute(again).await.unwrap_err();
    assert_eq!(e.kind(), HttpErrorKind::Connect, "{e}");
}
