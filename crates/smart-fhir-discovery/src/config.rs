use serde_json::{Map, Value};
use smart_fhir_core::text::display_url;
use smart_fhir_core::{FhirBaseUrl, UrlError};
use url::Url;

use crate::capability::{Capability, CapabilitySet};
use crate::endpoint::check_document_endpoint;
use crate::error::DiscoveryError;
use crate::issue::ValidationIssue;
use crate::json::{Fields, LoneString};
use crate::response::parse_json_object;

/// Where a [`SmartConfiguration`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigurationSource {
    /// `[base]/.well-known/smart-configuration` (SC-1.1).
    WellKnown,
    /// The deprecated `oauth-uris` extension of `[base]/metadata` (SC-1.16). Only endpoints are
    /// known: capabilities, grant types, PKCE methods and authentication methods are not.
    CapabilityStatement,
}

/// One entry of `associated_endpoints`: another FHIR endpoint that shares this server's
/// authorization, with its own capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssociatedEndpoint {
    /// The endpoint's URL (resolved and checked like every endpoint).
    pub url: Url,
    /// Its capabilities (empty when the server lists none).
    pub capabilities: Vec<Capability>,
}

/// A server's SMART configuration (SC-1.7), from `.well-known/smart-configuration` or from the
/// CapabilityStatement fallback.
///
/// Every endpoint URL has been resolved against the FHIR base when relative (SC-1.5) and
/// checked with [`check_document_endpoint`] under the base's insecure-HTTP policy (P15; never
/// plain `http` when the base is `https`). List fields
/// are `None` when the server did not send them, which is different from an empty list.
///
/// Parsing is lenient where servers are sloppy (each leniency is listed at
/// [`SmartConfiguration::from_json`]); [`validate`](Self::validate) then reports what the IG
/// requires and the server left out.
#[derive(Debug, Clone)]
pub struct SmartConfiguration {
    pub(crate) base: FhirBaseUrl,
    pub(crate) source: ConfigurationSource,
    pub(crate) source_url: Url,
    pub(crate) smart_service_declared: Option<bool>,
    pub(crate) issuer: Option<String>,
    pub(crate) jwks_uri: Option<Url>,
    pub(crate) authorization_endpoint: Option<Url>,
    pub(crate) token_endpoint: Url,
    pub(crate) token_endpoint_advertised: String,
    pub(crate) token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub(crate) token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    pub(crate) registration_endpoint: Option<Url>,
    pub(crate) smart_app_state_endpoint: Option<Url>,
    pub(crate) associated_endpoints: Option<Vec<AssociatedEndpoint>>,
    pub(crate) user_access_brand_bundle: Option<Url>,
    pub(crate) user_access_brand_identifier: Option<Map<String, Value>>,
    pub(crate) scopes_supported: Option<Vec<String>>,
    pub(crate) response_types_supported: Option<Vec<String>>,
    pub(crate) management_endpoint: Option<Url>,
    pub(crate) introspection_endpoint: Option<Url>,
    pub(crate) revocation_endpoint: Option<Url>,
    pub(crate) grant_types_supported: Option<Vec<String>>,
    pub(crate) code_challenge_methods_supported: Option<Vec<String>>,
    pub(crate) capabilities: Option<Vec<Capability>>,
    pub(crate) relative_endpoints: Vec<String>,
    pub(crate) extra: Map<String, Value>,
}

/// The fields of SC-1.7; everything else goes to [`SmartConfiguration::extra`].
const KNOWN_FIELDS: [&str; 19] = [
    "issuer",
    "jwks_uri",
    "authorization_endpoint",
    "token_endpoint",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "registration_endpoint",
    "smart_app_state_endpoint",
    "associated_endpoints",
    "user_access_brand_bundle",
    "user_access_brand_identifier",
    "scopes_supported",
    "response_types_supported",
    "management_endpoint",
    "introspection_endpoint",
    "revocation_endpoint",
    "grant_types_supported",
    "code_challenge_methods_supported",
    "capabilities",
];

