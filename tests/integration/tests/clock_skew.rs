//! Clock skew against the harness (oidc-provider + the Medplum router): a Backend Services
//! client whose clock is five minutes fast or slow gets a token and reads a resource, because
//! its assertion carries the server's time (learnt from the `Date` header of the discovery or
//! token responses); with the correction turned off the same client is refused, which shows
//! that the harness does check the assertion's `exp` (not past, at most five minutes ahead).

use std::time::SystemTime;

use smart_fhir_core::{Clock, ClockOffset, SystemClock};
use smart_fhir_integration_tests::*;
use smart_fhir_oauth::{BackendServices, OAuthError};

/// The system clock moved by a fixed number of seconds: a machine whose clock is wrong.
#[derive(Debug, Clone, Copy)]
struct Skewed(i64);

impl Clock for Skewed {
    fn now(&self) -> SystemTime {
        ClockOffset::from_seconds(self.0).apply(SystemClock.now())
    }
}

const FIVE_MINUTES: i64 = 300;

fn source(
    client_id: &str,
    skew: i64,
    correction: bool,
    explicit_endpoint: bool,
) -> BackendServices {
    let mut builder = BackendServices::builder()
        .fhir_base(base())
        .client_id(client_id)
        .scope("system/Patient.rs")
        .private_key(key("rs384"))
        // A transport of its own: offsets are kept per transport and clock.
        .http_client(http())
        .clock(Skewed(skew))
        .clock_skew_correction(correction);
    if explicit_endpoint {
        builder = builder.token_endpoint(format!("{}/oidc/token", origin()));
    }
    builder.build().expect("backend services")
}

async fn read_patient(backend: &BackendServices) -> u16 {
    let token = backend.access_token().await.expect("token");
    let id = patient_ids().into_iter().next().expect("a seeded patient");
    fhir_get(&format!("Patient/{id}"), Some(&token)).await.0
}

/// The local clock five minutes fast, then five minutes slow: discovery's `Date` (the token
/// endpoint is on the FHIR server's origin) corrects the first assertion: one token request,
/// and the token reads a Patient.
#[tokio::test]
async fn skew_backend_services_with_a_clock_five_minutes_off_gets_a_token() {
    for (client, skew) in [
        ("it-skew-fast", FIVE_MINUTES),
        ("it-skew-slow", -FIVE_MINUTES),
    ] {
        let before = token_requests(client).await;
        let backend = source(client, skew, true, false);
        assert_eq!(read_patient(&backend).await, 200, "{client}");
        assert_eq!(token_requests(client).await - before, 1, "{client}");
    }
}

/// With the correction off, the same clients are refused: the harness checks `exp` (at most
/// five minutes ahead; not past, with 15 s of tolerance). One request, no retry.
#[tokio::test]
async fn skew_without_correction_the_harness_refuses_the_assertion() {
    for (client, skew) in [
        ("it-skew-fast", FIVE_MINUTES),
        ("it-skew-slow", -FIVE_MINUTES),
    ] {
        let before = token_requests(client).await;
        let backend = source(client, skew, false, false);
        let e: OAuthError = backend.token().await.expect_err("refused");
        assert!(e.is_invalid_client(), "{client}: {e}");
        assert_eq!(token_requests(client).await - before, 1, "{client}");
    }
}

/// No discovery (the token endpoint given by configuration), so no `Date` seen before the
/// first request: the refusal's `Date` shows the offset, and the one retry with the server's
/// time succeeds. The offset is kept: the next token needs one request.
#[tokio::test]
async fn skew_refused_first_assertion_is_retried_once_with_the_servers_time() {
    let client = "it-skew-retry";
    for skew in [FIVE_MINUTES, -FIVE_MINUTES] {
        let before = token_requests(client).await;
        let backend = source(client, skew, true, true);
        assert_eq!(read_patient(&backend).await, 200);
        assert_eq!(token_requests(client).await - before, 2, "{skew}");
    }
}

/// The same client with its clock right, for comparison: one request, no offset applied.
#[tokio::test]
async fn skew_a_right_clock_needs_no_correction() {
    let client = "it-skew-retry";
    let before = token_requests(client).await;
    let backend = source(client, 0, true, true);
    assert_eq!(read_patient(&backend).await, 200);
    assert_eq!(token_requests(client).await - before, 1);
}
