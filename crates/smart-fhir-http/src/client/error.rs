//! FHIR errors: a typed `OperationOutcome` when the server sends one, a bounded excerpt when not
//! (SC-8.24, SC-8.25).

use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use smart_fhir_core::text::{excerpt, printable};
use smart_fhir_core::ProviderError;
use smart_fhir_core::{HttpError, UrlError};

/// A FHIR `OperationOutcome` (SC-8.24): the parts a client acts on, unknown members ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OperationOutcome {
    /// The issues, most severe usually first.
    #[serde(default)]
    pub issue: Vec<OutcomeIssue>,
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutcomeIssue {
    /// `fatal | error | warning | information`.
    #[serde(default)]
    pub severity: String,
    /// The issue type code, e.g. `not-found`, `transient`, `conflict`.
    #[serde(default)]
    pub code: String,
    /// `details.text`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<CodeableText>,
    /// Free-text diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    /// FHIRPath expressions of the elements concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

/// The text of a `CodeableConcept` (`details`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CodeableText {
    /// `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl OperationOutcome {
    /// Parses a body that is an `OperationOutcome`; `None` for anything else.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "resourceType")]
            resource_type: Option<String>,
            #[serde(default)]
            issue: Vec<OutcomeIssue>,
        }
        let probe: Probe = serde_json::from_slice(body).ok()?;
        (probe.resource_type.as_deref() == Some("OperationOutcome"))
            .then_some(Self { issue: probe.issue })
    }

    /// A one-line summary: the first issue's diagnostics or details text, bounded and printable.
    pub fn summary(&self) -> String {
        let issue = self
            .issue
            .iter()
            .find(|i| i.severity == "fatal" || i.severity == "error")
            .or_else(|| self.issue.first());
        let Some(issue) = issue else {
            return String::new();
        };
        let text = issue
            .diagnostics
            .as_deref()
            .or_else(|| issue.details.as_ref().and_then(|d| d.text.as_deref()))
            .unwrap_or("");
        let text = printable(text, 300);
        // The code is server text too: a control character in it must not reach a terminal.
        let code = printable(&issue.code, 64);
        if text.is_empty() {
            code
        } else {
            format!("{text} ({code})")
        }
    }

    /// Whether any issue has the code `transient` (SC-7.14: worth retrying).
    pub fn is_transient(&self) -> bool {
        self.issue
            .iter()
            .any(|i| matches!(i.code.as_str(), "transient" | "throttled" | "timeout"))
    }
}

/// What a FHIR request was: the method and the URL path, never the query (a search query can
/// carry patient data).
#[derive(Clone, PartialEq, Eq)]
pub struct RequestLine {
    method: http::Method,
    path: String,
}

impl RequestLine {
    /// From a method and a request URI.
    pub fn new(method: &http::Method, uri: &http::Uri) -> Self {
        Self {
            method: method.clone(),
            path: uri.path().to_owned(),
        }
    }

    /// The method.
    pub fn method(&self) -> &http::Method {
        &self.method
    }