/// Resolves an endpoint string against the FHIR base with WHATWG `new URL(rel, base)`
/// semantics (SC-1.5): a base without a trailing slash loses its last path segment, so
/// `auth/token` against `https://ehr.example/apis/fhir` is `https://ehr.example/apis/auth/token`.
/// The result is checked with the base's insecure-HTTP policy (P15). Returns the URL and
/// whether the input was relative.
pub(crate) fn resolve_endpoint(
    base: &FhirBaseUrl,
    field: &str,
    raw: &str,
) -> Result<(Url, bool), DiscoveryError> {
    let invalid = |reason: UrlError| DiscoveryError::InvalidEndpoint {
        field: field.to_owned(),
        reason,
    };
    let (url, relative) = match Url::parse(raw) {
        Ok(url) => (url, false),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let url = base.url().join(raw).map_err(|e| {
                invalid(UrlError::Invalid {
                    what: field.to_owned(),
                    reason: e.to_string(),
                })
            })?;
            (url, true)
        }
        Err(e) => {
            return Err(invalid(UrlError::Invalid {
                what: field.to_owned(),
                reason: e.to_string(),
            }))
        }
    };
    check_document_endpoint(&url, field, base.url(), base.insecure_http()).map_err(invalid)?;
    Ok((url, relative))
}

impl SmartConfiguration {
    /// Parses a `.well-known/smart-configuration` document (the body alone, e.g. from a file or
    /// a test) for `base`.
    ///
    /// Leniencies, each seen on real servers:
    /// * unknown fields are ignored and kept in [`extra`](Self::extra) (SC-1.6);
    /// * `null`, and the empty string, read as absent for every optional field;
    /// * a lone string where an array is expected is a one-element array, except
    ///   `scopes_supported`, which is split on whitespace like an OAuth `scope` value;
    /// * `null` and empty entries inside arrays are skipped; strings are trimmed;
    /// * a lone object for `associated_endpoints` is a one-element array;
    /// * relative endpoint URLs are resolved against the base (SC-1.5) and reported by
    ///   [`validate`](Self::validate) as a warning;
    /// * `issuer` is kept verbatim (it is compared as a string with an ID token's `iss`) and
    ///   checked by [`validate`](Self::validate), not here, so that a broken issuer does not
    ///   stop clients that do not use OpenID Connect.
    ///
    /// Refused: a body that is not a JSON object, a field of the wrong type (the error names
    /// its JSON path), a missing `token_endpoint`, and any endpoint URL that
    /// [`check_document_endpoint`] refuses (P15: `javascript:`, plain HTTP to a remote host,
    /// plain HTTP named by an `https` base, ...).
    pub fn from_json(base: &FhirBaseUrl, body: &[u8]) -> Result<Self, DiscoveryError> {
        let url = base.smart_configuration_url();
        let object = parse_json_object(&url, body)?;
        Self::from_well_known_object(base, url, &object)
    }

