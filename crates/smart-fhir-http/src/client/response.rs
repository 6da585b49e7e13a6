//! A FHIR response: status, the headers a client acts on, and the body.

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

/// A successful FHIR response: the status, the headers, and the body as `T`
/// (`serde_json::Value` by default, or the caller's own model type).
#[derive(Debug, Clone)]
pub struct FhirResponse<T = serde_json::Value> {
    status: StatusCode,
    headers: HeaderMap,
    body: T,
}

impl<T> FhirResponse<T> {
    /// A response from its parts.
    pub fn new(status: StatusCode, headers: HeaderMap, body: T) -> Self {
        Self {
            status,
            headers,
            body,
        }
    }

    /// The HTTP status (200, 201, 304…).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// The body, taken.
    pub fn into_body(self) -> T {
        self.body
    }

    /// The body mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> FhirResponse<U> {
        FhirResponse {
            status: self.status,
            headers: self.headers,
            body: f(self.body),
        }
    }

    /// The `ETag` header as sent, e.g. `W/"3"` (SC-8.4).
    pub fn etag(&self) -> Option<&str> {
        header(&self.headers, http::header::ETAG)
    }

    /// The version id from the `ETag` (`W/"3"` → `3`).
    pub fn version_id(&self) -> Option<&str> {
        self.etag().map(version_from_etag)
    }

    /// The `Location` header (SC-8.6, SC-8.13): `[base]/[type]/[id]/_history/[vid]` after a create.
    pub fn location(&self) -> Option<&str> {
        header(&self.headers, http::header::LOCATION)
            .or_else(|| header(&self.headers, http::header::CONTENT_LOCATION))
    }

    /// `Last-Modified`, parsed (SC-8.4).
    pub fn last_modified(&self) -> Option<SystemTime> {
        header(&self.headers, http::header::LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(v).ok())
    }
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `W/"3"` → `3`; `"3"` → `3`; `3` → `3`.
pub(crate) fn version_from_etag(etag: &str) -> &str {
    let t = etag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.trim_matches('"')
}

/// A weak ETag for a version id, as `If-Match` wants it (SC-8.7): `3` → `W/"3"`; a value that is
/// already an ETag is kept.
pub(crate) fn etag_for_version(version: &str) -> String {
    let v = version.trim();
    if v.starts_with("W/") || v.starts_with('"') {
        v.to_owned()
    } else {
        format!("W/\"{v}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SC-8.4: ETag, version id, Location and Last-Modified are exposed.
    #[test]
    fn sc_8_4_headers_are_exposed() {
        let mut h = HeaderMap::new();
        h.insert(http::header::ETAG, "W/\"7\"".parse().unwrap());
        h.insert(
            http::header::LOCATION,
            "https://x/fhir/Patient/1/_history/7".parse().unwrap(),
        );
        h.insert(
            http::header::LAST_MODIFIED,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        let r = FhirResponse::new(StatusCode::CREATED, h, ());
        assert_eq!(r.etag(), Some("W/\"7\""));
        assert_eq!(r.version_id(), Some("7"));
        assert_eq!(r.location(), Some("https://x/fhir/Patient/1/_history/7"));
        assert_eq!(
            r.last_modified(),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_445_412_480))
        );
    }

    #[test]
    fn etags_and_versions() {
        assert_eq!(version_from_etag("W/\"abc\""), "abc");
        assert_eq!(version_from_etag("\"abc\""), "abc");
        assert_eq!(version_from_etag("abc"), "abc");
        assert_eq!(etag_for_version("3"), "W/\"3\"");
        assert_eq!(etag_for_version("W/\"3\""), "W/\"3\"");
    }
}
