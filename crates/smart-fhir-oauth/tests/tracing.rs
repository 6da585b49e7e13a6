//! P5: the TRACE output of whole flows (App Launch with refresh, rotation and sign-out; Backend
//! Services with a cache miss and hits) names the steps, origins, paths, statuses and cache
//! outcomes, and never a token, a code, a state, a verifier, an assertion or a session id.

mod launch_support;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use launch_support::*;
use smart_fhir_core::FhirBaseUrl;
use smart_fhir_oauth::{BackendServices, ClientAuth};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A subscriber that writes every span and event, with all its fields, into one string.
#[derive(Clone, Default)]
struct Capture {
    out: Arc<Mutex<String>>,
    next: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut out = self.out.lock().unwrap();
        let _ = write!(out, "\nspan {}", span.metadata().name());
        span.record(&mut Fields(&mut out));
        Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Fields(&mut self.out.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut out = self.out.lock().unwrap();
        let _ = write!(out, "\nevent {}", event.metadata().level());
        event.record(&mut Fields(&mut out));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

const SESSION: &str = "sess-SECRET-cookie-value";

/// P5, SC-4.29, SC-4.32: App Launch (private_key_jwt, launch, callback, refresh with rotation,
/// sign-out) and Backend Services (miss, then hits) logged without a secret.
#[tokio::test(flavor = "current_thread")]
async fn p5_trace_of_whole_flows_has_steps_and_no_secret() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let s = Setup::new();
    let app = s.app_with(ClientAuth::private_key_jwt(client_key().clone()));
    let req = app.launch(SESSION, BASE, "launch-SECRET").await.unwrap();
    let p = params(&req);
    let query = callback_query(&req, "code-SECRET");
    app.callback(SESSION, &query).await.unwrap();
    let session = app.ready(SESSION).await.unwrap();
    s.clock.advance(Duration::from_secs(3600));
    assert!(session.access_token().await.unwrap().ct_eq("at-2"));
    app.logout(SESSION).await.unwrap();

    let backend = BackendServices::builder()
        .fhir_base(FhirBaseUrl::parse(BASE).unwrap())
        .client_id("backend-1")
        .scope("system/Patient.rs")
        .private_key(client_key().clone())
        .token_endpoint(TOKEN_URL)
        .http_client(s.http.clone())
        .clock(s.clock.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        backend.access_token().await.unwrap();
    }

    let out = capture.out.lock().unwrap().clone();
    // The steps, with what may be shown.
    for expected in [
        "App Launch start",
        "App Launch callback",
        "App Launch code exchanged",
        "App Launch session refresh",
        "refresh token rotated",
        "App Launch sign-out",
        "span smart_fhir.token_request grant=\"authorization_code\"",
        "grant=\"refresh_token\"",
        "grant=\"client_credentials\"",
        "origin=https://auth.example path=\"/token\"",
        "status=200",
        "granted_scopes=5",
        "cache=\"miss\"",
        "cache=\"hit\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:{out}");
    }
    // No secret of any kind.
    let tokens = s.server.token_requests();
    let assertion = tokens[0].field("client_assertion").unwrap().to_owned();
    let verifier = tokens[0].field("code_verifier").unwrap().to_owned();
    for secret in [
        "at-1",
        "at-2",
        "rt-1",
        "rt-2",
        "code-SECRET",
        "launch-SECRET",
        "SECRET",
        SESSION,
        &p["state"],
        &p["nonce"],
        &p["code_challenge"],
        &verifier,
        &assertion,
        "eyJ",
        "pat-123",
    ] {
        assert!(!out.contains(secret), "{secret:?} logged in:{out}");
    }
    // Session ids appear as a short hash only: the same one for every step of the session.
    assert!(out.contains("session="), "{out}");
}
