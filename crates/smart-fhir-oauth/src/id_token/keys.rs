//! The signature step of `id_token` verification (OpenID Connect Core §3.1.3.7, steps 6–8;
//! SC-4.34, P9): choose the issuer's key by the token's `kid` and `alg` from the cached JWKS,
//! and refetch the JWKS once when the `kid` is unknown.

use std::sync::Arc;

use serde_json::{Map, Value};
use smart_fhir_discovery::{Issuer, JwksCache};
use smart_fhir_jwt::{verify, Algorithm, Jwks, JwtError};

use super::error::IdTokenError;

/// The signature algorithms accepted on an `id_token`: RS256 (which SMART requires, SC-4.34),
/// RS384, PS384, ES256 and ES384. `none` and the HMAC algorithms are never accepted (P9).
pub const ID_TOKEN_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Refuses, without any request, a token that no key could make acceptable: malformed, too
/// large, with a refused algorithm or a `crit` header. Verifying against an empty key set stops
/// exactly at the key lookup for every other token.
pub(super) fn precheck(token: &str) -> Result<(), IdTokenError> {
    match verify(token, &Jwks::default(), &ID_TOKEN_ALGORITHMS) {
        Err(
            JwtError::UnknownKid { .. }
            | JwtError::NoMatchingKey { .. }
            | JwtError::AmbiguousVerificationKey
            | JwtError::KeyAlgorithmMismatch { .. },
        )
        | Ok(_) => Ok(()),
        Err(e) => Err(signature_error(e)),
    }
}

/// Verifies the token's signature with the issuer's keys and returns its claims.
///
/// The key is the one the token's `kid` names in the issuer's JWKS, used with the token's
/// `alg` only if that is one of [`ID_TOKEN_ALGORITHMS`] and the key allows it; keys or key URLs
/// in the token's header (`jwk`, `jku`, `x5u`, `x5c`) are never used (P9). A `kid` the cached
/// JWKS lacks makes the issuer's JWKS be fetched again, once, and the signature checked against
/// the new keys ([`JwksCache::refetch`], rate-limited per issuer): the issuer may have rotated
/// its keys since they were cached (SC-4.34).
pub(super) async fn verify_signature(
    cache: &JwksCache,
    issuer: &Issuer,
    token: &str,
) -> Result<Map<String, Value>, IdTokenError> {
    let jwks = cache.keys(issuer).await?;
    let verified = match verify(token, &jwks, &ID_TOKEN_ALGORITHMS) {
        Ok(verified) => verified,
        Err(JwtError::UnknownKid { kid }) => {
            verify_after_refetch(cache, issuer, token, &jwks, kid).await?
        }
        Err(e) => return Err(signature_error(e)),
    };
    Ok(verified.into_claims())
}

/// The unknown-`kid` rule: one refetch, then the key must be there.
async fn verify_after_refetch(
    cache: &JwksCache,
    issuer: &Issuer,
    token: &str,
    stale: &Arc<Jwks>,
    kid: String,
) -> Result<smart_fhir_jwt::VerifiedJws, IdTokenError> {
    match cache.refetch(issuer, stale).await? {
        Some(fresh) => verify(token, &fresh, &ID_TOKEN_ALGORITHMS).map_err(signature_error),
        None => Err(IdTokenError::UnknownKey { kid }),
    }
}

/// The [`IdTokenError`] for a verification failure: an unknown `kid` and a malformed token
/// have their own variants; everything else is a signature failure.
fn signature_error(e: JwtError) -> IdTokenError {
    match e {
        JwtError::UnknownKid { kid } => IdTokenError::UnknownKey { kid },
        JwtError::MalformedToken { reason } => IdTokenError::Malformed {
            reason: reason.to_owned(),
        },
        e @ JwtError::TokenTooLarge { .. } => IdTokenError::Malformed {
            reason: e.to_string(),
        },
        other => IdTokenError::Signature(other),
    }
}
