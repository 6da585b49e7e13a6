use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{sanitize, JwtError};
use crate::jwks::{Jwks, JwksKey};
use crate::Algorithm;

/// The longest token [`verify`] accepts, checked before any parsing.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// A JWS whose signature has been verified. Its claims have **not** been checked: that is the
/// caller's job (`iss`, `aud`, `exp`, `nonce` for an `id_token`, SC-4.33); the helpers below make
/// it short.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    claims: Map<String, Value>,
}

impl VerifiedJws {
    /// The header's `alg`.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The header's `typ`, if any.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// All claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// All claims, by value.
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }

    /// One claim.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// A string claim (`None` if absent or not a string).
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> Option<&str> {
        self.str_claim("iss")
    }

    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.str_claim("sub")
    }

    /// The `aud` claim as a list: a single string or an array of strings (RFC 7519 §4.1.3).
    /// Non-string entries are left out.
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `aud` is, or contains, `audience` (exact comparison).
    pub fn has_audience(&self, audience: &str) -> bool {
        self.audiences().contains(&audience)
    }

    /// A NumericDate claim (`exp`, `iat`, `nbf`) as whole seconds since the epoch. `Ok(None)`
    /// when absent; an error when it is not a non-negative number.
    pub fn numeric_date(&self, claim: &'static str) -> Result<Option<u64>, JwtError> {
        match self.claims.get(claim) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(secs) = n.as_u64() {
                    Ok(Some(secs))
                } else {
                    match n.as_f64() {
                        // Truncation is the intent: NumericDate allows fractions of a second.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        Some(f) if (0.0..1.8e19).contains(&f) => Ok(Some(f as u64)),
                        _ => Err(JwtError::InvalidClaim { claim }),
                    }
                }
            }
            Some(_) => Err(JwtError::InvalidClaim { claim }),
        }
    }

    /// The `exp` claim as a time.
    pub fn expires_at(&self) -> Result<Option<SystemTime>, JwtError> {
        Ok(self.numeric_date("exp")?.map(from_unix))
    }

    /// The `iat` claim as a time.
    pub fn issued_at(&self) -> Result<Option<SystemTime>, JwtError> {
        Ok(self.numeric_date("iat")?.map(from_unix))
    }

    /// Checks the time claims against `now`, allowing `leeway` for clock skew: `exp` must be
    /// present and in the future; `nbf` and `iat`, when present, must not be in the future.
    pub fn check_time(&self, now: SystemTime, leeway: Duration) -> Result<(), JwtError> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| JwtError::InvalidTime)?
            .as_secs();
        let leeway = leeway.as_secs();
        let exp = self
            .numeric_date("exp")?
            .ok_or(JwtError::MissingClaim { claim: "exp" })?;
        if now >= exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        for claim in ["nbf", "iat"] {
            if let Some(t) = self.numeric_date(claim)? {
                if t > now.saturating_add(leeway) {
                    return Err(JwtError::NotYetValid);
                }
            }
        }
        Ok(())
    }
}

fn from_unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn malformed(reason: &'static str) -> JwtError {
    JwtError::MalformedToken { reason }
}

fn decode_json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(what)),
    }
}

fn optional_string(header: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed("a header member has the wrong type")),
    }
}