    /// The URL path (no query).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl fmt::Debug for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Errors of the FHIR client. `Display` never carries a query string or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// A URL was refused (bad base, a relative path that does not form a URL, plain HTTP).
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The caller's request is invalid (e.g. a resource type that is not a FHIR type name).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client's configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// No access token could be had.
    #[error("{request}: no access token")]
    Auth {
        /// The request.
        request: RequestLine,
        /// Why.
        #[source]
        source: ProviderError,
    },
    /// The request could not be sent or its response not read.
    #[error("{request}: {source}")]
    Http {
        /// The request.
        request: RequestLine,
        /// The transport error (boxed: it is large, and errors travel in every `Result`).
        #[source]
        source: Box<HttpError>,
    },
    /// The server answered with an error status (SC-8.25).
    #[error("{request}: HTTP {status}{}", detail(.outcome, .excerpt))]
    Status {
        /// The request.
        request: RequestLine,
        /// The status.
        status: StatusCode,
        /// The body, when it is an `OperationOutcome` (SC-8.24).
        outcome: Option<OperationOutcome>,
        /// A bounded printable excerpt of the body, when it is not.
        excerpt: Option<String>,
    },
    /// A 2xx body that is not what was expected.
    #[error("{request}: cannot read the response: {reason}")]
    Decode {
        /// The request.
        request: RequestLine,
        /// What was wrong (a serde message, without the body).
        reason: String,
    },
    /// Paging met a `next` link already followed (SC-8.18).
    #[error("paging stopped: the server sent a `next` link already followed ({path})")]
    PagingLoop {
        /// The path of the repeated link (no query).
        path: String,
    },
    /// A Bulk Data server broke the protocol (e.g. a kick-off `202` without `Content-Location`),
    /// or an export did not finish within the caller's time limit.
    #[error("bulk export: {request}: {reason}")]
    Bulk {
        /// The request.
        request: RequestLine,
        /// What was wrong.
        reason: String,
    },
    /// A Bulk Data completion manifest that cannot be used (SC-7.15, P15).
    #[error("bulk export manifest from {request}: {reason}")]
    Manifest {
        /// The status request that returned it.
        request: RequestLine,
        /// What was wrong (never quoting the body).
        reason: String,
    },
    /// A line of a Bulk Data NDJSON file that is not one resource, or is over the length bound
    /// (SC-7.21).
    #[error("{file}: line {line}: {reason}")]
    Ndjson {
        /// The file's URL path (no query).
        file: String,
        /// The 1-based line number in the decoded file.
        line: u64,
        /// What was wrong (never quoting the line).
        reason: String,
    },
    /// A Bulk Data file whose body cannot be decoded (a corrupt or truncated gzip stream, an
    /// unsupported `Content-Encoding`, SC-7.20).
    #[error("{file}: {reason}")]
    Download {
        /// The file's URL path (no query).
        file: String,
        /// What was wrong.
        reason: String,
    },
    /// A local file could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The local path.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

fn detail(outcome: &Option<OperationOutcome>, excerpt: &Option<String>) -> String {
    match (outcome, excerpt) {
        (Some(o), _) if !o.summary().is_empty() => format!(": {}", o.summary()),
        (_, Some(e)) if !e.is_empty() => format!(": {e}"),
        _ => String::new(),
    }
}

impl FhirError {
    /// An error for a response with an error status.
    pub fn from_response(request: RequestLine, status: StatusCode, body: &Bytes) -> Self {
        let outcome = OperationOutcome::from_body(body);
        let excerpt = if outcome.is_none() && !body.is_empty() {
            Some(excerpt(body))
        } else {
            None
        };
        Self::Status {
            request,
            status,
            outcome,
            excerpt,
        }
    }

    /// The HTTP status, for [`FhirError::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `OperationOutcome` the server sent, if any.
    pub fn outcome(&self) -> Option<&OperationOutcome> {
        match self {
            Self::Status { outcome, .. } => outcome.as_ref(),
            _ => None,
        }
    }

    /// Whether retrying later could succeed: a transient transport error, 429, 5xx, or an
    /// `OperationOutcome` with a `transient` issue.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http { source, .. } => source.is_transient(),
            Self::Status {
                status, outcome, ..
            } => {
                status.as_u16() == 429
                    || status.is_server_error()
                    || outcome.as_ref().is_some_and(OperationOutcome::is_transient)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/fuzz_targets/operation_outcome.rs`): the issue `code` reached
    /// the summary and the error's `Display` raw, so a server could send control characters
    /// (here DEL, and an escape sequence) to the user's terminal or a log.
    #[test]
    fn outcome_code_with_control_characters_is_cleaned_in_summary_and_display() {
        let body = Bytes::from_static(
            b"{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\
              \"code\":\"n\x7ft-found\",\"diagnostics\":\"Patient/9 is not known\\nat all\"}]}",
        );
        let outcome = OperationOutcome::from_body(&body).unwrap();
        let summary = outcome.summary();
        assert!(!summary.chars().any(char::is_control), "{summary:?}");
        assert_eq!(summary, "Patient/9 is not known at all (n t-found)");

        let body = Bytes::from_static(
            b"{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\
              \"code\":\"\\u001b[2Jgone\"}]}",
        );
        let uri = http::Uri::from_static("https://ehr.example/fhir/Patient/9");
        let error = FhirError::from_response(
            RequestLine::new(&http::Method::GET, &uri),
            StatusCode::NOT_FOUND,
            &body,
        );
        let shown = error.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.ends_with(": [2Jgone"), "{shown}");
    }
}
