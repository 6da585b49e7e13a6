//! The claim checks, one case at a time (SC-4.33, SC-4.35, SC-4.36). The whole verification,
//! keys included, is tested through a fake provider in `tests/id_token.rs`; the key fetching
//! and its cache in `smart-fhir-discovery`.

use std::time::SystemTime;

use serde_json::{json, Map, Value};
use smart_fhir_core::{FhirBaseUrl, InsecureHttp};
use url::Url;

use super::claims::{check_claims, from_unix, resolve_fhir_user};
use super::*;

const NOW: u64 = 1_750_000_000;
const ISS: &str = "https://auth.example/oauth2";
const CLIENT: &str = "app-1";

fn base() -> FhirBaseUrl {
    FhirBaseUrl::parse("https://ehr.example/fhir/r4").unwrap()
}

fn now() -> SystemTime {
    from_unix(NOW)
}

fn good_claims() -> Map<String, Value> {
    match json!({
        "iss": ISS, "sub": "user-9", "aud": CLIENT, "exp": NOW + 300, "iat": NOW - 10,
        "nonce": "n-0S6_WzA2Mj", "fhirUser": "Practitioner/abc-1"
    }) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn check(claims: Map<String, Value>, nonce: Option<&str>) -> Result<IdTokenClaims, IdTokenError> {
    let base = base();
    let expected = IdTokenExpectations::new(ISS, CLIENT, nonce, &base);
    check_claims(claims, &expected, now(), DEFAULT_ID_TOKEN_LEEWAY)
}

fn with(changes: Value) -> Map<String, Value> {
    let mut claims = good_claims();
    if let Value::Object(changes) = changes {
        for (k, v) in changes {
            if v.is_null() {
                claims.remove(&k);
            } else {
                claims.insert(k, v);
            }
        }
    }
    claims
}

/// SC-4.33, SC-4.35: a good set of claims yields the typed claims with fhirUser resolved.
#[test]
fn sc_4_33_good_claims() {
    let c = check(good_claims(), Some("n-0S6_WzA2Mj")).unwrap();
    assert_eq!(c.issuer, ISS);
    assert_eq!(c.subject, "user-9");
    assert_eq!(c.audiences, vec![CLIENT.to_owned()]);
    assert_eq!(c.expires_at, from_unix(NOW + 300));
    assert_eq!(c.issued_at, from_unix(NOW - 10));
    assert_eq!(
        c.fhir_user.as_ref().map(Url::as_str),
        Some("https://ehr.example/fhir/r4/Practitioner/abc-1")
    );
    assert_eq!(c.fhir_user_resource_type(), Some("Practitioner"));
    assert_eq!(c.fhir_user_id(), Some("abc-1"));
    assert_eq!(c.claims["nonce"], json!("n-0S6_WzA2Mj"));
}

/// SC-4.33: exp and iat are checked with the leeway, on both sides of the boundary.
#[test]
fn sc_4_33_time_boundaries() {
    let leeway = DEFAULT_ID_TOKEN_LEEWAY.as_secs();
    assert!(check(with(json!({"exp": NOW - leeway + 1})), None).is_ok());
    assert!(matches!(
        check(with(json!({"exp": NOW - leeway})), None),
        Err(IdTokenError::Expired { expired_at }) if expired_at == from_unix(NOW - leeway)
    ));
    assert!(check(with(json!({"iat": NOW + leeway})), None).is_ok());
    assert!(matches!(
        check(with(json!({"iat": NOW + leeway + 1})), None),
        Err(IdTokenError::IssuedInFuture)
    ));
    assert!(matches!(
        check(with(json!({"nbf": NOW + leeway + 1})), None),
        Err(IdTokenError::NotYetValid)
    ));
    assert!(check(with(json!({"exp": (NOW + 100) as f64 + 0.5})), None).is_ok());
    for (change, what) in [
        (json!({"exp": null}), "no exp"),
        (json!({"iat": null}), "no iat"),
        (json!({"exp": "tomorrow"}), "exp claim is not a number"),
        (json!({"iat": -5}), "iat claim is out of range"),
    ] {
        let e = check(with(change), None).unwrap_err();
        assert!(
            matches!(&e, IdTokenError::Malformed { reason } if reason.contains(what)),
            "{e}"
        );
    }
}

/// SC-4.33: aud as a string or array; several audiences need azp = client id; an azp that
/// is present must be the client id even with one audience.
#[test]
fn sc_4_33_audience_and_azp() {
    assert!(check(with(json!({"aud": [CLIENT]})), None).is_ok());
    assert!(check(with(json!({"aud": [CLIENT, CLIENT]})), None).is_ok());
    assert!(check(with(json!({"aud": ["other", CLIENT], "azp": CLIENT})), None).is_ok());
    assert!(matches!(
        check(with(json!({"aud": ["other", CLIENT]})), None),
        Err(IdTokenError::Azp { got: None })
    ));
    assert!(matches!(
        check(with(json!({"aud": ["other", CLIENT], "azp": "other"})), None),
        Err(IdTokenError::Azp { got: Some(g) }) if g == "other"
    ));
    assert!(matches!(
        check(with(json!({"azp": "other"})), None),
        Err(IdTokenError::Azp { .. })
    ));
    for aud in [json!("other"), json!(["a", "b"]), json!(null), json!([])] {
        assert!(
            matches!(
                check(with(json!({ "aud": aud })), None),
                Err(IdTokenError::Audience { .. })
            ),
            "{aud}"
        );
    }
    assert!(matches!(
        check(with(json!({"aud": [CLIENT, 7]})), None),
        Err(IdTokenError::Malformed { .. })
    ));
    // The client id compares exactly.
    assert!(matches!(
        check(with(json!({"aud": "APP-1"})), None),
        Err(IdTokenError::Audience { .. })
    ));
}

/// SC-4.33: iss compares exactly (no trailing-slash or case folding).
#[test]
fn sc_4_33_issuer_exact() {
    for iss in [
        json!(format!("{ISS}/")),
        json!("https://AUTH.example/oauth2"),
        json!(7),
    ] {
        assert!(
            matches!(
                check(with(json!({ "iss": iss })), None),
                Err(IdTokenError::Issuer { .. })
            ),
            "{iss}"
        );
    }
    let e = check(with(json!({"iss": "https://evil.example"})), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("the id_token's issuer is `https://evil.example`, expected {ISS}")
    );
    let e = check(with(json!({"iss": null})), None).unwrap_err();
    assert!(e.to_string().contains("is missing"), "{e}");
}

/// SC-4.33: the nonce, when one was sent, must be present and equal; it never appears in an
/// error message.
#[test]
fn sc_4_33_nonce() {
    assert!(matches!(
        check(with(json!({"nonce": null})), Some("n-0S6_WzA2Mj")),
        Err(IdTokenError::Nonce { missing: true })
    ));
    let e = check(good_claims(), Some("n-0S6_WzA2Mk")).unwrap_err();
    assert!(matches!(e, IdTokenError::Nonce { missing: false }));
    assert!(!e.to_string().contains("n-0S6"));
    assert!(matches!(
        check(with(json!({"nonce": 5})), Some("5")),
        Err(IdTokenError::Nonce { missing: false })
    ));
    // No nonce sent: a nonce in the token is not checked.
    assert!(check(good_claims(), None).is_ok());
}

#[test]
fn sub_is_required() {
    for sub in [json!(null), json!(""), json!(12)] {
        assert!(
            matches!(
                check(with(json!({ "sub": sub })), None),
                Err(IdTokenError::Malformed { .. })
            ),
            "{sub}"
        );
    }
}

/// SC-4.35: absolute and relative fhirUser, with and without _history; other types and
/// unusable values refused.
#[test]
fn sc_4_35_fhir_user_resolution() {
    let b = base();
    for (value, resolved) in [
        ("Patient/123", "https://ehr.example/fhir/r4/Patient/123"),
        (
            "RelatedPerson/r.1/_history/2",
            "https://ehr.example/fhir/r4/RelatedPerson/r.1/_history/2",
        ),
        (
            "https://other.example/fhir/PractitionerRole/x",
            "https://other.example/fhir/PractitionerRole/x",
        ),
        (
            "https://ehr.example/fhir/r4/Person/p-1/_history/7",
            "https://ehr.example/fhir/r4/Person/p-1/_history/7",
        ),
    ] {
        assert_eq!(
            resolve_fhir_user(value, &b).map(String::from),
            Ok(resolved.to_owned()),
            "{value}"
        );
    }
    for bad in [
        "",
        "Observation/1",
        "Patient",
        "Patient/",
        "/Patient/1",
        "../Patient/1",
        "fhir/r4/Patient/1",
        "Patient/1?x=y",
        "Patient/a b",
        "Patient/1/_history",
        "Device/1/_history/2",
        "urn:uuid:4b4f1d6a-1f6b-4b7c-9d4f-0c1d2e3f4a5b",
        "http://ehr.example/fhir/Patient/1",
        "https://ehr.example/fhir/Organization/1",
        "https://ehr.example/fhir/Patient/1?_format=json",
        "javascript:alert(1)",
    ] {
        assert!(resolve_fhir_user(bad, &b).is_err(), "{bad:?}");
    }
    let loopback =
        FhirBaseUrl::parse_with("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback).unwrap();
    assert!(resolve_fhir_user("http://127.0.0.1:8080/fhir/Patient/1", &loopback).is_ok());
}

/// SC-4.35: an unusable fhirUser refuses the token (the value is not shown).
#[test]
fn sc_4_35_bad_fhir_user_refuses_the_token() {
    for value in [
        json!("Organization/1"),
        json!(42),
        json!("Patient/sensitive id"),
    ] {
        let e = check(with(json!({ "fhirUser": value })), None).unwrap_err();
        assert!(matches!(e, IdTokenError::FhirUser { .. }), "{value}");
        assert!(!e.to_string().contains("sensitive"), "{e}");
    }
    let c = check(with(json!({"fhirUser": null})), None).unwrap();
    assert!(c.fhir_user.is_none());
}

/// SC-4.36: `profile` stands in for a missing fhirUser; a profile that is an ordinary web
/// page (its OpenID Connect meaning) is ignored; fhirUser wins when both are present.
#[test]
fn sc_4_36_profile_alias() {
    let c = check(
        with(json!({"fhirUser": null, "profile": "Patient/7"})),
        None,
    )
    .unwrap();
    assert_eq!(c.fhir_user_resource_type(), Some("Patient"));
    assert_eq!(c.fhir_user_id(), Some("7"));
    let c = check(
        with(json!({"fhirUser": null, "profile": "https://social.example/users/jo"})),
        None,
    )
    .unwrap();
    assert!(c.fhir_user.is_none());
    let c = check(with(json!({"profile": "Patient/7"})), None).unwrap();
    assert_eq!(c.fhir_user_resource_type(), Some("Practitioner"));
}

/// P5: the expectations' Debug output hides the nonce.
#[test]
fn p5_expectations_debug_hides_nonce() {
    let b = base();
    let e = IdTokenExpectations::new(ISS, CLIENT, Some("secret-nonce"), &b);
    let shown = format!("{e:?}");
    assert!(!shown.contains("secret-nonce") && shown.contains("[redacted]"));
}