/// Verifies a compact JWS (an `id_token`, say) against a server's key set (P9).
///
/// * The token is refused unread above [`MAX_TOKEN_BYTES`].
/// * The header's `alg` must be in `allowed`. `none` and `HS*` are never accepted: they are not
///   [`Algorithm`]s, so no allow-list can contain them.
/// * A `crit` header is refused (no extension is understood); `jku`, `x5u`, `jwk` and `x5c`
///   header members are ignored: keys come from `jwks` only.
/// * The key is the one whose `kid` matches the header's; without a `kid`, the only key that
///   fits the algorithm. The key's own `alg`, if any, must equal the header's.
///
/// An unknown `kid` gives [`JwtError::UnknownKid`]: the server may have rotated its keys, so
/// refetch the JWKS once and retry.
///
/// Claims are returned unchecked; see [`VerifiedJws::check_time`] and friends.
pub fn verify(token: &str, jwks: &Jwks, allowed: &[Algorithm]) -> Result<VerifiedJws, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TokenTooLarge {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "not three dot-separated parts (JWE and JSON serialisation are not supported)",
        ));
    };
    let header = decode_json_object(header_b64, "the header is not base64url JSON object")?;

    let alg = match header.get("alg") {
        Some(Value::String(name)) => match name.parse::<Algorithm>() {
            Ok(alg) if allowed.contains(&alg) => alg,
            _ => {
                return Err(JwtError::AlgorithmNotAllowed {
                    alg: sanitize(name),
                })
            }
        },
        _ => return Err(malformed("the header has no alg")),
    };
    if header.contains_key("crit") {
        return Err(JwtError::UnsupportedCritical);
    }
    let kid = optional_string(&header, "kid")?;
    let typ = optional_string(&header, "typ")?;

    let key = select_key(jwks, kid.as_deref(), alg)?;
    let verifier = key.verifier(alg).ok_or(JwtError::KeyAlgorithmMismatch {
        kid: sanitize(kid.as_deref().unwrap_or("")),
        alg,
    })?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| malformed("the signature is not base64url"))?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .get(..signing_input_len)
        .ok_or(malformed("not three dot-separated parts"))?;
    verifier
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;

    let claims = decode_json_object(payload_b64, "the payload is not a base64url JSON object")?;
    Ok(VerifiedJws {
        alg,
        kid,
        typ,
        claims,
    })
}

