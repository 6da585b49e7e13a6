//! Why a server does not fit the client (SC-1.13): a leaf module, so that the crate's error
//! type can name it without depending on the fit check itself.

use crate::capability::Capability;
use crate::issue::list;

/// Why the server does not fit the client (SC-1.13). Each variant names what is missing and
/// what the server offers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FitError {
    /// The grant is not in `grant_types_supported`.
    #[error("the server does not support grant type {grant} (offers: {})", list(.offered))]
    GrantNotSupported {
        /// The grant the client needs.
        grant: &'static str,
        /// `grant_types_supported`.
        offered: Vec<String>,
    },
    /// The authentication method is not in `token_endpoint_auth_methods_supported`.
    #[error("the server does not support token endpoint authentication {method} (offers: {})", list(.offered))]
    AuthMethodNotSupported {
        /// The method the client needs.
        method: &'static str,
        /// `token_endpoint_auth_methods_supported`.
        offered: Vec<String>,
    },
    /// No candidate algorithm is in `token_endpoint_auth_signing_alg_values_supported`.
    #[error("no common signing algorithm: the client can sign with {} and the server accepts {}", list(.client), list(.offered))]
    NoCommonSigningAlgorithm {
        /// The client's candidates.
        client: Vec<String>,
        /// `token_endpoint_auth_signing_alg_values_supported`.
        offered: Vec<String>,
    },
    /// The profile lists `private_key_jwt` without any algorithm.
    #[error("the client profile lists no signing algorithm for private_key_jwt")]
    NoClientAlgorithms,
    /// A capability the client needs is not advertised.
    #[error("the server does not advertise `{capability}`, needed for {needed_for}")]
    CapabilityMissing {
        /// The missing capability.
        capability: Capability,
        /// What needs it.
        needed_for: &'static str,
    },
    /// The authorization-code flow needs an `authorization_endpoint` (SC-1.11).
    #[error("the server has no authorization_endpoint, needed for the authorization-code flow")]
    AuthorizationEndpointMissing,
    /// The server lists PKCE methods without `S256`; `plain` is never used (SC-1.11).
    #[error("the server does not support PKCE S256 (offers: {}); plain is never used", list(.offered))]
    PkceS256NotSupported {
        /// `code_challenge_methods_supported`.
        offered: Vec<String>,
    },
    /// Backend Services must authenticate with `private_key_jwt` (SC-2.20, SC-3.1).
    #[error("Backend Services (client_credentials) must use private_key_jwt, not {method}")]
    BackendServicesNeedPrivateKeyJwt {
        /// The method in the profile.
        method: &'static str,
    },
}
