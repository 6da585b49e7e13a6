//! Bulk Data download throughput and memory: a large NDJSON file read line by line through
//! `BulkJob::open_lines` and resource by resource through `BulkJob::open_file`, beside a raw
//! hyper read of the same body and beside that raw read plus a minimal line split and parse
//! (`cargo xtask bench bulk` runs them and prints the ratios).
//!
//! The binary has these roles, each run as a process of its own so that each reports its own
//! peak memory:
//!
//! * `--serve [--lines N] [--line-len N]`: a `smart-fhir-testkit` server whose Bulk Data status
//!   URL answers a complete manifest with one `output[]` file, `requiresAccessToken: false`, and
//!   whose file is `N` synthetic Observations of `--line-len` bytes each, generated while
//!   sending (never held in memory). It prints `SERVE <status URL> <file URL>` and runs until its
//!   standard input closes.
//! * `--mode raw --file-url URL`: hyper-util's legacy client reads the body frame by frame and
//!   counts the bytes (no parsing, no line splitting).
//! * `--mode floor --file-url URL`: the same raw read, plus the simplest hand-written line split
//!   and `serde_json::from_slice::<serde_json::Value>` on each line: the floor for any client
//!   that parses, against which the cost of the download path itself is measured.
//!   `--mode floor-typed` parses each line into the light struct of `bulk-typed`.
//! * `--mode lines --status-url URL`: a `FhirClient` with the default transport (the path the
//!   CLI runs) waits for the job's manifest (one status request), then reads the file with
//!   `BulkJob::open_lines`: each line as `Bytes`, not parsed. Against `raw`.
//! * `--mode bulk --status-url URL`: the same, reading with
//!   `BulkJob::open_file::<serde_json::Value>` and `next_resource`, each line parsed into a
//!   `serde_json::Value`; against `floor`. `--mode bulk-typed` parses each line into a light
//!   struct (`resourceType` and `id`, the rest skipped) instead; against `floor-typed`.
//!
//! A client prints `BENCH <mode>.mb_s <MB/s>` (10^6 bytes per second of wall time from the
//! request to the end of the body), `BENCH <mode>.bytes`, `BENCH <mode>.resources` and
//! `BENCH <mode>.peak_rss_mib` (`VmHWM` from `/proc/self/status` at the end).

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use serde_json::{json, Value};
use smart_fhir_core::{FhirBaseUrl, InsecureHttp};
use smart_fhir_http::FhirClient;
use smart_fhir_testkit::{Method, Reply, TestServer};

/// 512,000 lines of 1,024 bytes plus a newline: 524.8 MB (500.5 MiB).
const DEFAULT_LINES: usize = 512_000;
const DEFAULT_LINE_LEN: usize = 1_024;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

fn number(name: &str, default: usize) -> usize {
    arg(name)
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// This process's peak resident set size in MiB (`VmHWM`), where Linux tells it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn report(mode: &str, bytes: u64, resources: u64, elapsed: Duration) {
    let mb_s = bytes as f64 / 1e6 / elapsed.as_secs_f64();
    println!(
        "{mode}: {:.1} MB in {:.2} s = {mb_s:.1} MB/s, {resources} resources",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64()
    );
    println!("BENCH {mode}.mb_s {mb_s:.1}");
    println!("BENCH {mode}.bytes {bytes}");
    println!("BENCH {mode}.resources {resources}");
    if let Some(peak) = peak_rss_mib() {
        println!("BENCH {mode}.peak_rss_mib {peak:.1}");
    }
}

fn serve() {
    let lines = number("--lines", DEFAULT_LINES);
    let line_len = number("--line-len", DEFAULT_LINE_LEN);
    runtime().block_on(async move {
        let server = TestServer::start().await;
        let file_url = server.url_for("/fhir/bulk-files/Observation.ndjson");
        let status_url = server.url_for("/fhir/bulk-status/1");
        let manifest = json!({
            "transactionTime": "2025-06-01T00:00:00Z",
            "request": format!("{}/$export", server.fhir_base()),
            "requiresAccessToken": false,
            "output": [{"type": "Observation", "url": file_url, "count": lines}],
            "error": []
        });
        server
            .route(Method::GET, "/fhir/bulk-status/1")
            .reply(Reply::json(200, manifest));
        server
            .route(Method::GET, "/fhir/bulk-files/Observation.ndjson")
            .reply(Reply::ndjson_generated(lines, line_len));
        println!("SERVE {status_url} {file_url}");
        std::io::stdout().flush().expect("stdout");
        // Serve until the parent closes our standard input.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().lock().read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        })
        .await
        .expect("stdin watcher");
        server.shutdown().await;
    });
}

fn raw(file_url: &str) {
    let uri: http::Uri = file_url.parse().expect("file URL");
    runtime().block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let request = Request::get(uri)
            .header("accept", "application/fhir+ndjson")
            .body(Empty::new())
            .expect("request");
        let start = Instant::now();
        let response = client.request(request).await.expect("raw request");
        assert!(response.status().is_success(), "{}", response.status());
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("raw body").into_data() {
                bytes += data.len() as u64;
                std::hint::black_box(&data);
            }
        }
        report("raw", bytes, 0, start.elapsed());
    });
}

