//! Shared handling of discovery responses: status, body sniffing, JSON, excerpts and
//! `Cache-Control`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use smart_fhir_core::{MaxResponseBytes, RequestTimeout};
use url::Url;

use crate::error::{BodyKind, DiscoveryError};
use crate::options::DiscoveryOptions;

/// Longest excerpt of a response body kept in an error, in characters.
pub(crate) const EXCERPT_CHARS: usize = 200;

/// A URL as shown in errors: no credentials, no query (it could carry patient data), no
/// fragment, bounded.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Neither call can fail on a URL with a host; without one there is nothing to strip.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    bounded(shown.as_str(), 300)
}

/// A printable excerpt of untrusted text: control characters become spaces, runs of whitespace
/// collapse, leading and trailing whitespace goes, at most `max` characters, with `…` when cut.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = count > 0;
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if count + needed > max {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// An excerpt of a response body (at most [`EXCERPT_CHARS`] characters).
pub(crate) fn excerpt(body: &[u8]) -> String {
    // Four bytes per character at most, plus room for collapsed whitespace.
    let head = body
        .get(..body.len().min(EXCERPT_CHARS * 8))
        .unwrap_or(body);
    bounded(&String::from_utf8_lossy(head), EXCERPT_CHARS)
}

/// The body without a UTF-8 byte order mark and without leading whitespace.
fn trimmed_body(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    body.get(start..).unwrap_or_default()
}

/// What a body that cannot be JSON looks like, or `None` when it may be JSON.
pub(crate) fn sniff_not_json(body: &[u8]) -> Option<BodyKind> {
    let body = trimmed_body(body);
    if body.is_empty() {
        return Some(BodyKind::Empty);
    }
    if body.first() != Some(&b'<') {
        return None;
    }
    let head = String::from_utf8_lossy(body.get(..body.len().min(256)).unwrap_or(body))
        .to_ascii_lowercase();
    let xml =
        head.starts_with("<?xml") && !head.contains("<!doctype html") && !head.contains("<html");
    let fhir_xml = ["<capabilitystatement", "<conformance", "<operationoutcome"]
        .iter()
        .any(|tag| head.starts_with(tag));
    Some(if xml || fhir_xml {
        BodyKind::Xml
    } else {
        BodyKind::Html
    })
}

/// Checks the status and parses the body as a JSON object.
///
/// The `Content-Type` is not checked: servers label JSON as `text/plain` or
/// `application/octet-stream` often enough. The body is sniffed instead, so that an HTML page
/// gives a clear error rather than a JSON syntax error.
pub(crate) fn json_object(
    url: &Url,
    response: &http::Response<Bytes>,
) -> Result<Map<String, Value>, DiscoveryError> {
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| match url.join(l) {
                Ok(target) => display_url(&target),
                Err(_) => bounded(l.split(['?', '#']).next().unwrap_or_default(), 300),
            });
        return Err(DiscoveryError::Redirect {
            url: display_url(url),
            status: status.as_u16(),
            location,
        });
    }
    if !status.is_success() {
        return Err(DiscoveryError::Status {
            url: display_url(url),
            status: status.as_u16(),
            excerpt: excerpt(response.body()),
        });
    }
    parse_json_object(url, response.body())
}

/// Parses a body as a JSON object, with the errors described at [`json_object`].
pub(crate) fn parse_json_object(
    url: &Url,
    body: &[u8],
) -> Result<Map<String, Value>, DiscoveryError> {
    if let Some(kind) = sniff_not_json(body) {
        return Err(DiscoveryError::NotJson {
            url: display_url(url),
            kind,
            excerpt: excerpt(body),
        });
    }
    match serde_json::from_slice::<Value>(trimmed_body(body)) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DiscoveryError::WrongType {
            url: display_url(url),
            field: "(document)".to_owned(),
            expected: "a JSON object",
        }),
        Err(e) => Err(DiscoveryError::InvalidJson {
            url: display_url(url),
            detail: json_error_detail(&e),
        }),
    }
}

/// A parser message with position. `serde_json` does not quote the input in syntax errors, so
/// the message carries no server data beyond the position.
fn json_error_detail(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => format!(
            "truncated: the document ends early (line {} column {})",
            e.line(),
            e.column()
        ),
        _ => e.to_string(),
    }
}

/// Builds a `GET` request for `url` with `accept`, carrying the size bound and timeout from
/// `options` as request extensions.
pub(crate) fn get_request(
    url: &Url,
    accept: &'static str,
    options: &DiscoveryOptions,
) -> Result<http::Request<Bytes>, DiscoveryError> {
    let uri = http::Uri::try_from(url.as_str()).map_err(|e| DiscoveryError::InvalidRequest {
        url: display_url(url),
        reason: e.to_string(),
    })?;
    let mut request = http::Request::new(Bytes::new());
    *request.method_mut() = http::Method::GET;
    *request.uri_mut() = uri;
    request
        .headers_mut()
        .insert(http::header::ACCEPT, http::HeaderValue::from_static(accept));
    request
        .extensions_mut()
        .insert(MaxResponseBytes(options.max_response_bytes_value()));
    if let Some(timeout) = options.timeout_value() {
        request.extensions_mut().insert(RequestTimeout(timeout));
    }
    Ok(request)
}

