//! The only module that names josekit. Nothing here is public outside the crate.

use std::sync::Arc;

use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair as _};
use josekit::jws::{JwsSigner, JwsVerifier, ES256, ES384, PS384, RS256, RS384};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::error::JwtError;
use crate::jwk::PublicParams;
use crate::pem::DerKey;
use crate::{Algorithm, KeyType};

/// A parsed private key. OpenSSL holds the key material and clears it when freed.
#[derive(Clone)]
pub(crate) enum KeyPair {
    Rsa(RsaKeyPair),
    Ec(EcKeyPair),
}

/// A prepared signer: the key is parsed once.
pub(crate) type Signer = Box<dyn JwsSigner>;

/// A prepared verifier, shared between clones of a key set.
pub(crate) type Verifier = Arc<dyn JwsVerifier>;

fn invalid(format: &'static str, reason: &'static str) -> JwtError {
    JwtError::InvalidKey { format, reason }
}

impl KeyPair {
    pub(crate) fn generate_rsa(bits: u32) -> Result<Self, JwtError> {
        RsaKeyPair::generate(bits)
            .map(KeyPair::Rsa)
            .map_err(|_| invalid("generated", "RSA key generation failed"))
    }

    pub(crate) fn generate_ec(key_type: KeyType) -> Result<Self, JwtError> {
        let curve = match key_type {
            KeyType::EcP256 => EcCurve::P256,
            KeyType::EcP384 => EcCurve::P384,
            KeyType::Rsa { .. } => return Err(invalid("generated", "not an EC key type")),
        };
        EcKeyPair::generate(curve)
            .map(KeyPair::Ec)
            .map_err(|_| invalid("generated", "EC key generation failed"))
    }

    /// An RSA key from PKCS#8 or PKCS#1 DER.
    pub(crate) fn rsa_from_der(der: &[u8], format: &'static str) -> Result<Self, JwtError> {
        RsaKeyPair::from_der(der)
            .map(KeyPair::Rsa)
            .map_err(|_| invalid(format, "not a valid RSA private key"))
    }

    /// An EC key from PKCS#8 or SEC1 DER on the given curve.
    pub(crate) fn ec_from_der(
        der: &[u8],
        key: DerKey,
        format: &'static str,
    ) -> Result<Self, JwtError> {
        let curve = match key {
            DerKey::EcP256 => EcCurve::P256,
            DerKey::EcP384 => EcCurve::P384,
            DerKey::Rsa => return Err(invalid(format, "not an EC key")),
        };
        EcKeyPair::from_der(der, Some(curve))
            .map(KeyPair::Ec)
            .map_err(|_| invalid(format, "not a valid EC private key"))
    }

    /// A key from the members of a private JWK. `members` holds only `kty`, `crv` and the key
    /// members, already checked to be base64url strings; it is zeroized before returning.
    pub(crate) fn from_jwk_members(members: Map<String, Value>) -> Result<Self, JwtError> {
        let jwk = Jwk::from_map(members).map_err(|_| invalid("JWK", "malformed key member"))?;
        let guard = JwkGuard(Some(jwk));
        let jwk = guard
            .0
            .as_ref()
            .ok_or(invalid("JWK", "malformed key member"))?;
        match jwk.key_type() {
            "RSA" => RsaKeyPair::from_jwk(jwk).map(KeyPair::Rsa).map_err(|_| {
                invalid(
                    "JWK",
                    "not a valid RSA private key (n, e, d, p, q, dp, dq, qi are required)",
                )
            }),
            "EC" => EcKeyPair::from_jwk(jwk)
                .map(KeyPair::Ec)
                .map_err(|_| invalid("JWK", "not a valid EC private key")),
            _ => Err(invalid("JWK", "unsupported kty")),
        }
    }

    /// The public members, read back from OpenSSL.
    pub(crate) fn public_params(&self) -> Result<PublicParams, JwtError> {
        let jwk = match self {
            KeyPair::Rsa(k) => k.to_jwk_public_key(),
            KeyPair::Ec(k) => k.to_jwk_public_key(),
        };
        PublicParams::from_jwk(jwk.as_ref())
            .map_err(|_| invalid("key", "cannot derive the public key"))
    }

    /// PKCS#8 PEM, zeroized on drop.
    pub(crate) fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let bytes = match self {
            KeyPair::Rsa(k) => k.to_pem_private_key(),
            KeyPair::Ec(k) => k.to_pem_private_key(),
        };
        Zeroizing::new(String::from_utf8(bytes).unwrap_or_else(|e| {
            e.into_bytes().zeroize();
            String::new()
        }))
    }

    /// Prepares a signer for `alg`, which the caller has checked fits the key.
    pub(crate) fn signer(&self, alg: Algorithm) -> Result<Signer, JwtError> {
        let der = Zeroizing::new(match self {
            KeyPair::Rsa(k) => k.to_der_private_key(),
            KeyPair::Ec(k) => k.to_der_private_key(),
        });
        let failed = |_| JwtError::SigningFailed;
        Ok(match alg {
            Algorithm::RS256 => Box::new(RS256.signer_from_der(&*der).map_err(failed)?),
            Algorithm::RS384 => Box::new(RS384.signer_from_der(&*der).map_err(failed)?),
            Algorithm::PS384 => Box::new(PS384.signer_from_der(&*der).map_err(failed)?),
            Algorithm::ES256 => Box::new(ES256.signer_from_der(&*der).map_err(failed)?),
            Algorithm::ES384 => Box::new(ES384.signer_from_der(&*der).map_err(failed)?),
        })
    }
}

/// Clears the key members of a josekit JWK when it goes out of scope.
struct JwkGuard(Option<Jwk>);

impl Drop for JwkGuard {
    fn drop(&mut self) {
        if let Some(jwk) = self.0.take() {
            let map: Map<String, Value> = jwk.into();
            zeroize_json(Value::Object(map));
        }
    }
}

/// Overwrites every string in a JSON value before freeing it.
pub(crate) fn zeroize_json(mut value: Value) {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) => s.zeroize(),
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
}

/// Prepares a verifier for `alg` from public members. Fails for keys OpenSSL refuses (points
/// off the curve, RSA under 2048 bits, malformed integers).
pub(crate) fn verifier(params: &PublicParams, alg: Algorithm) -> Result<Verifier, ()> {
    let mut jwk = Jwk::new(params.key_type().kty());
    let mut members = Map::new();
    params.write_members(&mut members);
    for (name, value) in members {
        jwk.set_parameter(&name, Some(value)).map_err(|_| ())?;
    }
    Ok(match alg {
        Algorithm::RS256 => Arc::new(RS256.verifier_from_jwk(&jwk).map_err(|_| ())?),
        Algorithm::RS384 => Arc::new(RS384.verifier_from_jwk(&jwk).map_err(|_| ())?),
        Algorithm::PS384 => Arc::new(PS384.verifier_from_jwk(&jwk).map_err(|_| ())?),
        Algorithm::ES256 => Arc::new(ES256.verifier_from_jwk(&jwk).map_err(|_| ())?),
        Algorithm::ES384 => Arc::new(ES384.verifier_from_jwk(&jwk).map_err(|_| ())?),
    })
}
