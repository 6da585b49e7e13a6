//! TLS configuration: the trusted roots, the crypto provider and the protocol versions.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use super::error::TransportError;

/// TLS 1.3 and 1.2; nothing older (SC-2.14, SC-7.2, P7).
pub(super) const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Which root certificates the client trusts, before any added with
/// [`add_root_certificate_pem`](super::HyperHttpClientBuilder::add_root_certificate_pem).
///
/// The default is the first available of [`Roots::Webpki`] (feature `webpki-roots`, on by default),
/// [`Roots::Native`] (feature `native-roots`) and [`Roots::Only`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Roots {
    /// Mozilla's root certificates, compiled into the binary (crate feature `webpki-roots`).
    Webpki,
    /// The operating system's certificate store, read once when the client is built (crate
    /// feature `native-roots`).
    Native,
    /// No built-in roots: only the certificates added with
    /// [`add_root_certificate_pem`](super::HyperHttpClientBuilder::add_root_certificate_pem)
    /// (a private PKI). Building fails when
    /// none was added.
    Only,
}

impl Default for Roots {
    fn default() -> Self {
        if cfg!(feature = "webpki-roots") {
            Self::Webpki
        } else if cfg!(feature = "native-roots") {
            Self::Native
        } else {
            Self::Only
        }
    }
}

/// The rustls configuration: TLS 1.2 and 1.3 only (SC-2.14, SC-7.2, P7), certificates always
/// verified against `roots` and the certificates of each PEM document in `extra_roots_pem`.
/// ALPN is added by the connector.
pub(super) fn tls_config(
    roots: Roots,
    extra_roots_pem: &[(Option<String>, Vec<u8>)],
) -> Result<rustls::ClientConfig, TransportError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Webpki => add_webpki_roots(&mut store)?,
        Roots::Native => add_native_roots(&mut store)?,
        Roots::Only => {}
    }
    for (index, (name, pem)) in extra_roots_pem.iter().enumerate() {
        let name = name.clone().unwrap_or_else(|| format!("PEM #{index}"));
        add_pem_roots(&mut store, index, name, pem)?;
    }
    if store.is_empty() {
        return Err(TransportError::NoRootCertificates {
            reason: "Roots::Only needs at least one certificate from add_root_certificate_pem"
                .to_owned(),
        });
    }
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider()?)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TransportError::TlsConfig {
            reason: e.to_string(),
        })?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(config)
}

/// The process-wide rustls provider when the application installed one, else `ring`.
fn crypto_provider() -> Result<Arc<CryptoProvider>, TransportError> {
    if let Some(provider) = CryptoProvider::get_default() {
        return Ok(Arc::clone(provider));
    }
    #[cfg(feature = "ring")]
    let provider = Ok(Arc::new(rustls::crypto::ring::default_provider()));
    #[cfg(not(feature = "ring"))]
    let provider = Err(TransportError::NoCryptoProvider);
    provider
}

#[cfg(feature = "webpki-roots")]
fn add_webpki_roots(store: &mut RootCertStore) -> Result<(), TransportError> {
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(())
}

#[cfg(not(feature = "webpki-roots"))]
fn add_webpki_roots(_store: &mut RootCertStore) -> Result<(), TransportError> {
    Err(TransportError::FeatureDisabled {
        roots: "Roots::Webpki",
        feature: "webpki-roots",
    })
}

#[cfg(feature = "native-roots")]
fn add_native_roots(store: &mut RootCertStore) -> Result<(), TransportError> {
    let loaded = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = store.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let reason = loaded.errors.first().map_or_else(
            || "the operating system's store holds no usable certificate".to_owned(),
            |e| format!("the operating system's store could not be read: {e}"),
        );
        return Err(TransportError::NoRootCertificates { reason });
    }
    Ok(())
}

#[cfg(not(feature = "native-roots"))]
fn add_native_roots(_store: &mut RootCertStore) -> Result<(), TransportError> {
    Err(TransportError::FeatureDisabled {
        roots: "Roots::Native",
        feature: "native-roots",
    })
}

fn add_pem_roots(
    store: &mut RootCertStore,
    index: usize,
    name: String,
    pem: &[u8],
) -> Result<(), TransportError> {
    let invalid = |reason: String| TransportError::InvalidRootCertificate {
        index,
        name: name.clone(),
        reason,
    };
    let mut found = 0_usize;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(format!("malformed PEM: {e}")))?;
        store
            .add(cert)
            .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(invalid("no CERTIFICATE block found".to_owned()));
    }
    Ok(())
}

