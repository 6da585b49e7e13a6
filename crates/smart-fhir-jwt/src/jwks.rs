use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::JwtError;
use crate::jose::{self, Verifier};
use crate::jwk::PublicParams;
use crate::{Algorithm, KeyType};

/// The largest JWKS document parsed.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;

/// How many keys of a JWKS are considered; the rest are skipped.
pub const MAX_JWKS_KEYS: usize = 100;

/// A server's public key set (e.g. from an OpenID provider's `jwks_uri`), ready to verify
/// signatures with [`verify`](crate::verify).
///
/// Parsing is lenient with individual keys and strict with the document: unknown members are
/// ignored, and a key that cannot be used (another `kty` or curve, `use` other than `sig`,
/// `key_ops` without `verify`, an `alg` this crate does not verify, RSA under 2048 bits, a
/// malformed or off-curve point) is skipped rather than failing the whole set. Each key is
/// prepared once, for every algorithm it may verify.
#[derive(Clone, Default)]
pub struct Jwks {
    keys: Vec<JwksKey>,
    skipped: usize,
}

/// One usable key of a [`Jwks`].
#[derive(Clone)]
pub struct JwksKey {
    kid: Option<String>,
    key_type: KeyType,
    alg: Option<Algorithm>,
    key_use: Option<String>,
    thumbprint: String,
    verifiers: Vec<(Algorithm, Verifier)>,
}

impl JwksKey {
    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// RSA with its length, or the EC curve.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The key's own `alg`, if it declares one; it then verifies that algorithm only.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The key's `use` (always `sig` when present, since other uses are skipped).
    pub fn key_use(&self) -> Option<&str> {
        self.key_use.as_deref()
    }

    /// The RFC 7638 SHA-256 thumbprint of the key (base64url).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Whether this key may verify `alg`: the key type fits and the key's own `alg`, if any,
    /// is the same.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.verifier(alg).is_some()
    }

    pub(crate) fn verifier(&self, alg: Algorithm) -> Option<&Verifier> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }

    /// Reads one key, or `None` if it cannot be used.
    fn parse(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        let params = PublicParams::from_jwk(map).ok()?;
        let key_use = match map.get("use") {
            None => None,
            Some(Value::String(u)) if u == "sig" => Some(u.clone()),
            Some(_) => return None,
        };
        match map.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) if ops.iter().any(|o| o.as_str() == Some("verify")) => {}
            Some(_) => return None,
        }
        let kid = match map.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return None,
        };
        let key_type = params.key_type();
        let alg = match map.get("alg") {
            None => None,
            Some(Value::String(a)) => {
                Some(a.parse::<Algorithm>().ok().filter(|a| a.fits(key_type))?)
            }
            Some(_) => return None,
        };
        if let KeyType::Rsa { bits } = key_type {
            if bits < crate::MIN_RSA_BITS {
                return None;
            }
        }
        let algs: Vec<Algorithm> = match alg {
            Some(a) => vec![a],
            None => Algorithm::ALL
                .into_iter()
                .filter(|a| a.fits(key_type))
                .collect(),
        };
        let verifiers = algs
            .into_iter()
            .map(|a| jose::verifier(&params, a).map(|v| (a, v)))
            .collect::<Result<Vec<_>, ()>>()
            .ok()?;
        Some(JwksKey {
            kid,
            key_type,
            alg,
            key_use,
            thumbprint: params.thumbprint(),
            verifiers,
        })
    }
}

