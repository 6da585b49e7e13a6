//! `id_token` verification as the App Launch callback does it (SC-4.33–SC-4.36, P9): the
//! issuer's OpenID configuration and JWKS come from a fake HTTP client (fetched once per
//! process, then cached), the token is a fuzzed header and claims signed with the issuer's
//! ES256 key (input with a `\n--\n` separator) or a raw fuzzed token. Claims that pass name the
//! expected issuer, audience and nonce, and a time window around the fixed clock.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use smart_fhir_core::{FhirBaseUrl, FixedClock, IdToken, SharedClock, SharedHttpClient};
use smart_fhir_fuzz::{block_on, parts, printable, FakeHttp, Keys};
use smart_fhir_oauth::{IdTokenExpectations, IdTokenVerifier, DEFAULT_ID_TOKEN_LEEWAY};

const NOW: u64 = 1_750_000_000;
const ISSUER: &str = "https://auth.example";
const CLIENT_ID: &str = "app-1";
const NONCE: &str = "n-0S6_WzA2Mj";

fn verifier() -> &'static IdTokenVerifier {
    static VERIFIER: OnceLock<IdTokenVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let http = FakeHttp::new();
        let jwks = Keys::get().jwks_json.to_string();
        http.respond(move |req| {
            let body = match req.uri().to_string().as_str() {
                "https://auth.example/.well-known/openid-configuration" => serde_json::json!({
                    "issuer": ISSUER, "jwks_uri": "https://auth.example/jwks"
                })
                .to_string(),
                "https://auth.example/jwks" => jwks.clone(),
                _ => String::new(),
            };
            http::Response::builder()
                .status(if body.is_empty() { 404 } else { 200 })
                .header("content-type", "application/json")
                .body(Bytes::from(body))
                .expect("a response")
        });
        let clock = FixedClock::at_unix(NOW);
        IdTokenVerifier::new(SharedHttpClient::new(http), SharedClock::new(clock))
            // Never refetch on an unknown kid within a run: every input sees the same keys.
            .refetch_interval(Duration::from_secs(1 << 40))
    })
}

fuzz_target!(|data: &[u8]| {
    let pieces = parts(data, 2);
    let token = match pieces.as_slice() {
        [header, claims] => Keys::get().sign(header, claims),
        _ => match std::str::from_utf8(data) {
            Ok(raw) => raw.to_owned(),
            Err(_) => return,
        },
    };
    let base = FhirBaseUrl::parse("https://ehr.example/fhir").expect("a base");
    let expected = IdTokenExpectations::new(ISSUER, CLIENT_ID, Some(NONCE), &base);
    let result = block_on(verifier().verify(&IdToken::new(token), &expected));
    match result {
        Ok(claims) => {
            assert_eq!(claims.issuer, ISSUER);
            assert!(claims.audiences.iter().any(|a| a == CLIENT_ID));
            assert_eq!(
                claims.claims.get("nonce").and_then(|n| n.as_str()),
                Some(NONCE)
            );
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
            assert!(claims.expires_at + DEFAULT_ID_TOKEN_LEEWAY > now, "expired");
            assert!(
                claims.issued_at <= now + DEFAULT_ID_TOKEN_LEEWAY,
                "issued in the future"
            );
            if let Some(user) = &claims.fhir_user {
                assert!(user.scheme() == "https", "{user}");
            }
        }
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
});
