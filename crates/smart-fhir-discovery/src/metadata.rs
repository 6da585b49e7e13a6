//! The deprecated discovery path (SC-1.16, SC-1.17): SMART endpoints declared in the server's
//! CapabilityStatement (R4, STU3) or Conformance (DSTU2) under
//! `rest[].security.extension[oauth-uris]`.

use bytes::Bytes;
use serde_json::{Map, Value};
use smart_fhir_core::text::{display_url, printable};
use smart_fhir_core::FhirBaseUrl;
use url::Url;

use crate::config::{resolve_endpoint, ConfigurationSource, SmartConfiguration};
use crate::error::DiscoveryError;
use crate::json::Fields;
use crate::options::DiscoveryOptions;
use crate::response::{get_request, json_object};

/// The URL of the SMART `oauth-uris` extension. A `|version` suffix is ignored when matching
/// (SC-1.17).
pub const OAUTH_URIS_EXTENSION: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// The code systems of the `SMART-on-FHIR` security service code, current and older.
pub const SECURITY_SERVICE_SYSTEMS: [&str; 2] = [
    "http://terminology.hl7.org/CodeSystem/restful-security-service",
    "http://hl7.org/fhir/restful-security-service",
];

/// `Accept` for `/metadata`: the FHIR JSON type, the DSTU2 one, then plain JSON (SC-8.2).
pub const METADATA_ACCEPT: &str =
    "application/fhir+json, application/json+fhir;q=0.9, application/json;q=0.8";

/// `GET [base]/metadata` with [`METADATA_ACCEPT`] and the default size bound.
pub fn capability_statement_request(
    base: &FhirBaseUrl,
) -> Result<http::Request<Bytes>, DiscoveryError> {
    capability_statement_request_with(base, &DiscoveryOptions::default())
}

/// `GET [base]/metadata` with the size bound and timeout of `options`.
pub fn capability_statement_request_with(
    base: &FhirBaseUrl,
    options: &DiscoveryOptions,
) -> Result<http::Request<Bytes>, DiscoveryError> {
    get_request(&base.metadata_url(), METADATA_ACCEPT, options)
}

/// Reads the SMART endpoints from a `/metadata` response (SC-1.16).
///
/// The first `rest` entry whose `security.extension` holds the `oauth-uris` extension (with or
/// without a `|version` suffix, SC-1.17) is used. Its sub-extensions `authorize`, `token`,
/// `register`, `manage`, `introspect` and `revoke` give the endpoints; the value may be
/// `valueUri`, `valueUrl` or `valueString` (servers use all three). Relative URLs are resolved
/// against the base (SC-1.5) and every URL is checked (P15). The `SMART-on-FHIR` service code
/// is noted in [`SmartConfiguration::smart_service_declared`] but not required.
///
/// The result's [`source`](SmartConfiguration::source) is
/// [`ConfigurationSource::CapabilityStatement`]; capabilities, grant types and PKCE methods
/// are unknown.
pub fn parse_capability_statement(
    base: &FhirBaseUrl,
    response: http::Response<Bytes>,
) -> Result<SmartConfiguration, DiscoveryError> {
    let url = base.metadata_url();
    let object = json_object(&url, &response)?;
    from_capability_statement(base, url, &object)
}

/// Sub-extension name, the SMART field it fills.
const SUB_EXTENSIONS: [(&str, &str); 6] = [
    ("authorize", "authorization_endpoint"),
    ("token", "token_endpoint"),
    ("register", "registration_endpoint"),
    ("manage", "management_endpoint"),
    ("introspect", "introspection_endpoint"),
    ("revoke", "revocation_endpoint"),
];

