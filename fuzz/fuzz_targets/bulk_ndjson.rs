//! Bulk Data NDJSON files (SC-7.19–SC-7.21, P15), read by the Bulk reader (`open_lines`): the
//! first input byte sets the chunk size of the body, the second how it is sent — as it is,
//! labelled `Content-Encoding: gzip` as it is (a fuzzed gzip stream), or gzipped by the
//! target. No line is over the bound or holds a newline; when every line is within the bound,
//! the lines read are exactly the non-blank lines of the file.
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use smart_fhir_fuzz::{block_on, check_credentials, fhir_client, printable, FakeHttp};
use smart_fhir_http::bulk::{DownloadOptions, ManifestFile};
use smart_fhir_http::{BulkJob, FhirClient};

const MAX_LINE: usize = 256;
const FILE_URL: &str = "https://ehr.example/files/Patient-1.ndjson";

struct Setup {
    http: FakeHttp,
    client: FhirClient,
    file: ManifestFile,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let http = FakeHttp::new();
        let client = fhir_client(&http);
        let file = serde_json::from_value(serde_json::json!({"type": "Patient", "url": FILE_URL}))
            .expect("a manifest file");
        Setup { http, client, file }
    })
}

/// The non-blank lines of `text` as the reader should give them.
fn expected_lines(text: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut segments: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    for (i, raw) in segments.into_iter().enumerate() {
        if raw.len() > MAX_LINE {
            return None;
        }
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if i == 0 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            out.push(line);
        }
    }
    Some(out)
}

async fn job(setup: &Setup) -> BulkJob {
    let job = setup
        .client
        .bulk_job("https://ehr.example/fhir/$export-status/1")
        .expect("a status URL")
        .with_download_options(DownloadOptions::default().max_line_bytes(MAX_LINE));
    job.poll().await.expect("the fixed manifest");
    job
}

fuzz_target!(|data: &[u8]| {
    let [size, mode, rest @ ..] = data else {
        return;
    };
    let setup = setup();
    let chunk = if *size >= 128 {
        usize::MAX
    } else {
        1 + usize::from(*size)
    };
    setup.http.chunk_size(chunk);
    let (body, encoding, plain) = match mode % 3 {
        0 => (Bytes::copy_from_slice(rest), None, Some(rest)),
        1 => (Bytes::copy_from_slice(rest), Some("gzip"), None),
        _ => {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            gz.write_all(rest).expect("gzip to memory");
            (
                Bytes::from(gz.finish().expect("gzip to memory")),
                Some("gzip"),
                Some(rest),
            )
        }
    };
    let manifest = Bytes::from_static(
        br#"{"transactionTime":"2025-01-01T00:00:00Z","request":"https://ehr.example/fhir/$export",
            "requiresAccessToken":true,"output":[{"type":"Patient","url":"https://ehr.example/files/Patient-1.ndjson"}],"error":[]}"#,
    );
    setup.http.respond(move |req| {
        check_credentials(req);
        let mut builder = http::Response::builder().status(200);
        if req.uri() == FILE_URL {
            if let Some(e) = encoding {
                builder = builder.header(http::header::CONTENT_ENCODING, e);
            }
            builder.body(body.clone()).expect("a response")
        } else {
            builder.body(manifest.clone()).expect("a response")
        }
    });
    let read = block_on(async {
        let job = job(setup).await;
        let mut lines = job.open_lines(&setup.file).await.expect("the file opens");
        let mut read = Vec::new();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
                    assert!(!line.contains(&b'\n'));
                    read.push(line);
                }
                Ok(None) => return Ok(read),
                Err(e) => {
                    assert!(printable(&e.to_string()), "{e}");
                    return Err(e);
                }
            }
        }
    });
    // An identity body that starts like gzip is sniffed as gzip: no expectation then.
    let sniffed_gzip = *mode % 3 == 0 && rest.starts_with(&[0x1f, 0x8b]);
    if let (Some(plain), false) = (plain, sniffed_gzip) {
        if let Some(expected) = expected_lines(plain) {
            let read = read.unwrap_or_else(|e| panic!("a well-formed file failed: {e}"));
            let read: Vec<&[u8]> = read.iter().map(|b| &b[..]).collect();
            assert_eq!(read, expected);
        }
    }
});
