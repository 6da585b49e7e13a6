use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{sanitize, JwtError};
use crate::jose::{self, zeroize_json, KeyPair};
use crate::jwk::{is_base64url, PublicParams, PRIVATE_MEMBERS};
use crate::pem::{self, DerKey, PemKind};
use crate::{Algorithm, KeySpec, KeyType};

/// The smallest RSA modulus accepted (SC-2.8, RFC 7518 §3.3).
pub const MIN_RSA_BITS: u32 = 2048;

/// A private signing key: RSA (at least 2048 bits) or EC on P-256 or P-384 (SC-2.8, SC-2.16).
///
/// `Debug` shows the key type and `kid` only; there is no `Display`. The key material lives in
/// OpenSSL, which clears it when the last clone is dropped; intermediate copies made while
/// loading (PEM bodies, DER, JWK members) are zeroized.
///
/// Loaded keys are checked for consistency: a test signature made with the private half must
/// verify with the public half, so a JWK whose `n` or `x`/`y` do not belong to its `d` is
/// refused instead of being published.
#[derive(Clone)]
pub struct PrivateKey {
    pair: KeyPair,
    public: PublicParams,
    key_type: KeyType,
    kid: String,
    alg: Option<Algorithm>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a fresh key.
    pub fn generate(spec: KeySpec) -> Result<Self, JwtError> {
        let pair = match spec {
            KeySpec::Rsa2048 => KeyPair::generate_rsa(2048)?,
            KeySpec::Rsa3072 => KeyPair::generate_rsa(3072)?,
            KeySpec::Rsa4096 => KeyPair::generate_rsa(4096)?,
            KeySpec::P256 => KeyPair::generate_ec(KeyType::EcP256)?,
            KeySpec::P384 => KeyPair::generate_ec(KeyType::EcP384)?,
        };
        Self::from_pair(pair, None, None, false)
    }

    /// Reads a key in any supported format, telling PEM from JSON by the first character:
    /// PEM (PKCS#8, PKCS#1, SEC1), a private JWK, or a JWKS holding exactly one private key.
    pub fn from_bytes(input: &[u8]) -> Result<Self, JwtError> {
        let text = std::str::from_utf8(input).map_err(|_| JwtError::InvalidKey {
            format: "key file",
            reason: "not UTF-8 text (DER is not supported: convert it to PEM)",
        })?;
        let text = text.trim_start_matches('\u{feff}').trim_start();
        if text.starts_with('{') {
            let value = parse_secret_json(text)?;
            if value.0.get("keys").is_some() {
                Self::from_jwks_value(value, None)
            } else {
                Self::from_jwk_value(value)
            }
        } else if text.starts_with("-----BEGIN") || text.starts_with(KID_LINE) {
            Self::from_pem(text)
        } else {
            Err(JwtError::InvalidKey {
                format: "key file",
                reason: "neither PEM nor JSON",
            })
        }
    }

    /// Reads a PEM private key: PKCS#8 `PRIVATE KEY` (RSA, EC P-256, EC P-384), PKCS#1
    /// `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`. Other blocks (such as `EC PARAMETERS`) are
    /// skipped; encrypted keys are refused with [`JwtError::EncryptedKey`]. A `kid: …` line
    /// before the first block, as [`to_pkcs8_pem_with_kid`](Self::to_pkcs8_pem_with_kid) writes
    /// it, becomes the key's id.
    pub fn from_pem(pem: &str) -> Result<Self, JwtError> {
        let kid = pem_kid(pem);
        let (kind, der) = pem::private_key_der(pem)?;
        let pair = match kind {
            PemKind::Pkcs8 => match pem::classify_pkcs8(&der)? {
                DerKey::Rsa => KeyPair::rsa_from_der(&der, "PKCS#8")?,
                ec => {
                    let inner = pem::pkcs8_private_key(&der).ok_or(JwtError::InvalidKey {
                        format: "PKCS#8",
                        reason: "missing privateKey",
                    })?;
                    pem::check_sec1(inner, ec, "PKCS#8")?;
                    KeyPair::ec_from_der(&der, ec, "PKCS#8")?
                }
            },
            PemKind::Pkcs1 => KeyPair::rsa_from_der(&der, "PKCS#1")?,
            PemKind::Sec1 => {
                let curve = pem::sec1_curve(&der)?;
                pem::check_sec1(&der, curve, "SEC1")?;
                KeyPair::ec_from_der(&der, curve, "SEC1")?
            }
        };
        Self::from_pair(pair, kid, None, true)
    }

    /// Reads a private JWK (RFC 7517, RFC 7518 §6). Its `kid` becomes the key's id; its `alg`,
    /// if present, must be a supported algorithm that fits the key. A `use` other than `sig`
    /// or `key_ops` without `sign` is refused.
    pub fn from_jwk(json: &str) -> Result<Self, JwtError> {
        Self::from_jwk_value(parse_secret_json(json)?)
    }

