use std::error::Error as StdError;

/// A boxed error that can cross threads: the cause chained behind [`StoreError::Backend`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An error from a [`TokenStore`](crate::TokenStore) or [`SessionStore`](crate::SessionStore), or
/// from decoding a persisted [`StoredToken`](crate::StoredToken).
///
/// No variant carries a token, a session value or a store key: keys are chosen by the caller and
/// may be derived from data it does not want printed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage backend failed (connection lost, timeout, server error, ...).
    ///
    /// The cause, if any, is reachable through [`std::error::Error::source`], never in `Display`.
    #[error("store backend failed: {message}")]
    Backend {
        /// What the store was doing, without keys or values.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Persisted data could not be decoded.
    #[error("stored data is corrupt: {message}")]
    Corrupt {
        /// What is wrong, naming neither the key nor any value.
        message: String,
    },
    /// An argument cannot be honoured (for example a time-to-live so long the deadline overflows).
    #[error("invalid store argument: {message}")]
    InvalidArgument {
        /// Which argument and why.
        message: String,
    },
    /// A bounded store is full even after dropping its expired entries.
    #[error("store is full ({limit} entries)")]
    CapacityExceeded {
        /// The configured maximum number of entries.
        limit: usize,
    },
}

impl StoreError {
    /// A [`StoreError::Backend`] with `source` as its cause.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A [`StoreError::Backend`] without an underlying cause.
    pub fn backend_message(message: impl Into<String>) -> Self {
        Self::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// A [`StoreError::Corrupt`]. `message` must name neither the key nor any stored value.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
        }
    }

    /// A [`StoreError::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_display_does_not_repeat_the_source_but_chains_it() {
        let cause = std::io::Error::other("connection reset");
        let e = StoreError::backend("GET failed", cause);
        assert_eq!(e.to_string(), "store backend failed: GET failed");
        let source = e.source().map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("connection reset"));
        assert!(StoreError::backend_message("x").source().is_none());
    }

    #[test]
    fn other_variants_display() {
        assert_eq!(
            StoreError::corrupt("bad").to_string(),
            "stored data is corrupt: bad"
        );
        assert_eq!(
            StoreError::invalid_argument("ttl").to_string(),
            "invalid store argument: ttl"
        );
        assert_eq!(
            StoreError::CapacityExceeded { limit: 3 }.to_string(),
            "store is full (3 entries)"
        );
    }
}

impl From<StoreError> for smart_fhir_core::ProviderError {
    /// A store failure leaves a token source without a token for now:
    /// [`smart_fhir_core::ProviderErrorKind::Unavailable`], with the store error as its source.
    fn from(e: StoreError) -> Self {
        smart_fhir_core::ProviderError::new(
            smart_fhir_core::ProviderErrorKind::Unavailable,
            "token store failed",
        )
        .with_source(e)
    }
}

#[cfg(test)]
mod provider_error_tests {
    use std::error::Error as _;

    use smart_fhir_core::{ProviderError, ProviderErrorKind};

    use super::StoreError;

    #[test]
    fn store_errors_become_unavailable_with_the_store_error_as_source() {
        let e = ProviderError::from(StoreError::backend_message("redis down"));
        assert_eq!(e.kind(), ProviderErrorKind::Unavailable);
        assert_eq!(
            e.to_string(),
            "access token unavailable: token store failed"
        );
        assert!(e.source().unwrap().downcast_ref::<StoreError>().is_some());
    }
}
