//! Compact JWS verification against a server's key set (P9), as `id_token` verification uses
//! it. Input with a `\n--\n` separator is a header and claims that the target signs with the
//! fixed ES256 key, so that the input reaches past the signature; other input is a raw token.
//! A verified token reports the header's `alg` and `kid` and the payload's claims; a signed one
//! whose header is plainly acceptable verifies.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use smart_fhir_fuzz::{parts, printable, Keys};
use smart_fhir_jwt::{verify, Algorithm};

const ALLOWED: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

fn object(bytes: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = Keys::get();
    let pieces = parts(data, 2);
    let (token, signed) = match pieces.as_slice() {
        [header, claims] => (keys.sign(header, claims), Some((*header, *claims))),
        _ => match std::str::from_utf8(data) {
            Ok(raw) => (raw.to_owned(), None),
            Err(_) => return,
        },
    };
    let result = verify(&token, &keys.jwks, &ALLOWED);
    match &result {
        Ok(verified) => {
            let mut segments = token.split('.');
            let header = segments
                .next()
                .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
                .and_then(|h| object(&h))
                .expect("a verified token has a JSON object header");
            let claims = segments
                .next()
                .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
                .and_then(|c| object(&c))
                .expect("a verified token has a JSON object payload");
            assert_eq!(
                header.get("alg").and_then(Value::as_str),
                Some(verified.alg().as_str())
            );
            assert_eq!(header.get("kid").and_then(Value::as_str), verified.kid());
            assert!(!header.contains_key("crit"));
            assert_eq!(&claims, verified.claims());
            if signed.is_some() {
                assert_eq!(verified.alg(), Algorithm::ES256, "only the EC key signed");
            }
        }
        Err(e) => assert!(printable(&e.to_string()), "{e}"),
    }
    if let Some((header, claims)) = signed {
        let plain = object(header).is_some_and(|h| {
            h.get("alg") == Some(&Value::from("ES256"))
                && h.get("kid").is_none_or(|k| k == "fuzz-ec")
                && h.get("typ").is_none_or(Value::is_string)
                && !h.contains_key("crit")
        });
        if plain && object(claims).is_some() {
            assert!(
                result.is_ok(),
                "a plainly acceptable token was refused: {result:?}"
            );
        }
    }
});