fn select_key<'a>(
    jwks: &'a Jwks,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'a JwksKey, JwtError> {
    let mut fitting = match kid {
        Some(kid) => {
            let mut named = jwks.keys().filter(|k| k.kid() == Some(kid)).peekable();
            if named.peek().is_none() {
                return Err(JwtError::UnknownKid { kid: sanitize(kid) });
            }
            let fitting: Vec<&JwksKey> = named.filter(|k| k.supports(alg)).collect();
            if fitting.is_empty() {
                return Err(JwtError::KeyAlgorithmMismatch {
                    kid: sanitize(kid),
                    alg,
                });
            }
            fitting
        }
        None => {
            let fitting: Vec<&JwksKey> = jwks.keys().filter(|k| k.supports(alg)).collect();
            if fitting.is_empty() {
                return Err(JwtError::NoMatchingKey { alg });
            }
            fitting
        }
    };
    match (fitting.pop(), fitting.is_empty()) {
        (Some(key), true) => Ok(key),
        _ => Err(JwtError::AmbiguousVerificationKey),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::key::tests::shared;
    use crate::{AssertionSigner, KeySpec, PrivateKey};

    const NOW: u64 = 1_750_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn sign(key: &PrivateKey, alg: Algorithm) -> String {
        AssertionSigner::new(key, alg)
            .unwrap()
            .sign(
                "client",
                "https://as.example/token",
                Duration::from_secs(60),
                now(),
            )
            .unwrap()
            .secret()
            .to_owned()
    }

    fn jwks_of(keys: &[&PrivateKey]) -> Jwks {
        let merged = crate::merge_jwks(keys.iter().map(|k| k.public_jwks())).unwrap();
        Jwks::from_value(&merged).unwrap()
    }

    /// Re-signs `header` and `claims` with `key` under `alg` through the crate's signer.
    fn forge(header: &Value, claims: &Value, key: &PrivateKey, alg: Algorithm) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key
            .pair()
            .signer(alg)
            .unwrap()
            .sign(input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(&sig))
    }

    #[test]
    fn p9_accepts_a_good_token_and_returns_header_and_claims() {
        let key = shared(KeySpec::Rsa2048);
        let token = sign(key, Algorithm::RS256);
        let v = verify(&token, &jwks_of(&[key]), &[Algorithm::RS256]).unwrap();
        assert_eq!(v.alg(), Algorithm::RS256);
        assert_eq!(v.kid(), Some(key.kid()));
        assert_eq!(v.typ(), Some("JWT"));
        assert_eq!(v.issuer(), Some("client"));
        assert_eq!(v.subject(), Some("client"));
        assert!(v.has_audience("https://as.example/token"));
        assert_eq!(v.numeric_date("exp").unwrap(), Some(NOW + 60));
        assert_eq!(v.issued_at().unwrap(), Some(now()));
        assert!(v.check_time(now(), Duration::ZERO).is_ok());
    }

    #[test]
    fn p9_refuses_a_token_signed_with_another_key() {
        let key = shared(KeySpec::P384);
        let other = PrivateKey::generate(KeySpec::P384)
            .unwrap()
            .with_kid(key.kid())
            .unwrap();
        let token = sign(&other, Algorithm::ES384);
        assert_eq!(
            verify(&token, &jwks_of(&[key]), &[Algorithm::ES384]).unwrap_err(),
            JwtError::BadSignature
        );
    }

    #[test]
    fn p9_refuses_alg_none_in_every_spelling() {
        let key = shared(KeySpec::Rsa2048);
        let jwks = jwks_of(&[key]);
        let payload = b64(br#"{"sub":"admin"}"#);
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = b64(format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, key.kid()).as_bytes());
            for token in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}"),
            ] {
                let err = verify(&token, &jwks, &Algorithm::ALL).unwrap_err();
                assert!(
                    matches!(
                        err,
                        JwtError::AlgorithmNotAllowed { .. } | JwtError::MalformedToken { .. }
                    ),
                    "{alg}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn p9_refuses_a_tampered_payload() {
        let key = shared(KeySpec::P256);
        let token = sign(key, Algorithm::ES256);
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil = b64(
            br#"{"iss":"client","sub":"admin","aud":"https://as.example/token","exp":9999999999}"#,
        );
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &jwks_of(&[key]), &[Algorithm::ES256]).unwrap_err(),
            JwtError::BadSignature
        );
    }

    #[test]
    fn p9_unknown_kid_is_its_own_error() {
        let key = shared(KeySpec::P256);
        let token = sign(
            &key.clone().with_kid("rotated-away").unwrap(),
            Algorithm::ES256,
        );
        assert_eq!(
            verify(&token, &jwks_of(&[key]), &[Algorithm::ES256]).unwrap_err(),
            JwtError::UnknownKid {
                kid: "rotated-away".into()
            }
        );
    }

    #[test]
    fn p9_alg_must_be_allowed() {
        let key = shared(KeySpec::Rsa2048);
        let token = sign(key, Algorithm::PS384);
        let jwks = jwks_of(&[key]);
        assert_eq!(
            verify(&token, &jwks, &[Algorithm::RS256, Algorithm::RS384]).unwrap_err(),
            JwtError::AlgorithmNotAllowed {
                alg: "PS384".into()
            }
        );
        assert!(matches!(
            verify(&token, &jwks, &[]),
            Err(JwtError::AlgorithmNotAllowed { .. })
        ));
        assert!(verify(&token, &jwks, &[Algorithm::PS384]).is_ok());
    }

    #[test]
    fn p9_key_alg_must_equal_header_alg() {
        let key = shared(KeySpec::Rsa2048)
            .clone()
            .with_algorithm(Algorithm::RS256)
            .unwrap();
        let jwks = jwks_of(&[&key]);
        // The JWK says RS256; a token claiming RS384 with the same key is refused unverified.
        let unpinned = shared(KeySpec::Rsa2048);
        let token = sign(unpinned, Algorithm::RS384);
        assert_eq!(
            verify(&token, &jwks, &[Algorithm::RS256, Algorithm::RS384]).unwrap_err(),
            JwtError::KeyAlgorithmMismatch {
                kid: key.kid().into(),
                alg: Algorithm::RS384
            }
        );
        // An EC token naming an RSA key.
        let header = json!({"alg": "ES256", "kid": key.kid()});
        let token = forge(&header, &json!({}), shared(KeySpec::P256), Algorithm::ES256);
        assert!(matches!(
            verify(&token, &jwks, &[Algorithm::ES256]),
            Err(JwtError::KeyAlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn p9_embedded_keys_and_key_urls_are_ignored() {
        // The attacker signs with their own key and points at it through every header member
        // that could carry or locate a key; the trusted set does not contain it.
        let trusted = shared(KeySpec::P256);
        let attacker = PrivateKey::generate(KeySpec::P256).unwrap();
        let header = json!({
            "alg": "ES256",
            "jwk": attacker.public_jwk(),
            "jku": "https://evil.example/jwks",
            "x5u": "https://evil.example/cert",
        });
        let token = forge(&header, &json!({"sub": "x"}), &attacker, Algorithm::ES256);
        assert_eq!(
            verify(&token, &jwks_of(&[trusted]), &[Algorithm::ES256]).unwrap_err(),
            JwtError::BadSignature
        );
        // With an empty trusted set there is nothing to verify with at all.
        let empty = Jwks::from_value(&json!({"keys": []})).unwrap();
        assert_eq!(
            verify(&token, &empty, &[Algorithm::ES256]).unwrap_err(),
            JwtError::NoMatchingKey {
                alg: Algorithm::ES256
            }
        );
    }

    #[test]
    fn without_kid_the_only_fitting_key_is_used_else_ambiguous() {
        let rsa = shared(KeySpec::Rsa2048);
        let p256 = shared(KeySpec::P256);
        let claims = json!({"sub": "s"});
        let token = forge(&json!({"alg": "ES256"}), &claims, p256, Algorithm::ES256);
        // The RSA key does not fit ES256, so the P-256 key is the only candidate.
        let v = verify(&token, &jwks_of(&[rsa, p256]), &[Algorithm::ES256]).unwrap();
        assert_eq!(v.kid(), None);
        assert_eq!(v.subject(), Some("s"));
        let second = PrivateKey::generate(KeySpec::P256).unwrap();
        assert_eq!(
            verify(&token, &jwks_of(&[p256, &second]), &[Algorithm::ES256]).unwrap_err(),
            JwtError::AmbiguousVerificationKey
        );
    }

    #[test]
    fn crit_is_refused() {
        let key = shared(KeySpec::P256);
        let header = json!({"alg": "ES256", "kid": key.kid(), "crit": ["b64"], "b64": false});
        let token = forge(&header, &json!({}), key, Algorithm::ES256);
        assert_eq!(
            verify(&token, &jwks_of(&[key]), &[Algorithm::ES256]).unwrap_err(),
            JwtError::UnsupportedCritical
        );
    }

    #[test]
    fn malformed_tokens_are_typed_errors_and_never_panic() {
        let key = shared(KeySpec::P256);
        let jwks = jwks_of(&[key]);
        let good = sign(key, Algorithm::ES256);
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "a.b.c.d.e".into(),
            "!!!.b.c".into(),
            format!("{}.e30.", b64(b"[]")),
            format!("{}.e30.AA", b64(br#"{"alg":5}"#)),
            format!("{}.e30.AA", b64(br#"{"alg":"ES256","kid":5}"#)),
            format!("{}.e30.AA", b64(br#"{"alg":"ES256","typ":[]}"#)),
            format!("{good}=="),
            format!("{good}\n"),
            good.replacen('.', "=.", 1),
        ];
        for token in cases {
            let err = verify(&token, &jwks, &[Algorithm::ES256]).unwrap_err();
            assert!(
                matches!(
                    err,
                    JwtError::MalformedToken { .. } | JwtError::BadSignature
                ),
                "{token:?}: {err:?}"
            );
        }
        // Every truncation of a good token fails cleanly.
        for cut in 0..good.len() {
            assert!(verify(&good[..cut], &jwks, &[Algorithm::ES256]).is_err());
        }
        // A validly signed token whose payload is not a JSON object.
        let token = {
            let input = format!(
                "{}.{}",
                b64(format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid()).as_bytes()),
                b64(b"[1]")
            );
            let sig = key
                .pair()
                .signer(Algorithm::ES256)
                .unwrap()
                .sign(input.as_bytes())
                .unwrap();
            format!("{input}.{}", b64(&sig))
        };
        assert!(matches!(
            verify(&token, &jwks, &[Algorithm::ES256]),
            Err(JwtError::MalformedToken { .. })
        ));
    }

    #[test]
    fn token_size_is_bounded_before_parsing() {
        let jwks = jwks_of(&[shared(KeySpec::P256)]);
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            verify(&huge, &jwks, &[Algorithm::ES256]).unwrap_err(),
            JwtError::TokenTooLarge {
                len: MAX_TOKEN_BYTES + 1,
                max: MAX_TOKEN_BYTES
            }
        );
    }

    #[test]
    fn error_text_never_echoes_the_token_and_sanitises_header_values() {
        let jwks = jwks_of(&[shared(KeySpec::P256)]);
        let header =
            b64(format!(r#"{{"alg":"ES256","kid":"evil\n{}"}}"#, "k".repeat(300)).as_bytes());
        let token = format!("{header}.e30.AA");
        let err = verify(&token, &jwks, &[Algorithm::ES256]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, JwtError::UnknownKid { .. }));
        assert!(!text.contains('\n'));
        assert!(text.len() < 200);
        assert!(!text.contains(&token));
    }

    #[test]
    fn time_helpers() {
        let key = shared(KeySpec::P256);
        let jwks = jwks_of(&[key]);
        let make = |claims: Value| {
            let token = forge(
                &json!({"alg": "ES256", "kid": key.kid()}),
                &claims,
                key,
                Algorithm::ES256,
            );
            verify(&token, &jwks, &[Algorithm::ES256]).unwrap()
        };
        let v = make(json!({"exp": NOW + 10, "iat": NOW, "nbf": NOW - 5, "aud": ["a", 3, "b"]}));
        assert!(v.check_time(now(), Duration::ZERO).is_ok());
        assert_eq!(v.audiences(), ["a", "b"]);
        assert!(v.has_audience("b") && !v.has_audience("c"));
        assert_eq!(
            v.check_time(now() + Duration::from_secs(10), Duration::ZERO),
            Err(JwtError::Expired)
        );
        assert!(v
            .check_time(now() + Duration::from_secs(10), Duration::from_secs(30))
            .is_ok());
        assert_eq!(
            v.check_time(now() - Duration::from_secs(6), Duration::ZERO),
            Err(JwtError::NotYetValid)
        );
        let v = make(json!({"iat": NOW}));
        assert_eq!(
            v.check_time(now(), Duration::ZERO),
            Err(JwtError::MissingClaim { claim: "exp" })
        );
        let v = make(json!({"exp": "tomorrow"}));
        assert_eq!(
            v.check_time(now(), Duration::ZERO),
            Err(JwtError::InvalidClaim { claim: "exp" })
        );
        let v = make(json!({"exp": -1}));
        assert_eq!(
            v.numeric_date("exp"),
            Err(JwtError::InvalidClaim { claim: "exp" })
        );
        let v = make(json!({"exp": 1.75e9}));
        assert_eq!(v.numeric_date("exp"), Ok(Some(1_750_000_000)));
        assert_eq!(v.into_claims().len(), 1);
    }
}
