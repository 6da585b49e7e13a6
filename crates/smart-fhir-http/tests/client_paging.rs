//! Paging by `Bundle.link` `next` (SC-8.18), through a recording fake transport.

mod client_support;

use client_support::*;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use smart_fhir_http::client::{BundleEntry, Level, SearchParams};
use smart_fhir_http::{FhirError, FhirResponse};

fn ids(resources: &[Value]) -> Vec<&str> {
    resources
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

/// SC-8.18: pages are followed by their `next` links, fetched with GET exactly as the server
/// wrote them (opaque paging state kept), until a page has none; resources come in order.
#[tokio::test]
async fn sc_8_18_follows_next_links_unchanged() {
    let p2 = format!("{BASE}?_getpages=a1b2&_getpagesoffset=2&_count=2&_bundletype=searchset");
    let p3 = format!("{BASE}?_getpages=a1b2&_getpagesoffset=4&_count=2&_bundletype=searchset");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1"), patient("2")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("3"), patient("4")], Some(&p3))),
        Reply::json(200, bundle(vec![patient("5")], None)),
    ]);
    let (c, _) = client(&http);
    let all: Vec<Value> = c
        .search_pages(
            "Patient",
            &SearchParams::new().add("family", "Smith").count(2),
        )
        .unwrap()
        .resources()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&all), vec!["1", "2", "3", "4", "5"]);
    let seen = http.seen();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        vec![
            format!("{BASE}/Patient?family=Smith&_count=2").as_str(),
            &p2,
            &p3
        ]
    );
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert_eq!(
            s.header("authorization"),
            Some("Bearer tok-1"),
            "same origin: token sent"
        );
        assert_eq!(s.header("accept"), Some("application/fhir+json"));
    }
}

/// SC-8.18: the pages themselves, with their status and headers; `next_page` and counters.
#[tokio::test]
async fn sc_8_18_pages_stream_yields_bundles() {
    let p2 = format!("{BASE}/Patient?page=2");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("2")], None)),
    ]);
    let c = open_client(&http);
    let mut pages = c.search_pages("Patient", &[]).unwrap();
    assert_eq!(pages.pages_fetched(), 0, "nothing is fetched until polled");
    assert!(http.seen().is_empty());
    let first: FhirResponse = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.body()["entry"][0]["resource"]["id"], "1");
    assert_eq!(pages.next_url().unwrap().as_str(), p2);
    let second = pages.next_page().await.unwrap().unwrap();
    assert_eq!(second.body()["entry"][0]["resource"]["id"], "2");
    assert!(pages.next_url().is_none());
    assert!(pages.next_page().await.unwrap().is_none());
    assert_eq!(pages.pages_fetched(), 2);
}

/// SC-8.18: an empty `next` link (or none) ends paging.
#[tokio::test]
async fn sc_8_18_empty_next_link_stops() {
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(""))),
        Reply::json(200, bundle(vec![patient("2")], None)),
    ]);
    let c = open_client(&http);
    let all: Vec<Value> = c
        .search_pages("Patient", &[])
        .unwrap()
        .resources()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(ids(&all), vec!["1"]);
    assert_eq!(http.seen().len(), 1);
}

/// SC-8.18: a `next` link already followed ends paging with `PagingLoop` after the page that
/// carried it; the error names the path, not the query.
#[tokio::test]
async fn sc_8_18_repeated_next_link_is_a_paging_loop() {
    let p2 = format!("{BASE}/Patient?_page=2&name=Smith");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("2")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("3")], None)),
    ]);
    let c = open_client(&http);
    let mut resources = c.search_pages("Patient", &[]).unwrap().resources::<Value>();
    assert_eq!(resources.next_resource().await.unwrap().unwrap()["id"], "1");
    assert_eq!(resources.next_resource().await.unwrap().unwrap()["id"], "2");
    let e = resources.next_resource().await.unwrap_err();
    assert!(
        matches!(&e, FhirError::PagingLoop { path } if path == "/fhir/Patient"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("Smith"), "{e}");
    assert!(
        resources.next().await.is_none(),
        "the stream ends after its error"
    );
    assert_eq!(http.seen().len(), 2);

    // A next link that leads back to the first page is a loop too.
    let first = format!("{BASE}/Patient?name=x");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&first))),
        Reply::json(200, bundle(vec![patient("1")], None)),
    ]);
    let c = open_client(&http);
    let results: Vec<_> = c
        .search_pages("Patient", &[("name", "x")])
        .unwrap()
        .collect()
        .await;
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(FhirError::PagingLoop { .. })));
    assert_eq!(http.seen().len(), 1);
}

