//! Does the server offer what the client will do (SC-1.13)?

use std::fmt;

use crate::capability::Capability;
use crate::config::SmartConfiguration;
pub use crate::fit_error::FitError;

/// The client-assertion algorithms every SMART server must accept (SC-2.7): chosen first when
/// the server does not list its algorithms.
pub const SMART_REQUIRED_SIGNING_ALGORITHMS: [&str; 2] = ["RS384", "ES384"];

/// The OAuth grant the client will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantKind {
    /// `client_credentials` (Backend Services).
    ClientCredentials,
    /// `authorization_code` (App Launch).
    AuthorizationCode,
}

impl GrantKind {
    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::AuthorizationCode => "authorization_code",
        }
    }
}

/// How the client will authenticate at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// `private_key_jwt` (asymmetric), with the JWS algorithms the client can sign with, most
    /// preferred first.
    PrivateKeyJwt {
        /// Candidate `alg` values, e.g. `["ES384", "RS384"]`.
        algorithms: Vec<String>,
    },
    /// `client_secret_basic` (symmetric, HTTP Basic).
    ClientSecretBasic,
    /// `client_secret_post` (symmetric, form body).
    ClientSecretPost,
    /// A public client: no authentication, `client_id` in the body.
    None,
}

impl ClientAuthMethod {
    /// `private_key_jwt` with these candidate algorithms, most preferred first.
    pub fn private_key_jwt<I, S>(algorithms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::PrivateKeyJwt {
            algorithms: algorithms.into_iter().map(Into::into).collect(),
        }
    }

    /// The `token_endpoint_auth_methods_supported` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }

    /// The SMART capability that announces support for this kind of client.
    pub fn capability(&self) -> Capability {
        match self {
            Self::PrivateKeyJwt { .. } => Capability::ClientConfidentialAsymmetric,
            Self::ClientSecretBasic | Self::ClientSecretPost => {
                Capability::ClientConfidentialSymmetric
            }
            Self::None => Capability::ClientPublic,
        }
    }
}

/// How an App Launch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LaunchKind {
    /// Launched from the EHR with `iss` and `launch`.
    Ehr,
    /// Launched by the app itself.
    Standalone,
}

impl LaunchKind {
    /// The capability that announces this launch.
    pub fn capability(self) -> Capability {
        match self {
            Self::Ehr => Capability::LaunchEhr,
            Self::Standalone => Capability::LaunchStandalone,
        }
    }
}

/// What the client will do, for [`SmartConfiguration::check_fit`].
///
/// ```
/// use smart_fhir_discovery::{ClientAuthMethod, ClientProfile, LaunchKind};
///
/// let backend = ClientProfile::backend_services(["ES384", "RS384"]);
/// let app = ClientProfile::authorization_code(ClientAuthMethod::None).launch(LaunchKind::Standalone);
/// # let _ = (backend, app);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProfile {
    grant: GrantKind,
    auth: ClientAuthMethod,
    launch: Option<LaunchKind>,
}

impl ClientProfile {
    /// A profile with this grant and authentication.
    pub fn new(grant: GrantKind, auth: ClientAuthMethod) -> Self {
        Self {
            grant,
            auth,
            launch: None,
        }
    }

    /// Backend Services: `client_credentials` with `private_key_jwt` and these candidate
    /// algorithms, most preferred first.
    pub fn backend_services<I, S>(algorithms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(
            GrantKind::ClientCredentials,
            ClientAuthMethod::private_key_jwt(algorithms),
        )
    }

    /// App Launch: `authorization_code` with this authentication.
    pub fn authorization_code(auth: ClientAuthMethod) -> Self {
        Self::new(GrantKind::AuthorizationCode, auth)
    }

    /// The launch the app will use (checked against `launch-ehr` / `launch-standalone`).
    pub fn launch(mut self, kind: LaunchKind) -> Self {
        self.launch = Some(kind);
        self
    }

    /// The grant.
    pub fn grant(&self) -> GrantKind {
        self.grant
    }

    /// The authentication method.
    pub fn auth(&self) -> &ClientAuthMethod {
        &self.auth
    }

    /// The launch kind, if set.
    pub fn launch_kind(&self) -> Option<LaunchKind> {
        self.launch
    }
}

/// The outcome of a successful [`SmartConfiguration::check_fit`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fit {
    /// The `token_endpoint_auth_methods_supported` value the client will use.
    pub auth_method: &'static str,
    /// For `private_key_jwt`: the algorithm to sign client assertions with.
    pub signing_algorithm: Option<String>,
    /// What could not be checked because the server does not say.
    pub notes: Vec<FitNote>,
}

/// Something [`SmartConfiguration::check_fit`] allowed without being able to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FitNote {
    /// `grant_types_supported` is absent.
    GrantTypesNotListed,
    /// `token_endpoint_auth_methods_supported` is absent.
    AuthMethodsNotListed,
    /// `token_endpoint_auth_signing_alg_values_supported` is absent: the algorithm was chosen
    /// from the client's candidates, preferring `RS384` and `ES384`, which every SMART server
    /// must accept.
    SigningAlgorithmsNotListed,
    /// `capabilities` is absent (for instance the CapabilityStatement fallback).
    CapabilitiesUnknown,
    /// `code_challenge_methods_supported` is absent; the client uses `S256` regardless.
    PkceMethodsNotListed,
}

