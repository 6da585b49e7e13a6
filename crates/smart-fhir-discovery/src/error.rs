use std::fmt;

use smart_fhir_core::{HttpError, UrlError};

use crate::fit_error::FitError;
use crate::issue::ValidationIssue;

/// Everything that can go wrong while discovering, parsing or checking a server's SMART
/// configuration.
///
/// URLs in messages carry no query string and no fragment. Excerpts of response bodies are
/// bounded (200 characters) and stripped of control characters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The request could not be built (for instance a URL the HTTP stack cannot carry).
    #[error("cannot build a request for {url}: {reason}")]
    InvalidRequest {
        /// The URL, without query.
        url: String,
        /// Why.
        reason: String,
    },
    /// The transport failed; the [`HttpError`] is the source.
    #[error("request to {url} failed")]
    Http {
        /// The URL, without query.
        url: String,
        /// The transport error.
        #[source]
        source: HttpError,
    },
    /// The server answered with a redirect. Discovery requests never follow redirects: the
    /// configuration must be served at the base URL the caller trusts.
    #[error("{url} answered HTTP {status} (a redirect{}); discovery does not follow redirects", location_text(.location))]
    Redirect {
        /// The URL asked, without query.
        url: String,
        /// The 3xx status.
        status: u16,
        /// The `Location` header, without query, when present and printable.
        location: Option<String>,
    },
    /// The server answered with a status other than 2xx (and no fallback applied).
    #[error("{url} answered HTTP {status}: {excerpt}")]
    Status {
        /// The URL asked, without query.
        url: String,
        /// The status code.
        status: u16,
        /// A short printable excerpt of the body (may be empty).
        excerpt: String,
    },
    /// The body is not JSON at all: empty, an HTML page (a login page, a proxy error, a web
    /// app's catch-all route) or XML.
    #[error("the response from {url} is not JSON ({kind}): {excerpt}")]
    NotJson {
        /// The URL asked, without query.
        url: String,
        /// What the body looks like.
        kind: BodyKind,
        /// A short printable excerpt of the body.
        excerpt: String,
    },
    /// The body looked like JSON but does not parse (truncated, malformed).
    #[error("the response from {url} is not valid JSON: {detail}")]
    InvalidJson {
        /// The URL asked, without query.
        url: String,
        /// The parser's message with line and column.
        detail: String,
    },
    /// A field has the wrong JSON type.
    #[error("`{field}` in the document from {url} must be {expected}")]
    WrongType {
        /// The document's URL, without query.
        url: String,
        /// The JSON path of the field, e.g. `capabilities[2]`.
        field: String,
        /// What was expected, e.g. "a string".
        expected: &'static str,
    },
    /// A field the operation needs is absent (or `null`, or empty).
    #[error("`{field}` is missing from the document from {url}")]
    MissingField {
        /// The document's URL, without query.
        url: String,
        /// The field.
        field: String,
    },
    /// An endpoint URL is unusable: not a URL, a scheme other than `https` (for instance
    /// `javascript:`), plain `http` to a remote host, credentials or a fragment (P15).
    #[error("`{field}` is not an acceptable endpoint URL")]
    InvalidEndpoint {
        /// The field (or JSON path) that carried the URL.
        field: String,
        /// Why the URL was refused.
        #[source]
        reason: UrlError,
    },
    /// The `/metadata` fallback returned some other resource than a `CapabilityStatement` or
    /// `Conformance`.
    #[error("the document from {url} is not a CapabilityStatement or Conformance (resourceType {found:?})")]
    NotCapabilityStatement {
        /// The URL asked, without query.
        url: String,
        /// The `resourceType` found (bounded), or empty when absent.
        found: String,
    },
    /// The CapabilityStatement has no `oauth-uris` security extension: the server does not
    /// declare SMART endpoints there (SC-1.16).
    #[error("the CapabilityStatement from {url} declares no SMART oauth-uris extension")]
    NoOAuthUris {
        /// The URL asked, without query.
        url: String,
    },
    /// `.well-known/smart-configuration` is not served and the `/metadata` fallback did not
    /// yield endpoints either; the fallback's error is the source.
    #[error(
        "no SMART configuration at {url} ({reason}), and the CapabilityStatement fallback failed"
    )]
    NoConfiguration {
        /// The `.well-known` URL, without query.
        url: String,
        /// What the `.well-known` request returned, e.g. "HTTP 404".
        reason: String,
        /// Why the fallback failed.
        #[source]
        fallback: Box<DiscoveryError>,
    },
    /// [`Validation::into_result`](crate::Validation::into_result) found errors.
    #[error("the SMART configuration is invalid: {}", issues_text(.issues))]
    Invalid {
        /// The errors found (warnings are not included).
        issues: Vec<ValidationIssue>,
    },
    /// The server does not fit what the client will do (SC-1.13).
    #[error(transparent)]
    Fit(#[from] FitError),
}

/// What a non-JSON body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyKind {
    /// No body at all (or only whitespace).
    Empty,
    /// An HTML page.
    Html,
    /// An XML document (a FHIR server that ignored `Accept`).
    Xml,
}

impl fmt::Display for BodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty body",
            Self::Html => "looks like HTML",
            Self::Xml => "looks like XML",
        })
    }
}

fn location_text(location: &Option<String>) -> String {
    match location {
        Some(l) => format!(" to {l}"),
        None => String::new(),
    }
}

fn issues_text(issues: &[ValidationIssue]) -> String {
    let mut text = issues
        .iter()
        .take(3)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if issues.len() > 3 {
        text.push_str(&format!("; and {} more", issues.len() - 3));
    }
    text
}
