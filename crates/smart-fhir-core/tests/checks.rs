//! The endpoint-URL check and the safe-text functions, each rule on its own, so that a broken
//! half of a condition is noticed (P5, P7, SC-1.2).

use smart_fhir_core::text::{display_url, excerpt, EXCERPT_CHARS};
use smart_fhir_core::{check_endpoint_url, FhirBaseUrl, InsecureHttp, Url, UrlError};

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// P5: a user name alone, a password alone, or both, are each refused in an endpoint URL and in
/// a FHIR base URL.
#[test]
fn credentials_refused_each_on_its_own_p5() {
    for input in [
        "https://user@ehr.example/token",
        "https://:secret@ehr.example/token",
        "https://user:secret@ehr.example/token",
    ] {
        let err =
            check_endpoint_url(&url(input), "token_endpoint", InsecureHttp::Deny).unwrap_err();
        assert_eq!(
            err,
            UrlError::Forbidden {
                what: "token_endpoint".to_owned(),
                part: "user credentials"
            },
            "{input}"
        );
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = FhirBaseUrl::parse(&input.replace("/token", "/fhir")).unwrap_err();
        assert!(
            matches!(
                err,
                UrlError::Forbidden {
                    part: "user credentials",
                    ..
                }
            ),
            "{input}: {err:?}"
        );
    }
    assert_eq!(
        check_endpoint_url(
            &url("https://ehr.example/token"),
            "token_endpoint",
            InsecureHttp::Deny
        ),
        Ok(())
    );
}

/// P7: the base keeps the insecure-HTTP policy it was parsed with, so that endpoints found
/// through it are checked with the same policy, and no laxer one.
#[test]
fn base_keeps_its_insecure_http_policy_p7() {
    let strict = FhirBaseUrl::parse("https://ehr.example/fhir").unwrap();
    assert_eq!(strict.insecure_http(), InsecureHttp::Deny);
    let dev =
        FhirBaseUrl::parse_with("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback).unwrap();
    assert_eq!(dev.insecure_http(), InsecureHttp::AllowLoopback);
    let https_dev =
        FhirBaseUrl::parse_with("https://ehr.example/fhir", InsecureHttp::AllowLoopback).unwrap();
    assert_eq!(https_dev.insecure_http(), InsecureHttp::AllowLoopback);
}

/// P5: a body whose text starts after a long run of white space still shows its text: the
/// excerpt reads up to eight bytes a character, not just the first few hundred bytes.
#[test]
fn excerpt_reads_past_leading_white_space_p5() {
    let body = format!("{}error: bad request", " ".repeat(EXCERPT_CHARS + 100));
    assert_eq!(excerpt(body.as_bytes()), "error: bad request");
    let body = format!("{}tail", "\n".repeat(EXCERPT_CHARS * 8 - 4));
    assert_eq!(excerpt(body.as_bytes()), "tail");
    // One byte more and the text falls outside what is read: the cut is marked.
    let body = format!("{}tail", "\n".repeat(EXCERPT_CHARS * 8));
    assert_eq!(excerpt(body.as_bytes()), "…");
}

/// P5: a URL shown in an error keeps scheme, host, port and path, and nothing else.
#[test]
fn display_url_keeps_the_location_p5() {
    assert_eq!(
        display_url(&url("https://ehr.example/fhir/Patient?name=Jane#x")),
        "https://ehr.example/fhir/Patient"
    );
}
