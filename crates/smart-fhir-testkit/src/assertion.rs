//! Checks of `private_key_jwt` client assertions at the token endpoint (feature `jwt`).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use smart_fhir_core::{Clock, SharedClock};
use smart_fhir_jwt::{verify, Algorithm, Jwks, CLIENT_ASSERTION_TYPE, MAX_ASSERTION_LIFETIME};

use crate::record::form_value;

/// How far `iat`/`nbf` may lie in the future and `exp` in the past.
const LEEWAY: Duration = Duration::from_secs(5);

/// What the token endpoint checks when assertion verification is on.
pub(crate) struct AssertionCheck {
    jwks: Jwks,
    pub(crate) clock: SharedClock,
    seen_jti: HashSet<String>,
}

impl fmt::Debug for AssertionCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionCheck")
            .field("keys", &self.jwks.len())
            .field("seen_jti", &self.seen_jti.len())
            .finish_non_exhaustive()
    }
}

impl AssertionCheck {
    pub(crate) fn new(jwks: Jwks, clock: SharedClock) -> Self {
        Self {
            jwks,
            clock,
            seen_jti: HashSet::new(),
        }
    }

    /// Checks the form's client authentication (SC-2.9 – SC-2.13, SC-3.2, P8, P11). The error
    /// is an `error_description`: it never quotes the assertion.
    pub(crate) fn check(&mut self, form: &[u8], token_endpoint: &str) -> Result<(), String> {
        if form_value(form, "client_assertion_type").as_deref() != Some(CLIENT_ASSERTION_TYPE) {
            return Err(format!(
                "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
            ));
        }
        let assertion =
            form_value(form, "client_assertion").ok_or("client_assertion is missing")?;
        let jws = verify(
            &assertion,
            &self.jwks,
            &[Algorithm::RS384, Algorithm::ES384],
        )
        .map_err(|e| format!("the client assertion does not verify: {e}"))?;
        if jws.typ() != Some("JWT") {
            return Err("the client assertion's typ header must be JWT".to_owned());
        }
        let issuer = jws.issuer().ok_or("the client assertion has no iss")?;
        if jws.subject() != Some(issuer) {
            return Err("the client assertion's sub must equal its iss".to_owned());
        }
        if let Some(client_id) = form_value(form, "client_id") {
            if client_id != issuer {
                return Err("client_id does not match the client assertion's iss".to_owned());
            }
        }
        if !jws.has_audience(token_endpoint) {
            return Err("the client assertion's aud must be the token endpoint URL".to_owned());
        }
        let now = self.clock.now();
        jws.check_time(now, LEEWAY)
            .map_err(|e| format!("the client assertion's times are not valid: {e}"))?;
        let exp = jws
            .numeric_date("exp")
            .ok()
            .flatten()
            .ok_or("the client assertion has no exp")?;
        let latest =
            self.clock.unix_seconds() + MAX_ASSERTION_LIFETIME.as_secs() + LEEWAY.as_secs();
        if exp > latest {
            return Err("the client assertion's exp is more than five minutes ahead".to_owned());
        }
        let jti = jws
            .str_claim("jti")
            .ok_or("the client assertion has no jti")?;
        if !self.seen_jti.insert(jti.to_owned()) {
            return Err("the client assertion's jti was used before".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use smart_fhir_core::FixedClock;
    use smart_fhir_jwt::{AssertionSigner, KeySpec, PrivateKey};

    use super::*;

    const ENDPOINT: &str = "http://127.0.0.1:1/token";
    const NOW: u64 = 1_750_000_000;

    fn form(assertion: &str) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
            .append_pair("client_assertion", assertion)
            .finish()
            .into_bytes()
    }

    fn setup(alg: Algorithm) -> (AssertionCheck, AssertionSigner, SystemTime) {
        let key = PrivateKey::generate(KeySpec::for_algorithm(alg)).unwrap();
        let jwks = Jwks::from_value(&key.public_jwks()).unwrap();
        let clock = FixedClock::at_unix(NOW);
        let now = clock.now();
        let check = AssertionCheck::new(jwks, SharedClock::new(clock));
        (check, AssertionSigner::new(&key, alg).unwrap(), now)
    }

    #[test]
    fn accepts_a_good_assertion_once_p11() {
        let (mut check, signer, now) = setup(Algorithm::ES384);
        let a = signer
            .sign("client-1", ENDPOINT, Duration::from_secs(300), now)
            .unwrap();
        assert_eq!(check.check(&form(a.secret()), ENDPOINT), Ok(()));
        let replay = check.check(&form(a.secret()), ENDPOINT).unwrap_err();
        assert!(replay.contains("jti"), "{replay}");
        assert!(!replay.contains(a.secret()));
    }

    #[test]
    fn refuses_wrong_audience_expiry_and_type_p8_sc_2_10() {
        let (mut check, signer, now) = setup(Algorithm::ES384);
        let other = signer
            .sign(
                "c",
                "http://127.0.0.1:1/other",
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        let e = check.check(&form(other.secret()), ENDPOINT).unwrap_err();
        assert!(e.contains("aud"), "{e}");
        let old = signer
            .sign(
                "c",
                ENDPOINT,
                Duration::from_secs(60),
                now - Duration::from_secs(600),
            )
            .unwrap();
        let e = check.check(&form(old.secret()), ENDPOINT).unwrap_err();
        assert!(e.contains("times"), "{e}");
        let e = check
            .check(b"grant_type=client_credentials", ENDPOINT)
            .unwrap_err();
        assert!(e.contains("client_assertion_type"), "{e}");
    }

    #[test]
    fn refuses_a_key_not_in_the_jwks() {
        let (mut check, _, now) = setup(Algorithm::ES384);
        let stranger = PrivateKey::generate(KeySpec::for_algorithm(Algorithm::ES384)).unwrap();
        let signer = AssertionSigner::new(&stranger, Algorithm::ES384).unwrap();
        let a = signer
            .sign("c", ENDPOINT, Duration::from_secs(60), now)
            .unwrap();
        let e = check.check(&form(a.secret()), ENDPOINT).unwrap_err();
        assert!(e.contains("verify"), "{e}");
    }
}
