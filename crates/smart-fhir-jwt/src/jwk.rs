//! Public JWK members, RFC 7638 thumbprints and JWKS assembly.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{sanitize, JwtError};
use crate::KeyType;

/// The members of a JWK that carry private key material (RFC 7518 §6.2.2, §6.3.2; `k` for
/// symmetric keys). None may appear in a published JWKS (SC-2.4, P13).
pub(crate) const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The public half of a key, as JWK members (base64url strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicParams {
    Rsa {
        n: String,
        e: String,
    },
    Ec {
        key_type: KeyType,
        x: String,
        y: String,
    },
}

/// Why a JWK's public members could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamsError {
    /// A `kty` or `crv` this crate does not support.
    Unsupported,
    /// A required member is absent, not a string, or not base64url.
    Invalid(&'static str),
}

fn b64_member(jwk: &Map<String, Value>, name: &'static str) -> Result<String, ParamsError> {
    match jwk.get(name) {
        Some(Value::String(s)) if is_base64url(s) && !s.is_empty() => Ok(s.clone()),
        _ => Err(ParamsError::Invalid(name)),
    }
}

/// Whether `s` uses only the base64url alphabet, without padding.
pub(crate) fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PublicParams {
    /// Reads `kty` and the public members of an RSA or EC (P-256, P-384) JWK.
    pub(crate) fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, ParamsError> {
        match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => Ok(PublicParams::Rsa {
                n: b64_member(jwk, "n")?,
                e: b64_member(jwk, "e")?,
            }),
            Some("EC") => {
                let key_type = match jwk.get("crv").and_then(Value::as_str) {
                    Some("P-256") => KeyType::EcP256,
                    Some("P-384") => KeyType::EcP384,
                    Some(_) => return Err(ParamsError::Unsupported),
                    None => return Err(ParamsError::Invalid("crv")),
                };
                Ok(PublicParams::Ec {
                    key_type,
                    x: b64_member(jwk, "x")?,
                    y: b64_member(jwk, "y")?,
                })
            }
            Some(_) => Err(ParamsError::Unsupported),
            None => Err(ParamsError::Invalid("kty")),
        }
    }

    /// The key type; for RSA the modulus length is counted from `n`.
    pub(crate) fn key_type(&self) -> KeyType {
        match self {
            PublicParams::Rsa { n, .. } => KeyType::Rsa { bits: rsa_bits(n) },
            PublicParams::Ec { key_type, .. } => *key_type,
        }
    }

    /// The RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order,
    /// without whitespace, base64url-encoded. The members are base64url strings already, so
    /// they need no JSON escaping.
    pub(crate) fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicParams::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            PublicParams::Ec { key_type, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{x}","y":"{y}"}}"#,
                key_type.curve().unwrap_or_default()
            ),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Adds the key-type members (`kty`, `crv`, `n`/`e`, `x`/`y`) to `jwk`.
    pub(crate) fn write_members(&self, jwk: &mut Map<String, Value>) {
        match self {
            PublicParams::Rsa { n, e } => {
                jwk.insert("n".into(), Value::String(n.clone()));
                jwk.insert("e".into(), Value::String(e.clone()));
            }
            PublicParams::Ec { key_type, x, y } => {
                jwk.insert(
                    "crv".into(),
                    Value::String(key_type.curve().unwrap_or_default().into()),
                );
                jwk.insert("x".into(), Value::String(x.clone()));
                jwk.insert("y".into(), Value::String(y.clone()));
            }
        }
    }
}

/// The bit length of a base64url big-endian unsigned integer (leading zero bits not counted).
fn rsa_bits(n_b64: &str) -> u32 {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(n_b64) else {
        return 0;
    };
    let Some(pos) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    let significant = &bytes[pos..];
    let leading = significant.first().map_or(0, |b| b.leading_zeros());
    u32::try_from(significant.len() * 8)
        .unwrap_or(u32::MAX)
        .saturating_sub(leading)
}

/// The RFC 7638 SHA-256 thumbprint (base64url) of an RSA or EC (P-256, P-384) JWK, public or
/// private (only the public members are hashed).
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, JwtError> {
    let map = jwk.as_object().ok_or(JwtError::InvalidKey {
        format: "JWK",
        reason: "not a JSON object",
    })?;
    match PublicParams::from_jwk(map) {
        Ok(p) => Ok(p.thumbprint()),
        Err(ParamsError::Unsupported) => Err(JwtError::UnsupportedKeyType {
            what: format!(
                "kty {} crv {}",
                sanitize(map.get("kty").and_then(Value::as_str).unwrap_or("?")),
                sanitize(map.get("crv").and_then(Value::as_str).unwrap_or("-"))
            ),
        }),
        Err(ParamsError::Invalid(_)) => Err(JwtError::InvalidKey {
            format: "JWK",
            reason: "missing or malformed public key member",
        }),
    }
}

