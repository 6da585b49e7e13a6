//! OpenID Connect Discovery 1.0: an issuer's `.well-known/openid-configuration`, read for its
//! `jwks_uri` (SC-4.34).
//!
//! Sans-IO at heart: [`openid_configuration_request`] builds the request,
//! [`parse_openid_configuration`] reads the response; the thin async
//! [`fetch_openid_configuration`] does the I/O through an [`HttpClient`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT;
use serde_json::Value;
use smart_fhir_core::text::{excerpt, printable};
use smart_fhir_core::{
    check_endpoint_url, HttpClient, InsecureHttp, MaxResponseBytes, RequestTimeout, UrlError,
};
use url::Url;

use crate::endpoint::check_document_endpoint;
use crate::key_error::{KeyDiscoveryError, KeyDocument, KeyFetchError};
use crate::response::send;

/// The largest OpenID configuration document read.
pub const MAX_OPENID_CONFIGURATION_BYTES: usize = 256 * 1024;

/// How long a request for the OpenID configuration or the JWKS may take.
pub const KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// An OpenID issuer whose keys are fetched: its identifier exactly as given (compared with the
/// configuration's `issuer` and a token's `iss`), the identifier as a URL, and the
/// insecure-HTTP policy its URLs are checked against.
///
/// ```
/// use smart_fhir_core::InsecureHttp;
/// use smart_fhir_discovery::Issuer;
///
/// let issuer = Issuer::parse("https://auth.example/realms/x/", InsecureHttp::Deny)?;
/// assert_eq!(
///     issuer.openid_configuration_url().as_str(),
///     "https://auth.example/realms/x/.well-known/openid-configuration"
/// );
/// assert!(Issuer::parse("http://auth.example", InsecureHttp::AllowLoopback).is_err());
/// # Ok::<(), smart_fhir_core::UrlError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Issuer {
    id: String,
    url: Url,
    insecure: InsecureHttp,
}

impl Issuer {
    /// Checks `issuer` as a URL: https (or http to a loopback host when `insecure` allows it),
    /// no credentials, no query, no fragment.
    pub fn parse(issuer: &str, insecure: InsecureHttp) -> Result<Self, UrlError> {
        let url = Url::parse(issuer).map_err(|e| UrlError::Invalid {
            what: "issuer".to_owned(),
            reason: e.to_string(),
        })?;
        check_endpoint_url(&url, "issuer", insecure)?;
        if url.query().is_some() {
            return Err(UrlError::Forbidden {
                what: "issuer".to_owned(),
                part: "a query string",
            });
        }
        Ok(Self {
            id: issuer.to_owned(),
            url,
            insecure,
        })
    }

    /// The identifier, exactly as given.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The identifier as a URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The policy the issuer's URLs (and its `jwks_uri`) are checked against.
    pub fn insecure_http(&self) -> InsecureHttp {
        self.insecure
    }

    /// `{issuer}/.well-known/openid-configuration`, without a doubled `/` (OpenID Connect
    /// Discovery §4).
    pub fn openid_configuration_url(&self) -> Url {
        let mut url = self.url.clone();
        let path = format!(
            "{}/.well-known/openid-configuration",
            self.url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        url
    }
}

/// What this crate reads of an issuer's OpenID configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenIdConfiguration {
    /// `issuer`, equal to the expected issuer.
    pub issuer: String,
    /// `jwks_uri`, checked against the issuer's insecure-HTTP policy.
    pub jwks_uri: Url,
}

/// A `GET` for `url` with `Accept: application/json`, a body bound of `max` bytes and
/// [`KEY_FETCH_TIMEOUT`].
pub(crate) fn json_get(url: &Url, max: usize) -> Result<http::Request<Bytes>, KeyFetchError> {
    let mut request = http::Request::builder()
        .method(http::Method::GET)
        .uri(url.as_str())
        .header(ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| KeyFetchError::Request {
            reason: e.to_string(),
        })?;
    request.extensions_mut().insert(MaxResponseBytes(max));
    request
        .extensions_mut()
        .insert(RequestTimeout(KEY_FETCH_TIMEOUT));
    Ok(request)
}