pub(crate) fn from_capability_statement(
    base: &FhirBaseUrl,
    source_url: Url,
    object: &Map<String, Value>,
) -> Result<SmartConfiguration, DiscoveryError> {
    let shown = display_url(&source_url);
    let doc = Fields::new(&shown, object, "");
    let resource_type = match doc.value("resourceType") {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    if resource_type != "CapabilityStatement" && resource_type != "Conformance" {
        return Err(DiscoveryError::NotCapabilityStatement {
            url: shown.clone(),
            found: printable(resource_type, 64),
        });
    }

    for (rest_path, rest) in doc.objects("rest")? {
        let rest = Fields::new(&shown, rest, &rest_path);
        let security_path = rest.path_of("security");
        let Some(security) = rest.object("security")? else {
            continue;
        };
        let security = Fields::new(&shown, security, &security_path);
        for (ext_path, ext) in security.objects("extension")? {
            let ext_fields = Fields::new(&shown, ext, &ext_path);
            let is_oauth_uris = ext_fields
                .string("url")?
                .and_then(|u| u.split('|').next())
                .is_some_and(|u| u.trim() == OAUTH_URIS_EXTENSION);
            if is_oauth_uris {
                let declared = declares_smart_service(&security);
                return from_oauth_uris(base, source_url.clone(), &ext_fields, declared);
            }
        }
    }
    Err(DiscoveryError::NoOAuthUris { url: shown.clone() })
}

/// Whether `security.service[].coding[]` carries `SMART-on-FHIR` in one of the known systems.
/// Malformed entries are ignored: this is a note, not a requirement.
fn declares_smart_service(security: &Fields<'_>) -> bool {
    let Ok(services) = security.objects("service") else {
        return false;
    };
    services.iter().any(|(path, service)| {
        let service = Fields::new(security.url(), service, path);
        service
            .objects("coding")
            .unwrap_or_default()
            .iter()
            .any(|(_, coding)| {
                let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
                let code = coding.get("code").and_then(Value::as_str).unwrap_or("");
                SECURITY_SERVICE_SYSTEMS.contains(&system.trim())
                    && code.trim().eq_ignore_ascii_case("SMART-on-FHIR")
            })
    })
}

fn from_oauth_uris(
    base: &FhirBaseUrl,
    source_url: Url,
    oauth_uris: &Fields<'_>,
    smart_service_declared: bool,
) -> Result<SmartConfiguration, DiscoveryError> {
    let shown = oauth_uris.url();
    let mut found: [Option<Url>; 6] = Default::default();
    let mut token_advertised = None;
    let mut relative_endpoints = Vec::new();

    for (sub_path, sub) in oauth_uris.objects("extension")? {
        let sub = Fields::new(shown, sub, &sub_path);
        let Some(name) = sub.string("url")? else {
            continue;
        };
        let Some(slot) = SUB_EXTENSIONS.iter().position(|(n, _)| *n == name) else {
            // Unknown sub-extensions are ignored (SC-1.6).
            continue;
        };
        let Some(target) = found.get_mut(slot) else {
            continue;
        };
        if target.is_some() {
            // The first occurrence wins.
            continue;
        }
        let mut value = None;
        for key in ["valueUri", "valueUrl", "valueString"] {
            if let Some(raw) = sub.string(key)? {
                value = Some((key, raw));
                break;
            }
        }
        let Some((key, raw)) = value else { continue };
        let field = SUB_EXTENSIONS
            .get(slot)
            .map(|(_, f)| *f)
            .unwrap_or("endpoint");
        let (url, relative) = resolve_endpoint(base, &sub.path_of(key), raw)?;
        if relative {
            relative_endpoints.push(field.to_owned());
        }
        if name == "token" {
            token_advertised = Some(if relative {
                url.as_str().to_owned()
            } else {
                raw.to_owned()
            });
        }
        *target = Some(url);
    }

    let [authorization_endpoint, token_endpoint, registration_endpoint, management_endpoint, introspection_endpoint, revocation_endpoint] =
        found;
    let Some(token_endpoint) = token_endpoint else {
        return Err(DiscoveryError::MissingField {
            url: shown.to_owned(),
            field: "oauth-uris `token`".to_owned(),
        });
    };
    let token_endpoint_advertised =
        token_advertised.unwrap_or_else(|| token_endpoint.as_str().to_owned());

    Ok(SmartConfiguration {
        base: base.clone(),
        source: ConfigurationSource::CapabilityStatement,
        source_url,
        smart_service_declared: Some(smart_service_declared),
        issuer: None,
        jwks_uri: None,
        authorization_endpoint,
        token_endpoint,
        token_endpoint_advertised,
        token_endpoint_auth_methods_supported: None,
        token_endpoint_auth_signing_alg_values_supported: None,
        registration_endpoint,
        smart_app_state_endpoint: None,
        associated_endpoints: None,
        user_access_brand_bundle: None,
        user_access_brand_identifier: None,
        scopes_supported: None,
        response_types_supported: None,
        management_endpoint,
        introspection_endpoint,
        revocation_endpoint,
        grant_types_supported: None,
        code_challenge_methods_supported: None,
        capabilities: None,
        relative_endpoints,
        extra: Map::new(),
    })
}
