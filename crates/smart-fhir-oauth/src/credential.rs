//! The `private_key_jwt` client credential shared by Backend Services and App Launch, and the
//! one choice of its signing algorithm (SC-1.13, SC-2.7, SC-2.9 – SC-2.13).

use std::fmt;
use std::time::{Duration, SystemTime};

use smart_fhir_core::InsecureHttp;
use smart_fhir_discovery::{ClientAuthMethod, Fit};
use smart_fhir_jwt::{Algorithm, AssertionSigner, ClientAssertion, JwtError, PrivateKey};

/// How long a signed assertion is valid, by default (the IG allows at most 300 s; a shorter
/// lifetime leaves room for clock skew between client and server).
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(120);

/// A `private_key_jwt` client credential: the key, and how its assertions are signed (the
/// algorithm, the `kid` and `jku` headers, the assertion lifetime).
///
/// One value for both grants: [`BackendServicesBuilder::private_key`](crate::BackendServicesBuilder::private_key)
/// and [`ClientAuth::PrivateKeyJwt`](crate::ClientAuth::PrivateKeyJwt). A [`PrivateKey`]
/// converts into one with every default, so `.private_key(key)` is enough in the common case.
///
/// ```
/// use std::time::Duration;
/// use smart_fhir_jwt::{Algorithm, KeySpec, PrivateKey};
/// use smart_fhir_oauth::PrivateKeyJwt;
///
/// let key = PrivateKey::generate(KeySpec::P384)?;
/// let credential = PrivateKeyJwt::new(key)
///     .algorithm(Algorithm::ES384)
///     .jku("https://app.example/.well-known/jwks.json")
///     .assertion_lifetime(Duration::from_secs(60));
/// # let _ = credential;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct PrivateKeyJwt {
    key: PrivateKey,
    algorithm: Option<Algorithm>,
    kid: Option<String>,
    jku: Option<String>,
    assertion_lifetime: Duration,
}

impl fmt::Debug for PrivateKeyJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeyJwt")
            .field("key", &format_args!("[redacted] {}", self.key.key_type()))
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("jku", &self.jku)
            .field("assertion_lifetime", &self.assertion_lifetime)
            .finish()
    }
}

impl From<PrivateKey> for PrivateKeyJwt {
    fn from(key: PrivateKey) -> Self {
        Self::new(key)
    }
}

/// Why a [`PrivateKeyJwt`] cannot be used: the setting and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialIssue {
    pub(crate) field: &'static str,
    pub(crate) reason: String,
}

impl PrivateKeyJwt {
    /// `key` with the defaults: the algorithm chosen per server, the key's own `kid`, no `jku`,
    /// assertions valid for [`DEFAULT_ASSERTION_LIFETIME`].
    pub fn new(key: PrivateKey) -> Self {
        Self {
            key,
            algorithm: None,
            kid: None,
            jku: None,
            assertion_lifetime: DEFAULT_ASSERTION_LIFETIME,
        }
    }

