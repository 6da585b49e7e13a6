//! What the spans of FHIR requests show: the origin and a path template
//! (`[base]/Patient/{id}/_history/{vid}`), written only when a subscriber records them. Never an
//! id, a query string, a header or a body (P5).

use std::fmt;

use http::Uri;

use super::names::is_valid_resource_type;

/// The scheme and authority of a URI, without any user information.
pub(super) struct Origin<'a>(pub(super) &'a Uri);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.scheme_str(), self.0.authority()) {
            (Some(scheme), Some(authority)) => {
                let authority = authority.as_str();
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                write!(f, "{scheme}://{host}")
            }
            _ => f.write_str("[relative]"),
        }
    }
}

/// The path of a request as a template: `[base]` for the FHIR base's path, resource types,
/// `_history`, `_search`, `metadata` and operation names as they are, every other segment
/// (ids, version ids, file names) as a placeholder.
pub(super) struct PathTemplate<'a> {
    base_path: &'a str,
    uri: &'a Uri,
}

impl<'a> PathTemplate<'a> {
    pub(super) fn new(base_path: &'a str, uri: &'a Uri) -> Self {
        Self { base_path, uri }
    }
}

/// What the previous segment was, which decides what the next one may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Start,
    Type,
    Id,
    History,
    Other,
}

impl fmt::Display for PathTemplate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.uri.path();
        let base = self.base_path.trim_end_matches('/');
        let rest = match path.strip_prefix(base) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                f.write_str("[base]")?;
                rest
            }
            // Not under the base (a Bulk Data file on another server, say): every segment is
            // a placeholder.
            _ => {
                for _ in path.split('/').filter(|s| !s.is_empty()) {
                    f.write_str("/{segment}")?;
                }
                return Ok(());
            }
        };
        let mut seen = Seen::Start;
        for segment in rest.split('/').filter(|s| !s.is_empty()) {
            let (text, next) = match (seen, segment) {
                (_, "_history") => ("_history", Seen::History),
                (_, "_search") => ("_search", Seen::Other),
                (Seen::Start, "metadata") => ("metadata", Seen::Other),
                (_, op) if is_operation(op) => (op, Seen::Other),
                (Seen::Start | Seen::Id, t) if is_valid_resource_type(t) => (t, Seen::Type),
                (Seen::Type, _) => ("{id}", Seen::Id),
                (Seen::History, _) => ("{vid}", Seen::Other),
                _ => ("{segment}", Seen::Other),
            };
            f.write_str("/")?;
            f.write_str(text)?;
            seen = next;
        }
        Ok(())
    }
}

/// `$name` with the characters of an operation name.
fn is_operation(segment: &str) -> bool {
    segment.strip_prefix('$').is_some_and(|name| {
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(base: &str, uri: &str) -> String {
        PathTemplate::new(base, &uri.parse().unwrap()).to_string()
    }

    /// P5: templates name the interaction, never an id or the query.
    #[test]
    fn p5_path_templates_hide_ids_and_queries() {
        let b = "/fhir";
        let h = "https://ehr.example";
        let cases = [
            ("/fhir/Patient/123", "[base]/Patient/{id}"),
            ("/fhir/Patient/Smith", "[base]/Patient/{id}"),
            (
                "/fhir/Patient/1/_history/2",
                "[base]/Patient/{id}/_history/{vid}",
            ),
            ("/fhir/Patient?name=Smith", "[base]/Patient"),
            ("/fhir/Patient/_search", "[base]/Patient/_search"),
            (
                "/fhir/Patient/1/Observation?code=x",
                "[base]/Patient/{id}/Observation",
            ),
            (
                "/fhir/Patient/1/$everything",
                "[base]/Patient/{id}/$everything",
            ),
            ("/fhir/$export", "[base]/$export"),
            ("/fhir/metadata", "[base]/metadata"),
            ("/fhir", "[base]"),
            ("/fhir/_history", "[base]/_history"),
            ("/fhir/1234-mrn", "[base]/{segment}"),
            ("/fhirx/Patient/1", "/{segment}/{segment}/{segment}"),
            ("/files/Patient.ndjson", "/{segment}/{segment}"),
        ];
        for (path, want) in cases {
            assert_eq!(template(b, &format!("{h}{path}")), want, "{path}");
        }
        assert_eq!(
            template("/", "https://ehr.example/Patient/1"),
            "[base]/Patient/{id}"
        );
    }

    #[test]
    fn origin_has_no_user_information_or_path() {
        let uri: Uri = "https://u:p@ehr.example:8443/fhir/Patient?name=x"
            .parse()
            .unwrap();
        assert_eq!(Origin(&uri).to_string(), "https://ehr.example:8443");
    }
}
