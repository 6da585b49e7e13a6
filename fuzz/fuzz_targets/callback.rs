//! The App Launch callback check (SC-4.13–SC-4.19, P3, P10): a standalone launch is started,
//! then `callback` gets the fuzzed query string, in which every `STATE` is replaced by the
//! state of that launch (so that the input reaches past the state check). A callback that
//! succeeds carried that state, a code and no error, and lands on the configured URL; the same
//! query never succeeds twice.
#![no_main]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use smart_fhir_core::{FhirBaseUrl, FixedClock, SharedClock};
use smart_fhir_fuzz::{block_on, printable, FakeHttp};
use smart_fhir_oauth::{AppLaunch, AuthorizeRequest, IssuerPolicy, LaunchClientConfig};
use smart_fhir_store::MemorySessionStore;

const BASE: &str = "https://ehr.example/fhir";
const LANDING: &str = "https://app.example/home";
const SESSION: &str = "fuzz-session-0123456789";
/// A new app (and session store) after this many inputs: every launch leaves a pending
/// record behind when its callback fails before the state check.
const INPUTS_PER_APP: u32 = 256;

fn app() -> AppLaunch {
    let http = FakeHttp::new();
    http.respond(|req| {
        let body = match req.uri().to_string().as_str() {
            "https://ehr.example/fhir/.well-known/smart-configuration" => json!({
                "issuer": "https://auth.example",
                "authorization_endpoint": "https://auth.example/authorize",
                "token_endpoint": "https://auth.example/token",
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "capabilities": ["launch-standalone", "client-public", "context-standalone-patient",
                                 "permission-offline", "permission-patient", "permission-v2"]
            }),
            "https://auth.example/token" => json!({
                "access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
                "scope": "launch/patient patient/*.rs offline_access",
                "refresh_token": "rt-1", "patient": "123"
            }),
            _ => json!({}),
        };
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
            .expect("a response")
    });
    let clock = FixedClock::at_unix(1_750_000_000);
    let store = MemorySessionStore::new().with_clock(SharedClock::new(clock.clone()));
    let config = LaunchClientConfig::builder()
        .client_id("app-1")
        .redirect_uri("https://app.example/callback")
        .scope("launch/patient patient/*.rs offline_access")
        .issuer_policy(IssuerPolicy::allow_list([
            FhirBaseUrl::parse(BASE).expect("a base")
        ]))
        .landing_url(LANDING)
        .session_store(store)
        .clock(clock)
        .http_client(http)
        .build()
        .expect("a configuration");
    AppLaunch::new(config)
}

fn state_of(request: &AuthorizeRequest) -> String {
    let pairs: Vec<(String, String)> = match request {
        AuthorizeRequest::Redirect(url) => url.query_pairs().into_owned().collect(),
        AuthorizeRequest::FormPost { fields, .. } => fields.clone(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v)
        .expect("the authorization request has a state")
}

fuzz_target!(|data: &[u8]| {
    static APP: Mutex<Option<(u32, Arc<AppLaunch>)>> = Mutex::new(None);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let app = {
        let mut slot = APP.lock().expect("not poisoned");
        match slot.as_mut() {
            Some((n, app)) if *n < INPUTS_PER_APP => {
                *n += 1;
                Arc::clone(app)
            }
            _ => {
                let app = Arc::new(app());
                *slot = Some((1, Arc::clone(&app)));
                app
            }
        }
    };
    block_on(async {
        let request = app
            .standalone(SESSION, BASE)
            .await
            .expect("a launch starts");
        let state = state_of(&request);
        let query = text.replace("STATE", &state);
        let first = app.callback(SESSION, &query).await;
        match &first {
            Ok(launched) => {
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
                        .into_owned()
                        .collect();
                let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                assert!(
                    pairs.iter().any(|(k, v)| k == "state" && *v == state),
                    "{query}"
                );
                assert!(get("code").is_some_and(|c| !c.is_empty()), "{query}");
                assert!(get("error").is_none(), "{query}");
                assert_eq!(launched.landing_url.as_str(), LANDING);
                assert_eq!(launched.fhir_base.as_str(), BASE);
            }
            Err(e) => assert!(printable(&e.to_string()), "{e}"),
        }
        let again = app.callback(SESSION, &query).await;
        assert!(again.is_err(), "a callback succeeded twice");
    });
});
