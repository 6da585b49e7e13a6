use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use super::*;
use crate::FixedClock;

/// 2023-11-14T22:13:20Z.
const T: u64 = 1_700_000_000;
const T_IMF: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(dates: &[&[u8]]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for d in dates {
        h.append(
            http::header::DATE,
            http::HeaderValue::from_bytes(d).unwrap(),
        );
    }
    h
}

fn date(secs: u64) -> http::HeaderMap {
    headers(&[httpdate::fmt_http_date(at(secs)).as_bytes()])
}

fn uri(s: &str) -> http::Uri {
    s.parse().unwrap()
}

/// Server clocks on a local clock fixed at `local`.
fn clocks_at(local: u64) -> (ServerClocks, FixedClock) {
    let clock = FixedClock::at_unix(local);
    (ServerClocks::new(SharedClock::new(clock.clone())), clock)
}

/// RFC 9110 §5.6.7: the preferred IMF-fixdate and the two obsolete forms recipients must
/// accept; anything else, a repeated `Date`, or no `Date` gives nothing.
#[test]
fn date_header_forms() {
    for form in [
        T_IMF,
        "Tuesday, 14-Nov-23 22:13:20 GMT",
        "Tue Nov 14 22:13:20 2023",
        " Tue, 14 Nov 2023 22:13:20 GMT ",
    ] {
        assert_eq!(
            response_date(&headers(&[form.as_bytes()])),
            Some(at(T)),
            "{form}"
        );
    }
    for bad in [
        &b""[..],
        b"yesterday",
        b"1700000000",
        b"Tue, 14 Nov 2023 22:13:20 PST",
        b"Tue, 31 Feb 2023 22:13:20 GMT",
        b"Tue, 14 Nov 2023 25:13:20 GMT",
        b"Tue, 14 Nov 2023 22:13:20 GMT; x",
        b"\xff\xfe Tue, 14 Nov 2023",
    ] {
        assert_eq!(response_date(&headers(&[bad])), None, "{bad:?}");
    }
    assert_eq!(response_date(&http::HeaderMap::new()), None);
    assert_eq!(
        response_date(&headers(&[T_IMF.as_bytes(), T_IMF.as_bytes()])),
        None,
        "a repeated Date is ambiguous"
    );
}

/// A response a cache kept says its age: the server's time is `Date` + `Age`; an absurd or
/// malformed `Age` is not used.
#[test]
fn age_is_added_within_reason() {
    let mut h = date(T);
    h.insert(http::header::AGE, "30".parse().unwrap());
    assert_eq!(response_date(&h), Some(at(T + 30)));
    for bad in ["-5", "soon", "99999999999"] {
        h.insert(http::header::AGE, bad.parse().unwrap());
        assert_eq!(response_date(&h), Some(at(T)), "{bad}");
    }
}