impl fmt::Display for FitNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GrantTypesNotListed => "the server does not list its grant types",
            Self::AuthMethodsNotListed => "the server does not list its token endpoint authentication methods",
            Self::SigningAlgorithmsNotListed => "the server does not list its signing algorithms; chose from the client's candidates",
            Self::CapabilitiesUnknown => "the server's capabilities are unknown",
            Self::PkceMethodsNotListed => "the server does not list its PKCE methods; S256 is used",
        })
    }
}

impl SmartConfiguration {
    /// Checks that the server offers what `profile` will do (SC-1.13) and picks the signing
    /// algorithm for `private_key_jwt`.
    ///
    /// * The grant must be in `grant_types_supported`.
    /// * A confidential client's method must be in `token_endpoint_auth_methods_supported`; a
    ///   public client needs `client-public` (SMART servers do not list `none`).
    /// * The client type's capability (`client-confidential-asymmetric`,
    ///   `client-confidential-symmetric`, `client-public`) and the launch capability must be
    ///   advertised.
    /// * `private_key_jwt`: the algorithm is the first of the client's candidates that the
    ///   server lists; when the server lists none, the first candidate among `RS384`/`ES384`
    ///   (else the first candidate).
    /// * The authorization-code flow needs `authorization_endpoint` and `S256` (SC-1.11).
    ///
    /// A list the server leaves out allows the step and adds a [`FitNote`].
    pub fn check_fit(&self, profile: &ClientProfile) -> Result<Fit, FitError> {
        let mut notes = Vec::new();
        let auth = profile.auth();

        if profile.grant() == GrantKind::ClientCredentials
            && !matches!(auth, ClientAuthMethod::PrivateKeyJwt { .. })
        {
            return Err(FitError::BackendServicesNeedPrivateKeyJwt {
                method: auth.as_str(),
            });
        }

        match self.grant_types_supported() {
            Some(grants) if !grants.iter().any(|g| g == profile.grant().as_str()) => {
                return Err(FitError::GrantNotSupported {
                    grant: profile.grant().as_str(),
                    offered: grants.to_vec(),
                })
            }
            Some(_) => {}
            None => notes.push(FitNote::GrantTypesNotListed),
        }

        if !matches!(auth, ClientAuthMethod::None) {
            match self.token_endpoint_auth_methods_supported() {
                Some(methods) if !methods.iter().any(|m| m == auth.as_str()) => {
                    return Err(FitError::AuthMethodNotSupported {
                        method: auth.as_str(),
                        offered: methods.to_vec(),
                    })
                }
                Some(_) => {}
                None => notes.push(FitNote::AuthMethodsNotListed),
            }
        }

        let capabilities_known = self.capabilities().is_some();
        if capabilities_known {
            let needed_for = match auth {
                ClientAuthMethod::PrivateKeyJwt { .. } => "private_key_jwt authentication",
                ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
                    "client secret authentication"
                }
                ClientAuthMethod::None => "a public client",
            };
            if !self.supports(auth.capability()) {
                return Err(FitError::CapabilityMissing {
                    capability: auth.capability(),
                    needed_for,
                });
            }
            if let Some(launch) = profile.launch_kind() {
                if !self.supports(launch.capability()) {
                    return Err(FitError::CapabilityMissing {
                        capability: launch.capability(),
                        needed_for: match launch {
                            LaunchKind::Ehr => "an EHR launch",
                            LaunchKind::Standalone => "a standalone launch",
                        },
                    });
                }
            }
        } else {
            notes.push(FitNote::CapabilitiesUnknown);
        }

        let signing_algorithm = match auth {
            ClientAuthMethod::PrivateKeyJwt { algorithms } => {
                Some(self.choose_algorithm(algorithms, &mut notes)?)
            }
            _ => None,
        };

        if profile.grant() == GrantKind::AuthorizationCode {
            if self.authorization_endpoint().is_none() {
                return Err(FitError::AuthorizationEndpointMissing);
            }
            match self.code_challenge_methods_supported() {
                Some(methods) if !methods.iter().any(|m| m == "S256") => {
                    return Err(FitError::PkceS256NotSupported {
                        offered: methods.to_vec(),
                    })
                }
                Some(_) => {}
                None => notes.push(FitNote::PkceMethodsNotListed),
            }
        }

        Ok(Fit {
            auth_method: auth.as_str(),
            signing_algorithm,
            notes,
        })
    }

    /// The one choice of the assertion algorithm among the client's candidates (most preferred
    /// first, as `smart_fhir_jwt::PrivateKey::signing_algorithms` orders them): the first the
    /// server lists; when it lists none, the first that every SMART server must accept.
    fn choose_algorithm(
        &self,
        candidates: &[String],
        notes: &mut Vec<FitNote>,
    ) -> Result<String, FitError> {
        if candidates.is_empty() {
            return Err(FitError::NoClientAlgorithms);
        }
        match self.token_endpoint_auth_signing_alg_values_supported() {
            Some(offered) => candidates
                .iter()
                .find(|c| offered.contains(c))
                .cloned()
                .ok_or_else(|| FitError::NoCommonSigningAlgorithm {
                    client: candidates.to_vec(),
                    offered: offered.to_vec(),
                }),
            None => {
                notes.push(FitNote::SigningAlgorithmsNotListed);
                Ok(candidates
                    .iter()
                    .find(|c| SMART_REQUIRED_SIGNING_ALGORITHMS.contains(&c.as_str()))
                    .or_else(|| candidates.first())
                    .cloned()
                    .unwrap_or_default())
            }
        }
    }
}
