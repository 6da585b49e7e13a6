//! The requests a server received.

use std::fmt;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::Value;

/// One request as the server received it, recorded before it was answered (a request that is
/// made to hang or wait is recorded too).
#[derive(Clone)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The path and query exactly as sent (`/fhir/Patient?name=x`).
    pub path_and_query: String,
    /// The headers. Names are lowercase (that is how [`HeaderMap`] stores them); credentials
    /// (`Authorization`, `Cookie`, `Proxy-Authorization`) are marked sensitive, so `Debug` hides
    /// them.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When the server had read the request.
    pub at: Instant,
}

impl RecordedRequest {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The query, without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }

    /// The first value of a header (names compare case-insensitively), when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer <token>` header (the scheme compares
    /// case-insensitively).
    pub fn bearer_token(&self) -> Option<&str> {
        bearer_token(&self.headers)
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_value(self.query()?.as_bytes(), name)
    }

    /// The first value of a field of an `application/x-www-form-urlencoded` body (a token
    /// request's `grant_type`, `scope`, `client_assertion`, …), percent-decoded.
    pub fn form_param(&self, name: &str) -> Option<String> {
        form_value(&self.body, name)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl fmt::Debug for RecordedRequest {
    // The body is summarised: a token request's body holds a client assertion.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("at", &self.at)
            .finish()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) fn form_value(form: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(form)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Marks credential headers sensitive so that `Debug` does not print them.
pub(crate) fn hide_credentials(headers: &mut HeaderMap) {
    for name in [
        http::header::AUTHORIZATION,
        http::header::PROXY_AUTHORIZATION,
        http::header::COOKIE,
    ] {
        if let http::header::Entry::Occupied(mut values) = headers.entry(name) {
            for value in values.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn request(path_and_query: &str, auth: Option<&str>, body: &'static [u8]) -> RecordedRequest {
        let mut headers = HeaderMap::new();
        if let Some(a) = auth {
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(a).unwrap(),
            );
        }
        hide_credentials(&mut headers);
        RecordedRequest {
            method: Method::POST,
            path_and_query: path_and_query.to_owned(),
            headers,
            body: Bytes::from_static(body),
            at: Instant::now(),
        }
    }

    #[test]
    fn accessors_split_path_query_and_form() {
        let r = request(
            "/fhir/Patient?name=J%C3%BCrgen&_count=2",
            Some("bearer tok-1"),
            b"grant_type=client_credentials&scope=system%2F*.rs",
        );
        assert_eq!(r.path(), "/fhir/Patient");
        assert_eq!(r.query(), Some("name=J%C3%BCrgen&_count=2"));
        assert_eq!(r.query_param("name").as_deref(), Some("Jürgen"));
        assert_eq!(r.form_param("scope").as_deref(), Some("system/*.rs"));
        assert_eq!(r.form_param("missing"), None);
        assert_eq!(r.bearer_token(), Some("tok-1"));
        assert_eq!(r.header("AUTHORIZATION"), Some("bearer tok-1"));
        assert_eq!(request("/x", None, b"").query(), None);
        assert_eq!(request("/x", Some("Basic abc"), b"").bearer_token(), None);
        assert_eq!(request("/x", Some("Bearer "), b"").bearer_token(), None);
    }

    #[test]
    fn debug_hides_credentials_and_body_p5() {
        let r = request(
            "/token",
            Some("Bearer tok-secret"),
            b"client_assertion=eyJsecret",
        );
        let s = format!("{r:?}");
        assert!(!s.contains("tok-secret"), "{s}");
        assert!(!s.contains("eyJsecret"), "{s}");
        assert!(s.contains("Sensitive"), "{s}");
    }
}
