//! The one check of the endpoint URLs a server's document names.

use smart_fhir_core::{check_endpoint_url_from, InsecureHttp, UrlError};
use url::Url;

/// Checks `url`, an endpoint named by a document fetched from `origin` (a FHIR base's SMART
/// configuration or CapabilityStatement, an issuer's OpenID configuration), or configured for a
/// server reached at `origin`.
///
/// As [`smart_fhir_core::check_endpoint_url`] under `insecure`, and, whatever `insecure` says, no plain `http`
/// when `origin` is `https`: the insecure-HTTP opt-in is for servers that are plain-HTTP
/// themselves (local development), never a way for an `https` server's document to downgrade
/// the client, which would then send its client assertion, a code or a token unencrypted.
///
/// ```
/// use smart_fhir_core::InsecureHttp;
/// use smart_fhir_discovery::check_document_endpoint;
/// use url::Url;
///
/// let https = Url::parse("https://ehr.example/fhir")?;
/// let local = Url::parse("http://127.0.0.1:8080/fhir")?;
/// let token = Url::parse("http://127.0.0.1:9000/token")?;
/// let allow = InsecureHttp::AllowLoopback;
/// assert!(check_document_endpoint(&token, "token_endpoint", &https, allow).is_err());
/// assert!(check_document_endpoint(&token, "token_endpoint", &local, allow).is_ok());
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn check_document_endpoint(
    url: &Url,
    what: &str,
    origin: &Url,
    insecure: InsecureHttp,
) -> Result<(), UrlError> {
    check_endpoint_url_from(url, what, origin, insecure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// P7 (issue 11 §1, TLS seen from outside): an https origin's endpoints must be https
    /// whatever the insecure-HTTP opt-in says; a plain-HTTP loopback origin may name plain-HTTP
    /// loopback endpoints with the opt-in only; the other checks still apply.
    #[test]
    fn p7_https_origin_endpoints_must_be_https() {
        let https = url("https://ehr.example/fhir");
        let local = url("http://localhost:8080/fhir");
        let loopback = url("http://127.0.0.1:9000/token");
        for insecure in [InsecureHttp::Deny, InsecureHttp::AllowLoopback] {
            let e =
                check_document_endpoint(&loopback, "token_endpoint", &https, insecure).unwrap_err();
            assert!(e.to_string().contains("downgrade"), "{e}");
            assert!(
                check_document_endpoint(&url("https://as.example/t"), "t", &https, insecure)
                    .is_ok()
            );
        }
        assert!(
            check_document_endpoint(&loopback, "t", &local, InsecureHttp::AllowLoopback).is_ok()
        );
        assert!(check_document_endpoint(&loopback, "t", &local, InsecureHttp::Deny).is_err());
        assert!(check_document_endpoint(
            &url("https://u:p@as.example/t"),
            "t",
            &https,
            InsecureHttp::Deny
        )
        .is_err());
        assert!(check_document_endpoint(
            &url("javascript:alert(1)"),
            "t",
            &https,
            InsecureHttp::AllowLoopback
        )
        .is_err());
    }

    /// P7: with the insecure-HTTP opt-in, an https base's SMART configuration that names a
    /// plain-HTTP loopback token endpoint (or any other endpoint) is refused; a plain-HTTP
    /// loopback base's is accepted.
    #[test]
    fn p7_https_configuration_cannot_name_plain_http_endpoints() {
        use smart_fhir_core::FhirBaseUrl;

        use crate::{DiscoveryError, SmartConfiguration};

        let https =
            FhirBaseUrl::parse_with("https://ehr.example/fhir", InsecureHttp::AllowLoopback)
                .unwrap();
        for field in [
            "token_endpoint",
            "authorization_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "jwks_uri",
        ] {
            let mut doc = serde_json::json!({"token_endpoint": "https://as.example/token"});
            doc[field] = "http://127.0.0.1:9000/x".into();
            let e = SmartConfiguration::from_json(&https, doc.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(&e, DiscoveryError::InvalidEndpoint { field: f, .. } if f == field),
                "{field}: {e:?}"
            );
        }
        // A relative endpoint resolves against the base and stays https.
        let doc = br#"{"token_endpoint": "auth/token"}"#;
        assert!(SmartConfiguration::from_json(&https, doc).is_ok());
        let local =
            FhirBaseUrl::parse_with("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback)
                .unwrap();
        let doc = br#"{"token_endpoint": "http://127.0.0.1:9000/token"}"#;
        assert!(SmartConfiguration::from_json(&local, doc).is_ok());
    }
}
