//! The facade's features reach the transport: what the crate docs promise for each TLS choice.
//! Run under each combination (`--no-default-features`, `--features native-roots`, ...), each
//! assertion checks the combination it runs under.

use smart_fhir::http::{Roots, TransportError};
use smart_fhir::HyperHttpClient;

/// `webpki-roots` (default) makes Mozilla's roots the default; `native-roots` alone the
/// operating system's; neither leaves only the roots the caller adds.
#[test]
fn the_root_features_choose_the_default_roots() {
    let expected = if cfg!(feature = "webpki-roots") {
        Roots::Webpki
    } else if cfg!(feature = "native-roots") {
        Roots::Native
    } else {
        Roots::Only
    };
    assert_eq!(Roots::default(), expected);
}

/// `rustls-ring` (default) gives the transport a crypto provider; without it (and without a
/// process-wide provider, which this test never installs) building fails with a clear error.
#[test]
fn the_ring_feature_gives_the_transport_its_crypto_provider() {
    // A root of its own (a self-signed certificate made for this test, no key kept), so that
    // only the provider decides whatever root features are on.
    let built = HyperHttpClient::builder()
        .tls_roots(Roots::Only)
        .add_root_certificate_pem(include_str!("fixtures/root.pem"))
        .build();
    if cfg!(feature = "rustls-ring") {
        assert!(built.is_ok(), "{:?}", built.err());
    } else {
        assert!(
            matches!(built, Err(TransportError::NoCryptoProvider)),
            "{:?}",
            built.err()
        );
    }
}