    pub(crate) fn from_well_known_object(
        base: &FhirBaseUrl,
        source_url: Url,
        object: &Map<String, Value>,
    ) -> Result<Self, DiscoveryError> {
        let shown = display_url(&source_url);
        let fields = Fields::new(&shown, object, "");
        let mut relative_endpoints = Vec::new();
        let mut endpoint = |key: &str| -> Result<Option<Url>, DiscoveryError> {
            match fields.string(key)? {
                None => Ok(None),
                Some(raw) => {
                    let (url, relative) = resolve_endpoint(base, key, raw)?;
                    if relative {
                        relative_endpoints.push(key.to_owned());
                    }
                    Ok(Some(url))
                }
            }
        };

        let token_raw =
            fields
                .string("token_endpoint")?
                .ok_or_else(|| DiscoveryError::MissingField {
                    url: shown.clone(),
                    field: "token_endpoint".to_owned(),
                })?;
        let token_endpoint =
            endpoint("token_endpoint")?.ok_or_else(|| DiscoveryError::MissingField {
                url: shown.clone(),
                field: "token_endpoint".to_owned(),
            })?;
        let token_endpoint_advertised = if Url::parse(token_raw).is_ok() {
            token_raw.to_owned()
        } else {
            token_endpoint.as_str().to_owned()
        };
        let jwks_uri = endpoint("jwks_uri")?;
        let authorization_endpoint = endpoint("authorization_endpoint")?;
        let registration_endpoint = endpoint("registration_endpoint")?;
        let smart_app_state_endpoint = endpoint("smart_app_state_endpoint")?;
        let user_access_brand_bundle = endpoint("user_access_brand_bundle")?;
        let management_endpoint = endpoint("management_endpoint")?;
        let introspection_endpoint = endpoint("introspection_endpoint")?;
        let revocation_endpoint = endpoint("revocation_endpoint")?;

        let associated_endpoints = match fields.value("associated_endpoints") {
            None => None,
            Some(_) => {
                let mut out = Vec::new();
                for (path, entry) in fields.objects("associated_endpoints")? {
                    let entry_fields = Fields::new(&shown, entry, &path);
                    let url_path = entry_fields.path_of("url");
                    let raw = entry_fields.string("url")?.ok_or_else(|| {
                        DiscoveryError::MissingField {
                            url: shown.clone(),
                            field: url_path.clone(),
                        }
                    })?;
                    let (url, relative) = resolve_endpoint(base, &url_path, raw)?;
                    if relative {
                        relative_endpoints.push(url_path);
                    }
                    let capabilities = entry_fields
                        .strings("capabilities", LoneString::One)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(Capability::from)
                        .collect();
                    out.push(AssociatedEndpoint { url, capabilities });
                }
                Some(out)
            }
        };

        let extra = object
            .iter()
            .filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        Ok(Self {
            base: base.clone(),
            source: ConfigurationSource::WellKnown,
            source_url,
            smart_service_declared: None,
            issuer: fields.string("issuer")?.map(str::to_owned),
            jwks_uri,
            authorization_endpoint,
            token_endpoint,
            token_endpoint_advertised,
            token_endpoint_auth_methods_supported: fields
                .strings("token_endpoint_auth_methods_supported", LoneString::One)?,
            token_endpoint_auth_signing_alg_values_supported: fields.strings(
                "token_endpoint_auth_signing_alg_values_supported",
                LoneString::One,
            )?,
            registration_endpoint,
            smart_app_state_endpoint,
            associated_endpoints,
            user_access_brand_bundle,
            user_access_brand_identifier: fields.object("user_access_brand_identifier")?.cloned(),
            scopes_supported: fields.strings("scopes_supported", LoneString::SplitWhitespace)?,
            response_types_supported: fields
                .strings("response_types_supported", LoneString::One)?,
            management_endpoint,
            introspection_endpoint,
            revocation_endpoint,
            grant_types_supported: fields.strings("grant_types_supported", LoneString::One)?,
            code_challenge_methods_supported: fields
                .strings("code_challenge_methods_supported", LoneString::One)?,
            capabilities: fields
                .strings("capabilities", LoneString::One)?
                .map(|caps| caps.into_iter().map(Capability::from).collect()),
            relative_endpoints,
            extra,
        })
    }

