//! Why a client could not be built.

/// Why a [`HyperHttpClient`](super::HyperHttpClient) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A PEM document given to
    /// [`add_root_certificate_pem`](super::HyperHttpClientBuilder::add_root_certificate_pem)
    /// holds no usable certificate.
    #[error("root certificate {name} is not usable: {reason}")]
    InvalidRootCertificate {
        /// Which call to `add_root_certificate_pem`, counting from 0.
        index: usize,
        /// Where the document came from, as given to
        /// [`add_root_certificate_pem_from`](super::HyperHttpClientBuilder::add_root_certificate_pem_from)
        /// (a file name, say), else `PEM #<index>`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The trust store would be empty, so no server could be verified.
    #[error("no trusted root certificates: {reason}")]
    NoRootCertificates {
        /// Why the store is empty.
        reason: String,
    },
    /// The chosen [`Roots`](super::Roots) need a crate feature that is not enabled.
    #[error("{roots} needs the crate feature `{feature}`")]
    FeatureDisabled {
        /// The root store asked for.
        roots: &'static str,
        /// The feature that provides it.
        feature: &'static str,
    },
    /// No rustls crypto provider: neither the `ring` feature nor a process-wide default.
    #[error(
        "no TLS crypto provider: enable the `ring` feature or install a process-wide rustls \
         CryptoProvider"
    )]
    NoCryptoProvider,
    /// The crypto provider cannot do TLS 1.2 and 1.3.
    #[error("the TLS configuration could not be built: {reason}")]
    TlsConfig {
        /// The reason rustls gave.
        reason: String,
    },
    /// The configured `User-Agent` is not a valid header value.
    #[error("the user agent is not a valid header value")]
    InvalidUserAgent,
    /// A timeout was set to zero.
    #[error("{setting} must be greater than zero")]
    ZeroTimeout {
        /// Which setting.
        setting: &'static str,
    },
}
