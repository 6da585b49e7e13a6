//! The key-set checks applied to an OpenID provider's JWKS, each on its own, so that a broken
//! rule is noticed (P9, SC-2.8), and the token size bound.

use serde_json::json;
use smart_fhir_jwt::{
    verify, Algorithm, Jwks, JwtError, KeySpec, KeyType, PrivateKey, MAX_TOKEN_BYTES,
};

/// P9: a key whose `key_ops` allow `verify` is kept, whatever else they list; one whose
/// `key_ops` do not is skipped.
#[test]
fn key_ops_with_verify_keep_the_key_p9() {
    let key = PrivateKey::generate(KeySpec::P256)
        .unwrap()
        .with_kid("ops")
        .unwrap();
    for ops in [json!(["verify"]), json!(["sign", "verify"])] {
        let mut jwk = key.public_jwk();
        jwk["key_ops"] = ops.clone();
        let jwks = Jwks::from_value(&json!({ "keys": [jwk] })).unwrap();
        assert_eq!((jwks.len(), jwks.skipped()), (1, 0), "{ops}");
        assert!(jwks.find("ops").is_some(), "{ops}");
    }
    for ops in [json!(["sign"]), json!([]), json!("verify")] {
        let mut jwk = key.public_jwk();
        jwk["key_ops"] = ops.clone();
        let jwks = Jwks::from_value(&json!({ "keys": [jwk] })).unwrap();
        assert_eq!((jwks.len(), jwks.skipped()), (0, 1), "{ops}");
    }
}

/// SC-2.8: RSA keys of 2048 bits and more are kept; the floor refuses only smaller ones.
#[test]
fn rsa_keys_above_the_floor_are_kept_sc_2_8() {
    let key = PrivateKey::generate(KeySpec::Rsa3072)
        .unwrap()
        .with_kid("rsa3072")
        .unwrap();
    let jwks = Jwks::from_value(&key.public_jwks()).unwrap();
    assert_eq!((jwks.len(), jwks.skipped()), (1, 0));
    assert_eq!(
        jwks.find("rsa3072").unwrap().key_type(),
        KeyType::Rsa { bits: 3072 }
    );
}

/// P9: the size bound refuses only what is above it; a token of exactly the bound is read (and
/// here refused for what it is, not for its size).
#[test]
fn token_of_exactly_the_size_bound_is_read_p9() {
    let key = PrivateKey::generate(KeySpec::P256).unwrap();
    let jwks = Jwks::from_value(&key.public_jwks()).unwrap();
    let at_bound = "a".repeat(MAX_TOKEN_BYTES);
    let err = verify(&at_bound, &jwks, &[Algorithm::ES256]).unwrap_err();
    assert!(matches!(err, JwtError::MalformedToken { .. }), "{err:?}");
    let above = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        verify(&above, &jwks, &[Algorithm::ES256]).unwrap_err(),
        JwtError::TokenTooLarge {
            len: MAX_TOKEN_BYTES + 1,
            max: MAX_TOKEN_BYTES
        }
    );
}
