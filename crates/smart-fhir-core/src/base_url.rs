use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// Whether plain `http://` may be used.
///
/// The only insecure choice is deliberately verbose: HTTP is allowed for loopback hosts only
/// (`127.0.0.0/8`, `::1`, `localhost`), for local development and tests (P7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum InsecureHttp {
    /// Only `https://` (the default).
    #[default]
    Deny,
    /// `http://` allowed when the host is loopback.
    AllowLoopback,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{what} is not a valid absolute URL: {reason}")]
    Invalid {
        /// Which URL (e.g. "FHIR base URL", "token_endpoint").
        what: String,
        /// The parser's reason.
        reason: String,
    },
    /// A scheme other than `https` (or `http` where allowed).
    #[error("{what} must use https, not {scheme}://")]
    Scheme {
        /// Which URL.
        what: String,
        /// The scheme found.
        scheme: String,
    },
    /// `http://` to a non-loopback host, or to a loopback host without the explicit opt-in.
    #[error("{what} uses plain http://{hint}")]
    InsecureHttp {
        /// Which URL.
        what: String,
        /// How to allow it, when that is possible.
        hint: &'static str,
    },
    /// Something the URL must not carry.
    #[error("{what} must not contain {part}")]
    Forbidden {
        /// Which URL.
        what: String,
        /// What it must not carry.
        part: &'static str,
    },
}

/// Whether `host` names this machine: `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Checks an absolute endpoint URL taken from configuration or a server document: `https`, or
/// `http` on loopback with the opt-in; no credentials; no fragment.
pub fn check_endpoint_url(url: &Url, what: &str, insecure: InsecureHttp) -> Result<(), UrlError> {
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = url.host().as_ref().is_some_and(is_loopback_host);
            match (loopback, insecure) {
                (true, InsecureHttp::AllowLoopback) => {}
                (true, InsecureHttp::Deny) => return Err(UrlError::InsecureHttp {
                    what: what.to_owned(),
                    hint:
                        " (allowed for a loopback host only with the explicit insecure-HTTP opt-in)",
                }),
                (false, _) => {
                    return Err(UrlError::InsecureHttp {
                        what: what.to_owned(),
                        hint: " to a host that is not loopback",
                    })
                }
            }
        }
        other => {
            return Err(UrlError::Scheme {
                what: what.to_owned(),
                scheme: other.to_owned(),
            })
        }
    }
    if url.host().is_none() {
        return Err(UrlError::Invalid {
            what: what.to_owned(),
            reason: "no host".to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Forbidden {
            what: what.to_owned(),
            part: "user credentials",
        });
    }
    if url.fragment().is_some() {
        return Err(UrlError::Forbidden {
            what: what.to_owned(),
            part: "a fragment",
        });
    }
    Ok(())
}

/// Checks `url`, an endpoint named by a server reached at `origin` (a document it sent, a
/// header, a link, a manifest) or configured for that server: as [`check_endpoint_url`] under
/// `insecure`, and, whatever `insecure` says, no plain `http` when `origin` is `https`. The
/// insecure-HTTP opt-in is for servers that are plain-HTTP themselves (local development), never
/// a way for an `https` server to downgrade the client, which would then send its client
/// assertion, a code or a token unencrypted (P7).
pub fn check_endpoint_url_from(
    url: &Url,
    what: &str,
    origin: &Url,
    insecure: InsecureHttp,
) -> Result<(), UrlError> {
    if origin.scheme() == "https" && url.scheme() == "http" {
        return Err(UrlError::InsecureHttp {
            what: what.to_owned(),
            hint: " while the server it came from uses https: a downgrade, refused even with \
                   the insecure-HTTP opt-in",
        });
    }
    check_endpoint_url(url, what, insecure)
}

/// A FHIR server's base URL, normalised (SC-1.1, SC-1.2, SC-8.1): scheme and host as the URL
/// parser normalises them, the path kept as given but without a trailing slash, no query, no
/// fragment, no credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FhirBaseUrl {
    url: Url,
    insecure: InsecureHttp,
}

impl FhirBaseUrl {
    /// Parses an `https://` base URL.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        Self::parse_with(input, InsecureHttp::Deny)
    }

    /// Parses a base URL, allowing plain HTTP to loopback hosts when `insecure` says so.
    pub fn parse_with(input: &str, insecure: InsecureHttp) -> Result<Self, UrlError> {
        const WHAT: &str = "FHIR base URL";
        let mut url = Url::parse(input.trim()).map_err(|e| UrlError::Invalid {
            what: WHAT.to_owned(),
            reason: e.to_string(),
        })?;
        check_endpoint_url(&url, WHAT, insecure)?;
        if url.query().is_some() {
            return Err(UrlError::Forbidden {
                what: WHAT.to_owned(),
                part: "a query string",
            });
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        Ok(Self { url, insecure })
    }

    /// The base without a trailing slash, e.g. `https://ehr.example/apis/fhir`.
    pub fn as_str(&self) -> &str {
        // `Url` renders an empty path as "/": strip it so that joining never yields "//".
        self.url.as_str().trim_end_matches('/')
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The insecure-HTTP policy this base was parsed with; endpoints found through it (discovery,
    /// paging links) are checked with the same policy.
    pub fn insecure_http(&self) -> InsecureHttp {
        self.insecure
    }

    /// `base + "/" + relative`, for a relative FHIR path such as `Patient/123` or `metadata`.
    /// A leading `/` on `relative` is ignored; the result is checked as an absolute URL.
    pub fn join(&self, relative: &str) -> Result<Url, UrlError> {
        let rel = relative.trim_start_matches('/');
        let joined = format!("{}/{}", self.as_str(), rel);
        Url::parse(&joined).map_err(|e| UrlError::Invalid {
            what: "FHIR request URL".to_owned(),
            reason: e.to_string(),
        })
    }

    /// `[base]/.well-known/smart-configuration` (SC-1.1).
    pub fn smart_configuration_url(&self) -> Url {
        self.join(".well-known/smart-configuration")
            .unwrap_or_else(|_| self.url.clone())
    }

    /// `[base]/metadata` (the CapabilityStatement, SC-8.20).
    pub fn metadata_url(&self) -> Url {
        self.join("metadata").unwrap_or_else(|_| self.url.clone())
    }

    /// Checks a URL this server sent (a `next` link, a Bulk status or file URL) with
    /// [`check_endpoint_url_from`] under this base's insecure-HTTP policy: never plain `http`
    /// when the base is `https`.
    pub fn check_server_url(&self, url: &Url, what: &str) -> Result<(), UrlError> {
        check_endpoint_url_from(url, what, &self.url, self.insecure)
    }

    /// Whether `other` has the same origin (scheme, host, port) as this base.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.url.origin() == other.origin()
    }

    /// Whether `other` lies under this base (same origin, path below the base path).
    pub fn contains(&self, other: &Url) -> bool {
        if !self.same_origin(other) {
            return false;
        }
        let base = self.url.path().trim_end_matches('/');
        let path = other.path();
        path == base || path.starts_with(&format!("{base}/")) || base.is_empty()
    }
}

impl fmt::Debug for FhirBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FhirBaseUrl").field(&self.as_str()).finish()
    }
}