/// Origins: scheme, host and port, lower case, default ports filled in; no path or query.
#[test]
fn origins_ignore_path_query_and_credentials() {
    assert_eq!(
        server_origin(&uri("https://User:pw@Auth.Example/token?x=secret")).as_deref(),
        Some("https://auth.example:443")
    );
    assert_eq!(
        server_origin(&uri("http://127.0.0.1:8080/fhir")).as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(server_origin(&uri("/relative")), None);
    let url = url::Url::parse("https://auth.example:443/other").unwrap();
    assert_eq!(
        url.origin_key(),
        server_origin(&uri("https://auth.example/x"))
    );
}

/// The local clock five minutes slow or fast: the offset is measured, applied to that server's
/// time, and shown signed.
#[test]
fn offsets_are_measured_both_ways() {
    let token = uri("https://auth.example/token");
    let (slow, _) = clocks_at(T - 300);
    assert_eq!(
        slow.observe(&token, &date(T)),
        Observation::Offset(ClockOffset::from_seconds(300))
    );
    assert_eq!(slow.now_at(&token), at(T));
    let (fast, _) = clocks_at(T + 300);
    assert_eq!(
        fast.observe(&token, &date(T)),
        Observation::Offset(ClockOffset::from_seconds(-300))
    );
    assert_eq!(fast.now_at(&token), at(T));
    assert_eq!(ClockOffset::from_seconds(-300).to_string(), "-300 s");
    assert_eq!(ClockOffset::from_seconds(5).to_string(), "+5 s");
    // The estimate follows the local clock as it moves.
    let (clocks, local) = clocks_at(T - 300);
    clocks.observe(&token, &date(T));
    local.advance(Duration::from_secs(100));
    assert_eq!(clocks.now_at(&token), at(T + 100));
}

/// Below the threshold the server is taken to agree (and an earlier offset is forgotten); at
/// it, the offset is used.
#[test]
fn small_offsets_are_ignored() {
    let token = uri("https://auth.example/token");
    let (clocks, local) = clocks_at(T);
    let small = MIN_CLOCK_OFFSET.as_secs() - 1;
    assert_eq!(
        clocks.observe(&token, &date(T + small)),
        Observation::InAgreement
    );
    assert_eq!(
        clocks.observe(&token, &date(T - small)),
        Observation::InAgreement
    );
    assert_eq!(clocks.offset(&token), ClockOffset::ZERO);
    assert_eq!(clocks.now_at(&token), at(T));
    let threshold = MIN_CLOCK_OFFSET.as_secs();
    assert_eq!(
        clocks.observe(&token, &date(T + threshold)),
        Observation::Offset(ClockOffset::from_seconds(5))
    );
    // The local clock was put right: the next Date agrees, and the offset goes.
    local.advance(Duration::from_secs(threshold));
    assert_eq!(
        clocks.observe(&token, &date(T + threshold)),
        Observation::InAgreement
    );
    assert_eq!(clocks.offset(&token), ClockOffset::ZERO);
}

/// Beyond the bound nothing is applied and the earlier estimate stays; at the bound it is used.
#[test]
fn offsets_beyond_the_bound_are_never_applied() {
    let token = uri("https://auth.example/token");
    let (clocks, _) = clocks_at(T);
    clocks.observe(&token, &date(T + 120));
    let max = MAX_CLOCK_OFFSET.as_secs();
    assert_eq!(
        clocks.observe(&token, &date(T + max + 1)),
        Observation::BeyondBound(ClockOffset::from_seconds(3601))
    );
    assert_eq!(
        clocks.observe(&token, &date(T - max - 1)),
        Observation::BeyondBound(ClockOffset::from_seconds(-3601))
    );
    assert!(matches!(
        clocks.observe(&token, &date(0)),
        Observation::BeyondBound(_)
    ));
    assert_eq!(clocks.offset(&token), ClockOffset::from_seconds(120));
    let (fresh, _) = clocks_at(T);
    fresh.observe(&token, &date(T + max + 1));
    assert_eq!(fresh.offset(&token), ClockOffset::ZERO);
    assert_eq!(
        fresh.observe(&token, &date(T - max)),
        Observation::Offset(ClockOffset::from_seconds(-3600))
    );
}

/// One server's `Date` never changes the time of another, even on the same host with another
/// port or scheme.
#[test]
fn offsets_are_per_server() {
    let (clocks, _) = clocks_at(T);
    clocks.observe(&uri("https://auth.example/token"), &date(T + 300));
    assert_eq!(
        clocks.offset(&uri("https://auth.example/other/path?q=1")),
        ClockOffset::from_seconds(300)
    );
    for other in [
        "https://other.example/token",
        "https://auth.example:8443/token",
        "http://auth.example/token",
        "https://sub.auth.example/token",
    ] {
        assert_eq!(clocks.offset(&uri(other)), ClockOffset::ZERO, "{other}");
        assert_eq!(clocks.now_at(&uri(other)), at(T), "{other}");
    }
}

/// Missing and broken `Date` headers change nothing; a URI without a host is not kept.
#[test]
fn bad_or_missing_dates_change_nothing() {
    let token = uri("https://auth.example/token");
    let (clocks, _) = clocks_at(T);
    clocks.observe(&token, &date(T + 300));
    for h in [
        http::HeaderMap::new(),
        headers(&[b"garbage"]),
        headers(&[b"\x80\x81"]),
        headers(&[T_IMF.as_bytes(), b"Wed, 15 Nov 2023 22:13:20 GMT"]),
    ] {
        assert_eq!(clocks.observe(&token, &h), Observation::NoDate);
    }
    assert_eq!(
        clocks.observe(&uri("/token"), &date(T + 60)),
        Observation::NoDate
    );
    assert_eq!(clocks.offset(&token), ClockOffset::from_seconds(300));
}

/// The map of servers is bounded: the oldest observation goes first.
#[test]
fn servers_are_bounded() {
    let (clocks, local) = clocks_at(T);
    for i in 0..=MAX_SERVERS {
        local.set(at(T + i as u64));
        let server = uri(&format!("https://s{i}.example/"));
        clocks.observe(&server, &date(T + i as u64 + 60));
    }
    assert_eq!(clocks.lock().len(), MAX_SERVERS);
    assert_eq!(
        clocks.offset(&uri("https://s0.example/")),
        ClockOffset::ZERO
    );
    assert_eq!(
        clocks.offset(&uri(&format!("https://s{MAX_SERVERS}.example/"))),
        ClockOffset::from_seconds(60)
    );
}

/// Applying an offset never panics or overflows, whatever the time.
#[test]
fn applying_saturates() {
    assert_eq!(
        ClockOffset::from_seconds(-10).apply(at(5)),
        SystemTime::UNIX_EPOCH
    );
    assert_eq!(
        ClockOffset::from_seconds(i64::MIN).apply(at(5)),
        SystemTime::UNIX_EPOCH
    );
    let far = at(u64::MAX / 4);
    let _ = ClockOffset::from_seconds(i64::MAX).apply(far);
    assert_eq!(difference(at(0), at(10)), -10);
    assert_eq!(difference(at(10), at(0)), 10);
    // Rounded down, so that the corrected time never runs ahead of the server's.
    let half = Duration::from_millis(500);
    assert_eq!(difference(at(10), at(0) + half), 9);
    assert_eq!(difference(at(0), at(10) + half), -11);
}

/// One transport and one clock share one instance; another clock or transport gets another.
#[test]
fn one_instance_per_transport_and_clock() {
    #[derive(Debug)]
    struct Never;
    #[async_trait]
    impl HttpClient for Never {
        async fn execute(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            Err(HttpError::new(
                crate::HttpErrorKind::Connect,
                request.uri(),
                "no network in tests",
            ))
        }
    }
    let transport = SharedHttpClient::new(Never);
    let clock = SharedClock::new(FixedClock::at_unix(T));
    let a = ServerClocks::for_transport(&transport, &clock);
    let b = ServerClocks::for_transport(&transport.clone(), &clock.clone());
    assert!(Arc::ptr_eq(&a, &b));
    let other_clock = ServerClocks::for_transport(&transport, &SharedClock::default());
    assert!(!Arc::ptr_eq(&a, &other_clock));
    let other_transport = ServerClocks::for_transport(&SharedHttpClient::new(Never), &clock);
    assert!(!Arc::ptr_eq(&a, &other_transport));
}

/// A transport that answers every request with `Date: date` and `status`.
#[derive(Debug)]
struct Dated {
    date: SystemTime,
    status: u16,
}

#[async_trait]
impl HttpClient for Dated {
    async fn execute(
        &self,
        _request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        Ok(http::Response::builder()
            .status(self.status)
            .header(http::header::DATE, httpdate::fmt_http_date(self.date))
            .body(Bytes::new())
            .unwrap())
    }
}

/// The observing transport feeds successes and errors alike, by every send method.
#[tokio::test]
async fn observing_transport_feeds_every_response() {
    let (clocks, _) = clocks_at(T);
    let request = || {
        http::Request::builder()
            .uri("https://auth.example/token")
            .body(Bytes::new())
            .unwrap()
    };
    let token = uri("https://auth.example/token");
    let error = Dated {
        date: at(T + 120),
        status: 401,
    };
    let r = clocks.observing(&error).execute(request()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(clocks.offset(&token), ClockOffset::from_seconds(120));
    let ok = Dated {
        date: at(T - 90),
        status: 200,
    };
    clocks
        .observing(&ok)
        .execute_bounded(request(), MaxResponseBytes(10), None)
        .await
        .unwrap();
    assert_eq!(clocks.offset(&token), ClockOffset::from_seconds(-90));
    let ok = Dated {
        date: at(T + 30),
        status: 200,
    };
    clocks
        .observing(&ok)
        .execute_streaming(request())
        .await
        .unwrap();
    assert_eq!(clocks.offset(&token), ClockOffset::from_seconds(30));
}

/// Records every event as `LEVEL message key=value …`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// A large offset in use and an offset beyond the bound are `warn` events with the origin and
/// the seconds, once per change, never with the path or query; a small one is not a warning.
#[test]
fn large_offsets_are_warned_about_with_origin_and_seconds() {
    let run = || {
        let (clocks, _) = clocks_at(T);
        let token = uri("https://auth.example/oauth/token?secret=1");
        clocks.observe(&token, &date(T + 30));
        clocks.observe(&token, &date(T + 300));
        clocks.observe(&token, &date(T + 300));
        clocks.observe(&token, &date(T + 7200));
    };
    // With one registered subscriber, tracing asks only the registering thread's subscriber
    // whether a callsite is wanted, so a callsite first reached by another test's thread while
    // ours is installed would be cached as unwanted. A second registered subscriber makes every
    // registration ask all of them (ours included); installing ours asks every callsite again.
    let _second = tracing::Dispatch::new(Capture::default());
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), run);
    let lines = capture.0.lock().unwrap().clone();
    let warnings: Vec<&String> = lines.iter().filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(warnings.len(), 2, "{lines:#?}");
    assert!(warnings[0].contains("offset_seconds=300"), "{lines:#?}");
    assert!(
        warnings[0].contains("origin=https://auth.example:443"),
        "{lines:#?}"
    );
    assert!(warnings[1].contains("offset_seconds=7200"), "{lines:#?}");
    assert!(warnings[1].contains("not corrected"), "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("secret") && !l.contains("/oauth")),
        "{lines:#?}"
    );
}

proptest! {
    /// No header bytes make the estimator panic, and whatever it keeps is within the bound.
    #[test]
    fn any_header_bytes_are_safe(
        date in proptest::collection::vec(any::<u8>(), 0..64),
        age in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&date) {
            h.insert(http::header::DATE, v);
        }
        if let Ok(v) = http::HeaderValue::from_bytes(&age) {
            h.insert(http::header::AGE, v);
        }
        let (clocks, _) = clocks_at(T);
        let token = uri("https://auth.example/token");
        let _ = clocks.observe(&token, &h);
        prop_assert!(clocks.offset(&token).magnitude() <= MAX_CLOCK_OFFSET);
    }

    /// Any well-formed date within the bound is measured to the second.
    #[test]
    fn dates_within_the_bound_are_measured_exactly(delta in -3600i64..=3600) {
        let (clocks, _) = clocks_at(T);
        let token = uri("https://auth.example/token");
        let server = at(T.checked_add_signed(delta).unwrap());
        clocks.observe(&token, &date(server.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()));
        let expected = if delta.unsigned_abs() < MIN_CLOCK_OFFSET.as_secs() { 0 } else { delta };
        prop_assert_eq!(clocks.offset(&token), ClockOffset::from_seconds(expected));
    }
}
