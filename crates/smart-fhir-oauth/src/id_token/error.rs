//! Why an `id_token` was refused.

use std::time::SystemTime;

use smart_fhir_core::UrlError;
use smart_fhir_discovery::{KeyDiscoveryError, KeyDocument, KeyFetchError};
use smart_fhir_jwt::JwtError;

/// Why an `id_token` was refused. No variant carries the token's text or the expected nonce.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// The expected issuer is not an acceptable URL (https, or http to a loopback host when the
    /// FHIR base allows it; no query, no fragment).
    #[error("the expected issuer is not an acceptable URL")]
    IssuerUrl(#[source] UrlError),
    /// The issuer's OpenID configuration or JWKS could not be obtained (SC-4.34).
    #[error("cannot get the issuer's {document} from {url}")]
    KeyFetch {
        /// Which document.
        document: KeyDocument,
        /// Its URL, without query.
        url: String,
        /// What went wrong.
        #[source]
        source: KeyFetchError,
    },
    /// The token is not a well-formed compact JWS, or a claim has the wrong type.
    #[error("malformed id_token: {reason}")]
    Malformed {
        /// What is wrong (never the token's text).
        reason: String,
    },
    /// The signature could not be verified: a disallowed algorithm (`none`, HMAC, P9), a key
    /// that does not fit, or a signature that does not match.
    #[error("the id_token's signature cannot be verified")]
    Signature(#[source] JwtError),
    /// The token's `kid` is not in the issuer's JWKS, even after the JWKS was refetched (or the
    /// refetch was skipped because one was made less than the refetch interval ago).
    #[error("the issuer's JWKS has no key with kid `{kid}`")]
    UnknownKey {
        /// The token's `kid`, shortened and stripped of control characters.
        kid: String,
    },
    /// `iss` is not exactly the expected issuer (SC-4.33).
    #[error("the id_token's issuer is {}, expected {expected}", got.as_deref().map_or("missing".to_owned(), |g| format!("`{g}`")))]
    Issuer {
        /// The expected issuer.
        expected: String,
        /// The token's `iss`, bounded and printable, if it had a string one.
        got: Option<String>,
    },
    /// `aud` does not contain the client id (SC-4.33).
    #[error("the id_token's audience does not include the client id `{client_id}`")]
    Audience {
        /// The client id.
        client_id: String,
    },
    /// The token has several audiences and no `azp`, or an `azp` other than the client id
    /// (SC-4.33).
    #[error("{}", match got { Some(g) => format!("the id_token's azp is `{g}`, not the client id"), None => "the id_token has several audiences and no azp".to_owned() })]
    Azp {
        /// The token's `azp`, bounded and printable, if present.
        got: Option<String>,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("the id_token has expired")]
    Expired {
        /// The token's `exp`.
        expired_at: SystemTime,
    },
    /// `iat` lies in the future (beyond the leeway).
    #[error("the id_token was issued in the future (iat); check the clocks")]
    IssuedInFuture,
    /// `nbf` lies in the future (beyond the leeway).
    #[error("the id_token is not valid yet (nbf)")]
    NotYetValid,
    /// The nonce sent with the authorization request is missing from the token or differs
    /// (SC-4.33).
    #[error("{}", if *missing { "the id_token has no nonce" } else { "the id_token's nonce does not match" })]
    Nonce {
        /// Whether the claim was absent (rather than different).
        missing: bool,
    },
    /// `fhirUser` is not a URL of a Patient, Practitioner, PractitionerRole, RelatedPerson or
    /// Person, absolute or relative to the FHIR base (SC-4.35).
    #[error("the id_token's fhirUser is unusable: {reason}")]
    FhirUser {
        /// Why (never the value itself: it names a person's record).
        reason: &'static str,
    },
}

impl IdTokenError {
    /// Whether the same verification could succeed later: the issuer's keys could not be
    /// fetched because of a transient transport failure, a 5xx or a 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::KeyFetch { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

impl From<KeyDiscoveryError> for IdTokenError {
    fn from(e: KeyDiscoveryError) -> Self {
        Self::KeyFetch {
            document: e.document,
            url: e.url,
            source: e.source,
        }
    }
}
