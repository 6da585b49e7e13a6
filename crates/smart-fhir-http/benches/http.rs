//! The cost of the FHIR client over a raw hyper client, on authenticated reads
//! (`cargo xtask bench http` runs it and prints the ratios).
//!
//! `cargo bench -p smart-fhir-http --bench http -- [--rounds N] [--requests N]
//! [--concurrency N] [--concurrent-requests N] [--only raw|backend|static]`
//!
//! A minimal HTTP/1.1 server runs in this process on a thread of its own (one core): it answers
//! `GET /fhir/Patient/1` with a fixed 0.5 KB Patient when the bearer token is the expected one,
//! and `POST /token` with that token. The clients run on the main thread (a current-thread
//! runtime, the other core), all on plain HTTP over loopback:
//!
//! * `raw`: hyper-util's legacy pooled client on an `HttpConnector` with `TCP_NODELAY`, the same
//!   pool settings as `HyperHttpClient`, sending the same headers (`Accept`, `User-Agent`, the same
//!   `Authorization` header string, its value built once as a client caching its token does),
//!   building the URI from the base and the id for each request, checking the status and
//!   parsing the body into a `serde_json::Value`;
//! * `backend`: `FhirClient::read::<serde_json::Value>("Patient", "1")` with a warmed
//!   `BackendServices` token source (the cached-token path of a production client), built as
//!   the CLI builds it: `FhirClient::builder(base).http_client(shared).auth(source)`, where
//!   `shared` is one `SharedHttpClient::new(HyperHttpClient::builder()…build()?)` that the token
//!   source uses too;
//! * `static`: the same with a `StaticTokenProvider` bound to the base.
//!
//! Each round first has every client make `--requests` sequential requests, each on its own
//! pooled connection, the clients taking turns request by request, timing each request; then
//! every client in turn (the order rotates from round to round) makes `--concurrent-requests`
//! requests from `--concurrency` tasks at once (one connection each), timing the whole run. Per round it reports the p50 latency and the requests per second; the
//! summary gives the median over rounds of each, the median of the per-round differences and
//! ratios against `raw` (a burst of load from another process hits the clients of one round
//! alike), and the best round of each.
//!
//! Lines starting with `BENCH` are for tools: `BENCH <name> <value>`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::Value;
use smart_fhir_core::{AccessToken, FhirBaseUrl, InsecureHttp, SharedHttpClient};
use smart_fhir_core::{AccessTokenProvider, StaticTokenProvider};
use smart_fhir_http::{FhirClient, HyperHttpClient};
use smart_fhir_jwt::{KeySpec, PrivateKey};
use smart_fhir_oauth::BackendServices;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const USER_AGENT_VALUE: &str = "smart-fhir-bench/1";
const MEDIA_TYPE: &str = "application/fhir+json";
const PATIENT_ID: &str = "1";

/// The Patient every read returns (about 0.5 KB, a typical small resource).
const PATIENT: &str = r#"{"resourceType":"Patient","id":"1","meta":{"versionId":"3","lastUpdated":"2025-05-01T10:00:00Z"},"identifier":[{"system":"urn:oid:1.2.36.146.595.217.0.1","value":"12345"}],"active":true,"name":[{"use":"official","family":"Chalmers","given":["Peter","James"]}],"telecom":[{"system":"phone","value":"(03) 5555 6473","use":"work"}],"gender":"male","birthDate":"1974-12-25","address":[{"use":"home","line":["534 Erewhon St"],"city":"PleasantVille","state":"Vic","postalCode":"3999"}]}"#;

struct Args {
    /// Run only this contender (for profiling).
    only: Option<String>,
    rounds: usize,
    requests: usize,
    concurrency: usize,
    concurrent_requests: usize,
}

