//! PEM framing and just enough DER to tell which kind of private key a block holds. The key
//! itself is parsed by josekit (OpenSSL); this module only routes it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::JwtError;

const FORMAT: &str = "PEM";

/// The private-key encodings this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PemKind {
    /// `PRIVATE KEY`: PKCS#8 `PrivateKeyInfo`.
    Pkcs8,
    /// `RSA PRIVATE KEY`: PKCS#1 `RSAPrivateKey`.
    Pkcs1,
    /// `EC PRIVATE KEY`: SEC1 `ECPrivateKey`.
    Sec1,
}

/// Finds the one private key in a PEM document and returns its kind and DER bytes.
///
/// Blocks that hold no private key (`EC PARAMETERS`, as `openssl ecparam -genkey` writes before
/// the key; certificates; public keys) are skipped.
pub(crate) fn private_key_der(input: &str) -> Result<(PemKind, Zeroizing<Vec<u8>>), JwtError> {
    let mut found: Option<(PemKind, &str)> = None;
    let mut blocks = 0usize;
    let mut rest = input;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after_begin = &rest[start + "-----BEGIN ".len()..];
        let label_end = after_begin.find("-----").ok_or(JwtError::InvalidKey {
            format: FORMAT,
            reason: "unterminated BEGIN line",
        })?;
        let label = &after_begin[..label_end];
        let body_and_rest = &after_begin[label_end + "-----".len()..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_and_rest
            .find(&end_marker)
            .ok_or(JwtError::InvalidKey {
                format: FORMAT,
                reason: "missing or mismatched END line",
            })?;
        let body = &body_and_rest[..body_end];
        rest = &body_and_rest[body_end + end_marker.len()..];
        blocks += 1;

        let kind = match label {
            "PRIVATE KEY" => PemKind::Pkcs8,
            "RSA PRIVATE KEY" => PemKind::Pkcs1,
            "EC PRIVATE KEY" => PemKind::Sec1,
            "ENCRYPTED PRIVATE KEY" => return Err(JwtError::EncryptedKey),
            _ => continue,
        };
        // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`) mark an encrypted
        // traditional key.
        if body.contains(':') {
            return Err(JwtError::EncryptedKey);
        }
        if found.is_some() {
            return Err(JwtError::InvalidKey {
                format: FORMAT,
                reason: "the PEM holds more than one private key",
            });
        }
        found = Some((kind, body));
    }
    if blocks == 0 {
        return Err(JwtError::InvalidKey {
            format: FORMAT,
            reason: "no PEM block found",
        });
    }
    let (kind, body) = found.ok_or(JwtError::NoPrivateKey { format: FORMAT })?;
    let compact: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let der = STANDARD
        .decode(compact.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| JwtError::InvalidKey {
            format: FORMAT,
            reason: "the PEM body is not valid base64",
        })?;
    Ok((kind, der))
}

/// What a PKCS#8 `PrivateKeyInfo` or SEC1 `ECPrivateKey` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerKey {
    /// `rsaEncryption`.
    Rsa,
    /// `id-ecPublicKey` on P-256.
    EcP256,
    /// `id-ecPublicKey` on P-384.
    EcP384,
}

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xa0;
const TAG_CONTEXT_1: u8 = 0xa1;
const TAG_BIT_STRING: u8 = 0x03;

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// Reads one DER TLV: `(tag, contents, rest)`. Definite lengths only, as DER requires.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

fn curve(oid: &[u8], format: &'static str) -> Result<DerKey, JwtError> {
    match oid {
        OID_P256 => Ok(DerKey::EcP256),
        OID_P384 => Ok(DerKey::EcP384),
        OID_P521 => Err(unsupported("EC curve P-521")),
        OID_SECP256K1 => Err(unsupported("EC curve secp256k1")),
        _ => Err(JwtError::InvalidKey {
            format,
            reason: "unknown or unnamed EC curve",
        }),
    }
}

fn unsupported(what: &str) -> JwtError {
    JwtError::UnsupportedKeyType {
        what: what.to_owned(),
    }
}

/// Classifies a PKCS#8 `PrivateKeyInfo` by its algorithm identifier.
pub(crate) fn classify_pkcs8(der: &[u8]) -> Result<DerKey, JwtError> {
    const F: &str = "PKCS#8";
    let bad = |reason| JwtError::InvalidKey { format: F, reason };
    let (info, _) = expect(der, TAG_SEQUENCE).ok_or(bad("not a DER SEQUENCE"))?;
    let (_version, rest) = expect(info, TAG_INTEGER).ok_or(bad("missing version"))?;
    let (alg_id, _) = expect(rest, TAG_SEQUENCE).ok_or(bad("missing algorithm identifier"))?;
    let (oid, params) = expect(alg_id, TAG_OID).ok_or(bad("missing algorithm OID"))?;
    match oid {
        OID_RSA_ENCRYPTION => Ok(DerKey::Rsa),
        OID_EC_PUBLIC_KEY => {
            let (curve_oid, _) = expect(params, TAG_OID).ok_or(bad("unnamed EC curve"))?;
            curve(curve_oid, F)
        }
        OID_RSASSA_PSS => Err(unsupported(
            "RSASSA-PSS-restricted RSA key (use an rsaEncryption key)",
        )),
        OID_ED25519 => Err(unsupported("Ed25519")),
        OID_ED448 => Err(unsupported("Ed448")),
        _ => Err(unsupported("unknown PKCS#8 key algorithm")),
    }
}