    /// Reads a JWKS and takes the private key with the given `kid`, or, when `kid` is `None`,
    /// the only private key in the set.
    pub fn from_jwks(json: &str, kid: Option<&str>) -> Result<Self, JwtError> {
        Self::from_jwks_value(parse_secret_json(json)?, kid)
    }

    fn from_jwks_value(value: SecretJson, kid: Option<&str>) -> Result<Self, JwtError> {
        let mut value = value;
        let keys = match value.0.get_mut("keys") {
            Some(Value::Array(keys)) => std::mem::take(keys),
            _ => {
                return Err(JwtError::InvalidJwks {
                    reason: "expected an object with a `keys` array",
                })
            }
        };
        // Take ownership of every key so that each is zeroized on drop.
        let keys: Vec<SecretJson> = keys.into_iter().map(SecretJson).collect();
        let is_private = |k: &SecretJson| k.0.get("d").is_some();
        let kid_of = |k: &SecretJson| k.0.get("kid").and_then(Value::as_str).map(str::to_owned);
        let available: Vec<String> = keys
            .iter()
            .filter(|k| is_private(k))
            .map(|k| kid_of(k).map_or_else(|| "<none>".to_owned(), |s| sanitize(&s)))
            .collect();
        let mut matching: Vec<SecretJson> = match kid {
            Some(wanted) => keys
                .into_iter()
                .filter(|k| is_private(k) && kid_of(k).as_deref() == Some(wanted))
                .collect(),
            None => keys.into_iter().filter(|k| is_private(k)).collect(),
        };
        match (matching.len(), kid) {
            (1, _) => match matching.pop() {
                Some(one) => Self::from_jwk_value(one),
                None => Err(JwtError::NoPrivateKey { format: "JWKS" }),
            },
            (0, Some(wanted)) => Err(JwtError::KidNotFound {
                kid: sanitize(wanted),
                available,
            }),
            (0, None) => Err(JwtError::NoPrivateKey { format: "JWKS" }),
            (_, Some(wanted)) => Err(JwtError::DuplicateKid {
                kid: sanitize(wanted),
            }),
            (_, None) => Err(JwtError::AmbiguousKey { available }),
        }
    }

