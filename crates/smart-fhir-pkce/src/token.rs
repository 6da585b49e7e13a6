//! `state` and `nonce`: random one-flow values checked in constant time.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{PkceError, ValueKind};
use crate::random::{check_unreserved, random_base64url, Fill, OS_FILL};

macro_rules! random_token {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:expr, $param:literal
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            /// The random bytes [`Self::generate`] draws from the operating system's generator.
            pub const ENTROPY_BYTES: usize = 32;
            /// The entropy of a generated value, in bits: 256, at least the 128 this crate
            /// promises and the 122 SMART App Launch requires (SC-4.6).
            pub const ENTROPY_BITS: usize = Self::ENTROPY_BYTES * 8;
            /// The shortest value [`Self::from_string`] accepts, in characters: the length of a
            /// generated value.
            pub const MIN_LEN: usize = 43;
            /// The longest value [`Self::from_string`] accepts, in characters.
            pub const MAX_LEN: usize = 128;

            #[doc = concat!(
                "Generates a new `", $param, "` from 32 bytes of the operating system's secure ",
                "random number generator, encoded as unpadded base64url: 43 characters of ",
                "`[A-Za-z0-9-_]` carrying 256 bits of entropy (SC-4.6, P3).\n\n",
                "# Errors\n\n",
                "[`PkceError::Random`] if the operating system's generator fails."
            )]
            pub fn generate() -> Result<Self, PkceError> {
                Self::generate_from(OS_FILL)
            }

            fn generate_from(fill: Fill) -> Result<Self, PkceError> {
                random_base64url(Self::ENTROPY_BYTES, fill).map(|s| Self(Zeroizing::new(s)))
            }

            #[doc = concat!(
                "Loads a `", $param, "` kept in a server-side session store.\n\n",
                "The value must look like a generated one: 43 to 128 characters of the ",
                "unreserved set `[A-Za-z0-9-._~]`, so a short, guessable value cannot be ",
                "loaded by mistake.\n\n",
                "# Errors\n\n",
                "[`PkceError::Character`] or [`PkceError::Length`]; neither carries the value."
            )]
            pub fn from_string(value: impl Into<String>) -> Result<Self, PkceError> {
                let value = Zeroizing::new(value.into());
                check_unreserved($kind, &value, Self::MIN_LEN, Self::MAX_LEN)?;
                Ok(Self(value))
            }

            #[doc = concat!(
                "The `", $param, "`, to send on the authorize request and to store in the ",
                "server-side session.\n\n",
                "# Security warning\n\n",
                "It guards the flow against forgery: keep it out of logs."
            )]
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            #[doc = concat!(
                "Whether `received` equals this `", $param, "`, compared in constant time.\n\n",
                "Values of different lengths compare unequal; only the length can be learned ",
                "from the timing. This check does not make the value one-time: remove it from ",
                "the session store when the flow completes or fails (SC-4.13, P3)."
            )]
            pub fn verify(&self, received: &str) -> bool {
                self.0.as_bytes().ct_eq(received.as_bytes()).into()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

random_token!(
    /// The OAuth 2.0 `state` parameter of an authorization-code flow: a CSRF token bound to one
    /// session (SC-4.6, SC-4.13, P3).
    ///
    /// Generate one per flow, store it server-side with the session, send it on the authorize
    /// request, and check the callback's `state` with [`State::verify`] before using the code.
    /// It prints as `State([redacted])`, has no `Display` and no `PartialEq` (use
    /// [`State::verify`]), and is zeroized on drop.
    State,
    ValueKind::State,
    "state"
);

random_token!(
    /// The OpenID Connect `nonce` of an authorization-code flow, bound to one session (SC-4.33,
    /// P9).
    ///
    /// Generate one per flow, store it server-side with the session, send it on the authorize
    /// request, and check the `id_token`'s `nonce` claim with [`Nonce::verify`]. It prints as
    /// `Nonce([redacted])`, has no `Display` and no `PartialEq` (use [`Nonce::verify`]), and is
    /// zeroized on drop.
    Nonce,
    ValueKind::Nonce,
    "nonce"
);

// SC-4.6 requires at least 122 bits for `state`; this crate promises at least 128 bits for both.
const _: () = assert!(State::ENTROPY_BITS >= 128 && Nonce::ENTROPY_BITS >= 128);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is_unreserved(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    }

    #[test]
    fn generated_state_and_nonce_are_43_unreserved_chars_sc_4_6() {
        let state = State::generate().unwrap();
        let nonce = Nonce::generate().unwrap();
        for s in [state.as_str(), nonce.as_str()] {
            assert_eq!(s.len(), 43);
            assert!(is_unreserved(s), "{s}");
        }
        // 43 base64url characters carry 43 * 6 = 258 bits, of which 256 are random.
        assert_eq!(State::ENTROPY_BITS, 256);
        assert_eq!(Nonce::ENTROPY_BITS, 256);
    }

    #[test]
    fn two_generated_states_differ_p3() {
        let a = State::generate().unwrap();
        let b = State::generate().unwrap();
        assert!(!a.verify(b.as_str()));
        assert_ne!(a.as_str(), b.as_str());
        let a = Nonce::generate().unwrap();
        let b = Nonce::generate().unwrap();
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn state_verify_sc_4_13() {
        let state = State::generate().unwrap();
        let same = state.as_str().to_owned();
        assert!(state.verify(&same));

        // One character changed, at the start and at the end.
        for index in [0, same.len() - 1] {
            let mut bytes = same.clone().into_bytes();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            assert!(!state.verify(std::str::from_utf8(&bytes).unwrap()));
        }
        // Different lengths: a prefix, an extension, the empty string.
        assert!(!state.verify(&same[..42]));
        assert!(!state.verify(&format!("{same}A")));
        assert!(!state.verify(""));
    }

    #[test]
    fn nonce_verify_sc_4_33() {
        let nonce = Nonce::from_string("n".repeat(43)).unwrap();
        assert!(nonce.verify(&"n".repeat(43)));
        assert!(!nonce.verify(&"n".repeat(44)));
        assert!(!nonce.verify(&"m".repeat(43)));
    }

    #[test]
    fn from_string_round_trips_and_clone_keeps_value_p3() {
        let state = State::generate().unwrap();
        let loaded = State::from_string(state.as_str()).unwrap();
        assert!(loaded.verify(state.as_str()));
        assert!(loaded.clone().verify(state.as_str()));
        let nonce = Nonce::generate().unwrap();
        let loaded = Nonce::from_string(nonce.as_str().to_owned()).unwrap();
        assert_eq!(loaded.as_str(), nonce.as_str());
    }

    #[test]
    fn from_string_refuses_short_long_and_reserved_values_p3() {
        for len in [0, 16, 42, 129] {
            let err = State::from_string("s".repeat(len)).unwrap_err();
            assert!(
                matches!(err, PkceError::Length { kind: ValueKind::State, len: l, .. } if l == len),
                "{err:?}"
            );
        }
        let err = Nonce::from_string(format!("{}&x=1", "s".repeat(43))).unwrap_err();
        assert!(
            matches!(
                err,
                PkceError::Character {
                    kind: ValueKind::Nonce,
                    offset: 43
                }
            ),
            "{err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("sss"), "{shown}");
    }

    #[test]
    fn generator_failure_is_a_typed_error() {
        fn failing(_: &mut [u8]) -> Result<(), getrandom::Error> {
            Err(getrandom::Error::UNSUPPORTED)
        }
        assert!(matches!(
            State::generate_from(failing),
            Err(PkceError::Random(_))
        ));
        assert!(matches!(
            Nonce::generate_from(failing),
            Err(PkceError::Random(_))
        ));
    }

    #[test]
    fn debug_is_redacted_p5() {
        let state = State::generate().unwrap();
        let nonce = Nonce::generate().unwrap();
        assert_eq!(format!("{state:?}"), "State([redacted])");
        assert_eq!(format!("{nonce:?}"), "Nonce([redacted])");
        let shown = format!("{:#?}", (Some(&state), &nonce));
        assert!(!shown.contains(state.as_str()), "{shown}");
        assert!(!shown.contains(nonce.as_str()), "{shown}");
    }

    proptest! {
        /// P3: `verify` agrees with plain equality for any pair of strings, and never panics.
        #[test]
        fn verify_agrees_with_equality_p3(
            stored in "[A-Za-z0-9._~-]{43,128}",
            received in any::<String>(),
        ) {
            let state = State::from_string(stored.clone()).unwrap();
            prop_assert_eq!(state.verify(&received), stored == received);
            prop_assert!(state.verify(&stored));
        }

        /// P3: any string is accepted exactly when it is 43 to 128 unreserved characters.
        #[test]
        fn from_string_accepts_iff_valid_p3(
            s in prop_oneof![any::<String>(), "[A-Za-z0-9._~+/=& -]{40,131}"],
        ) {
            let valid = (43..=128).contains(&s.len()) && is_unreserved(&s);
            prop_assert_eq!(State::from_string(s.clone()).is_ok(), valid);
            prop_assert_eq!(Nonce::from_string(s).is_ok(), valid);
        }
    }
}
