//! The findings of [`SmartConfiguration::validate`](crate::SmartConfiguration::validate).
//!
//! A leaf module: [`DiscoveryError`](crate::DiscoveryError) names [`ValidationIssue`], so it
//! must not depend on the configuration code that returns that error.

use std::fmt;

use smart_fhir_core::text::printable;

use crate::capability::Capability;

/// One finding of [`SmartConfiguration::validate`](crate::SmartConfiguration::validate).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationIssue {
    /// A field the IG requires is absent (SC-1.7).
    MissingRequired {
        /// The field.
        field: &'static str,
    },
    /// `grant_types_supported` has neither `authorization_code` nor `client_credentials`.
    NoSmartGrantType {
        /// What the server lists.
        offered: Vec<String>,
    },
    /// `code_challenge_methods_supported` lacks `S256` (SC-1.11).
    PkceS256Missing {
        /// What the server lists.
        offered: Vec<String>,
    },
    /// `code_challenge_methods_supported` lists `plain`, which the IG forbids (SC-1.11). This
    /// crate's clients never use it.
    PkcePlainAdvertised,
    /// A launch capability is advertised without an `authorization_endpoint` (SC-1.7).
    AuthorizationEndpointMissing {
        /// The launch capability.
        capability: Capability,
    },
    /// `sso-openid-connect` is advertised without `issuer` or `jwks_uri` (SC-1.7).
    OpenIdFieldMissing {
        /// The missing field.
        field: &'static str,
    },
    /// `issuer` is not an absolute `https` URL without query or fragment.
    InvalidIssuer {
        /// Why.
        reason: String,
    },
    /// `token_endpoint_auth_signing_alg_values_supported` has neither `RS384` nor `ES384`.
    NoRecommendedSigningAlgorithm {
        /// What the server lists.
        offered: Vec<String>,
    },
    /// An endpoint was given as a relative URL and resolved against the FHIR base (SC-1.5).
    RelativeEndpoint {
        /// The field.
        field: String,
    },
    /// The configuration came from a CapabilityStatement: capabilities, grant types and PKCE
    /// methods are unknown (SC-1.16).
    CapabilitiesUnknown,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingRequired { field } => write!(f, "required `{field}` is missing"),
            Self::NoSmartGrantType { offered } => write!(
                f,
                "grant_types_supported has neither authorization_code nor client_credentials (offers: {})",
                list(offered)
            ),
            Self::PkceS256Missing { offered } => write!(
                f,
                "code_challenge_methods_supported lacks S256 (offers: {})",
                list(offered)
            ),
            Self::PkcePlainAdvertised => {
                f.write_str("code_challenge_methods_supported lists `plain`, which SMART forbids")
            }
            Self::AuthorizationEndpointMissing { capability } => write!(
                f,
                "`{capability}` is advertised but authorization_endpoint is missing"
            ),
            Self::OpenIdFieldMissing { field } => write!(
                f,
                "`sso-openid-connect` is advertised but `{field}` is missing"
            ),
            Self::InvalidIssuer { reason } => write!(f, "issuer is unusable: {reason}"),
            Self::NoRecommendedSigningAlgorithm { offered } => write!(
                f,
                "token_endpoint_auth_signing_alg_values_supported has neither RS384 nor ES384 (offers: {})",
                list(offered)
            ),
            Self::RelativeEndpoint { field } => write!(
                f,
                "`{field}` is a relative URL, resolved against the FHIR base"
            ),
            Self::CapabilitiesUnknown => f.write_str(
                "configuration from the CapabilityStatement: capabilities, grant types and PKCE methods are unknown",
            ),
        }
    }
}

/// A bounded, printable list of server-provided strings for messages.
pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = items.iter().take(10).map(|s| printable(s, 60)).collect();
    let mut text = shown.join(", ");
    if items.len() > 10 {
        text.push_str(&format!(", and {} more", items.len() - 10));
    }
    text
}