    fn from_jwk_value(value: SecretJson) -> Result<Self, JwtError> {
        const F: &str = "JWK";
        let map = value.0.as_object().ok_or(JwtError::InvalidKey {
            format: F,
            reason: "not a JSON object",
        })?;
        let kty = match map.get("kty") {
            Some(Value::String(kty)) => kty.as_str(),
            _ => {
                return Err(JwtError::InvalidKey {
                    format: F,
                    reason: "missing kty",
                })
            }
        };
        let mut curve = None;
        let key_members: &[&str] = match kty {
            "RSA" => &["n", "e", "d", "p", "q", "dp", "dq", "qi"],
            "EC" => match map.get("crv").and_then(Value::as_str) {
                Some(crv @ ("P-256" | "P-384")) => {
                    curve = Some(if crv == "P-256" {
                        DerKey::EcP256
                    } else {
                        DerKey::EcP384
                    });
                    &["x", "y", "d"]
                }
                Some(crv) => {
                    return Err(JwtError::UnsupportedKeyType {
                        what: format!("EC curve {}", sanitize(crv)),
                    })
                }
                None => {
                    return Err(JwtError::InvalidKey {
                        format: F,
                        reason: "missing crv",
                    })
                }
            },
            other => {
                return Err(JwtError::UnsupportedKeyType {
                    what: format!("kty {}", sanitize(other)),
                })
            }
        };
        if !map.contains_key("d") {
            return Err(JwtError::NoPrivateKey { format: F });
        }
        match map.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(_) => return Err(JwtError::KeyNotForSigning { member: "use" }),
        }
        match map.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) if ops.iter().any(|o| o.as_str() == Some("sign")) => {}
            Some(_) => return Err(JwtError::KeyNotForSigning { member: "key_ops" }),
        }
        let alg = match map.get("alg") {
            None => None,
            Some(Value::String(alg)) => Some(alg.parse::<Algorithm>()?),
            Some(_) => {
                return Err(JwtError::InvalidKey {
                    format: F,
                    reason: "alg is not a string",
                })
            }
        };
        let kid = match map.get("kid") {
            None => None,
            Some(Value::String(kid)) if !kid.is_empty() => Some(kid.clone()),
            Some(_) => {
                return Err(JwtError::InvalidKey {
                    format: F,
                    reason: "kid is not a non-empty string",
                })
            }
        };
        // Hand josekit only the members it needs, each checked to be base64url, so that its
        // own validation cannot fail half-way with key material it would not clear.
        let mut members = Map::new();
        members.insert("kty".into(), Value::String(kty.to_owned()));
        if let Some(crv) = map.get("crv") {
            members.insert("crv".into(), crv.clone());
        }
        for &name in key_members {
            match map.get(name) {
                Some(Value::String(s)) if is_base64url(s) && !s.is_empty() => {
                    members.insert(name.into(), Value::String(s.clone()));
                }
                None if name != "d" && kty == "EC" => {}
                _ => {
                    zeroize_json(Value::Object(members));
                    return Err(JwtError::InvalidKey {
                        format: F,
                        reason: "a key member is missing or not a base64url string",
                    });
                }
            }
        }
        if let Some(curve) = curve {
            if let Err(e) = check_ec_jwk(&members, curve) {
                zeroize_json(Value::Object(members));
                return Err(e);
            }
        }
        let pair = KeyPair::from_jwk_members(members)?;
        Self::from_pair(pair, kid, alg, true)
    }

    fn from_pair(
        pair: KeyPair,
        kid: Option<String>,
        alg: Option<Algorithm>,
        check: bool,
    ) -> Result<Self, JwtError> {
        let public = pair.public_params()?;
        let key_type = public.key_type();
        if let KeyType::Rsa { bits } = key_type {
            if bits < MIN_RSA_BITS {
                return Err(JwtError::KeyTooSmall { bits });
            }
        }
        if let Some(alg) = alg {
            if !alg.fits(key_type) {
                return Err(JwtError::AlgorithmKeyMismatch { alg, key: key_type });
            }
        }
        let kid = kid.unwrap_or_else(|| public.thumbprint());
        let key = PrivateKey {
            pair,
            public,
            key_type,
            kid,
            alg,
        };
        if check {
            key.check_pair()?;
        }
        Ok(key)
    }

    /// Signs a fixed message and verifies it with the public half.
    fn check_pair(&self) -> Result<(), JwtError> {
        let alg = match self.key_type {
            KeyType::Rsa { .. } => Algorithm::RS256,
            KeyType::EcP256 => Algorithm::ES256,
            KeyType::EcP384 => Algorithm::ES384,
        };
        const MESSAGE: &[u8] = b"smart-fhir-jwt key consistency check";
        let mismatch = JwtError::InvalidKey {
            format: "key",
            reason: "the public key does not match the private key",
        };
        let signature = self
            .pair
            .signer(alg)
            .and_then(|s| s.sign(MESSAGE).map_err(|_| JwtError::SigningFailed))
            .map_err(|_| JwtError::InvalidKey {
                format: "key",
                reason: "the key failed a test signature",
            })?;
        let verifier = jose::verifier(&self.public, alg).map_err(|()| mismatch.clone())?;
        verifier.verify(MESSAGE, &signature).map_err(|_| mismatch)
    }

    /// Replaces the key id (by default the JWK's `kid`, or else the RFC 7638 thumbprint).
    /// An empty `kid` is refused.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, JwtError> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(JwtError::EmptyKid);
        }
        self.kid = kid;
        Ok(self)
    }

    /// Pins the key to one algorithm: the public JWK then carries `alg`, and a signer for any
    /// other algorithm is refused.
    pub fn with_algorithm(mut self, alg: Algorithm) -> Result<Self, JwtError> {
        if !alg.fits(self.key_type) {
            return Err(JwtError::AlgorithmKeyMismatch {
                alg,
                key: self.key_type,
            });
        }
        self.alg = Some(alg);
        Ok(self)
    }

    /// The key id: the `kid` the key was loaded or configured with, or else the RFC 7638
    /// SHA-256 thumbprint of the public key (base64url).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key (base64url), whatever the `kid`.
    pub fn thumbprint(&self) -> String {
        self.public.thumbprint()
    }

    /// RSA with its length, or the EC curve.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The algorithm the key is pinned to, if any (from the JWK's `alg` or
    /// [`with_algorithm`](Self::with_algorithm)).
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The algorithms this key can sign with, most preferred first ([`Algorithm::PREFERENCE`]):
    /// those that fit its type (RS*/PS* for RSA, ES256 for P-256, ES384 for P-384), or only the
    /// pinned one when the key is pinned. Never empty for a loaded key.
    pub fn signing_algorithms(&self) -> Vec<Algorithm> {
        Algorithm::PREFERENCE
            .into_iter()
            .filter(|alg| self.can_sign_with(*alg))
            .collect()
    }

    /// Whether this key can sign with `alg`: the algorithm fits the key's type and does not
    /// contradict a pinned algorithm.
    pub fn can_sign_with(&self, alg: Algorithm) -> bool {
        alg.fits(self.key_type) && self.alg.is_none_or(|pinned| pinned == alg)
    }

    /// The public JWK for registration (SC-2.1, SC-2.3): `kty`, `kid`, `use: "sig"`, `alg` when
    /// pinned, and `n`/`e` or `crv`/`x`/`y`. No private member is ever written (SC-2.4).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = Map::new();
        jwk.insert("kty".into(), Value::String(self.key_type.kty().into()));
        jwk.insert("kid".into(), Value::String(self.kid.clone()));
        jwk.insert("use".into(), Value::String("sig".into()));
        if let Some(alg) = self.alg {
            jwk.insert("alg".into(), Value::String(alg.as_str().into()));
        }
        self.public.write_members(&mut jwk);
        debug_assert!(PRIVATE_MEMBERS.iter().all(|m| !jwk.contains_key(*m)));
        Value::Object(jwk)
    }

    /// `{"keys": [public_jwk]}`, ready to serve at the registered JWKS URL (SC-2.2). Combine
    /// several keys with [`merge_jwks`](crate::merge_jwks).
    pub fn public_jwks(&self) -> Value {
        serde_json::json!({ "keys": [self.public_jwk()] })
    }

    /// The private key as PKCS#8 PEM, for storing in a secret store.
    ///
    /// # Security warning
    ///
    /// This is the private key. Never log it; write it only where secrets belong.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.pair.to_pkcs8_pem()
    }

    /// The private key as PKCS#8 PEM preceded by a `kid: …` line (explanatory text before the
    /// block, which RFC 7468 §5.2 allows and PEM readers skip), so that a custom key id survives
    /// in a file: [`from_pem`](Self::from_pem) and [`from_bytes`](Self::from_bytes) read it back.
    /// A kid with a control character or leading/trailing white space cannot be written on one
    /// line and is refused.
    ///
    /// # Security warning
    ///
    /// This is the private key. Never log it; write it only where secrets belong.
    pub fn to_pkcs8_pem_with_kid(&self) -> Result<Zeroizing<String>, JwtError> {
        if self.kid.chars().any(char::is_control) || self.kid.trim() != self.kid {
            return Err(JwtError::InvalidKey {
                format: "PEM",
                reason: "the kid cannot be written on one line",
            });
        }
        let pem = self.pair.to_pkcs8_pem();
        Ok(Zeroizing::new(format!(
            "{KID_LINE} {}\n{}",
            self.kid,
            pem.as_str()
        )))
    }

    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }
}

