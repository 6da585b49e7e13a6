//! Cross-implementation checks against the `jsonwebtoken` crate (ring backend): assertions
//! signed here verify there, and tokens signed there verify here.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::Jwk as JwtJwk;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use smart_fhir_jwt::{
    merge_jwks, verify, Algorithm, AssertionSigner, Jwks, JwtError, KeySpec, PrivateKey,
};

const NOW: u64 = 1_750_000_000;
const CLIENT: &str = "backend-client-7";
const ENDPOINT: &str = "https://ehr.example/interconnect/oauth2/token";
const RSA_PKCS1: &str = include_str!("fixtures/rsa2048_pkcs1.pem");

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn rsa() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::from_pem(RSA_PKCS1)
            .unwrap()
            .with_kid("rsa-fixture")
            .unwrap()
    })
}

fn ec(spec: KeySpec) -> &'static PrivateKey {
    static P256: OnceLock<PrivateKey> = OnceLock::new();
    static P384: OnceLock<PrivateKey> = OnceLock::new();
    let cell = if spec == KeySpec::P256 { &P256 } else { &P384 };
    cell.get_or_init(|| PrivateKey::generate(spec).unwrap())
}

fn key_for(alg: Algorithm) -> &'static PrivateKey {
    match alg {
        Algorithm::ES256 => ec(KeySpec::P256),
        Algorithm::ES384 => ec(KeySpec::P384),
        _ => rsa(),
    }
}

fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
        Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        other => panic!("no mapping for {other}"),
    }
}

/// The decoding key built by jsonwebtoken from the public JWK this crate publishes.
fn decoding_key(key: &PrivateKey) -> DecodingKey {
    let jwk: JwtJwk = serde_json::from_value(key.public_jwk()).unwrap();
    DecodingKey::from_jwk(&jwk).unwrap()
}

/// An encoding key for jsonwebtoken, from this crate's PKCS#8 export (EC) or the PKCS#1
/// fixture (RSA).
fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(key_for(alg).to_pkcs8_pem().as_bytes()).unwrap()
        }
        _ => EncodingKey::from_rsa_pem(RSA_PKCS1.as_bytes()).unwrap(),
    }
}

const ALL: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// SC-2.7, SC-2.9, SC-2.10, P8: every assertion this crate signs verifies with an independent
/// implementation, using only the published public JWK, with the exact header and claims.
#[test]
fn sc_2_7_assertions_verify_with_jsonwebtoken() {
    for alg in ALL {
        let key = key_for(alg);
        let signer = AssertionSigner::new(key, alg).unwrap();
        let assertion = signer
            .sign(CLIENT, ENDPOINT, Duration::from_secs(300), now())
            .unwrap();
        let token = assertion.secret();

        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, jwt_alg(alg));
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.jku, None);

        let mut validation = Validation::new(jwt_alg(alg));
        validation.set_audience(&[ENDPOINT]);
        validation.set_issuer(&[CLIENT]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        // The assertion is dated in the past on purpose; its dates are checked below.
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<HashMap<String, Value>>(token, &decoding_key(key), &validation)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
        // The independent verifier does reject a damaged signature (the check has teeth).
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let damaged = format!("{signed}.{flipped}{}", &signature[1..]);
        assert!(
            jsonwebtoken::decode::<Value>(&damaged, &decoding_key(key), &validation).is_err(),
            "{alg}"
        );
        let claims = data.claims;
        assert_eq!(claims.len(), 6, "{alg}: {claims:?}");
        assert_eq!(claims["iss"], json!(CLIENT));
        assert_eq!(claims["sub"], json!(CLIENT));
        assert_eq!(claims["aud"], json!(ENDPOINT));
        assert_eq!(claims["iat"], json!(NOW));
        assert_eq!(claims["exp"], json!(NOW + 300));
        assert_eq!(claims["jti"], json!(assertion.jti()));
    }
}

