use std::fmt;
use std::str::FromStr;

use crate::error::{sanitize, JwtError};

/// A JWS signature algorithm this crate signs and verifies with.
///
/// SMART requires `RS384` and `ES384` for client assertions (SC-2.7); `RS256` is what most
/// OpenID providers sign `id_token`s with (SC-4.34). `none` and the HMAC algorithms are
/// deliberately absent: they cannot be named, so they can never be allowed (P9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    PS384,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::PS384,
        Algorithm::ES256,
        Algorithm::ES384,
    ];

    /// The order in which a client picks the algorithm for its assertions when it may choose:
    /// the two every SMART server must accept first (`RS384`, `ES384`; SC-2.7), then the others
    /// this crate signs with. The one definition of this preference in the workspace.
    pub const PREFERENCE: [Algorithm; 5] = [
        Algorithm::RS384,
        Algorithm::ES384,
        Algorithm::ES256,
        Algorithm::PS384,
        Algorithm::RS256,
    ];

    /// The JOSE name (`"RS384"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::PS384 => "PS384",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
        }
    }

    /// Whether a key of type `key` can sign or verify with this algorithm: RS*/PS* need RSA,
    /// ES256 needs P-256, ES384 needs P-384.
    pub const fn fits(self, key: KeyType) -> bool {
        matches!(
            (self, key),
            (
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::PS384,
                KeyType::Rsa { .. }
            ) | (Algorithm::ES256, KeyType::EcP256)
                | (Algorithm::ES384, KeyType::EcP384)
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = JwtError;

    /// Parses a JOSE algorithm name, case-sensitively as RFC 7515 requires.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| JwtError::UnsupportedAlgorithm { alg: sanitize(s) })
    }
}

/// The type of a key: RSA with its modulus length, or an elliptic curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// RSA.
    Rsa {
        /// Modulus length in bits.
        bits: u32,
    },
    /// EC on NIST P-256 (`crv: "P-256"`).
    EcP256,
    /// EC on NIST P-384 (`crv: "P-384"`).
    EcP384,
}

impl KeyType {
    /// The JWK `kty`: `"RSA"` or `"EC"`.
    pub const fn kty(self) -> &'static str {
        match self {
            KeyType::Rsa { .. } => "RSA",
            KeyType::EcP256 | KeyType::EcP384 => "EC",
        }
    }

    /// The JWK `crv` for EC keys.
    pub const fn curve(self) -> Option<&'static str> {
        match self {
            KeyType::Rsa { .. } => None,
            KeyType::EcP256 => Some("P-256"),
            KeyType::EcP384 => Some("P-384"),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Rsa { bits } => write!(f, "an RSA {bits}-bit key"),
            KeyType::EcP256 => f.write_str("an EC P-256 key"),
            KeyType::EcP384 => f.write_str("an EC P-384 key"),
        }
    }
}

/// What kind of key [`PrivateKey::generate`](crate::PrivateKey::generate) makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeySpec {
    /// RSA, 2048 bits.
    Rsa2048,
    /// RSA, 3072 bits.
    Rsa3072,
    /// RSA, 4096 bits.
    Rsa4096,
    /// EC on P-256.
    P256,
    /// EC on P-384.
    P384,
}

impl KeySpec {
    /// The smallest key that fits `alg`: RS*/PS* → [`KeySpec::Rsa2048`], ES256 →
    /// [`KeySpec::P256`], ES384 → [`KeySpec::P384`].
    pub const fn for_algorithm(alg: Algorithm) -> KeySpec {
        match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::PS384 => KeySpec::Rsa2048,
            Algorithm::ES256 => KeySpec::P256,
            Algorithm::ES384 => KeySpec::P384,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.to_string().parse::<Algorithm>().unwrap(), a);
        }
    }

    #[test]
    fn p9_none_hmac_and_others_are_not_algorithms() {
        for bad in [
            "none", "None", "HS256", "HS384", "HS512", "rs384", "RS512", "ES512", "EdDSA", "",
        ] {
            assert!(
                matches!(
                    bad.parse::<Algorithm>(),
                    Err(JwtError::UnsupportedAlgorithm { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn sc_2_8_algorithms_fit_keys() {
        let rsa = KeyType::Rsa { bits: 2048 };
        assert!(
            Algorithm::RS384.fits(rsa) && Algorithm::PS384.fits(rsa) && Algorithm::RS256.fits(rsa)
        );
        assert!(!Algorithm::ES384.fits(rsa));
        assert!(Algorithm::ES384.fits(KeyType::EcP384));
        assert!(!Algorithm::ES384.fits(KeyType::EcP256));
        assert!(!Algorithm::ES256.fits(KeyType::EcP384));
        assert!(!Algorithm::RS384.fits(KeyType::EcP256));
    }

    #[test]
    fn key_spec_for_algorithm() {
        assert_eq!(KeySpec::for_algorithm(Algorithm::RS384), KeySpec::Rsa2048);
        assert_eq!(KeySpec::for_algorithm(Algorithm::PS384), KeySpec::Rsa2048);
        assert_eq!(KeySpec::for_algorithm(Algorithm::ES256), KeySpec::P256);
        assert_eq!(KeySpec::for_algorithm(Algorithm::ES384), KeySpec::P384);
    }
}