/// The start of the line that carries a key id before a PEM block.
const KID_LINE: &str = "kid:";

/// The key id of a `kid: …` line before the first PEM block, if any.
fn pem_kid(pem: &str) -> Option<String> {
    let head = &pem[..pem.find("-----BEGIN")?];
    head.lines()
        .find_map(|l| l.trim().strip_prefix(KID_LINE))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

impl FromStr for PrivateKey {
    type Err = JwtError;

    /// Same as [`PrivateKey::from_bytes`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(s.as_bytes())
    }
}

/// Checks the scalar and coordinates of an EC private JWK before OpenSSL sees them (see
/// [`pem::check_ec_scalar`]).
fn check_ec_jwk(members: &Map<String, Value>, curve: DerKey) -> Result<(), JwtError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    const F: &str = "JWK";
    let decode = |name: &str| -> Result<Option<Zeroizing<Vec<u8>>>, JwtError> {
        match members.get(name).and_then(Value::as_str) {
            None => Ok(None),
            Some(s) => URL_SAFE_NO_PAD
                .decode(s)
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|_| JwtError::InvalidKey {
                    format: F,
                    reason: "a key member is not valid base64url",
                }),
        }
    };
    let d = decode("d")?.ok_or(JwtError::NoPrivateKey { format: F })?;
    pem::check_ec_scalar(&d, curve, F)?;
    if let (Some(x), Some(y)) = (decode("x")?, decode("y")?) {
        let mut point = Vec::with_capacity(1 + x.len() + y.len());
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        if x.len() != y.len() {
            point.clear();
        }
        pem::check_ec_point(&point, curve, F)?;
    }
    Ok(())
}

/// Parsed JSON that may hold private key members; every string is zeroized on drop.
struct SecretJson(Value);

impl Drop for SecretJson {
    fn drop(&mut self) {
        zeroize_json(std::mem::take(&mut self.0));
    }
}

