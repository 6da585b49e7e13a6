//! Errors, token renewal and retries of the FHIR client (SC-8.24, SC-8.25, SC-8.26, SC-7.11,
//! P5), through a recording fake transport. Backoff waits run on tokio's paused clock.

mod client_support;

use std::time::Duration;

use client_support::*;
use serde_json::{json, Value};
use smart_fhir_core::{FixedClock, HttpErrorKind};
use smart_fhir_http::{FhirError, FhirResponse};

fn invalid_token() -> Reply {
    Reply::outcome(401, "login", "token expired")
        .header("www-authenticate", "Bearer error=\"invalid_token\"")
}

/// SC-8.24, P5: an OperationOutcome error names the method, the path and the status and the
/// diagnostics, but neither the query string (patient data) nor the token.
#[tokio::test]
async fn sc_8_24_outcome_error_display_has_no_query_and_no_token() {
    let http = FakeHttp::new([Reply::outcome(
        400,
        "invalid",
        "Unknown search parameter 'nmae'",
    )]);
    let (c, _) = client(&http);
    let e = c
        .search::<Value>("Patient", &[("nmae", "Smith"), ("birthdate", "1970-01-01")])
        .await
        .unwrap_err();
    let s = e.to_string();
    assert_eq!(
        s,
        "GET /fhir/Patient: HTTP 400 Bad Request: Unknown search parameter 'nmae' (invalid)"
    );
    let d = format!("{e:?}");
    for text in [&s, &d] {
        assert!(!text.contains("Smith") && !text.contains("1970"), "{text}");
        assert!(
            !text.contains("tok-1") && !text.contains("Bearer"),
            "{text}"
        );
    }
    assert_eq!(http.only().header("authorization"), Some("Bearer tok-1"));
    assert!(!e.is_transient());
}

/// SC-8.24: a non-FHIR error body keeps a bounded, printable excerpt.
#[tokio::test]
async fn sc_8_24_non_fhir_error_body_is_a_bounded_excerpt() {
    let long = format!("<html>\u{1b}[31m{}</html>", "x".repeat(5000));
    let http = FakeHttp::new([Reply::text(400, &long)]);
    let c = open_client(&http);
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    match &e {
        FhirError::Status {
            outcome: None,
            excerpt: Some(x),
            ..
        } => {
            assert!(x.chars().count() <= 201, "{}", x.len());
            assert!(!x.contains('\u{1b}'));
        }
        other => panic!("{other:?}"),
    }
}

