//! Shared handling of discovery responses: requests, status, body sniffing and JSON.

use bytes::Bytes;
use serde_json::{Map, Value};
use smart_fhir_core::text::{describe_json_error, display_url, excerpt, printable};
use smart_fhir_core::{HttpClient, HttpError, MaxResponseBytes, RequestTimeout};
use url::Url;

use crate::error::{BodyKind, DiscoveryError};
use crate::options::DiscoveryOptions;

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
                Err(_) => printable(l.split(['?', '#']).next().unwrap_or_default(), 300),
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
            detail: describe_json_error(&e),
        }),
    }
}

/// The origin of `url` (`https://host:port`), for log events.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Sends `request` for `document` (e.g. "SMART configuration") at `url` and logs the exchange:
/// origin, path, status and duration, never the query, a header or the body.
pub(crate) async fn send(
    client: &dyn HttpClient,
    request: http::Request<Bytes>,
    url: &Url,
    document: &'static str,
) -> Result<http::Response<Bytes>, HttpError> {
    let started = std::time::Instant::now();
    let result = client.execute(request).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match &result {
        Ok(response) => tracing::debug!(
            document,
            origin = %origin(url),
            path = url.path(),
            status = response.status().as_u16(),
            duration_ms,
            "fetched"
        ),
        Err(e) => tracing::debug!(
            document,
            origin = %origin(url),
            path = url.path(),
            error_kind = ?e.kind(),
            duration_ms,
            "fetch failed"
        ),
    }
    result
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
