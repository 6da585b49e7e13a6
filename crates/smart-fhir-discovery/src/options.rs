use std::time::Duration;

/// The default bound on a discovery response body: 1 MiB (P15). Real configuration documents
/// are a few kilobytes; CapabilityStatements of large servers reach a few hundred.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How discovery requests are made.
///
/// ```
/// use std::time::Duration;
/// use smart_fhir_discovery::DiscoveryOptions;
///
/// let options = DiscoveryOptions::default()
///     .timeout(Duration::from_secs(10))
///     .fallback_to_metadata(false);
/// assert_eq!(options.max_response_bytes_value(), 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    max_response_bytes: usize,
    timeout: Option<Duration>,
    fallback_to_metadata: bool,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            timeout: None,
            fallback_to_metadata: true,
        }
    }
}

impl DiscoveryOptions {
    /// The largest response body accepted, sent to the transport as
    /// [`MaxResponseBytes`](smart_fhir_core::MaxResponseBytes). Default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// A time limit for each request, sent to the transport as
    /// [`RequestTimeout`](smart_fhir_core::RequestTimeout). Default: none (the transport's own).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether [`discover`](crate::discover) falls back to `GET [base]/metadata` when
    /// `.well-known/smart-configuration` is not served (SC-1.16). Default `true`.
    pub fn fallback_to_metadata(mut self, enabled: bool) -> Self {
        self.fallback_to_metadata = enabled;
        self
    }

    /// The body size bound.
    pub fn max_response_bytes_value(&self) -> usize {
        self.max_response_bytes
    }

    /// The per-request time limit, if any.
    pub fn timeout_value(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the `/metadata` fallback is enabled.
    pub fn fallback_to_metadata_enabled(&self) -> bool {
        self.fallback_to_metadata
    }
}