/// SC-8.26, SC-3.8: a 401 reports the token rejected, and the request is sent once more with
/// the renewed token.
#[tokio::test]
async fn sc_8_26_401_renews_the_token_once_and_retries() {
    let http = FakeHttp::new([invalid_token(), Reply::json(200, patient("1"))]);
    let (c, tokens) = client(&http);
    let r: FhirResponse = c.read("Patient", "1").await.unwrap();
    assert_eq!(r.body()["id"], "1");
    let auth: Vec<String> = http
        .seen()
        .iter()
        .map(|s| s.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(auth, vec!["Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(tokens.rejected(), vec!["tok-1"]);
}

/// SC-8.26: the renewal also applies to writes that are not idempotent (nothing was done).
#[tokio::test]
async fn sc_8_26_401_on_a_plain_create_is_retried_with_a_new_token() {
    let http = FakeHttp::new([invalid_token(), Reply::json(201, patient("1"))]);
    let (c, _) = client(&http);
    let r = c
        .create::<Value>("Patient", &patient("1"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(http.seen().len(), 2);
}

/// SC-8.26: a second 401 is returned as an error: one renewal per request, never a loop.
#[tokio::test]
async fn sc_8_26_401_twice_is_an_error_not_a_loop() {
    let http = FakeHttp::new([
        invalid_token(),
        invalid_token(),
        Reply::json(200, patient("1")),
    ]);
    let (c, tokens) = client(&http);
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_eq!(e.outcome().unwrap().issue[0].code, "login");
    assert_eq!(http.seen().len(), 2);
    assert_eq!(http.remaining(), 1);
    assert_eq!(tokens.rejected(), vec!["tok-1"]);
}

/// SC-8.26: a 401 without a token source is returned as it is.
#[tokio::test]
async fn sc_8_26_401_without_a_token_source() {
    let http = FakeHttp::new([invalid_token(), Reply::json(200, patient("1"))]);
    let c = open_client(&http);
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_eq!(http.seen().len(), 1);
}

/// SC-8.26, SC-5.14: a 403 `insufficient_scope` is not cured by a new token of the same scope:
/// no renewal, no retry.
#[tokio::test]
async fn sc_8_26_403_insufficient_scope_is_not_renewed() {
    let http = FakeHttp::new([
        Reply::outcome(403, "forbidden", "scope does not permit").header(
            "www-authenticate",
            "Bearer error=\"insufficient_scope\", scope=\"system/Patient.r\"",
        ),
        Reply::json(200, patient("1")),
    ]);
    let (c, tokens) = client(&http);
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::FORBIDDEN));
    assert_eq!(http.seen().len(), 1);
    assert!(tokens.rejected().is_empty());
}

/// SC-8.26: a bare 403 (some servers' answer to an expired token) renews once by default, and
/// not at all when `renew_on_403(false)`.
#[tokio::test]
async fn sc_8_26_403_without_insufficient_scope() {
    let http = FakeHttp::new([
        Reply::outcome(403, "forbidden", "expired"),
        Reply::json(200, patient("1")),
    ]);
    let (c, tokens) = client(&http);
    let _: FhirResponse = c.read("Patient", "1").await.unwrap();
    assert_eq!(http.seen().len(), 2);
    assert_eq!(tokens.rejected(), vec!["tok-1"]);

    let http = FakeHttp::new([
        Reply::outcome(403, "forbidden", "no"),
        Reply::json(200, patient("1")),
    ]);
    let tokens = Tokens::default();
    let c = builder(&http)
        .auth(tokens.clone())
        .renew_on_403(false)
        .build()
        .unwrap();
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::FORBIDDEN));
    assert_eq!(http.seen().len(), 1);
    assert!(tokens.rejected().is_empty());
}

/// SC-8.25, SC-7.11: a 429 with `Retry-After: 30` (seconds) waits 30 s, then retries.
#[tokio::test(start_paused = true)]
async fn sc_8_25_429_retry_after_seconds() {
    let http = FakeHttp::new([
        Reply::outcome(429, "throttled", "slow down").header("retry-after", "30"),
        Reply::json(200, patient("1")),
    ]);
    let c = open_client(&http);
    let _: FhirResponse = c.read("Patient", "1").await.unwrap();
    let seen = http.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(30));
}

/// SC-8.25, SC-7.11: `Retry-After` as an HTTP date is measured on the injected clock.
#[tokio::test(start_paused = true)]
async fn sc_8_25_429_retry_after_http_date() {
    // 2015-10-21 07:28:00 GMT.
    let clock = FixedClock::at_unix(1_445_412_480);
    let http = FakeHttp::new([
        Reply::empty(429).header("retry-after", "Wed, 21 Oct 2015 07:28:20 GMT"),
        Reply::json(200, patient("1")),
    ]);
    let c = builder(&http).clock(clock).build().unwrap();
    let _: FhirResponse = c.read("Patient", "1").await.unwrap();
    let seen = http.seen();
    assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(20));
}