fn parse_args() -> Args {
    // `cargo bench` adds `--bench`; only the options below matter.
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: usize| {
        args.windows(2)
            .find(|w| w[0] == name)
            .and_then(|w| w[1].parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    Args {
        only: args
            .windows(2)
            .find(|w| w[0] == "--only")
            .map(|w| w[1].clone()),
        rounds: get("--rounds", 9),
        requests: get("--requests", 4000),
        concurrency: get("--concurrency", 16),
        concurrent_requests: get("--concurrent-requests", 12_000),
    }
}

/// A token as long as the JWT access tokens large EHRs issue.
fn token() -> String {
    let mut t = String::from("eyJhbGciOiJSUzM4NCIsInR5cCI6IkpXVCJ9.");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in 0..900usize {
        t.push(char::from(alphabet[(i * 7 + i / 3) % alphabet.len()]));
    }
    t
}

// ----- server --------------------------------------------------------------------------------

/// Starts the server on its own thread and runtime; returns its address.
fn start_server(token: String) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("bench-server".to_owned());
    thread.spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("address"))
                .expect("report the address");
            let expected: &'static str = Box::leak(format!("Bearer {token}").into_boxed_str());
            let token_body: &'static str = Box::leak(
                format!(
                    r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600,"scope":"system/Patient.rs"}}"#
                )
                .into_boxed_str(),
            );
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| async move {
                        Ok::<_, Infallible>(answer(&request, expected, token_body))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    })
    .expect("server thread");
    rx.recv().expect("server address")
}

fn answer(
    request: &Request<Incoming>,
    expected: &str,
    token_body: &'static str,
) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::POST, "/token") => (StatusCode::OK, token_body),
        (&Method::GET, "/fhir/Patient/1")
            if request
                .headers()
                .get(AUTHORIZATION)
                .map(HeaderValue::as_bytes)
                == Some(expected.as_bytes()) =>
        {
            (StatusCode::OK, PATIENT)
        }
        (&Method::GET, "/fhir/Patient/1") => (StatusCode::UNAUTHORIZED, "{}"),
        _ => (StatusCode::NOT_FOUND, "{}"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

// ----- clients -------------------------------------------------------------------------------

/// The raw hyper-util client and what it sends.
#[derive(Clone)]
struct RawClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    authorization: HeaderValue,
}

#[derive(Clone)]
enum Contender {
    Raw(Box<RawClient>),
    Fhir(FhirClient),
}

impl Contender {
    /// One authenticated read, its body parsed into a `serde_json::Value`.
    async fn read(&self) -> Value {
        match self {
            Contender::Raw(raw) => {
                let RawClient {
                    client,
                    base,
                    authorization,
                } = &**raw;
                // The URI of a read by id, built for each request as any client does.
                let uri: Uri = format!("{base}/Patient/{PATIENT_ID}").parse().expect("URI");
                let request = Request::get(uri)
                    .header(ACCEPT, HeaderValue::from_static(MEDIA_TYPE))
                    .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
                    .header(AUTHORIZATION, authorization.clone())
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let response = client.request(request).await.expect("raw request");
                assert_eq!(response.status(), StatusCode::OK);
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("raw body")
                    .to_bytes();
                serde_json::from_slice(&body).expect("raw JSON")
            }
            Contender::Fhir(client) => client
                .read::<Value>("Patient", PATIENT_ID)
                .await
                .expect("FHIR read")
                .into_body(),
        }
    }
}

fn raw_client(addr: SocketAddr, token: &str) -> Contender {
    // The settings `HyperHttpClient` gives its pool; no TLS layer (the server is plain HTTP).
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);
    let mut authorization =
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
    authorization.set_sensitive(true);
    Contender::Raw(Box::new(RawClient {
        client,
        base: format!("http://{addr}/fhir"),
        authorization,
    }))
}

/// The transport as the CLI builds it (`crates/smart-fhir-cli/src/server.rs`): one
/// `HyperHttpClient`, shared by the token source and the FHIR client.
fn transport() -> SharedHttpClient {
    SharedHttpClient::new(
        HyperHttpClient::builder()
            .insecure_http(InsecureHttp::AllowLoopback)
            .user_agent(USER_AGENT_VALUE)
            .build()
            .expect("transport"),
    )
}

fn base(addr: SocketAddr) -> FhirBaseUrl {
    FhirBaseUrl::parse_with(&format!("http://{addr}/fhir"), InsecureHttp::AllowLoopback)
        .expect("base")
}

/// A FHIR client built as the CLI builds one: the base, the shared transport, the token source.
fn fhir_client(
    addr: SocketAddr,
    http: SharedHttpClient,
    auth: impl AccessTokenProvider + 'static,
) -> Contender {
    Contender::Fhir(
        FhirClient::builder(base(addr))
            .http_client(http)
            .auth(auth)
            .build()
            .expect("FHIR client"),
    )
}