/// The same with the components API of jsonwebtoken, for the two algorithms SMART mandates.
#[test]
fn sc_2_7_rs384_and_es384_verify_with_raw_components() {
    let rsa_jwk = rsa().public_jwk();
    let rsa_key = DecodingKey::from_rsa_components(
        rsa_jwk["n"].as_str().unwrap(),
        rsa_jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let ec_jwk = ec(KeySpec::P384).public_jwk();
    let ec_key = DecodingKey::from_ec_components(
        ec_jwk["x"].as_str().unwrap(),
        ec_jwk["y"].as_str().unwrap(),
    )
    .unwrap();
    for (alg, dk) in [(Algorithm::RS384, rsa_key), (Algorithm::ES384, ec_key)] {
        let token = AssertionSigner::new(key_for(alg), alg)
            .unwrap()
            .sign(CLIENT, ENDPOINT, Duration::from_secs(60), now())
            .unwrap();
        let mut validation = Validation::new(jwt_alg(alg));
        validation.set_audience(&[ENDPOINT]);
        validation.validate_exp = false;
        assert!(
            jsonwebtoken::decode::<Value>(token.secret(), &dk, &validation).is_ok(),
            "{alg}"
        );
    }
}

/// P9: tokens made by jsonwebtoken verify here (the other direction).
#[test]
fn p9_tokens_from_jsonwebtoken_verify_here() {
    let jwks = Jwks::from_value(
        &merge_jwks([
            rsa().public_jwks(),
            ec(KeySpec::P256).public_jwks(),
            ec(KeySpec::P384).public_jwks(),
        ])
        .unwrap(),
    )
    .unwrap();
    let claims = json!({
        "iss": "https://idp.example",
        "sub": "Practitioner/123",
        "aud": "my-app",
        "exp": NOW + 600,
        "iat": NOW,
        "nonce": "n-0S6_WzA2Mj",
    });
    for alg in ALL {
        let mut header = Header::new(jwt_alg(alg));
        header.kid = Some(key_for(alg).kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &encoding_key(alg)).unwrap();
        let v = verify(&token, &jwks, &[alg]).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.alg(), alg);
        assert_eq!(v.kid(), Some(key_for(alg).kid()));
        assert_eq!(v.typ(), Some("JWT"));
        assert_eq!(&Value::Object(v.claims().clone()), &claims);
        assert!(v.check_time(now(), Duration::ZERO).is_ok());
        assert!(v.has_audience("my-app"));
    }
}

/// P9: an HS256 token whose secret is the server's public key material is refused before any
/// key is used, whatever the caller allows.
#[test]
fn p9_hs256_made_with_the_public_key_is_refused() {
    let key = rsa();
    let jwks = Jwks::from_value(&key.public_jwks()).unwrap();
    let jwk = key.public_jwk();
    let secrets: [Vec<u8>; 3] = [
        jwk.to_string().into_bytes(),
        jwk["n"].as_str().unwrap().as_bytes().to_vec(),
        RSA_PKCS1.as_bytes().to_vec(),
    ];
    for secret in secrets {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &json!({"sub": "admin"}),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_eq!(
            verify(&token, &jwks, &ALL).unwrap_err(),
            JwtError::AlgorithmNotAllowed {
                alg: "HS256".into()
            }
        );
    }
}

/// P9: a jsonwebtoken token signed with another key under a trusted `kid` is refused.
#[test]
fn p9_foreign_key_under_a_trusted_kid_is_refused() {
    let trusted = ec(KeySpec::P384);
    let jwks = Jwks::from_value(&trusted.public_jwks()).unwrap();
    let attacker = PrivateKey::generate(KeySpec::P384).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(trusted.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "admin"}),
        &EncodingKey::from_ec_pem(attacker.to_pkcs8_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        verify(&token, &jwks, &[Algorithm::ES384]).unwrap_err(),
        JwtError::BadSignature
    );
}

/// SC-2.6: during a rotation the published set holds both keys, and assertions from either
/// verify against it.
#[test]
fn sc_2_6_rotation_overlap() {
    let old = ec(KeySpec::P384);
    let new = PrivateKey::generate(KeySpec::P384).unwrap();
    let published = merge_jwks([old.public_jwks(), new.public_jwks()]).unwrap();
    let jwks = Jwks::from_value(&published).unwrap();
    assert_eq!(jwks.len(), 2);
    for key in [old, &new] {
        let a = AssertionSigner::new(key, Algorithm::ES384)
            .unwrap()
            .sign(CLIENT, ENDPOINT, Duration::from_secs(60), now())
            .unwrap();
        assert_eq!(
            verify(a.secret(), &jwks, &[Algorithm::ES384])
                .unwrap()
                .kid(),
            Some(key.kid())
        );
    }
}
