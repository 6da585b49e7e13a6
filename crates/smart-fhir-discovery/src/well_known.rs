//! The sans-IO half of `.well-known/smart-configuration` discovery.

use bytes::Bytes;
use smart_fhir_core::FhirBaseUrl;

use crate::config::SmartConfiguration;
use crate::error::DiscoveryError;
use crate::options::DiscoveryOptions;
use crate::response::{get_request, json_object};

/// `GET [base]/.well-known/smart-configuration` with `Accept: application/json` (SC-1.1–1.3)
/// and a [`MaxResponseBytes`](smart_fhir_core::MaxResponseBytes) extension of
/// [`DEFAULT_MAX_RESPONSE_BYTES`](crate::DEFAULT_MAX_RESPONSE_BYTES).
///
/// Fails only when the HTTP stack cannot carry the URL (for instance one longer than 64 KiB).
pub fn smart_configuration_request(
    base: &FhirBaseUrl,
) -> Result<http::Request<Bytes>, DiscoveryError> {
    smart_configuration_request_with(base, &DiscoveryOptions::default())
}

/// [`smart_configuration_request`] with the size bound and timeout of `options`.
pub fn smart_configuration_request_with(
    base: &FhirBaseUrl,
    options: &DiscoveryOptions,
) -> Result<http::Request<Bytes>, DiscoveryError> {
    get_request(&base.smart_configuration_url(), "application/json", options)
}

/// Parses the response to [`smart_configuration_request`].
///
/// The status must be 2xx: a redirect gives [`DiscoveryError::Redirect`] (discovery does not
/// follow them), any other status [`DiscoveryError::Status`] with a short excerpt of the body.
/// The `Content-Type` is not checked (servers label JSON wrongly), but a body that is HTML, XML
/// or empty gives [`DiscoveryError::NotJson`]. The document itself is read as described at
/// [`SmartConfiguration::from_json`].
pub fn parse_smart_configuration(
    base: &FhirBaseUrl,
    response: http::Response<Bytes>,
) -> Result<SmartConfiguration, DiscoveryError> {
    let url = base.smart_configuration_url();
    let object = json_object(&url, &response)?;
    SmartConfiguration::from_well_known_object(base, url, &object)
}
