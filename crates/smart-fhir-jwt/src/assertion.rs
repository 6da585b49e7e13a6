use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use smart_fhir_core::{check_endpoint_url, InsecureHttp, Url, UrlError};
use zeroize::Zeroizing;

use crate::error::JwtError;
use crate::jose::Signer;
use crate::{Algorithm, KeyType, PrivateKey};

/// The longest assertion lifetime SMART allows: `exp` at most five minutes ahead (SC-2.10, P11).
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The `client_assertion_type` to send with a JWT client assertion (SC-2.13, RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The largest numeric date written, 2^53 - 1, so that every JSON reader keeps it exact.
const MAX_NUMERIC_DATE: u64 = (1 << 53) - 1;

/// A signed client assertion (`private_key_jwt`), to send once as `client_assertion`.
///
/// `Debug` is redacted and there is no `Display`; the token is zeroized on drop. Never cache
/// one: mint a fresh assertion for every token request (SC-2.11, P11).
pub struct ClientAssertion {
    token: Zeroizing<String>,
    jti: String,
    issued_at: u64,
    expires_at: u64,
}

impl ClientAssertion {
    /// The compact JWS.
    ///
    /// # Security warning
    ///
    /// This is a credential until it expires. Send it only to the token endpoint it names;
    /// never log or persist it.
    pub fn secret(&self) -> &str {
        &self.token
    }

    /// The assertion's `jti` (not secret; useful to correlate a server's replay complaint).
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The `iat` claim.
    pub fn issued_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.issued_at)
    }

    /// The `exp` claim.
    pub fn expires_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }
}

impl fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientAssertion([redacted])")
    }
}

/// Signs client assertions for `private_key_jwt` (SC-2.9 – SC-2.12, P8, P11).
///
/// Built once per key and algorithm; the key is parsed and the protected header encoded at
/// build time, so [`sign`](Self::sign) only writes the claims, draws a `jti` and signs.
/// Cheap to share across threads (`Send + Sync`).
pub struct AssertionSigner {
    signer: Signer,
    alg: Algorithm,
    kid: String,
    jku: Option<String>,
    /// `BASE64URL(header) || "."`, computed once.
    header_prefix: String,
    /// The encoded signature length, to size the output in one allocation.
    signature_b64_len: usize,
}

impl Clone for AssertionSigner {
    fn clone(&self) -> Self {
        Self {
            signer: self.signer.box_clone(),
            alg: self.alg,
            kid: self.kid.clone(),
            jku: self.jku.clone(),
            header_prefix: self.header_prefix.clone(),
            signature_b64_len: self.signature_b64_len,
        }
    }
}

