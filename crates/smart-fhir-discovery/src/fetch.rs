//! The I/O half: one request through [`HttpClient`], then the sans-IO parsers.

use bytes::Bytes;
use smart_fhir_core::text::display_url;
use smart_fhir_core::{FhirBaseUrl, HttpClient};

use crate::cache_control::{cache_directive, CacheDirective};
use crate::config::SmartConfiguration;
use crate::error::{BodyKind, DiscoveryError};
use crate::metadata::{capability_statement_request_with, parse_capability_statement};
use crate::options::DiscoveryOptions;
use crate::response::{origin, send, sniff_not_json};
use crate::well_known::{parse_smart_configuration, smart_configuration_request_with};

/// Discovers the SMART configuration of `base` with default [`DiscoveryOptions`]: GET
/// `.well-known/smart-configuration`, and when the server does not serve it, the
/// CapabilityStatement fallback (see [`discover_with`]).
///
/// The result is parsed, not validated: call
/// [`SmartConfiguration::validate`] or [`SmartConfiguration::check_fit`] before use.
pub async fn discover(
    client: &dyn HttpClient,
    base: &FhirBaseUrl,
) -> Result<SmartConfiguration, DiscoveryError> {
    discover_with(client, base, &DiscoveryOptions::default()).await
}

/// [`discover`] with explicit options.
///
/// The fallback to `GET [base]/metadata` (SC-1.16) runs, when enabled, only if the
/// `.well-known` request shows the document is not served:
/// * HTTP 404 Not Found or 410 Gone;
/// * HTTP 405 Method Not Allowed (FHIR servers that route `.well-known` as a resource type);
/// * a 2xx response whose body is empty or an HTML page (a web application's catch-all route).
///
/// It does not run on 401/403 (an access policy the caller must see), on 5xx (an outage the
/// fallback would hide), on redirects, on transport errors, or on a JSON document that fails
/// to parse (the server does serve one, and it is broken). When the fallback fails too, the
/// error is [`DiscoveryError::NoConfiguration`] with the fallback's error as its source.
pub async fn discover_with(
    client: &dyn HttpClient,
    base: &FhirBaseUrl,
    options: &DiscoveryOptions,
) -> Result<SmartConfiguration, DiscoveryError> {
    fetch(client, base, options).await.map(|(config, _)| config)
}

/// Discovery that also returns the caching directive of the response the configuration came
/// from.
pub(crate) async fn fetch(
    client: &dyn HttpClient,
    base: &FhirBaseUrl,
    options: &DiscoveryOptions,
) -> Result<(SmartConfiguration, CacheDirective), DiscoveryError> {
    let request = smart_configuration_request_with(base, options)?;
    let url = base.smart_configuration_url();
    let response = send(client, request, &url, "SMART configuration")
        .await
        .map_err(|source| DiscoveryError::Http {
            url: display_url(&url),
            source,
        })?;

    let reason = if options.fallback_to_metadata_enabled() {
        fallback_reason(&response)
    } else {
        None
    };
    let Some(reason) = reason else {
        let directive = cache_directive(response.headers());
        return parse_smart_configuration(base, response).map(|c| (c, directive));
    };

    tracing::info!(
        origin = %origin(&url),
        path = url.path(),
        reason = %reason,
        "no .well-known/smart-configuration; falling back to the CapabilityStatement"
    );
    match fetch_capability_statement(client, base, options).await {
        Ok(found) => Ok(found),
        Err(fallback) => Err(DiscoveryError::NoConfiguration {
            url: display_url(&url),
            reason,
            fallback: Box::new(fallback),
        }),
    }
}

async fn fetch_capability_statement(
    client: &dyn HttpClient,
    base: &FhirBaseUrl,
    options: &DiscoveryOptions,
) -> Result<(SmartConfiguration, CacheDirective), DiscoveryError> {
    let request = capability_statement_request_with(base, options)?;
    let url = base.metadata_url();
    let response = send(client, request, &url, "CapabilityStatement")
        .await
        .map_err(|source| DiscoveryError::Http {
            url: display_url(&url),
            source,
        })?;
    let directive = cache_directive(response.headers());
    parse_capability_statement(base, response).map(|c| (c, directive))
}

/// Why the `.well-known` response means "not served", if it does (see [`discover_with`]).
fn fallback_reason(response: &http::Response<Bytes>) -> Option<String> {
    let status = response.status();
    match status.as_u16() {
        404 | 405 | 410 => Some(format!("HTTP {}", status.as_u16())),
        _ if status.is_success() => match sniff_not_json(response.body()) {
            Some(BodyKind::Html) => Some(format!("an HTML page with HTTP {}", status.as_u16())),
            Some(BodyKind::Empty) => Some(format!("an empty body with HTTP {}", status.as_u16())),
            _ => None,
        },
        _ => None,
    }
}
