//! Paging through Bundles by their `next` links (SC-8.18, P6): up to eight fuzzed responses
//! (separated by `\n--\n`, each in the response format) answer the requests of a `Pages`
//! stream in turn, then the entries of each page are read. The access token never goes to
//! another origin, a followed link is an acceptable URL, and the walk ends within its page
//! limit.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use smart_fhir_core::{check_endpoint_url, InsecureHttp, Url};
use smart_fhir_fuzz::{block_on, check_credentials, fhir_client, parts, response, FakeHttp};
use smart_fhir_http::client::{bundle_entries, RequestLine};
use smart_fhir_http::FhirClient;

const MAX_PAGES: usize = 6;

struct Setup {
    http: FakeHttp,
    client: FhirClient,
    pages: Arc<Mutex<Vec<http::Response<Bytes>>>>,
    requests: Arc<AtomicUsize>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let http = FakeHttp::new();
        let pages: Arc<Mutex<Vec<http::Response<Bytes>>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let (queue, count) = (Arc::clone(&pages), Arc::clone(&requests));
        http.respond(move |req| {
            check_credentials(req);
            check_endpoint_url(
                &Url::parse(&req.uri().to_string()).expect("an absolute URI"),
                "page",
                InsecureHttp::Deny,
            )
            .expect("a followed link is acceptable");
            count.fetch_add(1, Ordering::SeqCst);
            let mut queue = queue.lock().expect("not poisoned");
            if queue.is_empty() {
                http::Response::new(Bytes::from_static(br#"{"resourceType":"Bundle"}"#))
            } else {
                queue.remove(0)
            }
        });
        let client = fhir_client(&http);
        Setup {
            http,
            client,
            pages,
            requests,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();
    let _ = &setup.http;
    *setup.pages.lock().expect("not poisoned") = parts(data, 8).into_iter().map(response).collect();
    setup.requests.store(0, Ordering::SeqCst);
    let first = setup.client.url("Observation?code=1").expect("a URL");
    let mut pages = setup
        .client
        .pages_from(first)
        .expect("the first URL is acceptable")
        .max_pages(MAX_PAGES);
    let line = RequestLine::new(
        &http::Method::GET,
        &http::Uri::from_static("https://ehr.example/fhir/Observation"),
    );
    block_on(async {
        loop {
            match pages.next_page().await {
                Ok(Some(page)) => {
                    let body = serde_json::to_vec(page.body()).expect("a JSON value");
                    let _ = bundle_entries::<serde_json::Value>(&line, &body);
                }
                Ok(None) | Err(_) => break,
            }
            assert!(pages.pages_fetched() <= MAX_PAGES);
        }
    });
    assert!(setup.requests.load(Ordering::SeqCst) <= MAX_PAGES);
    if let Some(next) = pages.next_url() {
        let _ = next.as_str();
    }
});