    /// The signing algorithm. Default: the first the server accepts of those that fit the key,
    /// in the order of [`Algorithm::PREFERENCE`] (RS384 for RSA, ES384 for P-384, ES256 for
    /// P-256; SC-1.13, SC-2.7).
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.algorithm = Some(alg);
        self
    }

    /// The `kid` header (default: the key's own `kid`, or its RFC 7638 thumbprint).
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The `jku` header: the client's registered JWKS URL (SC-2.9).
    pub fn jku(mut self, jku: impl Into<String>) -> Self {
        self.jku = Some(jku.into());
        self
    }

    /// How long each assertion is valid, 1 to 300 s (default [`DEFAULT_ASSERTION_LIFETIME`];
    /// SC-2.10).
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion_lifetime = lifetime;
        self
    }

    /// The signing key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The configured `jku`, if any.
    pub fn jku_url(&self) -> Option<&str> {
        self.jku.as_deref()
    }

    /// The algorithms this credential may sign with, most preferred first: the configured one
    /// if it fits the key, else every algorithm that fits ([`PrivateKey::signing_algorithms`]).
    /// Also checks the assertion lifetime; an error names the setting at fault.
    pub(crate) fn check(&self) -> Result<Vec<Algorithm>, CredentialIssue> {
        if self.assertion_lifetime < Duration::from_secs(1)
            || self.assertion_lifetime > smart_fhir_jwt::MAX_ASSERTION_LIFETIME
        {
            return Err(CredentialIssue {
                field: "assertion_lifetime",
                reason: "must be between 1 and 300 seconds (SC-2.10)".to_owned(),
            });
        }
        let candidates = match self.algorithm {
            Some(alg) if self.key.can_sign_with(alg) => vec![alg],
            Some(alg) => {
                return Err(CredentialIssue {
                    field: "algorithm",
                    reason: format!("{alg} does not fit the private key"),
                })
            }
            None => self.key.signing_algorithms(),
        };
        if candidates.is_empty() {
            return Err(CredentialIssue {
                field: "private_key",
                reason: "no supported signing algorithm fits this key".to_owned(),
            });
        }
        Ok(candidates)
    }

    /// The client authentication method as discovery's fit check knows it.
    pub(crate) fn auth_method(candidates: &[Algorithm]) -> ClientAuthMethod {
        ClientAuthMethod::private_key_jwt(candidates.iter().map(|a| a.as_str()))
    }

    /// A signer for `alg` with this credential's headers.
    pub(crate) fn signer(
        &self,
        alg: Algorithm,
        insecure: InsecureHttp,
    ) -> Result<AssertionSigner, JwtError> {
        let mut signer = AssertionSigner::builder(&self.key, alg).insecure_http(insecure);
        if let Some(kid) = &self.kid {
            signer = signer.kid(kid.clone());
        }
        if let Some(jku) = &self.jku {
            signer = signer.jku(jku.clone());
        }
        signer.build()
    }

    /// A fresh assertion from `signer` (SC-2.11), valid for this credential's lifetime.
    pub(crate) fn sign(
        &self,
        signer: &AssertionSigner,
        client_id: &str,
        token_endpoint: &str,
        now: SystemTime,
    ) -> Result<ClientAssertion, JwtError> {
        signer.sign(client_id, token_endpoint, self.assertion_lifetime, now)
    }
}

/// The one choice of the assertion algorithm: the one discovery's fit check picked among the
/// candidates, or, without a fit check, the most preferred candidate.
pub(crate) fn chosen_algorithm(candidates: &[Algorithm], fit: Option<&Fit>) -> Option<Algorithm> {
    fit.and_then(|f| f.signing_algorithm.as_deref())
        .and_then(|name| candidates.iter().copied().find(|a| a.as_str() == name))
        .or_else(|| candidates.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smart_fhir_jwt::KeySpec;

    /// SC-2.7, SC-1.13: the candidates follow the one preference; a configured algorithm that
    /// does not fit the key is refused by name; the lifetime is bounded (SC-2.10).
    #[test]
    fn sc_2_7_candidates_and_checks() {
        let rsa = PrivateKey::generate(KeySpec::Rsa2048).unwrap();
        let cred = PrivateKeyJwt::from(rsa.clone());
        assert_eq!(
            cred.check().unwrap(),
            [Algorithm::RS384, Algorithm::PS384, Algorithm::RS256]
        );
        let wrong = PrivateKeyJwt::new(rsa.clone()).algorithm(Algorithm::ES384);
        assert_eq!(wrong.check().unwrap_err().field, "algorithm");
        for bad in [Duration::ZERO, Duration::from_secs(301)] {
            let e = PrivateKeyJwt::new(rsa.clone())
                .assertion_lifetime(bad)
                .check()
                .unwrap_err();
            assert_eq!(e.field, "assertion_lifetime");
        }
        let printed = format!("{cred:?}");
        assert!(
            printed.contains("[redacted]") && !printed.contains("BEGIN"),
            "{printed}"
        );
    }

    /// SC-1.13: the fit check's choice wins; without one, the most preferred candidate.
    #[test]
    fn sc_1_13_chosen_algorithm() {
        let candidates = [Algorithm::RS384, Algorithm::RS256];
        assert_eq!(chosen_algorithm(&candidates, None), Some(Algorithm::RS384));
        assert_eq!(chosen_algorithm(&[], None), None);
    }
}