    /// The configuration as a `.well-known/smart-configuration` JSON document: every known field
    /// with endpoints resolved (SC-1.5), absent fields left out, unknown fields kept, plus
    /// `"source"` (`"well-known"` or `"capability-statement"`) saying where it came from.
    pub fn to_json(&self) -> Value {
        fn put<T: serde::Serialize>(m: &mut Map<String, Value>, k: &str, v: Option<T>) {
            if let Some(v) = v.and_then(|v| serde_json::to_value(v).ok()) {
                m.insert(k.to_owned(), v);
            }
        }
        fn url(u: Option<&Url>) -> Option<&str> {
            u.map(Url::as_str)
        }
        let mut m = self.extra.clone();
        m.insert(
            "source".to_owned(),
            Value::from(match self.source {
                ConfigurationSource::WellKnown => "well-known",
                ConfigurationSource::CapabilityStatement => "capability-statement",
            }),
        );
        put(&mut m, "issuer", self.issuer());
        put(&mut m, "jwks_uri", url(self.jwks_uri()));
        put(
            &mut m,
            "authorization_endpoint",
            url(self.authorization_endpoint()),
        );
        put(
            &mut m,
            "token_endpoint",
            Some(self.token_endpoint_as_advertised()),
        );
        put(
            &mut m,
            "token_endpoint_auth_methods_supported",
            self.token_endpoint_auth_methods_supported(),
        );
        put(
            &mut m,
            "token_endpoint_auth_signing_alg_values_supported",
            self.token_endpoint_auth_signing_alg_values_supported(),
        );
        put(
            &mut m,
            "registration_endpoint",
            url(self.registration_endpoint()),
        );
        put(
            &mut m,
            "smart_app_state_endpoint",
            url(self.smart_app_state_endpoint()),
        );
        put(
            &mut m,
            "associated_endpoints",
            self.associated_endpoints().map(|eps| {
                eps.iter()
                    .map(|e| {
                        serde_json::json!({
                            "url": e.url.as_str(),
                            "capabilities": e.capabilities.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })
                    })
                    .collect::<Vec<_>>()
            }),
        );
        put(
            &mut m,
            "user_access_brand_bundle",
            url(self.user_access_brand_bundle()),
        );
        put(
            &mut m,
            "user_access_brand_identifier",
            self.user_access_brand_identifier(),
        );
        put(&mut m, "scopes_supported", self.scopes_supported());
        put(
            &mut m,
            "response_types_supported",
            self.response_types_supported(),
        );
        put(
            &mut m,
            "management_endpoint",
            url(self.management_endpoint()),
        );
        put(
            &mut m,
            "introspection_endpoint",
            url(self.introspection_endpoint()),
        );
        put(
            &mut m,
            "revocation_endpoint",
            url(self.revocation_endpoint()),
        );
        put(
            &mut m,
            "grant_types_supported",
            self.grant_types_supported(),
        );
        put(
            &mut m,
            "code_challenge_methods_supported",
            self.code_challenge_methods_supported(),
        );
        put(
            &mut m,
            "capabilities",
            self.capabilities()
                .map(|c| c.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
        Value::Object(m)
    }

    /// The FHIR base this configuration was discovered for.
    pub fn base(&self) -> &FhirBaseUrl {
        &self.base
    }

    /// Where the configuration came from.
    pub fn source(&self) -> ConfigurationSource {
        self.source
    }

    /// The URL of the document it was read from.
    pub fn source_url(&self) -> &Url {
        &self.source_url
    }

    /// For the CapabilityStatement fallback: whether `rest.security.service` carries the
    /// `SMART-on-FHIR` code (noted, not required). `None` for the `.well-known` source.
    pub fn smart_service_declared(&self) -> Option<bool> {
        self.smart_service_declared
    }

    /// `issuer`, verbatim (conditional: required with `sso-openid-connect`).
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// `jwks_uri` (conditional: required with `sso-openid-connect`).
    pub fn jwks_uri(&self) -> Option<&Url> {
        self.jwks_uri.as_ref()
    }

    /// `authorization_endpoint` (conditional: required with `launch-ehr` or
    /// `launch-standalone`). See [`require_authorization_endpoint`](Self::require_authorization_endpoint).
    pub fn authorization_endpoint(&self) -> Option<&Url> {
        self.authorization_endpoint.as_ref()
    }

    /// `token_endpoint` (required), resolved and checked.
    pub fn token_endpoint(&self) -> &Url {
        &self.token_endpoint
    }

    /// The token endpoint exactly as the server wrote it when it was absolute (the resolved URL
    /// when it was relative). Use this string as a client assertion's `aud` (SC-2.10): URL
    /// normalisation (a default port, letter case in the host) could otherwise change it.
    pub fn token_endpoint_as_advertised(&self) -> &str {
        &self.token_endpoint_advertised
    }

    /// `token_endpoint_auth_methods_supported`, e.g. `private_key_jwt`, `client_secret_basic`.
    pub fn token_endpoint_auth_methods_supported(&self) -> Option<&[String]> {
        self.token_endpoint_auth_methods_supported.as_deref()
    }

    /// `token_endpoint_auth_signing_alg_values_supported` (should include `RS384` or `ES384`).
    pub fn token_endpoint_auth_signing_alg_values_supported(&self) -> Option<&[String]> {
        self.token_endpoint_auth_signing_alg_values_supported
            .as_deref()
    }

    /// `registration_endpoint` (dynamic client registration).
    pub fn registration_endpoint(&self) -> Option<&Url> {
        self.registration_endpoint.as_ref()
    }

    /// `smart_app_state_endpoint` (deprecated in favour of `smart-app-state` on the FHIR base).
    pub fn smart_app_state_endpoint(&self) -> Option<&Url> {
        self.smart_app_state_endpoint.as_ref()
    }

    /// `associated_endpoints`.
    pub fn associated_endpoints(&self) -> Option<&[AssociatedEndpoint]> {
        self.associated_endpoints.as_deref()
    }

    /// `user_access_brand_bundle`: the URL of the server's patient-access brands Bundle.
    pub fn user_access_brand_bundle(&self) -> Option<&Url> {
        self.user_access_brand_bundle.as_ref()
    }

    /// `user_access_brand_identifier`: a FHIR `Identifier` object, kept as JSON.
    pub fn user_access_brand_identifier(&self) -> Option<&Map<String, Value>> {
        self.user_access_brand_identifier.as_ref()
    }

    /// `scopes_supported` (not exhaustive: servers may grant others).
    pub fn scopes_supported(&self) -> Option<&[String]> {
        self.scopes_supported.as_deref()
    }

    /// `response_types_supported`.
    pub fn response_types_supported(&self) -> Option<&[String]> {
        self.response_types_supported.as_deref()
    }

    /// `management_endpoint`: where users review the apps that have access.
    pub fn management_endpoint(&self) -> Option<&Url> {
        self.management_endpoint.as_ref()
    }

    /// `introspection_endpoint`.
    pub fn introspection_endpoint(&self) -> Option<&Url> {
        self.introspection_endpoint.as_ref()
    }

    /// `revocation_endpoint`.
    pub fn revocation_endpoint(&self) -> Option<&Url> {
        self.revocation_endpoint.as_ref()
    }

    /// `grant_types_supported` (required in `.well-known`).
    pub fn grant_types_supported(&self) -> Option<&[String]> {
        self.grant_types_supported.as_deref()
    }

    /// `code_challenge_methods_supported` (required in `.well-known`).
    pub fn code_challenge_methods_supported(&self) -> Option<&[String]> {
        self.code_challenge_methods_supported.as_deref()
    }

    /// `capabilities`; `None` when unknown (the CapabilityStatement fallback, or a server that
    /// left them out).
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.capabilities.as_deref()
    }

    /// The fields this crate does not model, as the server sent them (SC-1.6).
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// The endpoint fields that the server gave as relative URLs (SC-1.5).
    pub fn relative_endpoints(&self) -> &[String] {
        &self.relative_endpoints
    }

    /// Whether the server advertises `capability`. `false` when capabilities are unknown.
    pub fn supports(&self, capability: Capability) -> bool {
        self.capabilities
            .as_deref()
            .is_some_and(|caps| caps.contains(&capability))
    }

    /// Whether `grant_type` appears in `grant_types_supported`.
    pub fn supports_grant_type(&self, grant_type: &str) -> bool {
        self.grant_types_supported
            .as_deref()
            .is_some_and(|g| g.iter().any(|x| x == grant_type))
    }

    /// The capability sets the server meets (SC-1.10); empty when capabilities are unknown.
    pub fn capability_sets(&self) -> Vec<CapabilitySet> {
        let caps = self.capabilities.as_deref().unwrap_or_default();
        CapabilitySet::ALL
            .into_iter()
            .filter(|set| set.is_met_by(caps))
            .collect()
    }

    /// Whether to write scopes in SMART v1 syntax (SC-1.14): only when the server advertises
    /// `permission-v1` and not `permission-v2`. v2 otherwise, including when capabilities are
    /// unknown.
    pub fn prefers_v1_scopes(&self) -> bool {
        self.supports(Capability::PermissionV1) && !self.supports(Capability::PermissionV2)
    }

    /// Whether the authorize endpoint may be called with POST (SC-1.12).
    pub fn supports_authorize_post(&self) -> bool {
        self.supports(Capability::AuthorizePost)
    }

    /// The authorization endpoint, or an error when the server has none (SC-1.11): an
    /// authorization-code flow must not start without one.
    pub fn require_authorization_endpoint(&self) -> Result<&Url, DiscoveryError> {
        self.authorization_endpoint
            .as_ref()
            .ok_or_else(|| DiscoveryError::MissingField {
                url: display_url(&self.source_url),
                field: "authorization_endpoint".to_owned(),
            })
    }

    /// Whether the server advertises the authorization-code flow, by grant type or by a launch
    /// capability.
    pub fn advertises_authorization_code(&self) -> bool {
        self.supports_grant_type("authorization_code")
            || self.supports(Capability::LaunchEhr)
            || self.supports(Capability::LaunchStandalone)
    }

    /// Checks the configuration against the IG (SC-1.7, SC-1.11). What counts as an error
    /// depends on the [`source`](Self::source): a CapabilityStatement cannot carry capabilities,
    /// grant types or PKCE methods, so their absence is only noted there.
    ///
    /// PKCE rules (`S256` present, `plain` absent) are errors when the server advertises the
    /// authorization-code flow and warnings otherwise (a backend-services-only server has no use
    /// for PKCE).
    pub fn validate(&self) -> Validation {
        let mut v = Validation::default();
        let well_known = self.source == ConfigurationSource::WellKnown;

        if well_known {
            for (field, present) in [
                (
                    "grant_types_supported",
                    self.grant_types_supported.is_some(),
                ),
                ("capabilities", self.capabilities.is_some()),
            ] {
                if !present {
                    v.errors.push(ValidationIssue::MissingRequired { field });
                }
            }
        } else {
            v.warnings.push(ValidationIssue::CapabilitiesUnknown);
        }

        if let Some(grants) = &self.grant_types_supported {
            if !grants
                .iter()
                .any(|g| g == "authorization_code" || g == "client_credentials")
            {
                v.errors.push(ValidationIssue::NoSmartGrantType {
                    offered: grants.clone(),
                });
            }
        }

        let code_flow = self.advertises_authorization_code();
        let pkce = if code_flow {
            &mut v.errors
        } else {
            &mut v.warnings
        };
        match &self.code_challenge_methods_supported {
            None if well_known => pkce.push(ValidationIssue::MissingRequired {
                field: "code_challenge_methods_supported",
            }),
            None => {}
            Some(methods) => {
                if !methods.iter().any(|m| m == "S256") {
                    pkce.push(ValidationIssue::PkceS256Missing {
                        offered: methods.clone(),
                    });
                }
                if methods.iter().any(|m| m.eq_ignore_ascii_case("plain")) {
                    pkce.push(ValidationIssue::PkcePlainAdvertised);
                }
            }
        }

        if self.authorization_endpoint.is_none() {
            for capability in [Capability::LaunchEhr, Capability::LaunchStandalone] {
                if self.supports(capability.clone()) {
                    v.errors
                        .push(ValidationIssue::AuthorizationEndpointMissing { capability });
                }
            }
        }

        if self.supports(Capability::SsoOpenidConnect) {
            if self.issuer.is_none() {
                v.errors
                    .push(ValidationIssue::OpenIdFieldMissing { field: "issuer" });
            }
            if self.jwks_uri.is_none() {
                v.errors
                    .push(ValidationIssue::OpenIdFieldMissing { field: "jwks_uri" });
            }
        }
        if let Some(issuer) = &self.issuer {
            if let Some(reason) = issuer_problem(issuer, &self.base) {
                let issue = ValidationIssue::InvalidIssuer { reason };
                if self.supports(Capability::SsoOpenidConnect) {
                    v.errors.push(issue);
                } else {
                    v.warnings.push(issue);
                }
            }
        }

        if let Some(algs) = &self.token_endpoint_auth_signing_alg_values_supported {
            if !algs.iter().any(|a| a == "RS384" || a == "ES384") {
                v.warnings
                    .push(ValidationIssue::NoRecommendedSigningAlgorithm {
                        offered: algs.clone(),
                    });
            }
        }

        for field in &self.relative_endpoints {
            v.warnings.push(ValidationIssue::RelativeEndpoint {
                field: field.clone(),
            });
        }
        v
    }
}

/// Why an issuer is unusable, if it is: OpenID Connect issuers are absolute `https` URLs
/// without query or fragment.
fn issuer_problem(issuer: &str, base: &FhirBaseUrl) -> Option<String> {
    match Url::parse(issuer) {
        Err(e) => Some(format!("not an absolute URL ({e})")),
        Ok(url) if url.query().is_some() => Some("carries a query".to_owned()),
        Ok(url) => check_document_endpoint(&url, "issuer", base.url(), base.insecure_http())
            .err()
            .map(|e| e.to_string()),
    }
}

/// The outcome of [`SmartConfiguration::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Validation {
    errors: Vec<ValidationIssue>,
    warnings: Vec<ValidationIssue>,
}