async fn backend(addr: SocketAddr, http: SharedHttpClient) -> BackendServices {
    let backend = BackendServices::builder()
        .fhir_base(base(addr))
        .client_id("bench")
        .scope("system/Patient.rs")
        .private_key(PrivateKey::generate(KeySpec::P384).expect("key"))
        .token_endpoint(format!("http://{addr}/token"))
        .http_client(http)
        .build()
        .expect("backend services");
    // Warm: the token is fetched once and cached from now on.
    backend.access_token().await.expect("token");
    backend
}

// ----- measurement ---------------------------------------------------------------------------

/// The p50 latency of `n` sequential reads by each contender, in microseconds. The contenders
/// take turns request by request (the first of each turn rotating), so that load from other
/// processes falls on all of them alike.
async fn sequential_p50(contenders: &[(&str, Contender)], n: usize) -> Vec<f64> {
    let k = contenders.len();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); k];
    for i in 0..n {
        for j in 0..k {
            let c = (i + j) % k;
            let start = Instant::now();
            std::hint::black_box(contenders[c].1.read().await);
            times[c].push(start.elapsed());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_unstable();
            t[t.len() / 2].as_secs_f64() * 1e6
        })
        .collect()
}

/// Requests per second of `total` reads from `tasks` concurrent tasks.
async fn concurrent_rps(c: &Contender, tasks: usize, total: usize) -> f64 {
    let per_task = total.div_ceil(tasks);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let c = c.clone();
        set.spawn(async move {
            for _ in 0..per_task {
                std::hint::black_box(c.read().await);
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("task");
    }
    (per_task * tasks) as f64 / start.elapsed().as_secs_f64()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let args = parse_args();
    let token = token();
    let addr = start_server(token.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(async {
        let backend_http = transport();
        let backend_source = backend(addr, backend_http.clone()).await;
        let static_source =
            StaticTokenProvider::new(AccessToken::new(token.clone())).for_fhir_base(base(addr));
        let mut contenders: Vec<(&str, Contender)> = vec![
            ("raw", raw_client(addr, &token)),
            ("backend", fhir_client(addr, backend_http, backend_source)),
            ("static", fhir_client(addr, transport(), static_source)),
        ];
        if let Some(only) = &args.only {
            contenders.retain(|(name, _)| name == only);
        }
        // Warm-up: connections opened, code and allocator caches warm.
        sequential_p50(&contenders, 2_000).await;
        for (_, c) in &contenders {
            concurrent_rps(c, args.concurrency, 4 * args.concurrency).await;
        }

        let n = contenders.len();
        let mut p50 = vec![Vec::new(); n];
        let mut rps = vec![Vec::new(); n];
        for round in 0..args.rounds {
            for (i, v) in sequential_p50(&contenders, args.requests)
                .await
                .into_iter()
                .enumerate()
            {
                p50[i].push(v);
            }
            for k in 0..n {
                let i = (round + k) % n;
                rps[i].push(
                    concurrent_rps(&contenders[i].1, args.concurrency, args.concurrent_requests)
                        .await,
                );
            }
            let line: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        "{} p50 {:.2} µs, {:.0} req/s",
                        contenders[i].0,
                        p50[i][round],
                        rps[i][round]
                    )
                })
                .collect();
            println!("round {}: {}", round + 1, line.join("; "));
        }

        println!(
            "\n{} rounds; sequential: {} reads each on one connection, clients taking turns \
             (p50 of per-request wall time); concurrent: {} reads from {} tasks on one client thread",
            args.rounds, args.requests, args.concurrent_requests, args.concurrency
        );
        for (i, (name, _)) in contenders.iter().enumerate() {
            let best_p50 = p50[i].iter().copied().fold(f64::INFINITY, f64::min);
            let best_rps = rps[i].iter().copied().fold(0.0, f64::max);
            println!("BENCH {name}.p50_us {:.3}", median(&p50[i]));
            println!("BENCH {name}.p50_us_best {best_p50:.3}");
            println!("BENCH {name}.rps {:.0}", median(&rps[i]));
            println!("BENCH {name}.rps_best {best_rps:.0}");
            if i > 0 && contenders[0].0 == "raw" {
                let added: Vec<f64> = (0..args.rounds).map(|r| p50[i][r] - p50[0][r]).collect();
                let ratio: Vec<f64> = (0..args.rounds).map(|r| rps[i][r] / rps[0][r]).collect();
                println!("BENCH {name}.added_p50_us {:.3}", median(&added));
                println!("BENCH {name}.rps_ratio {:.4}", median(&ratio));
            }
        }
    });
}
