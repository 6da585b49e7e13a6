//! The FHIR client's `tracing` output (P5): a span per request with the method, the origin, a
//! path template, the status, the attempts and the duration, and events for token renewal and
//! retries; never a token, a query string, an id or a body. The whole flow's TRACE output is
//! captured with a `tracing-subscriber` writing into memory.

mod client_support;

use std::io;
use std::sync::{Arc, Mutex};

use client_support::*;
use serde_json::{json, Value};
use smart_fhir_core::{FixedClock, HttpErrorKind};
use tracing_subscriber::fmt::format::FmtSpan;

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// P5, SC-8.26, SC-7.11: a read whose token is rejected once, a search answered `503` then
/// `200`, and a failed read: the TRACE output names each interaction as a template with its
/// status and attempts, reports the renewal and the retry, and holds no token, no query, no id
/// and no body.
#[tokio::test(start_paused = true)]
async fn p5_trace_output_of_a_whole_flow_has_no_secret_query_id_or_body() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let secret_body =
        json!({"resourceType": "Patient", "id": "pat-4711", "name": [{"family": "BODY-SECRET"}]});
    let http = FakeHttp::new([
        Reply::outcome(401, "login", "expired")
            .header("www-authenticate", "Bearer error=\"invalid_token\""),
        Reply::json(200, secret_body.clone()),
        Reply::outcome(503, "transient", "busy").header("retry-after", "1"),
        Reply::json(200, bundle(vec![secret_body], None)),
        Reply::outcome(404, "not-found", "no such Patient"),
        Reply::Fail(HttpErrorKind::Connect),
    ]);
    let tokens = Tokens::default();
    let c = builder(&http)
        .auth(tokens.clone())
        .retry_policy(quick_retries(2))
        .clock(FixedClock::new(std::time::SystemTime::UNIX_EPOCH))
        .build()
        .unwrap();

    let read = c.read::<Value>("Patient", "pat-4711").await.unwrap();
    assert_eq!(read.status(), 200);
    let found = c
        .search::<Value>(
            "Patient",
            &[("family", "QUERY-SECRET"), ("birthdate", "1970")],
        )
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    assert!(c.read::<Value>("Patient", "pat-0815").await.is_err());
    let new = json!({"resourceType": "Patient"});
    assert!(c.create::<Value>("Patient", &new, None).await.is_err());
    // The client did send the tokens: the output must not show them.
    assert_eq!(tokens.rejected(), ["tok-1"]);
    assert!(http.seen()[1]
        .header("authorization")
        .is_some_and(|v| v.contains("tok-2")));

    let out = captured.text();
    // One span per request, named by its template, with its status and attempts.
    assert!(out.contains("fhir_request"), "{out}");
    assert!(out.contains("method=GET"), "{out}");
    assert!(out.contains("origin=https://ehr.example"), "{out}");
    assert!(out.contains("path=[base]/Patient/{id}"), "{out}");
    assert!(out.contains("path=[base]/Patient "), "{out}");
    assert!(out.contains("status=200"), "{out}");
    assert!(out.contains("attempts=2"), "{out}");
    assert!(out.contains("elapsed_us="), "{out}");
    // Token renewal, the retry and the failure are events.
    assert!(out.contains("token rejected; renewing it"), "{out}");
    assert!(out.contains("retrying after a transient status"), "{out}");
    assert!(out.contains("status=503"), "{out}");
    assert!(out.contains("status=404"), "{out}");
    assert!(out.contains("method=POST"), "{out}");
    assert!(out.contains("FHIR request failed"), "{out}");
    assert!(
        out.contains("connection failed (https://ehr.example)"),
        "{out}"
    );
    // Never a token, a query, an id or a body.
    for secret in [
        "tok-1",
        "tok-2",
        "Bearer ",
        "QUERY-SECRET",
        "family=",
        "birthdate",
        "?",
        "pat-4711",
        "pat-0815",
        "BODY-SECRET",
        "no such Patient",
    ] {
        assert!(
            !out.contains(secret),
            "{secret:?} in the trace output:\n{out}"
        );
    }
}