fn parse_secret_json(json: &str) -> Result<SecretJson, JwtError> {
    serde_json::from_str::<Value>(json)
        .map(SecretJson)
        .map_err(|_| JwtError::InvalidKey {
            format: "JSON",
            reason: "not valid JSON",
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use serde_json::json;

    use super::*;

    /// Keys are slow to generate: each test binary makes one of each and shares it.
    pub(crate) fn shared(spec: KeySpec) -> &'static PrivateKey {
        static RSA: OnceLock<PrivateKey> = OnceLock::new();
        static P256: OnceLock<PrivateKey> = OnceLock::new();
        static P384: OnceLock<PrivateKey> = OnceLock::new();
        let cell = match spec {
            KeySpec::P256 => &P256,
            KeySpec::P384 => &P384,
            _ => &RSA,
        };
        cell.get_or_init(|| PrivateKey::generate(spec).unwrap())
    }

    const RSA_PKCS1: &str = include_str!("../tests/fixtures/rsa2048_pkcs1.pem");
    const RSA_MODULUS_HEX: &str = include_str!("../tests/fixtures/rsa2048_modulus.hex");
    const RSA1024_PKCS1: &str = include_str!("../tests/fixtures/rsa1024_pkcs1.pem");
    const P256_SEC1: &str = include_str!("../tests/fixtures/p256_sec1.pem");
    const P256_POINT_HEX: &str = include_str!("../tests/fixtures/p256_public_point.hex");
    const P384_SEC1: &str = include_str!("../tests/fixtures/p384_sec1_with_params.pem");
    const P384_POINT_HEX: &str = include_str!("../tests/fixtures/p384_public_point.hex");

    fn hex(s: &str) -> Vec<u8> {
        let s = s.trim();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The private JWK of a key, built from its PKCS#8 export through josekit, for tests.
    pub(crate) fn private_jwk(key: &PrivateKey) -> Value {
        use josekit::jwk::KeyPair as _;
        let jwk = match key.pair() {
            KeyPair::Rsa(k) => k.to_jwk_key_pair(),
            KeyPair::Ec(k) => k.to_jwk_key_pair(),
        };
        let mut map: Map<String, Value> = jwk.into();
        map.insert("kid".into(), json!(key.kid()));
        Value::Object(map)
    }

    #[test]
    fn sc_2_8_pkcs1_rsa_pem_loads_with_the_right_modulus() {
        let key = PrivateKey::from_pem(RSA_PKCS1).unwrap();
        assert_eq!(key.key_type(), KeyType::Rsa { bits: 2048 });
        let jwk = key.public_jwk();
        assert_eq!(jwk["n"], json!(b64(&hex(RSA_MODULUS_HEX))));
        assert_eq!(jwk["e"], json!("AQAB"));
        // The same key through the auto-detecting entry point and FromStr.
        let again: PrivateKey = RSA_PKCS1.parse().unwrap();
        assert_eq!(again.public_jwk(), jwk);
    }

    #[test]
    fn sec1_ec_pems_load_with_the_right_point() {
        for (pem, point, key_type) in [
            (P256_SEC1, P256_POINT_HEX, KeyType::EcP256),
            (P384_SEC1, P384_POINT_HEX, KeyType::EcP384),
        ] {
            let key = PrivateKey::from_bytes(pem.as_bytes()).unwrap();
            assert_eq!(key.key_type(), key_type);
            let point = hex(point);
            let half = (point.len() - 1) / 2;
            let jwk = key.public_jwk();
            assert_eq!(jwk["crv"], json!(key_type.curve().unwrap()));
            assert_eq!(jwk["x"], json!(b64(&point[1..=half])));
            assert_eq!(jwk["y"], json!(b64(&point[half + 1..])));
        }
    }

    #[test]
    fn pkcs8_round_trip_for_every_generated_type() {
        for spec in [KeySpec::Rsa2048, KeySpec::P256, KeySpec::P384] {
            let key = shared(spec);
            let pem = key.to_pkcs8_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{spec:?}");
            let back = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!(back.public_jwk(), key.public_jwk(), "{spec:?}");
            assert_eq!(back.kid(), key.kid());
        }
    }

    #[test]
    fn generate_makes_the_requested_type() {
        assert_eq!(
            shared(KeySpec::Rsa2048).key_type(),
            KeyType::Rsa { bits: 2048 }
        );
        assert_eq!(shared(KeySpec::P256).key_type(), KeyType::EcP256);
        assert_eq!(shared(KeySpec::P384).key_type(), KeyType::EcP384);
        let rsa3072 = PrivateKey::generate(KeySpec::Rsa3072).unwrap();
        assert_eq!(rsa3072.key_type(), KeyType::Rsa { bits: 3072 });
    }

    #[test]
    fn sc_2_8_rsa_1024_is_refused() {
        assert_eq!(
            PrivateKey::from_pem(RSA1024_PKCS1).unwrap_err(),
            JwtError::KeyTooSmall { bits: 1024 }
        );
    }

    #[test]
    fn private_jwk_and_jwks_load() {
        let rsa = shared(KeySpec::Rsa2048);
        let ec = shared(KeySpec::P384);
        let rsa_jwk = private_jwk(rsa).to_string();
        let loaded = PrivateKey::from_jwk(&rsa_jwk).unwrap();
        assert_eq!(loaded.public_jwk(), rsa.public_jwk());
        let loaded = PrivateKey::from_bytes(private_jwk(ec).to_string().as_bytes()).unwrap();
        assert_eq!(loaded.public_jwk(), ec.public_jwk());

        let mut a = private_jwk(rsa);
        a["kid"] = json!("rsa-1");
        let mut b = private_jwk(ec);
        b["kid"] = json!("ec-1");
        let set = json!({"keys": [a, b, {"kty": "EC", "kid": "public-only", "crv": "P-256", "x": "AA", "y": "AA"}]})
            .to_string();
        let picked = PrivateKey::from_jwks(&set, Some("ec-1")).unwrap();
        assert_eq!(picked.kid(), "ec-1");
        assert_eq!(picked.key_type(), KeyType::EcP384);
        let picked = PrivateKey::from_jwks(&set, Some("rsa-1")).unwrap();
        assert_eq!(picked.kid(), "rsa-1");
        assert_eq!(picked.key_type(), KeyType::Rsa { bits: 2048 });

        assert_eq!(
            PrivateKey::from_jwks(&set, Some("nope")).unwrap_err(),
            JwtError::KidNotFound {
                kid: "nope".into(),
                available: vec!["rsa-1".into(), "ec-1".into()]
            }
        );
        assert_eq!(
            PrivateKey::from_jwks(&set, None).unwrap_err(),
            JwtError::AmbiguousKey {
                available: vec!["rsa-1".into(), "ec-1".into()]
            }
        );
        assert!(matches!(
            PrivateKey::from_bytes(set.as_bytes()),
            Err(JwtError::AmbiguousKey { .. })
        ));
        // A JWKS with exactly one private key needs no kid.
        let one = json!({"keys": [private_jwk(ec)]}).to_string();
        assert_eq!(
            PrivateKey::from_bytes(one.as_bytes()).unwrap().kid(),
            ec.kid()
        );
    }

    #[test]
    fn jwk_kid_and_alg_are_kept_and_checked() {
        let ec = shared(KeySpec::P384);
        let mut jwk = private_jwk(ec);
        jwk["kid"] = json!("my-key");
        jwk["alg"] = json!("ES384");
        let key = PrivateKey::from_jwk(&jwk.to_string()).unwrap();
        assert_eq!(key.kid(), "my-key");
        assert_eq!(key.algorithm(), Some(Algorithm::ES384));
        assert_eq!(key.public_jwk()["alg"], json!("ES384"));

        jwk["alg"] = json!("ES256");
        assert!(matches!(
            PrivateKey::from_jwk(&jwk.to_string()),
            Err(JwtError::AlgorithmKeyMismatch { .. })
        ));
        jwk["alg"] = json!("HS256");
        assert!(matches!(
            PrivateKey::from_jwk(&jwk.to_string()),
            Err(JwtError::UnsupportedAlgorithm { .. })
        ));
        jwk["alg"] = json!("ES384");
        jwk["use"] = json!("enc");
        assert_eq!(
            PrivateKey::from_jwk(&jwk.to_string()).unwrap_err(),
            JwtError::KeyNotForSigning { member: "use" }
        );
        jwk["use"] = json!("sig");
        jwk["key_ops"] = json!(["verify"]);
        assert_eq!(
            PrivateKey::from_jwk(&jwk.to_string()).unwrap_err(),
            JwtError::KeyNotForSigning { member: "key_ops" }
        );
    }

    #[test]
    fn mismatched_public_members_are_refused() {
        let mut jwk = private_jwk(shared(KeySpec::P384));
        let other = private_jwk(&PrivateKey::generate(KeySpec::P384).unwrap());
        jwk["x"] = other["x"].clone();
        jwk["y"] = other["y"].clone();
        assert!(matches!(
            PrivateKey::from_jwk(&jwk.to_string()),
            Err(JwtError::InvalidKey { .. })
        ));
        let mut jwk = private_jwk(shared(KeySpec::Rsa2048));
        jwk["n"] = json!(b64(&hex(RSA_MODULUS_HEX)));
        assert!(matches!(
            PrivateKey::from_jwk(&jwk.to_string()),
            Err(JwtError::InvalidKey { .. })
        ));
    }

    #[test]
    fn unsupported_and_malformed_inputs_are_typed_errors() {
        type Check = fn(&JwtError) -> bool;
        let cases: Vec<(&[u8], Check)> = vec![
            (include_bytes!("../tests/fixtures/p521_sec1.pem"), |e| matches!(e, JwtError::UnsupportedKeyType { .. })),
            (include_bytes!("../tests/fixtures/ed25519_pkcs8.pem"), |e| matches!(e, JwtError::UnsupportedKeyType { .. })),
            (include_bytes!("../tests/fixtures/p256_pkcs8_encrypted.pem"), |e| *e == JwtError::EncryptedKey),
            (b"{\"kty\":\"oct\",\"k\":\"AAAA\"}", |e| matches!(e, JwtError::UnsupportedKeyType { .. })),
            (b"{\"kty\":\"EC\",\"crv\":\"P-521\",\"d\":\"AA\"}", |e| matches!(e, JwtError::UnsupportedKeyType { .. })),
            (b"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}", |e| matches!(e, JwtError::NoPrivateKey { .. })),
            (b"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"d\":\"A=B\"}", |e| matches!(e, JwtError::InvalidKey { .. })),
            (b"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"d\":\"AQAB\",\"p\":\"AQ\",\"q\":\"AQ\",\"dp\":\"AQ\",\"dq\":\"AQ\",\"qi\":\"AQ\"}", |e| matches!(e, JwtError::InvalidKey { .. } | JwtError::KeyTooSmall { .. })),
            (b"{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":\"AAAA\"}", |e| matches!(e, JwtError::InvalidKey { .. })),
            (b"{\"keys\":[]}", |e| matches!(e, JwtError::NoPrivateKey { .. })),
            (b"{\"keys\":5}", |e| matches!(e, JwtError::InvalidJwks { .. })),
            (b"{nope", |e| matches!(e, JwtError::InvalidKey { .. })),
            (b"\xff\xfe", |e| matches!(e, JwtError::InvalidKey { .. })),
            (b"ssh-rsa AAAA", |e| matches!(e, JwtError::InvalidKey { .. })),
            (b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n", |e| matches!(e, JwtError::InvalidKey { .. })),
            (b"-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n", |e| matches!(e, JwtError::InvalidKey { .. })),
        ];
        for (input, check) in cases {
            let err = PrivateKey::from_bytes(input).unwrap_err();
            assert!(
                check(&err),
                "{:?} -> {err:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn truncated_keys_never_panic() {
        let pkcs8 = shared(KeySpec::P256).to_pkcs8_pem();
        for input in [RSA_PKCS1, P256_SEC1, pkcs8.as_str()] {
            let lines: Vec<&str> = input.lines().collect();
            for cut in 1..lines.len() - 1 {
                // Drop one body line: the base64 still decodes, the DER inside is cut short.
                let mut damaged: Vec<&str> = lines.clone();
                damaged.remove(cut);
                assert!(PrivateKey::from_pem(&damaged.join("\n")).is_err());
            }
        }
    }

    /// A SEC1 P-256 key in PEM with the given scalar and optional public point.
    fn sec1_pem(d: &[u8], public: Option<&[u8]>) -> String {
        use base64::Engine as _;
        let tlv = |tag: u8, body: &[u8]| -> Vec<u8> {
            let mut v = vec![tag, u8::try_from(body.len()).unwrap()];
            v.extend_from_slice(body);
            v
        };
        let mut inner = tlv(0x02, &[1]);
        inner.extend(tlv(0x04, d));
        inner.extend(tlv(
            0xa0,
            &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ));
        if let Some(point) = public {
            let mut bits = vec![0];
            bits.extend_from_slice(point);
            inner.extend(tlv(0xa1, &tlv(0x03, &bits)));
        }
        let der = tlv(0x30, &inner);
        format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    #[test]
    fn degenerate_ec_keys_are_refused_not_panicked_on() {
        // d = 0 would make the public key the point at infinity.
        for pem in [
            sec1_pem(&[0; 32], None),
            sec1_pem(&[], None),
            sec1_pem(&[0xff; 32], None),
            sec1_pem(&[1; 32], Some(&[0])),
            sec1_pem(&[1; 32], Some(&[4; 10])),
        ] {
            assert!(
                matches!(PrivateKey::from_pem(&pem), Err(JwtError::InvalidKey { .. })),
                "{pem}"
            );
        }
        assert_eq!(
            PrivateKey::from_pem(&sec1_pem(&[1; 32], None))
                .unwrap()
                .key_type(),
            KeyType::EcP256
        );
        for d in [
            "AA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "_____________________________________________w",
        ] {
            let jwk = json!({"kty": "EC", "crv": "P-256", "d": d}).to_string();
            assert!(
                matches!(PrivateKey::from_jwk(&jwk), Err(JwtError::InvalidKey { .. })),
                "{d}"
            );
        }
        let mut jwk = private_jwk(shared(KeySpec::P256));
        jwk["x"] = json!("AA");
        assert!(matches!(
            PrivateKey::from_jwk(&jwk.to_string()),
            Err(JwtError::InvalidKey { .. })
        ));
    }

    /// Damages every byte of each supported encoding in turn: loading must fail or succeed,
    /// never panic (the parsers behind this are OpenSSL and josekit).
    #[test]
    fn byte_mutations_never_panic() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        let pkcs8_ec = shared(KeySpec::P384).to_pkcs8_pem();
        let inputs: [(&str, &str); 3] = [
            ("EC PRIVATE KEY", P256_SEC1),
            ("PRIVATE KEY", pkcs8_ec.as_str()),
            ("RSA PRIVATE KEY", RSA_PKCS1),
        ];
        for (label, pem) in inputs {
            let (_, der) = pem::private_key_der(pem).unwrap();
            // RSA keys are large: sample their bytes to keep the test fast.
            let step = if der.len() > 512 { 7 } else { 1 };
            for i in (0..der.len()).step_by(step) {
                for value in [0x00, 0xff, der[i] ^ 0x01, 0x80] {
                    let mut damaged = der.to_vec();
                    damaged[i] = value;
                    let text = format!(
                        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                        STANDARD.encode(&damaged)
                    );
                    let _ = PrivateKey::from_pem(&text);
                }
            }
        }
        let jwk = private_jwk(shared(KeySpec::P256)).to_string();
        for i in 0..jwk.len() {
            let mut damaged = jwk.clone().into_bytes();
            damaged[i] = b'A';
            let _ = PrivateKey::from_bytes(&damaged);
        }
    }

    #[test]
    fn thumbprint_is_the_default_kid_and_with_kid_overrides() {
        let key = PrivateKey::from_pem(P256_SEC1).unwrap();
        assert_eq!(key.kid(), key.thumbprint());
        assert_eq!(
            crate::jwk_thumbprint(&key.public_jwk()).unwrap(),
            key.thumbprint()
        );
        let key = key.with_kid("k-2025").unwrap();
        assert_eq!(key.kid(), "k-2025");
        assert_eq!(key.public_jwk()["kid"], json!("k-2025"));
        assert_eq!(key.with_kid("").unwrap_err(), JwtError::EmptyKid);
    }

    /// Issue 11 §1 (a custom `--kid` is lost in a PEM file): the kid written before the block
    /// is read back by `from_pem` and `from_bytes`; a kid that cannot stay on one line is
    /// refused rather than written so that it would change the file.
    #[test]
    fn a_custom_kid_survives_a_pem_file() {
        let key = shared(KeySpec::P256).clone().with_kid("k-2025 a").unwrap();
        let pem = key.to_pkcs8_pem_with_kid().unwrap();
        assert!(pem.starts_with("kid: k-2025 a\n-----BEGIN PRIVATE KEY-----"));
        assert_eq!(PrivateKey::from_pem(&pem).unwrap().kid(), "k-2025 a");
        let back = PrivateKey::from_bytes(pem.as_bytes()).unwrap();
        assert_eq!(back.kid(), "k-2025 a");
        assert_eq!(back.thumbprint(), key.thumbprint());
        // Without the line, the thumbprint as before.
        let plain = PrivateKey::from_pem(&key.to_pkcs8_pem()).unwrap();
        assert_eq!(plain.kid(), key.thumbprint());
        for bad in ["a\nkid: b", " padded", "tab\t"] {
            let key = key.clone().with_kid(bad).unwrap();
            assert!(key.to_pkcs8_pem_with_kid().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn with_algorithm_checks_the_key() {
        let ec = shared(KeySpec::P256).clone();
        assert!(matches!(
            ec.clone().with_algorithm(Algorithm::ES384),
            Err(JwtError::AlgorithmKeyMismatch { .. })
        ));
        assert_eq!(
            ec.with_algorithm(Algorithm::ES256).unwrap().algorithm(),
            Some(Algorithm::ES256)
        );
    }

    /// SC-2.7, SC-1.13: the algorithms a key can sign with, in the one preference order
    /// (RS384 / ES384 first); a pinned key offers only its algorithm.
    #[test]
    fn sc_2_7_signing_algorithms_follow_the_preference_and_the_pin() {
        assert_eq!(
            shared(KeySpec::Rsa2048).signing_algorithms(),
            [Algorithm::RS384, Algorithm::PS384, Algorithm::RS256]
        );
        assert_eq!(
            shared(KeySpec::P256).signing_algorithms(),
            [Algorithm::ES256]
        );
        assert_eq!(
            shared(KeySpec::P384).signing_algorithms(),
            [Algorithm::ES384]
        );
        let pinned = shared(KeySpec::Rsa2048)
            .clone()
            .with_algorithm(Algorithm::PS384)
            .unwrap();
        assert_eq!(pinned.signing_algorithms(), [Algorithm::PS384]);
        assert!(!pinned.can_sign_with(Algorithm::RS384));
        assert!(!shared(KeySpec::P256).can_sign_with(Algorithm::ES384));
    }

    #[test]
    fn sc_2_3_sc_2_4_p13_public_jwk_has_required_and_no_private_members() {
        for spec in [KeySpec::Rsa2048, KeySpec::P256, KeySpec::P384] {
            let key = shared(spec);
            let jwks = key.public_jwks();
            let keys = jwks["keys"].as_array().unwrap();
            assert_eq!(keys.len(), 1);
            let jwk = keys[0].as_object().unwrap();
            for m in PRIVATE_MEMBERS {
                assert!(!jwk.contains_key(m), "{spec:?} publishes {m}");
            }
            assert_eq!(jwk["kid"], json!(key.kid()));
            assert_eq!(jwk["use"], json!("sig"));
            let required: &[&str] = match key.key_type() {
                KeyType::Rsa { .. } => &["kty", "kid", "n", "e"],
                _ => &["kty", "kid", "crv", "x", "y"],
            };
            for m in required {
                assert!(jwk.contains_key(*m), "{spec:?} lacks {m}");
            }
            assert!(crate::merge_jwks([jwks.clone()]).is_ok());
        }
    }

    #[test]
    fn p5_debug_shows_no_key_material() {
        let key = shared(KeySpec::P384);
        let printed = format!("{key:?}");
        let jwk = private_jwk(key);
        let d = jwk["d"].as_str().unwrap();
        assert!(!printed.contains(d));
        assert!(printed.contains("EcP384"));
        assert!(printed.contains(key.kid()));
    }
}
