//! PKCE code verifiers and S256 challenges (RFC 7636).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use smart_fhir_core::PkceCodeVerifier;
use zeroize::Zeroizing;

use crate::error::{PkceError, ValueKind};
use crate::random::{check_unreserved, random_base64url, Fill, OS_FILL};

/// A validated PKCE code verifier: 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1,
/// SC-4.8).
///
/// It wraps [`PkceCodeVerifier`], so it prints as `PkceVerifier([redacted])`, is zeroized on drop
/// and is not `Clone`: a verifier belongs to one authorization-code flow (P4). Generate a fresh one
/// for every flow with [`PkceVerifier::generate`], or load a stored one with
/// [`PkceVerifier::from_string`].
pub struct PkceVerifier(PkceCodeVerifier);

impl PkceVerifier {
    /// The shortest verifier RFC 7636 allows, in characters.
    pub const MIN_LEN: usize = 43;
    /// The longest verifier RFC 7636 allows, in characters.
    pub const MAX_LEN: usize = 128;
    /// The random bytes [`PkceVerifier::generate`] draws: 256 bits, as RFC 7636 recommends.
    pub const DEFAULT_ENTROPY_BYTES: usize = 32;
    /// The fewest random bytes [`PkceVerifier::generate_with_len`] accepts (43 characters).
    pub const MIN_ENTROPY_BYTES: usize = 32;
    /// The most random bytes [`PkceVerifier::generate_with_len`] accepts (128 characters).
    pub const MAX_ENTROPY_BYTES: usize = 96;

    /// Generates a verifier from 32 bytes of the operating system's secure random number
    /// generator, encoded as unpadded base64url: 43 characters carrying 256 bits of entropy.
    ///
    /// # Errors
    ///
    /// [`PkceError::Random`] if the operating system's generator fails.
    pub fn generate() -> Result<Self, PkceError> {
        Self::generate_with_len(Self::DEFAULT_ENTROPY_BYTES)
    }

    /// Generates a verifier from `n_bytes` bytes of the operating system's secure random number
    /// generator, encoded as unpadded base64url: `ceil(4 * n_bytes / 3)` characters, from 43 (32
    /// bytes) to 128 (96 bytes).
    ///
    /// # Errors
    ///
    /// [`PkceError::EntropyLength`] if `n_bytes` is outside `32..=96`; [`PkceError::Random`] if
    /// the operating system's generator fails.
    pub fn generate_with_len(n_bytes: usize) -> Result<Self, PkceError> {
        Self::generate_from(n_bytes, OS_FILL)
    }

    fn generate_from(n_bytes: usize, fill: Fill) -> Result<Self, PkceError> {
        if !(Self::MIN_ENTROPY_BYTES..=Self::MAX_ENTROPY_BYTES).contains(&n_bytes) {
            return Err(PkceError::EntropyLength { bytes: n_bytes });
        }
        let encoded = random_base64url(n_bytes, fill)?;
        Ok(Self(PkceCodeVerifier::new(encoded)))
    }

    /// Loads a verifier, for example one kept in a session store between the authorize redirect
    /// and the token request.
    ///
    /// # Errors
    ///
    /// [`PkceError::Character`] if the value holds a character outside `[A-Za-z0-9-._~]`;
    /// [`PkceError::Length`] if it is not 43 to 128 characters long. Neither error carries the
    /// value, and a refused value is zeroized.
    pub fn from_string(value: impl Into<String>) -> Result<Self, PkceError> {
        let mut value = Zeroizing::new(value.into());
        check_unreserved(
            ValueKind::CodeVerifier,
            &value,
            Self::MIN_LEN,
            Self::MAX_LEN,
        )?;
        // Moving the buffer out leaves an empty string behind; nothing is copied.
        Ok(Self(PkceCodeVerifier::new(std::mem::take(&mut *value))))
    }