/// SC-8.18, P6, SC-3.11: a `next` link to another origin is followed without the access token.
#[tokio::test]
async fn p6_cross_origin_next_link_has_no_authorization() {
    let other = "https://pages.other.example/fhir/Patient?page=2";
    let back = format!("{BASE}/Patient?page=3");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(other))),
        Reply::json(200, bundle(vec![patient("2")], Some(&back))),
        Reply::json(200, bundle(vec![patient("3")], None)),
    ]);
    let (c, _) = client(&http);
    let all = c
        .search_pages("Patient", &[])
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(ids(&all), vec!["1", "2", "3"]);
    let seen = http.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(seen[1].uri, other);
    assert_eq!(
        seen[1].header("authorization"),
        None,
        "no token to another origin"
    );
    assert_eq!(
        seen[2].header("authorization"),
        Some("Bearer tok-1"),
        "back on the base's origin"
    );
}

/// P7, P15: a `next` link over plain http to a non-loopback host is refused; nothing is sent.
#[tokio::test]
async fn p7_plain_http_next_link_is_refused() {
    let http = FakeHttp::new([
        Reply::json(
            200,
            bundle(
                vec![patient("1")],
                Some("http://ehr.example/fhir/Patient?page=2"),
            ),
        ),
        Reply::json(200, bundle(vec![patient("2")], None)),
    ]);
    let c = open_client(&http);
    let results: Vec<_> = c.search_pages("Patient", &[]).unwrap().collect().await;
    assert_eq!(results.len(), 2);
    assert!(
        matches!(results[1], Err(FhirError::Url(_))),
        "{:?}",
        results[1]
    );
    assert_eq!(http.seen().len(), 1);
}

/// P7 (issue 11 §1, a downgrade): an `https` server's `next` link to plain-http loopback is
/// refused even when the base carries the insecure-HTTP opt-in; nothing is sent there.
#[tokio::test]
async fn p7_https_base_never_follows_a_plain_http_next_link() {
    let http = FakeHttp::new([
        Reply::json(
            200,
            bundle(
                vec![patient("1")],
                Some("http://127.0.0.1:9/fhir/Patient?page=2"),
            ),
        ),
        Reply::json(200, bundle(vec![patient("2")], None)),
    ]);
    let base = smart_fhir_core::FhirBaseUrl::parse_with(
        BASE,
        smart_fhir_core::InsecureHttp::AllowLoopback,
    )
    .unwrap();
    let c = smart_fhir_http::FhirClient::builder(base)
        .http_client(http.clone())
        .build()
        .unwrap();
    let results: Vec<_> = c.search_pages("Patient", &[]).unwrap().collect().await;
    assert_eq!(results.len(), 2);
    match &results[1] {
        Err(FhirError::Url(e)) => assert!(e.to_string().contains("downgrade"), "{e}"),
        other => panic!("expected a refused next link, got {other:?}"),
    }
    assert_eq!(http.seen().len(), 1);
    let resume = url::Url::parse("http://127.0.0.1:9/fhir/Patient?page=2").unwrap();
    assert!(c.pages_from(resume).is_err());
}

/// SC-8.18: a relative `next` link (sent by some servers) resolves against the page's URL.
#[tokio::test]
async fn sc_8_18_relative_next_link_resolves_against_the_page() {
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some("Patient?page=2"))),
        Reply::json(200, bundle(vec![patient("2")], None)),
    ]);
    let c = open_client(&http);
    let all = c
        .search_pages("Patient", &[])
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(http.seen()[1].uri, format!("{BASE}/Patient?page=2"));
}

