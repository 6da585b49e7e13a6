//! What Bulk Data traces may say: origins and server-chosen text made safe, never a path with
//! ids, a query string, a token or a body.

use url::Url;

use crate::FhirError;

/// The most characters of `X-Progress` a trace carries.
pub(crate) const PROGRESS_CHARS: usize = 100;

/// `scheme://host[:port]` of `url`: no user information, path or query.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Server text (`X-Progress`) for a trace: control characters replaced, bounded.
pub(crate) fn server_text(text: &str) -> String {
    smart_fhir_core::text::printable(text, PROGRESS_CHARS)
}

/// Which kind of error ended a download, for a trace (the message itself may name paths).
pub(crate) fn error_kind(e: &FhirError) -> &'static str {
    match e {
        FhirError::Http { .. } => "transport",
        FhirError::Status { .. } => "status",
        FhirError::Ndjson { .. } => "ndjson",
        FhirError::Download { .. } => "decoding",
        FhirError::Auth { .. } => "auth",
        FhirError::Url(_) => "url",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_drop_credentials_path_and_query() {
        let url = Url::parse("https://user:pw@files.example:8443/a/b.ndjson?sig=secret").unwrap();
        assert_eq!(origin(&url), "https://files.example:8443");
    }

    #[test]
    fn server_text_is_bounded_and_printable() {
        let long = format!("50%\n\u{1b}[31m{}", "x".repeat(500));
        let shown = server_text(&long);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.chars().count() <= PROGRESS_CHARS + 1, "{shown:?}");
    }
}
