//! Random values from the operating system, and the character-set check shared by every type.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{PkceError, RandomError, ValueKind};

/// The largest number of random bytes any value here is built from.
pub(crate) const MAX_RANDOM_BYTES: usize = 96;

/// Fills a buffer with random bytes; the OS generator in production, a fixed source in tests.
pub(crate) type Fill = fn(&mut [u8]) -> Result<(), getrandom::Error>;

/// The operating system's cryptographically secure generator.
pub(crate) const OS_FILL: Fill = getrandom::fill;

/// Draws `n_bytes` random bytes and encodes them as unpadded base64url.
///
/// The encoding uses only `[A-Za-z0-9-_]`, a subset of the unreserved set, and yields
/// `ceil(4 * n_bytes / 3)` characters. The raw bytes are zeroized once encoded.
pub(crate) fn random_base64url(n_bytes: usize, fill: Fill) -> Result<String, PkceError> {
    let mut buf = Zeroizing::new([0u8; MAX_RANDOM_BYTES]);
    let bytes = buf
        .get_mut(..n_bytes)
        .ok_or(PkceError::EntropyLength { bytes: n_bytes })?;
    fill(bytes).map_err(|e| PkceError::Random(RandomError::new(e)))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `b` is in the RFC 3986 unreserved set `[A-Za-z0-9-._~]`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks that `value` is `min..=max` characters of the unreserved set.
///
/// The character set is checked first, so that for an accepted set the byte length equals the
/// character length reported in [`PkceError::Length`].
pub(crate) fn check_unreserved(
    kind: ValueKind,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), PkceError> {
    if let Some(offset) = value.bytes().position(|b| !is_unreserved(b)) {
        return Err(PkceError::Character { kind, offset });
    }
    let len = value.len();
    if !(min..=max).contains(&len) {
        return Err(PkceError::Length {
            kind,
            len,
            min,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_set_is_exactly_rfc3986_unreserved_sc_4_8() {
        let accepted: Vec<u8> = (0u8..=255).filter(|&b| is_unreserved(b)).collect();
        let expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain([b'-', b'.', b'_', b'~'])
            .collect();
        let mut accepted_sorted = accepted;
        accepted_sorted.sort_unstable();
        let mut expected_sorted = expected;
        expected_sorted.sort_unstable();
        assert_eq!(accepted_sorted, expected_sorted);
    }

    #[test]
    fn random_bytes_out_of_range_are_an_error_not_a_panic() {
        let err = random_base64url(MAX_RANDOM_BYTES + 1, OS_FILL).unwrap_err();
        assert!(
            matches!(err, PkceError::EntropyLength { bytes: 97 }),
            "{err:?}"
        );
    }

    #[test]
    fn generator_failure_is_a_typed_error() {
        fn failing(_: &mut [u8]) -> Result<(), getrandom::Error> {
            Err(getrandom::Error::UNSUPPORTED)
        }
        let err = random_base64url(32, failing).unwrap_err();
        assert!(matches!(err, PkceError::Random(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the operating system random number generator failed"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    /// The generator's own error shows through `RandomError`: its text, and no OS error code
    /// where the failure was not a system call's.
    #[test]
    fn random_error_keeps_the_generator_error() {
        fn failing(_: &mut [u8]) -> Result<(), getrandom::Error> {
            Err(getrandom::Error::UNSUPPORTED)
        }
        let PkceError::Random(inner) = random_base64url(32, failing).unwrap_err() else {
            panic!("not a Random error");
        };
        assert_eq!(inner.raw_os_error(), None);
        assert_eq!(inner.to_string(), getrandom::Error::UNSUPPORTED.to_string());
        assert!(!inner.to_string().is_empty());
    }
}