    /// Validates a [`PkceCodeVerifier`] built elsewhere, with the same rules as
    /// [`PkceVerifier::from_string`].
    ///
    /// # Errors
    ///
    /// As for [`PkceVerifier::from_string`].
    pub fn from_code_verifier(verifier: PkceCodeVerifier) -> Result<Self, PkceError> {
        check_unreserved(
            ValueKind::CodeVerifier,
            verifier.secret(),
            Self::MIN_LEN,
            Self::MAX_LEN,
        )?;
        Ok(Self(verifier))
    }

    /// The verifier, to send as `code_verifier` in the token request.
    ///
    /// # Security warning
    ///
    /// Never log, print or persist the returned value outside a store made for secrets.
    pub fn secret(&self) -> &str {
        self.0.secret()
    }

    /// The S256 challenge derived from this verifier.
    pub fn challenge(&self) -> PkceChallenge {
        PkceChallenge::from_verifier(self)
    }

    /// The verifier as the shared secret type.
    pub fn as_code_verifier(&self) -> &PkceCodeVerifier {
        &self.0
    }

    /// Converts into the shared secret type, for the token request.
    pub fn into_code_verifier(self) -> PkceCodeVerifier {
        self.0
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

impl From<PkceVerifier> for PkceCodeVerifier {
    fn from(verifier: PkceVerifier) -> Self {
        verifier.0
    }
}

impl TryFrom<PkceCodeVerifier> for PkceVerifier {
    type Error = PkceError;

    fn try_from(verifier: PkceCodeVerifier) -> Result<Self, PkceError> {
        Self::from_code_verifier(verifier)
    }
}

/// A PKCE `code_challenge`: `BASE64URL(SHA-256(code_verifier))` without padding (RFC 7636 §4.2),
/// always 43 characters.
///
/// The method is always `S256`; the `plain` method does not exist in this API (SC-1.11, SC-4.8).
/// A challenge is public, as it travels in the authorize request, so it is `Clone` and printable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PkceChallenge(String);

impl PkceChallenge {
    /// The only challenge method: `S256`.
    pub const METHOD: &'static str = "S256";

    /// Derives the challenge of `verifier`.
    pub fn from_verifier(verifier: &PkceVerifier) -> Self {
        let digest = Sha256::digest(verifier.secret().as_bytes());
        Self(URL_SAFE_NO_PAD.encode(digest))
    }

    /// The challenge, to send as `code_challenge`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The challenge method, to send as `code_challenge_method`: always `"S256"`.
    pub fn method(&self) -> &'static str {
        Self::METHOD
    }
}

impl AsRef<str> for PkceChallenge {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A verifier together with its challenge: what one authorization-code flow needs.
///
/// Send [`Pkce::challenge`] on the authorize request, keep [`Pkce::verifier`] in the server-side
/// session, and send it on the token request. Create a new pair for every flow (P4).
#[derive(Debug)]
pub struct Pkce {
    verifier: PkceVerifier,
    challenge: PkceChallenge,
}

impl Pkce {
    /// Generates a fresh verifier ([`PkceVerifier::generate`]) and derives its challenge.
    ///
    /// # Errors
    ///
    /// [`PkceError::Random`] if the operating system's generator fails.
    pub fn new() -> Result<Self, PkceError> {
        PkceVerifier::generate().map(Self::from_verifier)
    }

