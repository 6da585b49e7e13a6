//! The crate's error type.

use std::fmt;

/// Which value an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueKind {
    /// A PKCE `code_verifier`.
    CodeVerifier,
    /// An OAuth 2.0 `state` parameter.
    State,
    /// An OpenID Connect `nonce`.
    Nonce,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CodeVerifier => "PKCE code verifier",
            Self::State => "state",
            Self::Nonce => "nonce",
        })
    }
}

/// Why a verifier, state or nonce could not be generated or loaded.
///
/// No variant carries the refused value, so an error can be logged safely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkceError {
    /// The value is shorter or longer than allowed.
    #[error("{kind} must be {min} to {max} characters long, got {len}")]
    Length {
        /// Which value.
        kind: ValueKind,
        /// Its length in characters.
        len: usize,
        /// The shortest allowed length.
        min: usize,
        /// The longest allowed length.
        max: usize,
    },
    /// The value holds a character outside the unreserved set `[A-Za-z0-9-._~]`.
    #[error(
        "{kind} contains a character outside the unreserved set [A-Za-z0-9-._~] at byte offset {offset}"
    )]
    Character {
        /// Which value.
        kind: ValueKind,
        /// The byte offset of the first refused character.
        offset: usize,
    },
    /// [`PkceVerifier::generate_with_len`](crate::PkceVerifier::generate_with_len) was asked for
    /// an amount of randomness outside `32..=96` bytes.
    #[error("PKCE code verifier entropy must be 32 to 96 bytes, got {bytes}")]
    EntropyLength {
        /// The number of random bytes asked for.
        bytes: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Random(#[source] RandomError),
}

/// A failure of the operating system's random number generator.
///
/// The underlying error is kept private so that its crate can be upgraded without a breaking change.
#[derive(Debug, Clone, Copy)]
pub struct RandomError(getrandom::Error);

impl RandomError {
    pub(crate) fn new(inner: getrandom::Error) -> Self {
        Self(inner)
    }

    /// The operating system's error code, when the failure came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.0.raw_os_error()
    }
}

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for RandomError {}