/// What a response's `Cache-Control` says about keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheDirective {
    /// No usable directive: the cache's default lifetime applies.
    Default,
    /// `no-store` or `no-cache`: do not keep it.
    NoStore,
    /// `max-age=N`.
    MaxAge(Duration),
}

/// Reads every `Cache-Control` header (names compare case-insensitively, SC-1.4). `no-store`
/// and `no-cache` win over `max-age`; `no-cache` is treated as `no-store` because this cache
/// does not revalidate. A malformed `max-age` is ignored.
pub(crate) fn cache_directive(headers: &http::HeaderMap) -> CacheDirective {
    let mut max_age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return CacheDirective::NoStore;
            }
            if name.eq_ignore_ascii_case("max-age") {
                if let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok()) {
                    // The first valid max-age counts, as RFC 9111 §4.2.1 advises for duplicates.
                    max_age.get_or_insert(secs);
                }
            }
        }
    }
    match max_age {
        Some(secs) => CacheDirective::MaxAge(Duration::from_secs(secs)),
        None => CacheDirective::Default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_bounded_printable_and_marks_the_cut() {
        let body = format!("line one\r\n\tline\u{7}two {}", "x".repeat(500));
        let e = excerpt(body.as_bytes());
        assert!(e.starts_with("line one line two xxx"), "{e}");
        assert!(e.chars().all(|c| !c.is_control()));
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"  short  "), "short");
        assert_eq!(excerpt(b"\xff\xfe bad utf8"), "\u{fffd}\u{fffd} bad utf8");
    }

    #[test]
    fn sniffing_tells_html_xml_and_empty_apart() {
        assert_eq!(sniff_not_json(b"  \n"), Some(BodyKind::Empty));
        assert_eq!(
            sniff_not_json(b"\xEF\xBB\xBF<!DOCTYPE html><html>"),
            Some(BodyKind::Html)
        );
        assert_eq!(sniff_not_json(b"<html><body>502"), Some(BodyKind::Html));
        assert_eq!(
            sniff_not_json(b"<?xml version=\"1.0\"?><CapabilityStatement>"),
            Some(BodyKind::Xml)
        );
        assert_eq!(
            sniff_not_json(b"<CapabilityStatement xmlns=\"http://hl7.org/fhir\">"),
            Some(BodyKind::Xml)
        );
        assert_eq!(sniff_not_json(b" {\"a\":1}"), None);
        assert_eq!(sniff_not_json(b"garbage"), None);
    }

    #[test]
    fn json_errors_carry_position_and_say_truncated() {
        let url = Url::parse("https://ehr.example/fhir/.well-known/smart-configuration").unwrap();
        match parse_json_object(&url, b"{\"token_endpoint\": \"https://ehr") {
            Err(DiscoveryError::InvalidJson { detail, .. }) => {
                assert!(detail.contains("truncated"), "{detail}");
                assert!(detail.contains("line 1"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_json_object(&url, b"{\n\"a\": tru }") {
            Err(DiscoveryError::InvalidJson { detail, .. }) => {
                assert!(detail.contains("line 2"), "{detail}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_json_object(&url, b"[1, 2]"),
            Err(DiscoveryError::WrongType {
                expected: "a JSON object",
                ..
            })
        ));
        // Deep nesting is refused by the parser's recursion limit, not by a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_json_object(&url, deep.as_bytes()),
            Err(DiscoveryError::InvalidJson { .. })
        ));
    }

    #[test]
    fn sc_1_4_cache_control_is_read_case_insensitively() {
        let mut h = http::HeaderMap::new();
        assert_eq!(cache_directive(&h), CacheDirective::Default);
        h.insert("Cache-Control", "public, MAX-AGE=\"600\"".parse().unwrap());
        assert_eq!(
            cache_directive(&h),
            CacheDirective::MaxAge(Duration::from_secs(600))
        );
        h.append("cache-control", "No-Store".parse().unwrap());
        assert_eq!(cache_directive(&h), CacheDirective::NoStore);
        let mut bad = http::HeaderMap::new();
        bad.insert("cache-control", "max-age=soon, private".parse().unwrap());
        assert_eq!(cache_directive(&bad), CacheDirective::Default);
    }

    #[test]
    fn display_url_drops_credentials_query_and_fragment() {
        let url = Url::parse("https://u:pw@ehr.example/fhir/metadata?patient=123#x").unwrap();
        assert_eq!(display_url(&url), "https://ehr.example/fhir/metadata");
    }

    #[test]
    fn bounded_text_never_ends_in_whitespace_or_cuts_needlessly() {
        assert_eq!(bounded("  ab \n\t cd  ", 10), "ab cd");
        assert_eq!(bounded("abc   ", 3), "abc");
        assert_eq!(bounded("abc d", 4), "abc…");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("\u{1b}[31mred", 20), "[31mred");
    }
}