/// The floor for parsing: the raw hyper read of `raw`, plus the simplest hand-written line
/// split (`memchr` for each `\n`, a line cut by a frame boundary joined in a carry buffer) and
/// `serde_json::from_slice::<T>` on each line, with no bound, decoding or error reporting.
fn floor<T: serde::de::DeserializeOwned>(file_url: &str, mode: &str) {
    let uri: http::Uri = file_url.parse().expect("file URL");
    runtime().block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let request = Request::get(uri)
            .header("accept", "application/fhir+ndjson")
            .body(Empty::new())
            .expect("request");
        let start = Instant::now();
        let response = client.request(request).await.expect("floor request");
        assert!(response.status().is_success(), "{}", response.status());
        let mut body = response.into_body();
        let mut bytes = 0u64;
        let mut resources = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        let mut parse = |line: &[u8]| {
            if !line.is_empty() {
                let r: T = serde_json::from_slice(line).expect("a JSON line");
                std::hint::black_box(&r);
                resources += 1;
            }
        };
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.expect("floor body").into_data() else {
                continue;
            };
            bytes += data.len() as u64;
            let mut rest = &data[..];
            if !carry.is_empty() {
                match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        carry.extend_from_slice(&rest[..i]);
                        parse(&carry);
                        carry.clear();
                        rest = &rest[i + 1..];
                    }
                    None => {
                        carry.extend_from_slice(rest);
                        continue;
                    }
                }
            }
            while let Some(i) = memchr::memchr(b'\n', rest) {
                parse(&rest[..i]);
                rest = &rest[i + 1..];
            }
            carry.extend_from_slice(rest);
        }
        parse(&carry);
        report(mode, bytes, resources, start.elapsed());
    });
}

/// The light typed resource of `--mode bulk-typed`: two members read, the rest skipped.
#[derive(Deserialize)]
struct Light {
    #[serde(rename = "resourceType")]
    resource_type: String,
    id: String,
}

/// What a FhirClient-side mode reads the file with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// `BulkJob::open_lines`: the raw line stream, no parsing.
    Lines,
    /// `BulkJob::open_file::<serde_json::Value>`.
    Value,
    /// `BulkJob::open_file::<Light>`.
    Typed,
}

impl Reader {
    fn mode(self) -> &'static str {
        match self {
            Self::Lines => "lines",
            Self::Value => "bulk",
            Self::Typed => "bulk-typed",
        }
    }
}

/// The path users run: a `FhirClient` with the default transport (as the CLI builds it), a
/// job resumed from its status URL, polled once for the manifest, then the file.
fn bulk(status_url: &str, reader: Reader) {
    let status_url = status_url.to_owned();
    runtime().block_on(async move {
        let origin = status_url
            .split("/fhir/")
            .next()
            .expect("status URL origin");
        let base = FhirBaseUrl::parse_with(&format!("{origin}/fhir"), InsecureHttp::AllowLoopback)
            .expect("base");
        let client = FhirClient::builder(base).build().expect("client");
        let job = client.bulk_job(&status_url).expect("job");
        let manifest = job.wait().await.expect("manifest");
        let file = manifest.output.first().expect("an output file");
        let start = Instant::now();
        let (bytes, resources) = match reader {
            Reader::Lines => {
                let mut lines = job.open_lines(file).await.expect("open");
                while let Some(line) = lines.next_line().await.expect("line") {
                    std::hint::black_box(&line);
                }
                (lines.bytes_received(), lines.lines_read())
            }
            Reader::Typed => {
                let mut stream = job.open_file::<Light>(file).await.expect("open");
                while let Some(r) = stream.next_resource().await.expect("resource") {
                    std::hint::black_box((&r.resource_type, &r.id));
                }
                (stream.bytes_received(), stream.resources_read())
            }
            Reader::Value => {
                let mut stream = job.open_file::<Value>(file).await.expect("open");
                while let Some(r) = stream.next_resource().await.expect("resource") {
                    std::hint::black_box(&r);
                }
                (stream.bytes_received(), stream.resources_read())
            }
        };
        let elapsed = start.elapsed();
        report(reader.mode(), bytes, resources, elapsed);
    });
}

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        return serve();
    }
    match arg("--mode").as_deref() {
        Some("raw") => raw(&arg("--file-url").expect("--file-url URL")),
        Some("floor") => floor::<Value>(&arg("--file-url").expect("--file-url URL"), "floor"),
        Some("floor-typed") => {
            floor::<Light>(&arg("--file-url").expect("--file-url URL"), "floor-typed")
        }
        Some("lines") => bulk(
            &arg("--status-url").expect("--status-url URL"),
            Reader::Lines,
        ),
        Some("bulk") => bulk(
            &arg("--status-url").expect("--status-url URL"),
            Reader::Value,
        ),
        Some("bulk-typed") => bulk(
            &arg("--status-url").expect("--status-url URL"),
            Reader::Typed,
        ),
        _ => {
            eprintln!(
                "usage: bulk --serve [--lines N] [--line-len N] | \
                 --mode raw|floor|floor-typed --file-url URL | \
                 --mode lines|bulk|bulk-typed --status-url URL \
                 (cargo xtask bench bulk runs them together)"
            );
            std::process::exit(2);
        }
    }
}