// The tests build clients with the default features' provider and roots.
#[cfg(all(test, feature = "ring", feature = "webpki-roots"))]
mod tests {
    use super::*;

    fn pems(pem: &[u8]) -> Vec<(Option<String>, Vec<u8>)> {
        vec![(None, pem.to_vec())]
    }

    /// Issue 11 §1 (TLS seen from outside): an unusable root certificate is named by where it
    /// came from (the file the user gave), not by its position.
    #[test]
    fn invalid_root_certificate_is_named_by_its_source() {
        let named = vec![(Some("file /etc/ca.pem".to_owned()), b"not a pem".to_vec())];
        let e = tls_config(Roots::Webpki, &named).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with("root certificate file /etc/ca.pem is not usable"),
            "{shown}"
        );
        assert!(!shown.contains("PEM #0"), "{shown}");
        let e = tls_config(Roots::Webpki, &pems(b"not a pem")).unwrap_err();
        assert!(e.to_string().contains("PEM #0"), "{e}");
    }

    /// The `supported_versions` extension (RFC 8446 §4.2.1) of the ClientHello the configuration
    /// sends, read from the bytes on the wire.
    fn offered_versions(config: rustls::ClientConfig) -> Vec<u16> {
        fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
            let (head, rest) = data.split_at(n);
            *data = rest;
            head
        }
        fn len8(data: &mut &[u8]) -> usize {
            usize::from(take(data, 1)[0])
        }
        fn len16(data: &mut &[u8]) -> usize {
            let b = take(data, 2);
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        }
        let name = rustls::pki_types::ServerName::try_from("ehr.example").unwrap();
        let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut wire = Vec::new();
        connection.write_tls(&mut wire).unwrap();
        let mut data = &wire[..];
        assert_eq!(take(&mut data, 1), [22], "a handshake record");
        take(&mut data, 4); // record version and length
        assert_eq!(take(&mut data, 1), [1], "a ClientHello");
        take(&mut data, 3 + 2 + 32); // length, legacy_version, random
        let n = len8(&mut data);
        take(&mut data, n); // legacy_session_id
        let n = len16(&mut data);
        take(&mut data, n); // cipher_suites
        let n = len8(&mut data);
        take(&mut data, n); // legacy_compression_methods
        let n = len16(&mut data);
        let mut extensions = take(&mut data, n);
        while !extensions.is_empty() {
            let kind = len16(&mut extensions);
            let n = len16(&mut extensions);
            let mut body = take(&mut extensions, n);
            if kind == 0x002b {
                let n = len8(&mut body);
                return take(&mut body, n)
                    .chunks(2)
                    .map(|v| u16::from_be_bytes([v[0], v[1]]))
                    .collect();
            }
        }
        panic!("no supported_versions extension");
    }

    #[test]
    fn tls_versions_are_1_2_and_1_3_only_sc_2_14_sc_7_2_p7() {
        let config = tls_config(Roots::Webpki, &[]).unwrap();
        // The connector adds ALPN itself and refuses a configuration that already has it.
        assert!(config.alpn_protocols.is_empty());
        // TLS 1.3 (0x0304) and TLS 1.2 (0x0303), nothing older.
        assert_eq!(offered_versions(config), [0x0304, 0x0303]);
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
    }

    #[test]
    fn pem_without_certificate_is_refused() {
        for pem in [
            &b""[..],
            b"not a pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let e = tls_config(Roots::Webpki, &pems(pem)).unwrap_err();
            assert!(
                matches!(e, TransportError::InvalidRootCertificate { index: 0, .. }),
                "{e:?}"
            );
        }
    }

    #[test]
    fn malformed_certificate_is_refused() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = tls_config(Roots::Only, &pems(pem.as_bytes())).unwrap_err();
        assert!(
            matches!(e, TransportError::InvalidRootCertificate { index: 0, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn only_roots_without_certificates_are_refused() {
        let e = tls_config(Roots::Only, &[]).unwrap_err();
        assert!(matches!(e, TransportError::NoRootCertificates { .. }));
    }

    #[cfg(not(feature = "native-roots"))]
    #[test]
    fn native_roots_without_the_feature_are_refused() {
        let e = tls_config(Roots::Native, &[]).unwrap_err();
        assert!(matches!(
            e,
            TransportError::FeatureDisabled {
                feature: "native-roots",
                ..
            }
        ));
    }
}
