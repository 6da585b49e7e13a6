//! Token-endpoint responses and OAuth error responses (SC-3.4–3.7, SC-4.19): status, headers
//! and body fuzzed, read by `parse_token_response` as every grant reads them. A token that is
//! accepted has a non-empty access token equal to the body's, an expiry within a year of now,
//! survives the store's serialization, and never shows in `Debug`; an error never shows a
//! control character.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use smart_fhir_core::{AccessToken, IdToken, RefreshToken};
use smart_fhir_fuzz::{printable, response};
use smart_fhir_oauth::token::{parse_token_response, MAX_TOKEN_LIFETIME};
use smart_fhir_store::StoredToken;

const REQUESTED: &str = "system/Patient.rs system/Observation.rs";

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let response = response(data);
    let body = response.body().clone();
    match parse_token_response(response, now, REQUESTED) {
        Ok(parsed) => {
            let token = &parsed.token;
            let secret = token.access_token.secret();
            assert!(!secret.is_empty());
            let doc: Value = serde_json::from_slice(&body).expect("an accepted body is JSON");
            assert_eq!(
                doc.get("access_token").and_then(Value::as_str),
                Some(secret)
            );
            assert_eq!(token.issued_at, now);
            assert!(token.expires_at >= now && token.expires_at <= now + MAX_TOKEN_LIFETIME);
            if !parsed.expires_in_given {
                assert!(doc.get("expires_in").is_none_or(Value::is_null));
            }
            let stored = token.to_json_bytes().expect("an accepted token serializes");
            let again = StoredToken::from_json_bytes(&stored).expect("and reads back");
            assert_eq!(again.access_token.secret(), secret);
            assert_eq!(again.scope, token.scope);
            assert_eq!(again.expires_at, token.expires_at);
            // Exactly: serde_json's `float_roundtrip` keeps every number as sent.
            assert_eq!(again.launch_context, token.launch_context);
            // `Debug` does not depend on the value of any token.
            let mut blank = token.clone();
            blank.access_token = AccessToken::new("-");
            blank.refresh_token = token.refresh_token.as_ref().map(|_| RefreshToken::new("-"));
            blank.id_token = token.id_token.as_ref().map(|_| IdToken::new("-"));
            assert_eq!(
                format!("{token:?}"),
                format!("{blank:?}"),
                "a token shows in Debug"
            );
        }
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
});
