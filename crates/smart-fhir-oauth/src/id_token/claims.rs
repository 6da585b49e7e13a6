//! The claim checks of `id_token` verification: OpenID Connect Core §3.1.3.7, the steps
//! SMART requires (SC-4.33), on the claims of a token whose signature verified, and the
//! `fhirUser` resolution (SC-4.35, SC-4.36). Each step is one function, in the spec's order.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Number, Value};
use smart_fhir_core::text::excerpt;
use smart_fhir_core::{check_endpoint_url, FhirBaseUrl};
use subtle::ConstantTimeEq;
use url::Url;

use super::error::IdTokenError;

/// The resource types a `fhirUser` may name (SC-4.35).
pub const FHIR_USER_RESOURCE_TYPES: [&str; 5] = [
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
    "Person",
];

/// What an `id_token` must say: who issued it, for which client, with which nonce, and the FHIR
/// base against which a relative `fhirUser` resolves.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct IdTokenExpectations<'a> {
    /// The authorization server's issuer (from the SMART configuration), compared exactly with
    /// `iss`; the keys are found under `{issuer}/.well-known/openid-configuration`.
    pub issuer: &'a str,
    /// This client's id, which `aud` must contain.
    pub client_id: &'a str,
    /// The nonce sent with the authorization request, if one was: the token must carry it.
    pub nonce: Option<&'a str>,
    /// The FHIR base: a relative `fhirUser` resolves against it, and its insecure-HTTP policy
    /// applies to the issuer and `jwks_uri` URLs.
    pub fhir_base: &'a FhirBaseUrl,
}

impl<'a> IdTokenExpectations<'a> {
    /// Expectations for a token from `issuer` for `client_id`, with the `nonce` sent in the
    /// authorization request (if any), in a launch against `fhir_base`.
    pub fn new(
        issuer: &'a str,
        client_id: &'a str,
        nonce: Option<&'a str>,
        fhir_base: &'a FhirBaseUrl,
    ) -> Self {
        Self {
            issuer,
            client_id,
            nonce,
            fhir_base,
        }
    }
}

impl fmt::Debug for IdTokenExpectations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenExpectations")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("nonce", &self.nonce.map(|_| "[redacted]"))
            .field("fhir_base", &self.fhir_base)
            .finish()
    }
}

/// The checked claims of a verified `id_token`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// `iss`, equal to the expected issuer.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`, as a list (it contains the client id).
    pub audiences: Vec<String>,
    /// `exp`.
    pub expires_at: SystemTime,
    /// `iat`.
    pub issued_at: SystemTime,
    /// `fhirUser` (or the v1 `profile` alias), resolved to an absolute URL (SC-4.35, SC-4.36).
    pub fhir_user: Option<Url>,
    /// Every claim of the token, as sent.
    pub claims: Map<String, Value>,
}

impl IdTokenClaims {
    /// The resource type `fhirUser` names (`Patient`, `Practitioner`, …).
    pub fn fhir_user_resource_type(&self) -> Option<&str> {
        self.fhir_user
            .as_ref()
            .and_then(resource_reference)
            .map(|(t, _)| t)
    }

    /// The logical id of the resource `fhirUser` names.
    pub fn fhir_user_id(&self) -> Option<&str> {
        self.fhir_user
            .as_ref()
            .and_then(resource_reference)
            .map(|(_, id)| id)
    }
}

/// Runs every claim check, in the order of OpenID Connect Core §3.1.3.7, then reads `sub` and
/// `fhirUser`.
pub(super) fn check_claims(
    claims: Map<String, Value>,
    expected: &IdTokenExpectations<'_>,
    now: SystemTime,
    leeway: Duration,
) -> Result<IdTokenClaims, IdTokenError> {
    // Steps 1 (decryption) and 6–8 (signature, alg) come before: see `keys`.
    let issuer = step2_issuer(&claims, expected.issuer)?;
    let audiences = step3_audience(&claims, expected.client_id)?;
    step4_5_authorized_party(&claims, &audiences, expected.client_id)?;
    let now = unix_seconds(now);
    let leeway = leeway.as_secs();
    let exp = step9_expiry(&claims, now, leeway)?;
    let iat = step10_issued_at(&claims, now, leeway)?;
    not_before(&claims, now, leeway)?;
    if let Some(nonce) = expected.nonce {
        step11_nonce(&claims, nonce)?;
    }
    let subject = subject(&claims)?;
    let fhir_user = fhir_user(&claims, expected.fhir_base)?;
    Ok(IdTokenClaims {
        issuer,
        subject,
        audiences,
        expires_at: from_unix(exp),
        issued_at: from_unix(iat),
        fhir_user,
        claims,
    })
}