/// SC-8.18: `max_pages` bounds the pages fetched; `next_url` tells where to resume, and
/// `pages_from` resumes there.
#[tokio::test]
async fn sc_8_18_max_pages_and_resume() {
    let p2 = format!("{BASE}/Patient?page=2");
    let p3 = format!("{BASE}/Patient?page=3");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("2")], Some(&p3))),
        Reply::json(200, bundle(vec![patient("3")], None)),
    ]);
    let c = open_client(&http);
    let mut res = c
        .search_pages("Patient", &[])
        .unwrap()
        .max_pages(2)
        .resources::<Value>();
    let mut got = vec![];
    while let Some(r) = res.next_resource().await.unwrap() {
        got.push(r);
    }
    assert_eq!(ids(&got), vec!["1", "2"]);
    assert_eq!(http.seen().len(), 2);
    let resume = res.next_url().expect("where to resume");
    assert_eq!(resume.as_str(), p3);
    let rest = c
        .pages_from(resume)
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(ids(&rest), vec!["3"]);
    assert_eq!(http.seen()[2].uri, p3);
    assert!(c
        .pages_from(url::Url::parse("ftp://ehr.example/x").unwrap())
        .is_err());
}

/// Issue 11 §1 (paging time without a bound), SC-8.18: past `time_limit` no further `next`
/// link is followed; the walk ends quietly and `next_url` tells where to resume.
#[tokio::test]
async fn sc_8_18_time_limit_ends_the_walk() {
    let p2 = format!("{BASE}/Patient?page=2");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("2")], None)),
    ]);
    let c = open_client(&http);
    let mut res = c
        .search_pages("Patient", &[])
        .unwrap()
        .time_limit(std::time::Duration::ZERO)
        .resources::<Value>();
    let mut got = vec![];
    while let Some(r) = res.next_resource().await.unwrap() {
        got.push(r);
    }
    assert_eq!(ids(&got), vec!["1"]);
    assert_eq!(http.seen().len(), 1);
    assert_eq!(res.next_url().expect("where to resume").as_str(), p2);
}

/// SC-8.16: `search.mode = outcome` entries are not resources of the result; `entries` exposes
/// them with their OperationOutcome. A caller's typed resource is not asked to decode them.
#[tokio::test]
async fn sc_8_16_outcome_entries_are_skipped_and_exposed() {
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Patient {
        resource_type: String,
        id: String,
        meta: Value,
    }
    let page = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": format!("{BASE}/Patient/1"), "resource": patient("1"), "search": {"mode": "match", "score": 1}},
        {"resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "processing", "diagnostics": "_sort ignored"}]},
         "search": {"mode": "outcome"}},
        {"resource": patient("2"), "search": {"mode": "include"}}
    ]});
    let http = FakeHttp::new([Reply::json(200, page.clone()), Reply::json(200, page)]);
    let c = open_client(&http);
    let typed: Vec<Patient> = c
        .search_pages("Patient", &[])
        .unwrap()
        .resources::<Patient>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(
        typed.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["1", "2"]
    );

    let entries: Vec<BundleEntry> = c
        .search_pages("Patient", &[])
        .unwrap()
        .entries()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[0].full_url.as_deref(),
        Some("https://ehr.example/fhir/Patient/1")
    );
    assert_eq!(entries[0].search_score, Some(1.0));
    assert!(entries[1].is_outcome());
    assert!(entries[1].resource.is_none());
    assert_eq!(
        entries[1].outcome.as_ref().unwrap().issue[0]
            .diagnostics
            .as_deref(),
        Some("_sort ignored")
    );
    assert_eq!(entries[2].search_mode.as_deref(), Some("include"));
}