    /// Pairs an existing verifier with its challenge.
    pub fn from_verifier(verifier: PkceVerifier) -> Self {
        let challenge = verifier.challenge();
        Self {
            verifier,
            challenge,
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &PkceVerifier {
        &self.verifier
    }

    /// The challenge.
    pub fn challenge(&self) -> &PkceChallenge {
        &self.challenge
    }

    /// Splits into the verifier and the challenge.
    pub fn into_parts(self) -> (PkceVerifier, PkceChallenge) {
        (self.verifier, self.challenge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    /// The 32 octets of RFC 7636 appendix B.
    const RFC_OCTETS: [u8; 32] = [
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37,
        77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
    ];

    fn is_unreserved(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    }

    #[test]
    fn rfc7636_appendix_b_challenge_sc_4_8() {
        let verifier = PkceVerifier::from_string(RFC_VERIFIER).unwrap();
        let challenge = verifier.challenge();
        assert_eq!(challenge.as_str(), RFC_CHALLENGE);
        assert_eq!(challenge.method(), "S256");
        assert_eq!(PkceChallenge::METHOD, "S256");
    }

    #[test]
    fn rfc7636_appendix_b_octets_encode_to_the_verifier_sc_4_8() {
        fn rfc_fill(dest: &mut [u8]) -> Result<(), getrandom::Error> {
            dest.copy_from_slice(&RFC_OCTETS);
            Ok(())
        }
        let verifier = PkceVerifier::generate_from(32, rfc_fill).unwrap();
        assert_eq!(verifier.secret(), RFC_VERIFIER);
        assert_eq!(verifier.challenge().as_str(), RFC_CHALLENGE);
    }

    #[test]
    fn lengths_42_and_129_refused_43_and_128_accepted_sc_4_8() {
        for len in [0, 1, 42, 129, 4096] {
            let err = PkceVerifier::from_string("a".repeat(len)).unwrap_err();
            assert!(
                matches!(
                    err,
                    PkceError::Length { kind: ValueKind::CodeVerifier, len: l, min: 43, max: 128 }
                        if l == len
                ),
                "{len}: {err:?}"
            );
        }
        for len in [43, 128] {
            let verifier = PkceVerifier::from_string("a".repeat(len)).unwrap();
            assert_eq!(verifier.secret().len(), len);
            assert_eq!(verifier.challenge().as_str().len(), 43);
        }
    }

    #[test]
    fn non_unreserved_characters_refused_without_echo_sc_4_8() {
        let base = "A".repeat(50);
        for bad in ["+", "/", "=", " ", "%", "\0", "\n", "é", "😀", "!", "*"] {
            let value = format!("{base}{bad}sekrit");
            let err = PkceVerifier::from_string(value.clone()).unwrap_err();
            assert!(
                matches!(
                    err,
                    PkceError::Character {
                        kind: ValueKind::CodeVerifier,
                        offset: 50
                    }
                ),
                "{bad:?}: {err:?}"
            );
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("sekrit"), "{shown}");
            assert!(!shown.contains(&base), "{shown}");
        }
    }

    #[test]
    fn generated_verifier_is_43_unreserved_chars_sc_4_8() {
        let verifier = PkceVerifier::generate().unwrap();
        assert_eq!(verifier.secret().len(), 43);
        assert!(is_unreserved(verifier.secret()));
        // A generated verifier passes the loader's own validation.
        assert!(PkceVerifier::from_string(verifier.secret()).is_ok());
    }

    #[test]
    fn generate_with_len_covers_43_to_128_chars_sc_4_8() {
        for n in 32..=96 {
            let verifier = PkceVerifier::generate_with_len(n).unwrap();
            let s = verifier.secret();
            assert_eq!(s.len(), (4 * n).div_ceil(3), "{n} bytes");
            assert!(is_unreserved(s));
            assert!(PkceVerifier::from_string(s).is_ok(), "{n} bytes");
        }
        assert_eq!(
            PkceVerifier::generate_with_len(32).unwrap().secret().len(),
            43
        );
        assert_eq!(
            PkceVerifier::generate_with_len(96).unwrap().secret().len(),
            128
        );
        for n in [0, 16, 31, 97, usize::MAX] {
            let err = PkceVerifier::generate_with_len(n).unwrap_err();
            assert!(
                matches!(err, PkceError::EntropyLength { bytes } if bytes == n),
                "{err:?}"
            );
        }
    }

    #[test]
    fn fresh_verifier_per_flow_p4() {
        let a = Pkce::new().unwrap();
        let b = Pkce::new().unwrap();
        assert!(!a.verifier().as_code_verifier().ct_eq(b.verifier().secret()));
        assert_ne!(a.challenge(), b.challenge());
    }

    #[test]
    fn pair_holds_the_matching_challenge_p4() {
        let pkce = Pkce::new().unwrap();
        assert_eq!(pkce.challenge(), &pkce.verifier().challenge());
        assert_eq!(pkce.challenge().method(), "S256");
        let (verifier, challenge) = pkce.into_parts();
        assert_eq!(challenge, PkceChallenge::from_verifier(&verifier));

        let pkce = Pkce::from_verifier(PkceVerifier::from_string(RFC_VERIFIER).unwrap());
        assert_eq!(pkce.challenge().as_str(), RFC_CHALLENGE);
        assert_eq!(pkce.challenge().as_ref(), RFC_CHALLENGE);
    }

    #[test]
    fn generator_failure_is_a_typed_error() {
        fn failing(_: &mut [u8]) -> Result<(), getrandom::Error> {
            Err(getrandom::Error::UNEXPECTED)
        }
        let err = PkceVerifier::generate_from(32, failing).unwrap_err();
        assert!(matches!(err, PkceError::Random(_)), "{err:?}");
    }

    #[test]
    fn debug_is_redacted_p5() {
        let verifier = PkceVerifier::from_string(RFC_VERIFIER).unwrap();
        assert_eq!(format!("{verifier:?}"), "PkceVerifier([redacted])");
        let pkce = Pkce::from_verifier(verifier);
        let shown = format!("{pkce:?} {pkce:#?}");
        assert!(!shown.contains(RFC_VERIFIER), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn core_verifier_conversions() {
        let core: PkceCodeVerifier = PkceVerifier::from_string(RFC_VERIFIER).unwrap().into();
        assert!(core.ct_eq(RFC_VERIFIER));
        let back = PkceVerifier::try_from(core).unwrap();
        assert_eq!(back.challenge().as_str(), RFC_CHALLENGE);
        assert!(back.into_code_verifier().ct_eq(RFC_VERIFIER));

        let err = PkceVerifier::from_code_verifier(PkceCodeVerifier::new("short")).unwrap_err();
        assert!(matches!(err, PkceError::Length { len: 5, .. }), "{err:?}");
        let err = PkceVerifier::try_from(PkceCodeVerifier::new(format!("{}+", "a".repeat(43))))
            .unwrap_err();
        assert!(
            matches!(err, PkceError::Character { offset: 43, .. }),
            "{err:?}"
        );
    }

    proptest! {
        /// SC-4.8: every valid verifier loads unchanged and yields a 43-character S256 challenge.
        #[test]
        fn valid_verifier_round_trips_sc_4_8(s in "[A-Za-z0-9._~-]{43,128}") {
            let verifier = PkceVerifier::from_string(s.clone()).unwrap();
            prop_assert_eq!(verifier.secret(), s.as_str());
            let challenge = verifier.challenge();
            prop_assert_eq!(challenge.as_str().len(), 43);
            prop_assert!(is_unreserved(challenge.as_str()));
            let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(s.as_bytes()));
            prop_assert_eq!(challenge.as_str(), expected.as_str());
        }

        /// SC-4.8: any string is accepted exactly when it is 43 to 128 unreserved characters, and
        /// never causes a panic.
        #[test]
        fn any_string_accepted_iff_valid_sc_4_8(s in any::<String>()) {
            let valid = (43..=128).contains(&s.len()) && is_unreserved(&s);
            prop_assert_eq!(PkceVerifier::from_string(s).is_ok(), valid);
        }

        /// SC-4.8: near-valid strings (mostly unreserved, length near the bounds).
        #[test]
        fn near_valid_strings_accepted_iff_valid_sc_4_8(s in "[A-Za-z0-9._~+/= -]{40,131}") {
            let valid = (43..=128).contains(&s.len()) && is_unreserved(&s);
            prop_assert_eq!(PkceVerifier::from_string(s).is_ok(), valid);
        }
    }
}