/// Step 2: `iss` is exactly the expected issuer (no trailing-slash or case folding).
fn step2_issuer(claims: &Map<String, Value>, expected: &str) -> Result<String, IdTokenError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == expected => Ok(iss.clone()),
        other => Err(IdTokenError::Issuer {
            expected: expected.to_owned(),
            got: other.and_then(Value::as_str).map(|s| excerpt(s.as_bytes())),
        }),
    }
}

/// Step 3: `aud` (a string or an array of strings) contains the client id, compared exactly.
fn step3_audience(
    claims: &Map<String, Value>,
    client_id: &str,
) -> Result<Vec<String>, IdTokenError> {
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed("the aud claim holds a value that is not a string"))?,
        Some(_) => return Err(malformed("the aud claim is not a string or an array")),
        None => Vec::new(),
    };
    if !audiences.iter().any(|a| a == client_id) {
        return Err(IdTokenError::Audience {
            client_id: client_id.to_owned(),
        });
    }
    Ok(audiences)
}

/// Steps 4 and 5: with several audiences `azp` is required, and whenever present it is the
/// client id.
fn step4_5_authorized_party(
    claims: &Map<String, Value>,
    audiences: &[String],
    client_id: &str,
) -> Result<(), IdTokenError> {
    let several_audiences = audiences.iter().any(|a| a != client_id);
    match claims.get("azp") {
        None if several_audiences => Err(IdTokenError::Azp { got: None }),
        None => Ok(()),
        Some(Value::String(azp)) if azp == client_id => Ok(()),
        Some(Value::String(azp)) => Err(IdTokenError::Azp {
            got: Some(excerpt(azp.as_bytes())),
        }),
        Some(_) => Err(malformed("the azp claim is not a string")),
    }
}

/// Step 9: `exp` (required) has not passed, beyond the leeway.
fn step9_expiry(claims: &Map<String, Value>, now: u64, leeway: u64) -> Result<u64, IdTokenError> {
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| malformed("no exp claim"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(IdTokenError::Expired {
            expired_at: from_unix(exp),
        });
    }
    Ok(exp)
}

/// Step 10: `iat` (required) does not lie in the future, beyond the leeway.
fn step10_issued_at(
    claims: &Map<String, Value>,
    now: u64,
    leeway: u64,
) -> Result<u64, IdTokenError> {
    let iat = numeric_date(claims, "iat")?.ok_or_else(|| malformed("no iat claim"))?;
    if iat > now.saturating_add(leeway) {
        return Err(IdTokenError::IssuedInFuture);
    }
    Ok(iat)
}

/// RFC 7519 §4.1.5: `nbf`, when present, does not lie in the future, beyond the leeway.
fn not_before(claims: &Map<String, Value>, now: u64, leeway: u64) -> Result<(), IdTokenError> {
    match numeric_date(claims, "nbf")? {
        Some(nbf) if nbf > now.saturating_add(leeway) => Err(IdTokenError::NotYetValid),
        _ => Ok(()),
    }
}

/// Step 11: the nonce sent with the authorization request is in the token, equal (compared
/// in constant time). Neither value appears in the error.
fn step11_nonce(claims: &Map<String, Value>, nonce: &str) -> Result<(), IdTokenError> {
    match claims.get("nonce") {
        Some(Value::String(got)) if bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) => Ok(()),
        Some(_) => Err(IdTokenError::Nonce { missing: false }),
        None => Err(IdTokenError::Nonce { missing: true }),
    }
}

/// OpenID Connect Core §2: `sub` is required, a non-empty string.
fn subject(claims: &Map<String, Value>) -> Result<String, IdTokenError> {
    match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => Ok(sub.clone()),
        Some(Value::String(_)) => Err(malformed("the sub claim is empty")),
        Some(_) => Err(malformed("the sub claim is not a string")),
        None => Err(malformed("no sub claim")),
    }
}

