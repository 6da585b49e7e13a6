//! Response headers the library reads for time: `Cache-Control` (SC-1.4; the discovery and key
//! caches) and `Retry-After` in seconds or as an HTTP date (SC-7.11; FHIR retries and Bulk
//! polling). Input is header lines (`Name: value`). `no-store` wins over any `max-age`; a
//! cache's lifetime stays within its bounds; `Retry-After` never lies before now.
#![no_main]

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use smart_fhir_discovery::fuzzing::{cache_control, cache_ttl};
use smart_fhir_http::client::retry_after;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let directive = cache_control(&headers);
    let said_no_store = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim())
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache"));
    if said_no_store {
        assert_eq!(directive, None, "no-store / no-cache wins");
    }
    let (min, default, max) = (
        Duration::from_secs(60),
        Duration::from_secs(300),
        Duration::from_secs(86_400),
    );
    let ttl = cache_ttl(&headers, default, min, max);
    assert!(ttl >= min && ttl <= max, "{ttl:?}");
    match directive {
        None => assert_eq!(ttl, min),
        Some(None) => assert_eq!(ttl, default),
        Some(Some(age)) => assert_eq!(ttl, age.clamp(min, max)),
    }
    // Crossed bounds must not panic.
    let _ = cache_ttl(&headers, default, max, min);

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    if let Some(wait) = retry_after(&headers, now) {
        let raw = headers[http::header::RETRY_AFTER]
            .to_str()
            .expect("it was read");
        if let Ok(secs) = raw.trim().parse::<u64>() {
            assert_eq!(wait, Duration::from_secs(secs));
        }
    }
    let _ = retry_after(&headers, SystemTime::UNIX_EPOCH);
});
