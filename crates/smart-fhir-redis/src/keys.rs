//! Key names and time-to-live arithmetic shared by the stores.

use std::time::Duration;

use sha2::{Digest, Sha256};
use smart_fhir_store::StoreError;

/// How often a compare-and-swap re-reads a value that changed between its read and its write.
pub(crate) const MAX_CAS_ATTEMPTS: usize = 16;

/// The longest time-to-live sent to Redis: 100 years, far below what `PX` accepts.
const MAX_TTL_MILLIS: u128 = 100 * 365 * 24 * 3600 * 1000;

/// The SHA-256 of `domain`, a zero byte and `value`, as 64 hex digits: key names never carry
/// the caller's key, a session id or a session key, and never a `{` or `}`.
pub(crate) fn hashed(domain: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    h.finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            // Writing to a `String` cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `ttl` in whole milliseconds, rounded up.
pub(crate) fn ttl_millis(ttl: Duration, what: &str) -> Result<u64, StoreError> {
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    if millis > MAX_TTL_MILLIS {
        return Err(StoreError::invalid_argument(format!("{what} is too long")));
    }
    u64::try_from(millis).map_err(|_| StoreError::invalid_argument(format!("{what} is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_hex_and_domain_separated() {
        let a = hashed("token", "k");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, hashed("session", "k"));
        assert_eq!(a, hashed("token", "k"));
    }

    #[test]
    fn ttl_rounds_up_and_refuses_overflow() {
        assert_eq!(ttl_millis(Duration::from_nanos(1), "x").unwrap(), 1);
        assert_eq!(ttl_millis(Duration::from_millis(1500), "x").unwrap(), 1500);
        assert_eq!(ttl_millis(Duration::ZERO, "x").unwrap(), 0);
        assert!(matches!(
            ttl_millis(Duration::MAX, "lease ttl"),
            Err(StoreError::InvalidArgument { .. })
        ));
    }
}