impl fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Parses a JWKS document: a JSON object with a `keys` array. At most
    /// [`MAX_JWKS_BYTES`] are read.
    pub fn from_slice(json: &[u8]) -> Result<Self, JwtError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwtError::InvalidJwks {
                reason: "the document is larger than 512 KiB",
            });
        }
        let value: Value = serde_json::from_slice(json).map_err(|_| JwtError::InvalidJwks {
            reason: "not valid JSON",
        })?;
        Self::from_value(&value)
    }

    /// Reads an already parsed JWKS document.
    pub fn from_value(value: &Value) -> Result<Self, JwtError> {
        let keys = value
            .as_object()
            .ok_or(JwtError::InvalidJwks {
                reason: "not a JSON object",
            })?
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwtError::InvalidJwks {
                reason: "no `keys` array",
            })?;
        let mut set = Jwks::default();
        for (i, key) in keys.iter().enumerate() {
            match (i < MAX_JWKS_KEYS).then(|| JwksKey::parse(key)).flatten() {
                Some(k) => set.keys.push(k),
                None => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// The first key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&JwksKey> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys, in document order.
    pub fn kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.iter().filter_map(JwksKey::kid)
    }

    /// The usable keys, in document order.
    pub fn keys(&self) -> impl Iterator<Item = &JwksKey> + '_ {
        self.keys.iter()
    }

    /// How many entries of the document were skipped as unusable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("keys", &self.keys)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl FromStr for Jwks {
    type Err = JwtError;

    /// Same as [`Jwks::from_slice`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_slice(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::key::tests::shared;
    use crate::KeySpec;

    #[test]
    fn p9_keeps_usable_keys_and_skips_the_rest() {
        let rsa = shared(KeySpec::Rsa2048).public_jwk();
        let p256 = shared(KeySpec::P256).public_jwk();
        let p384 = shared(KeySpec::P384).public_jwk();
        let mut enc = p256.clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        let mut rs512 = rsa.clone();
        rs512["alg"] = json!("RS512");
        rs512["kid"] = json!("rs512");
        let mut wrong_alg = rsa.clone();
        wrong_alg["alg"] = json!("ES256");
        let mut no_verify = p384.clone();
        no_verify["key_ops"] = json!(["sign"]);
        let mut off_curve = p384.clone();
        off_curve["y"] = p384["x"].clone();
        let mut unknown_members = rsa.clone();
        unknown_members["kid"] = json!("extra");
        unknown_members["x5t"] = json!("whatever");
        unknown_members["vendor"] = json!({"nested": [1, 2]});
        unknown_members["alg"] = json!("RS256");
        let doc = json!({"keys": [
            rsa, p256, p384, enc, rs512, wrong_alg, no_verify, off_curve, unknown_members,
            {"kty": "oct", "k": "AAAA", "kid": "hmac"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
            "not an object",
            {"kid": 7}
        ], "extra": true});
        let jwks = Jwks::from_value(&doc).unwrap();
        assert_eq!(jwks.len(), 4);
        assert_eq!(jwks.skipped(), 11);
        let kids: Vec<&str> = jwks.kids().collect();
        assert_eq!(
            kids,
            [
                shared(KeySpec::Rsa2048).kid(),
                shared(KeySpec::P256).kid(),
                shared(KeySpec::P384).kid(),
                "extra"
            ]
        );
        let extra = jwks.find("extra").unwrap();
        assert_eq!(extra.alg(), Some(Algorithm::RS256));
        assert!(extra.supports(Algorithm::RS256) && !extra.supports(Algorithm::RS384));
        let rsa = jwks.find(shared(KeySpec::Rsa2048).kid()).unwrap();
        assert_eq!(rsa.key_type(), KeyType::Rsa { bits: 2048 });
        assert_eq!(rsa.key_use(), Some("sig"));
        assert_eq!(rsa.thumbprint(), shared(KeySpec::Rsa2048).thumbprint());
        assert!(rsa.supports(Algorithm::RS256) && rsa.supports(Algorithm::PS384));
        assert!(!rsa.supports(Algorithm::ES384));
        assert!(jwks.find("enc").is_none());
        assert!(jwks.find("nope").is_none());
    }

    #[test]
    fn the_document_itself_must_be_a_jwks() {
        for bad in ["[]", "{}", r#"{"keys": {}}"#, "nope", ""] {
            assert!(
                matches!(bad.parse::<Jwks>(), Err(JwtError::InvalidJwks { .. })),
                "{bad}"
            );
        }
        let empty: Jwks = r#"{"keys": []}"#.parse().unwrap();
        assert!(empty.is_empty());
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        assert!(matches!(
            Jwks::from_slice(&huge),
            Err(JwtError::InvalidJwks { .. })
        ));
    }

    #[test]
    fn only_the_first_keys_are_considered() {
        let key = shared(KeySpec::P256).public_jwk();
        let doc = json!({"keys": vec![key; MAX_JWKS_KEYS + 5]});
        let jwks = Jwks::from_value(&doc).unwrap();
        assert_eq!(jwks.len(), MAX_JWKS_KEYS);
        assert_eq!(jwks.skipped(), 5);
    }
}