/// Merges public JWKs and JWK sets into one JWKS `{"keys": [...]}` for publication, for
/// instance the current and the next key during a rotation (SC-2.6).
///
/// Each item is either one JWK or a JWKS whose `keys` are taken in order. Refuses a key without
/// `kid` (SC-2.3), a repeated `kid` (SC-2.5) and any private member (`d`, `p`, `q`, `dp`,
/// `dq`, `qi`, `oth`, `k`: SC-2.4, P13).
pub fn merge_jwks<I>(items: I) -> Result<Value, JwtError>
where
    I: IntoIterator<Item = Value>,
{
    let mut keys = Vec::new();
    let mut kids = HashSet::new();
    for item in items {
        let members = match item {
            Value::Object(mut map) => match map.remove("keys") {
                Some(Value::Array(inner)) => inner,
                Some(_) => {
                    return Err(JwtError::InvalidJwks {
                        reason: "`keys` is not an array",
                    })
                }
                None => vec![Value::Object(map)],
            },
            _ => {
                return Err(JwtError::InvalidJwks {
                    reason: "an item is not a JSON object",
                })
            }
        };
        for jwk in members {
            let map = jwk.as_object().ok_or(JwtError::InvalidJwks {
                reason: "a key is not a JSON object",
            })?;
            if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|m| map.contains_key(*m)) {
                return Err(JwtError::PrivateMemberInPublicJwk { member });
            }
            let kid = match map.get("kid") {
                Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
                _ => return Err(JwtError::MissingKid),
            };
            if !kids.insert(kid.clone()) {
                return Err(JwtError::DuplicateKid {
                    kid: sanitize(&kid),
                });
            }
            keys.push(jwk);
        }
    }
    Ok(serde_json::json!({ "keys": keys }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The RSA key of RFC 7638 §3.1.
    fn rfc7638_key() -> Value {
        json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        })
    }

    #[test]
    fn rfc_7638_section_3_1_thumbprint() {
        assert_eq!(
            jwk_thumbprint(&rfc7638_key()).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rsa_bits_counts_significant_bits() {
        let PublicParams::Rsa { n, .. } =
            PublicParams::from_jwk(rfc7638_key().as_object().unwrap()).unwrap()
        else {
            panic!("not RSA")
        };
        assert_eq!(rsa_bits(&n), 2048);
        assert_eq!(rsa_bits("AAE"), 1); // 0x00 0x01
        assert_eq!(rsa_bits("AQAB"), 17); // 65537
        assert_eq!(rsa_bits("!!"), 0);
        assert_eq!(rsa_bits(""), 0);
    }

    #[test]
    fn thumbprint_refuses_unsupported_and_malformed() {
        assert!(matches!(
            jwk_thumbprint(&json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"})),
            Err(JwtError::UnsupportedKeyType { .. })
        ));
        assert!(matches!(
            jwk_thumbprint(&json!({"kty": "RSA", "n": 5, "e": "AQAB"})),
            Err(JwtError::InvalidKey { .. })
        ));
        assert!(matches!(
            jwk_thumbprint(&json!([])),
            Err(JwtError::InvalidKey { .. })
        ));
    }

    #[test]
    fn sc_2_5_merge_refuses_duplicate_kid() {
        let a = json!({"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"});
        let set = json!({"keys": [a.clone()]});
        assert_eq!(
            merge_jwks([set, a]).unwrap_err(),
            JwtError::DuplicateKid { kid: "a".into() }
        );
    }

    #[test]
    fn sc_2_3_sc_2_4_merge_refuses_missing_kid_and_private_members() {
        assert_eq!(
            merge_jwks([json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})]).unwrap_err(),
            JwtError::MissingKid
        );
        for member in PRIVATE_MEMBERS {
            let mut jwk = json!({"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"});
            jwk[member] = json!("AQAB");
            assert_eq!(
                merge_jwks([jwk]).unwrap_err(),
                JwtError::PrivateMemberInPublicJwk { member }
            );
        }
        assert!(matches!(
            merge_jwks([json!("x")]),
            Err(JwtError::InvalidJwks { .. })
        ));
        assert!(matches!(
            merge_jwks([json!({"keys": 1})]),
            Err(JwtError::InvalidJwks { .. })
        ));
    }

    #[test]
    fn sc_2_6_merge_keeps_order_for_rotation() {
        let old =
            json!({"keys": [{"kty": "EC", "kid": "old", "crv": "P-384", "x": "AA", "y": "AA"}]});
        let new = json!({"kty": "EC", "kid": "new", "crv": "P-384", "x": "AQ", "y": "AQ"});
        let merged = merge_jwks([old, new]).unwrap();
        let kids: Vec<_> = merged["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["old", "new"]);
    }
}