impl fmt::Display for FhirBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FhirBaseUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sc_1_1_well_known_keeps_the_path() {
        let b = FhirBaseUrl::parse("https://ehr.example/apis/fhir").unwrap();
        assert_eq!(
            b.smart_configuration_url().as_str(),
            "https://ehr.example/apis/fhir/.well-known/smart-configuration"
        );
        assert_eq!(
            b.metadata_url().as_str(),
            "https://ehr.example/apis/fhir/metadata"
        );
    }

    #[test]
    fn sc_1_2_trailing_slashes_are_stripped_never_double() {
        for input in [
            "https://ehr.example/fhir/",
            "https://ehr.example/fhir//",
            " https://EHR.example/fhir ",
        ] {
            let b = FhirBaseUrl::parse(input).unwrap();
            assert_eq!(b.as_str(), "https://ehr.example/fhir", "{input}");
            assert!(!b.smart_configuration_url().as_str().contains("fhir//"));
        }
        let root = FhirBaseUrl::parse("https://ehr.example/").unwrap();
        assert_eq!(root.as_str(), "https://ehr.example");
        assert_eq!(
            root.smart_configuration_url().as_str(),
            "https://ehr.example/.well-known/smart-configuration"
        );
        assert_eq!(
            root.join("/Patient/1").unwrap().as_str(),
            "https://ehr.example/Patient/1"
        );
    }

    #[test]
    fn sc_8_1_path_case_is_kept() {
        let b = FhirBaseUrl::parse("https://ehr.example/R4/FHIR").unwrap();
        assert_eq!(b.as_str(), "https://ehr.example/R4/FHIR");
    }

    #[test]
    fn p7_plain_http_needs_loopback_and_opt_in() {
        assert!(matches!(
            FhirBaseUrl::parse("http://ehr.example/fhir"),
            Err(UrlError::InsecureHttp { .. })
        ));
        assert!(matches!(
            FhirBaseUrl::parse("http://localhost:8080/fhir"),
            Err(UrlError::InsecureHttp { .. })
        ));
        assert!(matches!(
            FhirBaseUrl::parse_with("http://ehr.example/fhir", InsecureHttp::AllowLoopback),
            Err(UrlError::InsecureHttp { .. })
        ));
        for ok in [
            "http://localhost:1/fhir",
            "http://127.0.0.2/fhir",
            "http://[::1]:9/fhir",
        ] {
            assert!(
                FhirBaseUrl::parse_with(ok, InsecureHttp::AllowLoopback).is_ok(),
                "{ok}"
            );
        }
        // A hostname that merely starts with "localhost" is not loopback.
        assert!(FhirBaseUrl::parse_with(
            "http://localhost.evil.example/",
            InsecureHttp::AllowLoopback
        )
        .is_err());
    }

    #[test]
    fn refuses_other_schemes_queries_fragments_credentials() {
        assert!(matches!(
            FhirBaseUrl::parse("ftp://x/"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            FhirBaseUrl::parse("not a url"),
            Err(UrlError::Invalid { .. })
        ));
        assert!(matches!(
            FhirBaseUrl::parse("https://x/fhir?a=b"),
            Err(UrlError::Forbidden { .. })
        ));
        assert!(matches!(
            FhirBaseUrl::parse("https://x/fhir#f"),
            Err(UrlError::Forbidden { .. })
        ));
        assert!(matches!(
            FhirBaseUrl::parse("https://u:p@x/fhir"),
            Err(UrlError::Forbidden { .. })
        ));
    }

    #[test]
    fn origin_and_containment() {
        let b = FhirBaseUrl::parse("https://ehr.example/fhir").unwrap();
        assert!(b.contains(&Url::parse("https://ehr.example/fhir/Patient?page=2").unwrap()));
        assert!(!b.contains(&Url::parse("https://ehr.example/fhirx/Patient").unwrap()));
        assert!(b.same_origin(&Url::parse("https://ehr.example/other").unwrap()));
        assert!(!b.same_origin(&Url::parse("https://ehr.example:444/fhir").unwrap()));
        assert!(!b.same_origin(&Url::parse("http://ehr.example/fhir").unwrap()));
    }
}