impl Validation {
    /// Departures from the IG that make the configuration unusable or unsafe.
    pub fn errors(&self) -> &[ValidationIssue] {
        &self.errors
    }

    /// Departures worth logging that do not stop a client.
    pub fn warnings(&self) -> &[ValidationIssue] {
        &self.warnings
    }

    /// Whether there are no errors.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The warnings when there are no errors, else [`DiscoveryError::Invalid`] with the errors.
    pub fn into_result(self) -> Result<Vec<ValidationIssue>, DiscoveryError> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(DiscoveryError::Invalid {
                issues: self.errors,
            })
        }
    }
}

#[cfg(test)]
mod to_json_tests {
    use super::*;

    /// SC-1.5, SC-1.6, SC-1.7: the JSON form keeps every field, resolves relative endpoints and
    /// keeps unknown members.
    #[test]
    fn to_json_keeps_fields_resolves_endpoints_and_extras() {
        let base = FhirBaseUrl::parse("https://ehr.example/fhir/r4").unwrap();
        let body = br#"{
            "issuer": "https://ehr.example/auth",
            "token_endpoint": "https://ehr.example:443/auth/token",
            "authorization_endpoint": "authorize",
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["client-confidential-asymmetric", "x-custom"],
            "code_challenge_methods_supported": ["S256"],
            "associated_endpoints": [{"url": "https://ehr.example/dicom", "capabilities": ["launch-ehr"]}],
            "vendor_field": {"a": 1}
        }"#;
        let c = SmartConfiguration::from_json(&base, body).unwrap();
        let j = c.to_json();
        assert_eq!(j["source"], "well-known");
        assert_eq!(j["token_endpoint"], "https://ehr.example:443/auth/token");
        assert_eq!(
            j["authorization_endpoint"],
            "https://ehr.example/fhir/authorize"
        );
        assert_eq!(j["capabilities"][1], "x-custom");
        assert_eq!(
            j["associated_endpoints"][0]["capabilities"][0],
            "launch-ehr"
        );
        assert_eq!(j["vendor_field"]["a"], 1);
        assert!(j.get("jwks_uri").is_none());
    }
}