impl fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("jku", &self.jku)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AssertionSigner`]; see [`AssertionSigner::builder`].
#[derive(Debug)]
#[must_use]
pub struct AssertionSignerBuilder<'k> {
    key: &'k PrivateKey,
    alg: Algorithm,
    kid: Option<String>,
    jku: Option<String>,
    insecure_http: InsecureHttp,
}

impl AssertionSignerBuilder<'_> {
    /// The header `kid` (default: the key's [`kid`](PrivateKey::kid)). It must name the key in
    /// the JWKS registered with the server.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Adds a `jku` header: the JWKS URL registered with the server, which it must equal
    /// (SC-2.9). Must be an absolute `https` URL (`http` only for a loopback host with
    /// [`insecure_http`](Self::insecure_http)). Written exactly as given.
    pub fn jku(mut self, url: impl Into<String>) -> Self {
        self.jku = Some(url.into());
        self
    }

    /// Allows an `http://` `jku` on a loopback host, for local development (P7).
    pub fn insecure_http(mut self, policy: InsecureHttp) -> Self {
        self.insecure_http = policy;
        self
    }

    /// Checks the configuration and prepares the key.
    ///
    /// Fails when the algorithm does not fit the key (RS*/PS* need RSA, ES256 P-256, ES384
    /// P-384) or contradicts the key's pinned algorithm, when the `kid` is empty, or when the
    /// `jku` is not an acceptable URL.
    pub fn build(self) -> Result<AssertionSigner, JwtError> {
        let key_type = self.key.key_type();
        if !self.key.can_sign_with(self.alg) {
            return Err(JwtError::AlgorithmKeyMismatch {
                alg: self.alg,
                key: key_type,
            });
        }
        let kid = self.kid.unwrap_or_else(|| self.key.kid().to_owned());
        if kid.is_empty() {
            return Err(JwtError::EmptyKid);
        }
        if let Some(jku) = &self.jku {
            check_jku(jku, self.insecure_http)?;
        }

        let mut header =
            String::with_capacity(64 + kid.len() + self.jku.as_ref().map_or(0, String::len));
        header.push_str(r#"{"alg":""#);
        header.push_str(self.alg.as_str());
        header.push_str(r#"","kid":"#);
        push_json_string(&mut header, &kid);
        header.push_str(r#","typ":"JWT""#);
        if let Some(jku) = &self.jku {
            header.push_str(r#","jku":"#);
            push_json_string(&mut header, jku);
        }
        header.push('}');
        let mut header_prefix = URL_SAFE_NO_PAD.encode(header.as_bytes());
        header_prefix.push('.');

        let signature_len = match key_type {
            KeyType::Rsa { bits } => usize::try_from(bits.div_ceil(8)).unwrap_or(512),
            KeyType::EcP256 => 64,
            KeyType::EcP384 => 96,
        };
        Ok(AssertionSigner {
            signer: self.key.pair().signer(self.alg)?,
            alg: self.alg,
            kid,
            jku: self.jku,
            header_prefix,
            signature_b64_len: base64_len(signature_len),
        })
    }
}

fn check_jku(jku: &str, insecure: InsecureHttp) -> Result<(), JwtError> {
    const WHAT: &str = "jku";
    if jku.trim() != jku {
        return Err(JwtError::InvalidJku(UrlError::Invalid {
            what: WHAT.into(),
            reason: "surrounding whitespace".into(),
        }));
    }
    let url = Url::parse(jku).map_err(|e| {
        JwtError::InvalidJku(UrlError::Invalid {
            what: WHAT.into(),
            reason: e.to_string(),
        })
    })?;
    check_endpoint_url(&url, WHAT, insecure).map_err(JwtError::InvalidJku)
}

/// The audience must be the token endpoint URL exactly as the server published it (P8). It is
/// written as given, so only its shape is checked here.
fn check_audience(aud: &str) -> Result<(), JwtError> {
    let bad = |reason| Err(JwtError::InvalidAudience { reason });
    if aud.is_empty() {
        return bad("empty");
    }
    if aud.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or control characters");
    }
    let Ok(url) = Url::parse(aud) else {
        return bad("not an absolute URL");
    };
    if !matches!(url.scheme(), "https" | "http") {
        return bad("not an http(s) URL");
    }
    if url.host().is_none() {
        return bad("no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("contains credentials");
    }
    if url.fragment().is_some() {
        return bad("contains a fragment");
    }
    Ok(())
}

impl AssertionSigner {
    /// A signer with the key's own `kid` and no `jku`.
    pub fn new(key: &PrivateKey, alg: Algorithm) -> Result<Self, JwtError> {
        Self::builder(key, alg).build()
    }

    /// Starts configuring a signer for `key` and `alg`. SMART servers must accept `RS384` and
    /// `ES384` (SC-2.7).
    pub fn builder(key: &PrivateKey, alg: Algorithm) -> AssertionSignerBuilder<'_> {
        AssertionSignerBuilder {
            key,
            alg,
            kid: None,
            jku: None,
            insecure_http: InsecureHttp::Deny,
        }
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The header `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The header `jku`, if set.
    pub fn jku(&self) -> Option<&str> {
        self.jku.as_deref()
    }

    /// Signs a fresh client assertion.
    ///
    /// Header: `alg`, `kid`, `typ: "JWT"`, and `jku` when configured (SC-2.9). Claims (SC-2.10 –
    /// SC-2.12): `iss` = `sub` = `client_id`; `aud` = `token_endpoint` exactly as given;
    /// `exp` = `now` + `lifetime` and `iat` = `now`, in whole seconds; `jti` = 32 fresh random
    /// bytes, base64url (256 bits, new on every call).
    ///
    /// Refuses an empty `client_id`, an audience that is not an absolute http(s) URL, and a
    /// lifetime under one second or over [`MAX_ASSERTION_LIFETIME`].
    pub fn sign(
        &self,
        client_id: &str,
        token_endpoint: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<ClientAssertion, JwtError> {
        if client_id.is_empty() {
            return Err(JwtError::EmptyClientId);
        }
        check_audience(token_endpoint)?;
        if lifetime < Duration::from_secs(1) || lifetime > MAX_ASSERTION_LIFETIME {
            return Err(JwtError::InvalidLifetime { lifetime });
        }
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| JwtError::InvalidTime)?
            .as_secs();
        let exp = iat
            .checked_add(lifetime.as_secs())
            .filter(|exp| *exp <= MAX_NUMERIC_DATE)
            .ok_or(JwtError::InvalidTime)?;

        let mut random = Zeroizing::new([0u8; 32]);
        getrandom::fill(random.as_mut()).map_err(|_| JwtError::Random)?;
        let jti = URL_SAFE_NO_PAD.encode(random.as_ref());

        let mut claims =
            String::with_capacity(96 + 2 * client_id.len() + token_endpoint.len() + jti.len());
        claims.push_str(r#"{"iss":"#);
        push_json_string(&mut claims, client_id);
        claims.push_str(r#","sub":"#);
        push_json_string(&mut claims, client_id);
        claims.push_str(r#","aud":"#);
        push_json_string(&mut claims, token_endpoint);
        // Writing integers to a String cannot fail.
        let _ = write!(claims, r#","exp":{exp},"iat":{iat},"jti":""#);
        claims.push_str(&jti);
        claims.push_str("\"}");

        let mut token = Zeroizing::new(String::with_capacity(
            self.header_prefix.len() + base64_len(claims.len()) + 1 + self.signature_b64_len,
        ));
        token.push_str(&self.header_prefix);
        URL_SAFE_NO_PAD.encode_string(claims.as_bytes(), &mut token);
        let signature = self
            .signer
            .sign(token.as_bytes())
            .map_err(|_| JwtError::SigningFailed)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);

        Ok(ClientAssertion {
            token,
            jti,
            issued_at: iat,
            expires_at: exp,
        })
    }
}

/// Unpadded base64 length of `n` bytes.
const fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Appends `s` as a JSON string literal (RFC 8259 §7).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::{json, Map, Value};

    use super::*;
    use crate::key::tests::shared;
    use crate::{verify, Jwks, KeySpec};

    const NOW: u64 = 1_750_000_000;
    const ENDPOINT: &str = "https://ehr.example/oauth2/token";

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn decode_part(token: &str, index: usize) -> Map<String, Value> {
        let part = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn sc_2_9_sc_2_10_header_and_claims_are_exact() {
        let key = shared(KeySpec::P384);
        let signer = AssertionSigner::new(key, Algorithm::ES384).unwrap();
        let a = signer
            .sign("my-client", ENDPOINT, Duration::from_secs(300), now())
            .unwrap();
        let token = a.secret();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(
            Value::Object(decode_part(token, 0)),
            json!({"alg": "ES384", "kid": key.kid(), "typ": "JWT"})
        );
        assert_eq!(
            Value::Object(decode_part(token, 1)),
            json!({
                "iss": "my-client",
                "sub": "my-client",
                "aud": ENDPOINT,
                "exp": NOW + 300,
                "iat": NOW,
                "jti": a.jti(),
            })
        );
        assert_eq!(a.issued_at(), now());
        assert_eq!(a.expires_at(), now() + Duration::from_secs(300));
        // The header's member order is fixed: alg, kid, typ.
        let raw_header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(raw_header).unwrap(),
            format!(r#"{{"alg":"ES384","kid":"{}","typ":"JWT"}}"#, key.kid())
        );
    }

    #[test]
    fn p8_audience_is_written_exactly_as_given() {
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        // A URL parser would add a trailing slash here and lower-case the host; the audience
        // must stay byte-for-byte what the server published.
        for aud in [
            "https://EHR.example",
            "https://ehr.example/token?tenant=a&x=%2F",
        ] {
            let a = signer
                .sign("c", aud, Duration::from_secs(60), now())
                .unwrap();
            assert_eq!(decode_part(a.secret(), 1)["aud"], json!(aud));
        }
    }

    #[test]
    fn sc_2_11_p11_fresh_jti_on_every_call() {
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let a = signer
                .sign("c", ENDPOINT, Duration::from_secs(60), now())
                .unwrap();
            assert_eq!(a.jti().len(), 43, "32 bytes base64url");
            assert_eq!(URL_SAFE_NO_PAD.decode(a.jti()).unwrap().len(), 32);
            assert_eq!(decode_part(a.secret(), 1)["jti"], json!(a.jti()));
            assert!(seen.insert(a.jti().to_owned()), "jti repeated");
        }
    }

    #[test]
    fn sc_2_10_p11_lifetime_bounds() {
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        for bad in [0, 301, 3600] {
            assert_eq!(
                signer
                    .sign("c", ENDPOINT, Duration::from_secs(bad), now())
                    .unwrap_err(),
                JwtError::InvalidLifetime {
                    lifetime: Duration::from_secs(bad)
                }
            );
        }
        for bad in [Duration::from_millis(999), Duration::from_millis(300_001)] {
            assert!(signer.sign("c", ENDPOINT, bad, now()).is_err());
        }
        let a = signer
            .sign("c", ENDPOINT, MAX_ASSERTION_LIFETIME, now())
            .unwrap();
        assert_eq!(decode_part(a.secret(), 1)["exp"], json!(NOW + 300));
        let a = signer
            .sign("c", ENDPOINT, Duration::from_secs(1), now())
            .unwrap();
        assert_eq!(decode_part(a.secret(), 1)["exp"], json!(NOW + 1));
    }

    #[test]
    fn exp_is_never_more_than_the_lifetime_ahead_of_a_fractional_now() {
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        let t = now() + Duration::from_millis(999);
        let a = signer
            .sign("c", ENDPOINT, Duration::from_secs(300), t)
            .unwrap();
        let claims = decode_part(a.secret(), 1);
        assert_eq!(claims["iat"], json!(NOW));
        assert_eq!(claims["exp"], json!(NOW + 300));
    }

    #[test]
    fn refuses_empty_client_id_bad_audience_and_bad_time() {
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        let life = Duration::from_secs(60);
        assert_eq!(
            signer.sign("", ENDPOINT, life, now()).unwrap_err(),
            JwtError::EmptyClientId
        );
        for aud in [
            "",
            "/oauth2/token",
            "ehr.example/token",
            "urn:example:token",
            "ftp://ehr.example/token",
            " https://ehr.example/token",
            "https://ehr.example/token\n",
            "https://user:pw@ehr.example/token",
            "https://ehr.example/token#frag",
        ] {
            assert!(
                matches!(
                    signer.sign("c", aud, life, now()),
                    Err(JwtError::InvalidAudience { .. })
                ),
                "{aud:?}"
            );
        }
        assert_eq!(
            signer
                .sign(
                    "c",
                    ENDPOINT,
                    life,
                    SystemTime::UNIX_EPOCH - Duration::from_secs(1)
                )
                .unwrap_err(),
            JwtError::InvalidTime
        );
    }

    #[test]
    fn sc_2_8_algorithm_must_fit_the_key() {
        let rsa = shared(KeySpec::Rsa2048);
        let p256 = shared(KeySpec::P256);
        let p384 = shared(KeySpec::P384);
        for (key, alg, ok) in [
            (rsa, Algorithm::RS256, true),
            (rsa, Algorithm::RS384, true),
            (rsa, Algorithm::PS384, true),
            (rsa, Algorithm::ES256, false),
            (rsa, Algorithm::ES384, false),
            (p256, Algorithm::ES256, true),
            (p256, Algorithm::ES384, false),
            (p256, Algorithm::RS384, false),
            (p384, Algorithm::ES384, true),
            (p384, Algorithm::ES256, false),
            (p384, Algorithm::PS384, false),
        ] {
            let r = AssertionSigner::new(key, alg);
            assert_eq!(r.is_ok(), ok, "{alg} with {}", key.key_type());
            if !ok {
                assert!(matches!(r, Err(JwtError::AlgorithmKeyMismatch { .. })));
            }
        }
        // A key pinned to one algorithm refuses another that its type would allow.
        let pinned = rsa.clone().with_algorithm(Algorithm::RS384).unwrap();
        assert!(AssertionSigner::new(&pinned, Algorithm::RS384).is_ok());
        assert!(matches!(
            AssertionSigner::new(&pinned, Algorithm::PS384),
            Err(JwtError::AlgorithmKeyMismatch { .. })
        ));
    }

    #[test]
    fn sc_2_9_kid_override_and_jku() {
        let key = shared(KeySpec::P384);
        let signer = AssertionSigner::builder(key, Algorithm::ES384)
            .kid("rotating \"key\"")
            .jku("https://app.example/.well-known/jwks.json")
            .build()
            .unwrap();
        assert_eq!(signer.kid(), "rotating \"key\"");
        assert_eq!(
            signer.jku(),
            Some("https://app.example/.well-known/jwks.json")
        );
        let a = signer
            .sign("c", ENDPOINT, Duration::from_secs(60), now())
            .unwrap();
        assert_eq!(
            Value::Object(decode_part(a.secret(), 0)),
            json!({
                "alg": "ES384",
                "kid": "rotating \"key\"",
                "typ": "JWT",
                "jku": "https://app.example/.well-known/jwks.json"
            })
        );
        assert_eq!(
            AssertionSigner::builder(key, Algorithm::ES384)
                .kid("")
                .build()
                .unwrap_err(),
            JwtError::EmptyKid
        );
    }

    #[test]
    fn p7_jku_must_be_https_or_opted_in_loopback() {
        let key = shared(KeySpec::P384);
        let build = |jku: &str, policy| {
            AssertionSigner::builder(key, Algorithm::ES384)
                .jku(jku)
                .insecure_http(policy)
                .build()
        };
        for bad in [
            "http://app.example/jwks",
            "/jwks",
            "jwks.json",
            "ftp://app.example/jwks",
            " https://app.example/jwks",
            "https://app.example/jwks#x",
        ] {
            assert!(
                matches!(
                    build(bad, InsecureHttp::AllowLoopback),
                    Err(JwtError::InvalidJku(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            build("http://127.0.0.1:8080/jwks", InsecureHttp::Deny),
            Err(JwtError::InvalidJku(_))
        ));
        assert!(build("http://127.0.0.1:8080/jwks", InsecureHttp::AllowLoopback).is_ok());
    }

    #[test]
    fn json_escaping_of_claims() {
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        let client = "a\"b\\c\u{1}d\ne\u{e9}\u{2028}";
        let a = signer
            .sign(client, ENDPOINT, Duration::from_secs(60), now())
            .unwrap();
        let claims = decode_part(a.secret(), 1);
        assert_eq!(claims["iss"], json!(client));
        assert_eq!(claims["sub"], json!(client));
    }

    #[test]
    fn every_algorithm_signs_what_verify_accepts() {
        for (spec, alg) in [
            (KeySpec::Rsa2048, Algorithm::RS256),
            (KeySpec::Rsa2048, Algorithm::RS384),
            (KeySpec::Rsa2048, Algorithm::PS384),
            (KeySpec::P256, Algorithm::ES256),
            (KeySpec::P384, Algorithm::ES384),
        ] {
            let key = shared(spec);
            let signer = AssertionSigner::new(key, alg).unwrap();
            let a = signer
                .sign("c", ENDPOINT, Duration::from_secs(60), now())
                .unwrap();
            let jwks = Jwks::from_value(&key.public_jwks()).unwrap();
            let v = verify(a.secret(), &jwks, &[alg]).unwrap();
            assert_eq!(v.alg(), alg);
            assert_eq!(v.kid(), Some(key.kid()));
            assert_eq!(v.typ(), Some("JWT"));
            assert_eq!(v.claims()["jti"], json!(a.jti()));
            // The output was sized in one allocation.
            assert!(a.secret().len() <= a.token.capacity());
        }
    }

    #[test]
    fn p5_debug_is_redacted() {
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        let a = signer
            .sign("c", ENDPOINT, Duration::from_secs(60), now())
            .unwrap();
        let printed = format!("{a:?} {signer:?}");
        assert!(!printed.contains(a.secret()));
        assert!(!printed.contains(a.secret().split('.').nth(2).unwrap()));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn signer_is_send_sync_and_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<AssertionSigner>();
        let signer = AssertionSigner::new(shared(KeySpec::P256), Algorithm::ES256).unwrap();
        let copy = signer.clone();
        assert_eq!(copy.kid(), signer.kid());
        assert!(copy
            .sign("c", ENDPOINT, Duration::from_secs(5), now())
            .is_ok());
    }
}