/// SC-8.19: history pages; deletions are entries with `request.method = DELETE` and no
/// resource, left out of `resources`.
#[tokio::test]
async fn sc_8_19_history_pages_and_deletions() {
    let p2 = format!("{BASE}/Patient/1/_history?page=2");
    let http = FakeHttp::new([
        Reply::json(
            200,
            json!({"resourceType": "Bundle", "type": "history",
            "link": [{"relation": "next", "url": p2}],
            "entry": [
                {"fullUrl": format!("{BASE}/Patient/1"), "request": {"method": "DELETE", "url": "Patient/1"},
                 "response": {"status": "204 No Content"}},
                {"resource": patient("1"), "request": {"method": "PUT", "url": "Patient/1"},
                 "response": {"status": "200 OK", "etag": "W/\"2\""}}]}),
        ),
        Reply::json(
            200,
            json!({"resourceType": "Bundle", "type": "history", "entry": [
                {"resource": patient("1"), "request": {"method": "POST", "url": "Patient"},
                 "response": {"status": "201 Created", "location": "Patient/1/_history/1"}}]}),
        ),
        Reply::json(200, json!({"resourceType": "Bundle", "type": "history"})),
    ]);
    let c = open_client(&http);
    let entries: Vec<BundleEntry> = c
        .history_pages(
            Level::Instance("Patient", "1"),
            &SearchParams::new().count(2),
        )
        .unwrap()
        .entries()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries[0].is_deletion() && entries[0].resource.is_none());
    assert_eq!(
        entries[0].response_status.as_deref(),
        Some("204 No Content")
    );
    assert_eq!(entries[1].response_etag.as_deref(), Some("W/\"2\""));
    assert_eq!(entries[2].request_method.as_deref(), Some("POST"));
    assert_eq!(
        entries[2].response_location.as_deref(),
        Some("Patient/1/_history/1")
    );
    let seen = http.seen();
    assert_eq!(seen[0].uri, format!("{BASE}/Patient/1/_history?_count=2"));
    assert_eq!(seen[1].uri, p2);

    let resources = c
        .history_pages(Level::System, &[])
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert!(
        resources.is_empty(),
        "a Bundle without entries has no resources"
    );
    assert_eq!(http.seen()[2].uri, format!("{BASE}/_history"));
}

/// SC-8.17, SC-8.18: a POST `_search` starts the pages; later pages are GETs of the links.
#[tokio::test]
async fn sc_8_17_search_post_pages() {
    let p2 = format!("{BASE}/Patient?_page=2");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("2")], None)),
    ]);
    let c = open_client(&http);
    let all = c
        .search_post_pages("Patient", &[("name", "Smith")])
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let seen = http.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("POST", "https://ehr.example/fhir/Patient/_search")
    );
    assert_eq!(seen[0].body_text(), "name=Smith");
    assert_eq!(
        (seen[1].method.as_str(), seen[1].uri.as_str()),
        ("GET", p2.as_str())
    );
}

/// A page that fails ends the stream with the error; a page that is not a Bundle is a decode
/// error.
#[tokio::test]
async fn failing_and_non_bundle_pages() {
    let p2 = format!("{BASE}/Patient?page=2");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&p2))),
        Reply::outcome(410, "expired", "paging state expired"),
    ]);
    let c = open_client(&http);
    let results: Vec<_> = c
        .search_pages("Patient", &[])
        .unwrap()
        .resources::<Value>()
        .collect()
        .await;
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[1].as_ref().unwrap_err().status(),
        Some(http::StatusCode::GONE)
    );

    let http = FakeHttp::new([Reply::json(200, patient("1"))]);
    let c = open_client(&http);
    let e = c
        .search_pages("Patient", &[])
        .unwrap()
        .next_page()
        .await
        .unwrap_err();
    assert!(matches!(e, FhirError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("expected a Bundle"), "{e}");
}

/// `$everything` pages like a search.
#[tokio::test]
async fn operation_pages_everything() {
    let p2 = format!("{BASE}/Patient/1/$everything?page=2");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1")], Some(&p2))),
        Reply::json(
            200,
            bundle(
                vec![json!({"resourceType": "Observation", "id": "o1"})],
                None,
            ),
        ),
    ]);
    let c = open_client(&http);
    let all = c
        .operation_pages(Level::Instance("Patient", "1"), "everything", &[])
        .unwrap()
        .resources::<Value>()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(ids(&all), vec!["1", "o1"]);
    assert_eq!(http.seen()[0].uri, format!("{BASE}/Patient/1/$everything"));
}

/// SC-8.18: pages decode into the caller's own Bundle type with `typed`.
#[tokio::test]
async fn sc_8_18_typed_pages() {
    #[derive(Debug, Deserialize)]
    struct Bundle {
        #[serde(rename = "type")]
        kind: String,
        entry: Vec<Value>,
    }
    let p2 = format!("{BASE}/Patient?page=2");
    let http = FakeHttp::new([
        Reply::json(200, bundle(vec![patient("1"), patient("2")], Some(&p2))),
        Reply::json(200, bundle(vec![patient("3")], None)),
    ]);
    let c = open_client(&http);
    let pages: Vec<FhirResponse<Bundle>> = c
        .search_pages("Patient", &[])
        .unwrap()
        .typed::<Bundle>()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].body().kind, "searchset");
    assert_eq!(pages[0].body().entry.len(), 2);
    assert_eq!(pages[1].body().entry.len(), 1);
}