/// SC-8.25: a `Retry-After` longer than the policy's longest wait is not waited for: the 429 is
/// returned at once.
#[tokio::test(start_paused = true)]
async fn sc_8_25_retry_after_beyond_the_bound_is_returned() {
    let http = FakeHttp::new([
        Reply::empty(503).header("retry-after", "3600"),
        Reply::json(200, patient("1")),
    ]);
    let c = open_client(&http);
    let started = tokio::time::Instant::now();
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert!(e.is_transient());
    assert_eq!(http.seen().len(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// SC-8.25: 503 and 500 are retried for a GET with a growing backoff, a bounded number of
/// times.
#[tokio::test(start_paused = true)]
async fn sc_8_25_5xx_retried_for_get_with_backoff_and_bounded() {
    let http = FakeHttp::new([
        Reply::outcome(503, "transient", "busy"),
        Reply::outcome(500, "exception", "oops"),
        Reply::json(200, patient("1")),
    ]);
    let c = open_client(&http);
    let _: FhirResponse = c.read("Patient", "1").await.unwrap();
    let seen = http.seen();
    assert_eq!(seen.len(), 3);
    // Equal jitter: the n-th wait lies in [base·2ⁿ/2, base·2ⁿ] with base 250 ms.
    let w0 = seen[1].at - seen[0].at;
    let w1 = seen[2].at - seen[1].at;
    assert!(
        w0 >= Duration::from_millis(125) && w0 <= Duration::from_millis(250),
        "{w0:?}"
    );
    assert!(
        w1 >= Duration::from_millis(250) && w1 <= Duration::from_millis(500),
        "{w1:?}"
    );

    let http = FakeHttp::new((0..10).map(|_| Reply::empty(502)));
    let c = builder(&http)
        .retry_policy(quick_retries(2))
        .build()
        .unwrap();
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::BAD_GATEWAY));
    assert_eq!(http.seen().len(), 3, "1 attempt + 2 retries");
}

/// SC-8.13, SC-8.14: a 500 to a plain create is returned, never retried (it may have created
/// the resource); a conditional create is retried.
#[tokio::test(start_paused = true)]
async fn sc_8_13_500_not_retried_for_plain_create_but_for_conditional_create() {
    let http = FakeHttp::new([
        Reply::outcome(500, "exception", "oops"),
        Reply::json(201, patient("1")),
    ]);
    let c = open_client(&http);
    let e = c
        .create::<Value>("Patient", &patient("1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(http.seen().len(), 1);

    let http = FakeHttp::new([
        Reply::outcome(500, "exception", "oops"),
        Reply::json(201, patient("1")),
    ]);
    let c = open_client(&http);
    let r = c
        .create::<Value>("Patient", &patient("1"), Some("identifier=urn:mrn|1"))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let seen = http.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|s| s.header("if-none-exist") == Some("identifier=urn:mrn|1")));
}

/// A 429 to a plain create is not retried either: the client cannot know that nothing was done.
#[tokio::test(start_paused = true)]
async fn sc_8_25_429_not_retried_for_plain_create() {
    let http = FakeHttp::new([
        Reply::empty(429).header("retry-after", "1"),
        Reply::json(201, patient("1")),
    ]);
    let c = open_client(&http);
    let e = c
        .create::<Value>("Patient", &patient("1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(http.seen().len(), 1);
}

/// A transient transport error (connect, timeout, broken connection) is retried for idempotent
/// requests; a TLS failure is not; a plain create is not.
#[tokio::test(start_paused = true)]
async fn transient_transport_errors_are_retried_for_idempotent_requests() {
    let http = FakeHttp::new([
        Reply::Fail(HttpErrorKind::Connect),
        Reply::Fail(HttpErrorKind::Timeout),
        Reply::json(200, patient("1")),
    ]);
    let c = open_client(&http);
    let _: FhirResponse = c.read("Patient", "1").await.unwrap();
    assert_eq!(http.seen().len(), 3);

    let http = FakeHttp::new([
        Reply::Fail(HttpErrorKind::Tls),
        Reply::json(200, patient("1")),
    ]);
    let c = open_client(&http);
    let e = c.read::<Value>("Patient", "1").await.unwrap_err();
    assert!(matches!(e, FhirError::Http { .. }), "{e}");
    assert_eq!(http.seen().len(), 1);

    let http = FakeHttp::new([
        Reply::Fail(HttpErrorKind::Io),
        Reply::json(201, patient("1")),
    ]);
    let c = open_client(&http);
    let e = c
        .create::<Value>("Patient", &patient("1"), None)
        .await
        .unwrap_err();
    assert!(e.is_transient());
    assert_eq!(http.seen().len(), 1);
    let s = e.to_string();
    assert!(s.starts_with("POST /fhir/Patient: "), "{s}");
}

/// SC-8.7: an If-Match patch may be retried (it cannot apply twice); an unguarded one may not.
#[tokio::test(start_paused = true)]
async fn sc_8_7_guarded_patch_is_retried_unguarded_is_not() {
    let patch = json!([{"op": "replace", "path": "/active", "value": true}]);
    let http = FakeHttp::new([Reply::empty(503), Reply::json(200, patient("1"))]);
    let c = open_client(&http);
    let r = c
        .patch_json::<Value>("Patient", "1", &patch, Some("1"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(http.seen().len(), 2);

    let http = FakeHttp::new([Reply::empty(503), Reply::json(200, patient("1"))]);
    let c = open_client(&http);
    let e = c
        .patch_json::<Value>("Patient", "1", &patch, None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(http.seen().len(), 1);
}
