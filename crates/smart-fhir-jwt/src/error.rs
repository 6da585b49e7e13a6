use std::time::Duration;

use smart_fhir_core::UrlError;

use crate::{Algorithm, KeyType};

/// Everything that can go wrong in this crate.
///
/// No variant carries key material or token text. Values copied from untrusted input (an `alg` or
/// `kid` from a token header) are shortened and stripped of control characters first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// An algorithm name that this crate does not implement (`none`, `HS256`, `RS512`, …).
    #[error("unsupported JWS algorithm `{alg}` (supported: RS256, RS384, PS384, ES256, ES384)")]
    UnsupportedAlgorithm {
        /// The name given, sanitised.
        alg: String,
    },

    /// The key could not be read.
    #[error("invalid {format} private key: {reason}")]
    InvalidKey {
        /// The format that was being read (`PEM`, `PKCS#8`, `JWK`, …).
        format: &'static str,
        /// Why it failed; never contains key material.
        reason: &'static str,
    },

    /// A key type or curve that this crate does not support (Ed25519, P-521, RSA-PSS-restricted
    /// keys, …).
    #[error("unsupported key type: {what}")]
    UnsupportedKeyType {
        /// What was found.
        what: String,
    },

    /// The PEM holds an encrypted private key; decrypt it first (`openssl pkcs8 -nocrypt`).
    #[error(
        "the private key is encrypted; provide it unencrypted (keep it in a secret store instead)"
    )]
    EncryptedKey,

    /// The input holds no private key (only a public key, a certificate, or a public JWK).
    #[error("no private key found in the {format} input")]
    NoPrivateKey {
        /// The format that was read.
        format: &'static str,
    },

    /// An RSA key shorter than 2048 bits (SC-2.8, RFC 7518 §3.3).
    #[error("RSA key of {bits} bits is too small: at least 2048 bits are required")]
    KeyTooSmall {
        /// The key's modulus length.
        bits: u32,
    },

    /// The requested `kid` is not among the JWKS's private keys.
    #[error("no private key with kid `{kid}` in the JWKS (available: {})", available.join(", "))]
    KidNotFound {
        /// The `kid` asked for.
        kid: String,
        /// The `kid`s of the private keys present.
        available: Vec<String>,
    },

    /// A JWKS holds several private keys and no `kid` was given to choose one.
    #[error("the JWKS holds several private keys; choose one by kid (available: {})", available.join(", "))]
    AmbiguousKey {
        /// The `kid`s of the candidate keys (`<none>` for a key without one).
        available: Vec<String>,
    },

    /// The algorithm cannot be used with the key (RS*/PS* need RSA, ES256 needs P-256, ES384
    /// needs P-384), or contradicts the key's own `alg`.
    #[error("algorithm {alg} cannot be used with {key}")]
    AlgorithmKeyMismatch {
        /// The algorithm.
        alg: Algorithm,
        /// The key's type.
        key: KeyType,
    },

    /// A JWK is restricted to another use (`use` other than `sig`, `key_ops` without `sign`).
    #[error("the key is not meant for signatures ({member} says otherwise)")]
    KeyNotForSigning {
        /// The JWK member that forbids it.
        member: &'static str,
    },

    /// An empty `kid`.
    #[error("a kid must not be empty")]
    EmptyKid,

    /// The `jku` URL was refused.
    #[error("invalid jku URL")]
    InvalidJku(#[source] UrlError),

    /// An assertion lifetime of zero or above the 300 seconds SMART allows (SC-2.10, P11).
    #[error("assertion lifetime {lifetime:?} is out of range (1 s to 300 s)")]
    InvalidLifetime {
        /// The lifetime asked for.
        lifetime: Duration,
    },

    /// An empty `client_id`.
    #[error("client_id must not be empty")]
    EmptyClientId,

    /// The assertion audience (the token endpoint) is not an absolute http(s) URL (P8).
    #[error("the assertion audience must be the absolute token endpoint URL: {reason}")]
    InvalidAudience {
        /// Why it was refused.
        reason: &'static str,
    },

    /// A time before the Unix epoch, or too far in the future to encode.
    #[error("the time is outside the range JWT numeric dates can express")]
    InvalidTime,

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// The cryptographic library failed to sign.
    #[error("signing failed")]
    SigningFailed,

    /// Two keys with the same `kid` (SC-2.5, P13).
    #[error("duplicate kid `{kid}` in the JWKS")]
    DuplicateKid {
        /// The repeated `kid`.
        kid: String,
    },

    /// A public JWK without a `kid` (SC-2.3).
    #[error("a JWK in the set has no kid")]
    MissingKid,

    /// A JWK meant for publication carries a private member (SC-2.4, P13).
    #[error("a public JWK must not contain the private member `{member}`")]
    PrivateMemberInPublicJwk {
        /// The offending member.
        member: &'static str,
    },

    /// A JWKS document that is not a JSON object with a `keys` array.
    #[error("invalid JWKS: {reason}")]
    InvalidJwks {
        /// Why it was refused.
        reason: &'static str,
    },

    /// A token larger than the limit this crate parses.
    #[error("the token is {len} bytes long, more than the {max} bytes allowed")]
    TokenTooLarge {
        /// The token's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A token that is not a well-formed compact JWS.
    #[error("malformed token: {reason}")]
    MalformedToken {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The header's `alg` is not in the caller's allow-list, or is not a signature algorithm this
    /// crate implements (`none` and `HS*` never are, P9).
    #[error("the token's algorithm `{alg}` is not allowed")]
    AlgorithmNotAllowed {
        /// The header's `alg`, sanitised.
        alg: String,
    },

    /// The header carries a `crit` member; this crate understands no JWS extension, so it must
    /// refuse the token (RFC 7515 §4.1.11).
    #[error("the token requires an unsupported JWS extension (crit)")]
    UnsupportedCritical,

    /// No key in the JWKS has the header's `kid`. The caller may refetch the JWKS once: the
    /// server may have rotated its keys.
    #[error("no key with kid `{kid}` in the JWKS")]
    UnknownKid {
        /// The header's `kid`, sanitised.
        kid: String,
    },

    /// The token has no `kid` and the JWKS holds no key of the right type for its algorithm.
    #[error("no key in the JWKS fits algorithm {alg}")]
    NoMatchingKey {
        /// The header's algorithm.
        alg: Algorithm,
    },

    /// The token has no `kid` and several keys could have signed it, or the `kid` names
    /// several keys that fit.
    #[error("several keys in the JWKS fit the token; it must name one by kid")]
    AmbiguousVerificationKey,

    /// The key named by the `kid` cannot verify the header's algorithm (wrong key type, or the
    /// key's own `alg` differs).
    #[error("the key with kid `{kid}` cannot verify algorithm {alg}")]
    KeyAlgorithmMismatch {
        /// The key's `kid`, sanitised.
        kid: String,
        /// The header's algorithm.
        alg: Algorithm,
    },

    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,

    /// A registered claim is absent.
    #[error("the token has no `{claim}` claim")]
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },

    /// A registered claim has the wrong JSON type.
    #[error("the token's `{claim}` claim is malformed")]
    InvalidClaim {
        /// The claim's name.
        claim: &'static str,
    },

    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,

    /// `nbf` or `iat` lies in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
}

/// Makes a value taken from untrusted input safe to show: at most 64 characters, no control
/// characters.
pub(crate) fn sanitize(input: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = input
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if input.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_bounds_and_strips_control_characters() {
        assert_eq!(sanitize("k1"), "k1");
        assert_eq!(sanitize("a\nb\u{1b}[31m"), "a?b?[31m");
        let long = "x".repeat(500);
        let s = sanitize(&long);
        assert_eq!(s.chars().count(), 65);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn messages_list_available_kids() {
        let e = JwtError::KidNotFound {
            kid: "k9".into(),
            available: vec!["k1".into(), "k2".into()],
        };
        assert_eq!(
            e.to_string(),
            "no private key with kid `k9` in the JWKS (available: k1, k2)"
        );
    }
}