/// SMART (SC-4.35, SC-4.36): `fhirUser`, or when absent the v1 `profile` alias, resolved
/// against the FHIR base. An unusable `fhirUser` refuses the token; an unusable `profile` is
/// ignored (OpenID Connect also uses it for the user's web page).
fn fhir_user(claims: &Map<String, Value>, base: &FhirBaseUrl) -> Result<Option<Url>, IdTokenError> {
    match claims.get("fhirUser") {
        Some(Value::String(value)) => resolve_fhir_user(value, base)
            .map(Some)
            .map_err(|reason| IdTokenError::FhirUser { reason }),
        Some(Value::Null) | None => Ok(claims
            .get("profile")
            .and_then(Value::as_str)
            .and_then(|value| resolve_fhir_user(value, base).ok())),
        Some(_) => Err(IdTokenError::FhirUser {
            reason: "it is not a string",
        }),
    }
}

fn malformed(reason: impl Into<String>) -> IdTokenError {
    IdTokenError::Malformed {
        reason: reason.into(),
    }
}

/// A JSON number as a NumericDate (RFC 7519 §2): whole seconds since the epoch, a fraction
/// truncated; `None` when negative or out of range. Shared with token introspection.
pub(crate) fn numeric_date_seconds(n: &Number) -> Option<u64> {
    match (n.as_u64(), n.as_f64()) {
        (Some(secs), _) => Some(secs),
        // Truncation is the intent: NumericDate allows fractions of a second.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (None, Some(f)) if (0.0..1.8e19).contains(&f) => Some(f as u64),
        _ => None,
    }
}

/// A NumericDate claim as whole seconds: `None` when absent, an error when not a non-negative
/// number.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, IdTokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => numeric_date_seconds(n)
            .map(Some)
            .ok_or_else(|| malformed(format!("the {name} claim is out of range"))),
        Some(_) => Err(malformed(format!("the {name} claim is not a number"))),
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn from_unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Whether `id` is a FHIR logical id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Reads `Type/id` or `Type/id/_history/vid` segments, with an allowed type.
fn reference_in<'a>(segments: &[&'a str]) -> Option<(&'a str, &'a str)> {
    let (ty, id) = match segments {
        [.., ty, id, "_history", vid] if is_fhir_id(vid) => (*ty, *id),
        [.., ty, id] => (*ty, *id),
        _ => return None,
    };
    (is_fhir_id(id) && FHIR_USER_RESOURCE_TYPES.contains(&ty)).then_some((ty, id))
}

/// The resource type and id at the end of a resolved `fhirUser` URL.
pub(super) fn resource_reference(url: &Url) -> Option<(&str, &str)> {
    let segments: Vec<&str> = url.path_segments()?.collect();
    reference_in(&segments)
}

/// Resolves a `fhirUser` value (SC-4.35): an absolute URL, checked like an endpoint against the
/// FHIR base's insecure-HTTP policy, or `Type/id` (optionally `/_history/vid`) relative to the
/// FHIR base; either way naming one of [`FHIR_USER_RESOURCE_TYPES`].
pub(super) fn resolve_fhir_user(value: &str, base: &FhirBaseUrl) -> Result<Url, &'static str> {
    let value = value.trim();
    if value.is_empty() {
        return Err("it is empty");
    }
    let url = match Url::parse(value) {
        Ok(url) => {
            check_endpoint_url(&url, "fhirUser", base.insecure_http())
                .map_err(|_| "it is not an https URL (or an allowed http one)")?;
            if url.query().is_some() {
                return Err("it carries a query string");
            }
            url
        }
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let segments: Vec<&str> = value.split('/').collect();
            let shape_ok = matches!(segments.as_slice(), [_, _] | [_, _, "_history", _]);
            if !shape_ok || reference_in(&segments).is_none() {
                return Err(
                    "it is neither an absolute URL nor a relative Type/id reference to an allowed type",
                );
            }
            base.join(value)
                .map_err(|_| "it cannot be joined to the FHIR base")?
        }
        Err(_) => return Err("it is not a URL"),
    };
    if resource_reference(&url).is_none() {
        return Err(
            "it does not name a Patient, Practitioner, PractitionerRole, RelatedPerson or Person",
        );
    }
    Ok(url)
}