/// The body of a 2xx response no larger than `max`; any other status is an error (redirects
/// are not followed).
pub(crate) fn success_body(
    response: http::Response<Bytes>,
    max: usize,
) -> Result<(http::HeaderMap, Bytes), KeyFetchError> {
    let (parts, body) = response.into_parts();
    if !parts.status.is_success() {
        return Err(KeyFetchError::Status {
            status: parts.status.as_u16(),
            excerpt: excerpt(&body),
        });
    }
    if body.len() > max {
        return Err(KeyFetchError::Invalid {
            reason: format!("the body is larger than {max} bytes"),
        });
    }
    Ok((parts.headers, body))
}

/// `GET {issuer}/.well-known/openid-configuration` (SC-4.34), bounded to
/// [`MAX_OPENID_CONFIGURATION_BYTES`], with [`KEY_FETCH_TIMEOUT`].
pub fn openid_configuration_request(
    issuer: &Issuer,
) -> Result<http::Request<Bytes>, KeyFetchError> {
    json_get(
        &issuer.openid_configuration_url(),
        MAX_OPENID_CONFIGURATION_BYTES,
    )
}

/// Reads the response to [`openid_configuration_request`]: a 2xx JSON object whose `issuer` is
/// exactly the expected one (OpenID Connect Discovery §4.3) and whose `jwks_uri` is an
/// acceptable URL under the issuer's insecure-HTTP policy.
pub fn parse_openid_configuration(
    issuer: &Issuer,
    response: http::Response<Bytes>,
) -> Result<OpenIdConfiguration, KeyFetchError> {
    let (_, body) = success_body(response, MAX_OPENID_CONFIGURATION_BYTES)?;
    openid_configuration_from_json(issuer, &body)
}

fn openid_configuration_from_json(
    issuer: &Issuer,
    body: &[u8],
) -> Result<OpenIdConfiguration, KeyFetchError> {
    let invalid = |reason: String| KeyFetchError::Invalid { reason };
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| invalid(format!("not valid JSON: {}", excerpt(body))))?;
    let doc = doc
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".to_owned()))?;
    let expected = issuer.as_str();
    match doc.get("issuer") {
        Some(Value::String(got)) if got == expected => {}
        Some(Value::String(got)) => {
            return Err(invalid(format!(
                "its issuer `{}` is not the expected `{expected}`",
                printable(got, 200)
            )))
        }
        _ => return Err(invalid("it has no issuer".to_owned())),
    }
    let jwks_uri = match doc.get("jwks_uri") {
        Some(Value::String(uri)) => uri,
        _ => return Err(invalid("it has no jwks_uri".to_owned())),
    };
    let url = Url::parse(jwks_uri).map_err(|e| {
        KeyFetchError::JwksUri(UrlError::Invalid {
            what: "jwks_uri".to_owned(),
            reason: e.to_string(),
        })
    })?;
    check_document_endpoint(&url, "jwks_uri", issuer.url(), issuer.insecure_http())
        .map_err(KeyFetchError::JwksUri)?;
    Ok(OpenIdConfiguration {
        issuer: expected.to_owned(),
        jwks_uri: url,
    })
}

/// Fetches and reads the issuer's OpenID configuration (see [`parse_openid_configuration`]).
pub async fn fetch_openid_configuration(
    client: &dyn HttpClient,
    issuer: &Issuer,
) -> Result<OpenIdConfiguration, KeyDiscoveryError> {
    let url = issuer.openid_configuration_url();
    let fail = |source| KeyDiscoveryError::new(KeyDocument::OpenidConfiguration, &url, source);
    let request = openid_configuration_request(issuer).map_err(fail)?;
    let response = send(client, request, &url, "OpenID configuration")
        .await
        .map_err(|e| fail(KeyFetchError::Http(Arc::new(e))))?;
    parse_openid_configuration(issuer, response).map_err(fail)
}