/// The parts of a SEC1 `ECPrivateKey` this crate checks.
struct Sec1<'a> {
    d: &'a [u8],
    curve: Option<&'a [u8]>,
    public: Option<&'a [u8]>,
}

fn sec1_parts(der: &[u8]) -> Option<Sec1<'_>> {
    let (key, _) = expect(der, TAG_SEQUENCE)?;
    let (_version, rest) = expect(key, TAG_INTEGER)?;
    let (d, mut rest) = expect(rest, TAG_OCTET_STRING)?;
    let mut curve = None;
    let mut public = None;
    while let Some((tag, contents, next)) = tlv(rest) {
        match tag {
            TAG_CONTEXT_0 => curve = Some(expect(contents, TAG_OID)?.0),
            TAG_CONTEXT_1 => public = Some(expect(contents, TAG_BIT_STRING)?.0),
            _ => {}
        }
        rest = next;
    }
    Some(Sec1 { d, curve, public })
}

/// Reads the named curve of a SEC1 `ECPrivateKey`.
pub(crate) fn sec1_curve(der: &[u8]) -> Result<DerKey, JwtError> {
    const F: &str = "SEC1";
    let parts = sec1_parts(der).ok_or(JwtError::InvalidKey {
        format: F,
        reason: "not a SEC1 ECPrivateKey",
    })?;
    let oid = parts.curve.ok_or(JwtError::InvalidKey {
        format: F,
        reason: "no named curve",
    })?;
    curve(oid, F)
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo` (for EC keys, a SEC1
/// `ECPrivateKey`).
pub(crate) fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    let (info, _) = expect(der, TAG_SEQUENCE)?;
    let (_version, rest) = expect(info, TAG_INTEGER)?;
    let (_alg_id, rest) = expect(rest, TAG_SEQUENCE)?;
    Some(expect(rest, TAG_OCTET_STRING)?.0)
}

/// The group order of a curve (big-endian) and its coordinate length in bytes.
fn curve_params(key: DerKey) -> Option<(&'static [u8], usize)> {
    const P256_ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    const P384_ORDER: [u8; 48] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37,
        0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc,
        0xc5, 0x29, 0x73,
    ];
    match key {
        DerKey::EcP256 => Some((&P256_ORDER, 32)),
        DerKey::EcP384 => Some((&P384_ORDER, 48)),
        DerKey::Rsa => None,
    }
}

/// Checks that an EC private scalar lies in `[1, n - 1]`. A zero or out-of-range scalar would
/// give the point at infinity as public key, which OpenSSL accepts at load but cannot export.
pub(crate) fn check_ec_scalar(d: &[u8], key: DerKey, format: &'static str) -> Result<(), JwtError> {
    let (order, _) = curve_params(key).ok_or(JwtError::InvalidKey {
        format,
        reason: "not an EC key",
    })?;
    let start = d.iter().position(|&b| b != 0).unwrap_or(d.len());
    let d = &d[start..];
    let in_range =
        !d.is_empty() && (d.len() < order.len() || (d.len() == order.len() && d < order));
    if in_range {
        Ok(())
    } else {
        Err(JwtError::InvalidKey {
            format,
            reason: "the EC private scalar is out of range",
        })
    }
}

/// Checks that an encoded EC point has the length of its curve (uncompressed `04 || x || y` or
/// compressed `02|03 || x`); this rules out the one-byte encoding of the point at infinity.
pub(crate) fn check_ec_point(
    point: &[u8],
    key: DerKey,
    format: &'static str,
) -> Result<(), JwtError> {
    let coordinate = curve_params(key).map_or(0, |(_, c)| c);
    let ok = match point.first() {
        Some(0x04) => point.len() == 1 + 2 * coordinate,
        Some(0x02 | 0x03) => point.len() == 1 + coordinate,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(JwtError::InvalidKey {
            format,
            reason: "the EC public point is malformed",
        })
    }
}

/// Checks the scalar and, when present, the public point of a SEC1 `ECPrivateKey` on `key`'s
/// curve.
pub(crate) fn check_sec1(der: &[u8], key: DerKey, format: &'static str) -> Result<(), JwtError> {
    let parts = sec1_parts(der).ok_or(JwtError::InvalidKey {
        format,
        reason: "not a SEC1 ECPrivateKey",
    })?;
    check_ec_scalar(parts.d, key, format)?;
    if let Some(bits) = parts.public {
        // A BIT STRING starts with its count of unused bits, which must be 0 here.
        match bits.split_first() {
            Some((0, point)) => check_ec_point(point, key, format)?,
            _ => {
                return Err(JwtError::InvalidKey {
                    format,
                    reason: "the EC public point is malformed",
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_ec_parameters_and_finds_the_key() {
        let pem = include_str!("../tests/fixtures/p384_sec1_with_params.pem");
        let (kind, der) = private_key_der(pem).unwrap();
        assert_eq!(kind, PemKind::Sec1);
        assert_eq!(sec1_curve(&der).unwrap(), DerKey::EcP384);
    }

    #[test]
    fn crlf_and_indentation_are_tolerated() {
        let pem = include_str!("../tests/fixtures/p256_sec1.pem").replace('\n', "\r\n  ");
        let (kind, der) = private_key_der(&pem).unwrap();
        assert_eq!(kind, PemKind::Sec1);
        assert_eq!(sec1_curve(&der).unwrap(), DerKey::EcP256);
    }

    #[test]
    fn refuses_encrypted_and_keyless_input() {
        let enc = include_str!("../tests/fixtures/p256_pkcs8_encrypted.pem");
        assert_eq!(private_key_der(enc).unwrap_err(), JwtError::EncryptedKey);
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(private_key_der(legacy).unwrap_err(), JwtError::EncryptedKey);
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            private_key_der(public).unwrap_err(),
            JwtError::NoPrivateKey { format: "PEM" }
        );
        assert!(matches!(
            private_key_der("hello"),
            Err(JwtError::InvalidKey { .. })
        ));
        assert!(matches!(
            private_key_der("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"),
            Err(JwtError::InvalidKey { .. })
        ));
        assert!(matches!(
            private_key_der("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"),
            Err(JwtError::InvalidKey { .. })
        ));
        assert!(matches!(
            private_key_der("-----BEGIN PRIV"),
            Err(JwtError::InvalidKey { .. })
        ));
    }

    #[test]
    fn classifies_unsupported_pkcs8_algorithms() {
        let (_, der) =
            private_key_der(include_str!("../tests/fixtures/ed25519_pkcs8.pem")).unwrap();
        assert!(matches!(
            classify_pkcs8(&der),
            Err(JwtError::UnsupportedKeyType { .. })
        ));
        let (_, der) = private_key_der(include_str!("../tests/fixtures/p521_sec1.pem")).unwrap();
        assert!(matches!(
            sec1_curve(&der),
            Err(JwtError::UnsupportedKeyType { .. })
        ));
    }

    #[test]
    fn ec_scalar_and_point_ranges() {
        let (order, _) = curve_params(DerKey::EcP256).unwrap();
        assert!(check_ec_scalar(&[0, 0, 1], DerKey::EcP256, "t").is_ok());
        assert!(check_ec_scalar(&[], DerKey::EcP256, "t").is_err());
        assert!(check_ec_scalar(&[0; 32], DerKey::EcP256, "t").is_err());
        assert!(check_ec_scalar(order, DerKey::EcP256, "t").is_err());
        let mut below = order.to_vec();
        below[31] -= 1;
        assert!(check_ec_scalar(&below, DerKey::EcP256, "t").is_ok());
        assert!(check_ec_scalar(&[1; 33], DerKey::EcP256, "t").is_err());
        assert!(check_ec_scalar(order, DerKey::EcP384, "t").is_ok());
        assert!(check_ec_scalar(&[1], DerKey::Rsa, "t").is_err());
        assert!(check_ec_point(&[0], DerKey::EcP256, "t").is_err());
        assert!(check_ec_point(&[], DerKey::EcP256, "t").is_err());
        assert!(check_ec_point(&[4; 65], DerKey::EcP256, "t").is_ok());
        assert!(check_ec_point(&[4; 65], DerKey::EcP384, "t").is_err());
        assert!(check_ec_point(&[2; 33], DerKey::EcP256, "t").is_ok());
    }

    #[test]
    fn der_reader_never_panics_on_truncations() {
        let (_, der) = private_key_der(include_str!("../tests/fixtures/p256_sec1.pem")).unwrap();
        for cut in 0..der.len() {
            let _ = sec1_curve(&der[..cut]);
            let _ = classify_pkcs8(&der[..cut]);
            let _ = pkcs8_private_key(&der[..cut]);
            let _ = check_sec1(&der[..cut], DerKey::EcP256, "t");
        }
        // Long-form lengths larger than the input.
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(tlv(&[0x30, 0x80]).is_none());
        assert!(tlv(&[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_none());
    }
}
