//! Choosing the signing algorithm and checking that the server fits a Backend Services client
//! (SC-1.13, SC-2.7, SC-3.1).

use smart_fhir_discovery::{ClientProfile, SmartConfiguration};
use smart_fhir_jwt::{Algorithm, AssertionSigner, PrivateKey};

use crate::error::OAuthError;

/// Preference order: the two algorithms every SMART server must accept first (SC-2.7), then the
/// others this library signs with.
const PREFERENCE: [Algorithm; 5] = [
    Algorithm::RS384,
    Algorithm::ES384,
    Algorithm::ES256,
    Algorithm::PS384,
    Algorithm::RS256,
];

/// Picks the algorithm for the client assertion: the caller's, or the first of [`PREFERENCE`]
/// that fits the key; with a discovered configuration, the server must offer client credentials
/// with `private_key_jwt` and accept the algorithm (unless the fit check is skipped).
pub(crate) fn choose_algorithm(
    key: &PrivateKey,
    requested: Option<Algorithm>,
    config: Option<&SmartConfiguration>,
    skip_fit_check: bool,
) -> Result<Algorithm, OAuthError> {
    let candidates: Vec<Algorithm> = match requested {
        Some(alg) => {
            if AssertionSigner::new(key, alg).is_err() {
                return Err(OAuthError::Config {
                    field: "algorithm",
                    reason: format!("{alg} does not fit the private key"),
                });
            }
            vec![alg]
        }
        None => PREFERENCE
            .into_iter()
            .filter(|alg| AssertionSigner::new(key, *alg).is_ok())
            .collect(),
    };
    let first = *candidates.first().ok_or_else(|| OAuthError::Config {
        field: "private_key",
        reason: "no supported signing algorithm fits this key".to_owned(),
    })?;
    let Some(config) = config.filter(|_| !skip_fit_check) else {
        return Ok(first);
    };
    let profile = ClientProfile::backend_services(candidates.iter().map(|a| a.to_string()));
    let fit = config.check_fit(&profile).map_err(OAuthError::Unfit)?;
    Ok(fit
        .signing_algorithm
        .and_then(|name| candidates.iter().copied().find(|a| a.to_string() == name))
        .unwrap_or(first))
}
