//! What the flow keeps in the session store: authorizations in flight and signed-in sessions.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use smart_fhir_core::{FhirBaseUrl, InsecureHttp, Url};
use smart_fhir_store::{StoreError, StoredToken};
use zeroize::{Zeroize, Zeroizing};

use crate::launch::error::LaunchError;

/// The record format version.
const VERSION: u32 = 1;

/// The session id under which state markers live: each maps the hash of a `state` to the hash
/// of the session that started it, so that a state used in the wrong session can be told from
/// one that does not exist. Application session ids cannot start with `smart-fhir:`.
pub(crate) const STATE_INDEX_SESSION: &str = "smart-fhir:launch:states";
/// The key of the signed-in session.
pub(crate) const SESSION_KEY: &str = "smart-fhir:launch:session";
/// The key of the cross-process refresh lease.
pub(crate) const LEASE_KEY: &str = "smart-fhir:launch:refresh-lease";

/// The key of an authorization in flight: a hash of its `state`, so that a store's keys reveal
/// nothing usable.
pub(crate) fn pending_key(state: &str) -> String {
    format!("smart-fhir:launch:pending:{}", digest(state))
}

/// The key of a state marker in [`STATE_INDEX_SESSION`].
pub(crate) fn marker_key(state: &str) -> String {
    format!("state:{}", digest(state))
}

/// `BASE64URL(SHA-256(value))`.
pub(crate) fn digest(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// An authorization in flight, bound to a session and an issuer.
#[derive(Serialize, Deserialize)]
pub(crate) struct PendingRecord {
    pub(crate) v: u32,
    pub(crate) state: Zeroizing<String>,
    /// `BASE64URL(SHA-256(session id))`.
    pub(crate) session: String,
    pub(crate) fhir_base: String,
    pub(crate) insecure_loopback: bool,
    pub(crate) issuer: Option<String>,
    /// The server advertised `authorization_response_iss_parameter_supported` (RFC 9207).
    pub(crate) iss_required: bool,
    pub(crate) token_endpoint: String,
    pub(crate) revocation_endpoint: Option<String>,
    pub(crate) algorithm: Option<String>,
    pub(crate) verifier: Zeroizing<String>,
    pub(crate) nonce: Option<Zeroizing<String>>,
    pub(crate) scope: String,
    pub(crate) redirect_uri: String,
}

impl PendingRecord {
    pub(crate) fn to_value(&self) -> Result<Value, LaunchError> {
        to_value(self)
    }

    pub(crate) fn from_value(value: &Value) -> Result<Self, LaunchError> {
        let record: Self = Self::deserialize(value)
            .map_err(|_| corrupt("an authorization in flight is unreadable"))?;
        if record.v != VERSION {
            return Err(corrupt("an authorization in flight has an unknown version"));
        }
        Ok(record)
    }
}

/// The authorization server of a flow, as discovered when it started.
#[derive(Clone)]
pub(crate) struct ServerInfo {
    pub(crate) issuer: Option<String>,
    /// As advertised: a client assertion's `aud`.
    pub(crate) token_endpoint: String,
    pub(crate) revocation_endpoint: Option<String>,
    /// The `private_key_jwt` signing algorithm chosen by the fit check.
    pub(crate) algorithm: Option<String>,
}

/// A signed-in session: the tokens and what they were obtained for.
#[derive(Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub(crate) v: u32,
    /// [`StoredToken::to_json_bytes`] as a JSON value.
    pub(crate) token: Value,
    pub(crate) fhir_base: String,
    pub(crate) insecure_loopback: bool,
    pub(crate) issuer: Option<String>,
    pub(crate) token_endpoint: String,
    pub(crate) revocation_endpoint: Option<String>,
    pub(crate) algorithm: Option<String>,
    pub(crate) requested_scope: String,
    /// `fhirUser` from the verified `id_token`.
    pub(crate) user: Option<String>,
}

impl Drop for SessionRecord {
    fn drop(&mut self) {
        scrub(&mut self.token);
    }
}

impl SessionRecord {
    pub(crate) fn to_value(&self) -> Result<Value, LaunchError> {
        to_value(self)
    }

    pub(crate) fn from_value(value: &Value) -> Result<Self, LaunchError> {
        let record: Self =
            Self::deserialize(value).map_err(|_| corrupt("a session is unreadable"))?;
        if record.v != VERSION {
            return Err(corrupt("a session has an unknown version"));
        }
        Ok(record)
    }

    pub(crate) fn new(
        token: &StoredToken,
        base: &FhirBaseUrl,
        server: ServerInfo,
        requested_scope: String,
        user: Option<String>,
    ) -> Result<Self, LaunchError> {
        Ok(Self {
            v: VERSION,
            token: token_to_value(token)?,
            fhir_base: base.as_str().to_owned(),
            insecure_loopback: base.insecure_http() == InsecureHttp::AllowLoopback,
            issuer: server.issuer,
            token_endpoint: server.token_endpoint,
            revocation_endpoint: server.revocation_endpoint,
            algorithm: server.algorithm,
            requested_scope,
            user,
        })
    }

    /// What the session knows of its authorization server.
    pub(crate) fn server(&self) -> ServerInfo {
        ServerInfo {
            issuer: self.issuer.clone(),
            token_endpoint: self.token_endpoint.clone(),
            revocation_endpoint: self.revocation_endpoint.clone(),
            algorithm: self.algorithm.clone(),
        }
    }

    pub(crate) fn revocation_endpoint(&self) -> Option<Url> {
        self.revocation_endpoint
            .as_deref()
            .and_then(|e| parse_endpoint(e, self.insecure_loopback).ok())
    }

    pub(crate) fn stored_token(&self) -> Result<StoredToken, LaunchError> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(&self.token).map_err(|_| corrupt("a session is unreadable"))?,
        );
        StoredToken::from_json_bytes(&bytes).map_err(LaunchError::from)
    }

    pub(crate) fn fhir_base(&self) -> Result<FhirBaseUrl, LaunchError> {
        parse_base(&self.fhir_base, self.insecure_loopback)
    }

    pub(crate) fn token_endpoint(&self) -> Result<Url, LaunchError> {
        parse_endpoint(&self.token_endpoint, self.insecure_loopback)
    }

    pub(crate) fn user(&self) -> Option<Url> {
        self.user.as_deref().and_then(|u| Url::parse(u).ok())
    }
}

pub(crate) fn parse_base(text: &str, insecure_loopback: bool) -> Result<FhirBaseUrl, LaunchError> {
    FhirBaseUrl::parse_with(text, insecure_policy(insecure_loopback))
        .map_err(|_| corrupt("a stored FHIR base URL is invalid"))
}

pub(crate) fn parse_endpoint(text: &str, insecure_loopback: bool) -> Result<Url, LaunchError> {
    let url = Url::parse(text).map_err(|_| corrupt("a stored token endpoint is invalid"))?;
    smart_fhir_core::check_endpoint_url(&url, "token_endpoint", insecure_policy(insecure_loopback))
        .map_err(|_| corrupt("a stored token endpoint is invalid"))?;
    Ok(url)
}

fn insecure_policy(insecure_loopback: bool) -> InsecureHttp {
    if insecure_loopback {
        InsecureHttp::AllowLoopback
    } else {
        InsecureHttp::Deny
    }
}

fn token_to_value(token: &StoredToken) -> Result<Value, LaunchError> {
    let bytes = token.to_json_bytes().map_err(LaunchError::from)?;
    serde_json::from_slice(&bytes).map_err(|_| corrupt("a token could not be serialized"))
}

fn to_value(value: &impl Serialize) -> Result<Value, LaunchError> {
    serde_json::to_value(value).map_err(|_| corrupt("a record could not be serialized"))
}

fn corrupt(message: &str) -> LaunchError {
    LaunchError::from(StoreError::corrupt(message))
}

/// Overwrites every string of a JSON value with zeros: a record holds a refresh token or a PKCE
/// verifier.
pub(crate) fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

/// A JSON value scrubbed when dropped.
pub(crate) struct Scrubbed(pub(crate) Value);

impl Drop for Scrubbed {
    fn drop(&mut self) {
        scrub(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    use smart_fhir_core::{AccessToken, RefreshToken};

    #[test]
    fn keys_hide_the_state() {
        let k = pending_key("my-state");
        assert!(!k.contains("my-state"));
        assert_eq!(k, pending_key("my-state"));
        assert_ne!(k, pending_key("my-state2"));
        assert!(!marker_key("my-state").contains("my-state"));
    }

    #[test]
    fn session_record_round_trip() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = StoredToken::new(AccessToken::new("at"), now, now + Duration::from_secs(60))
            .with_refresh_token(RefreshToken::new("rt"))
            .with_scope("openid");
        let base = FhirBaseUrl::parse("https://ehr.example/fhir").unwrap();
        let server = ServerInfo {
            issuer: Some("https://as.example".into()),
            token_endpoint: "https://as.example/token".into(),
            revocation_endpoint: Some("https://as.example/revoke".into()),
            algorithm: None,
        };
        let record = SessionRecord::new(
            &token,
            &base,
            server,
            "openid".into(),
            Some("https://ehr.example/fhir/Practitioner/1".into()),
        )
        .unwrap();
        let value = record.to_value().unwrap();
        let back = SessionRecord::from_value(&value).unwrap();
        let t = back.stored_token().unwrap();
        assert!(t.access_token.ct_eq("at"));
        assert!(t.refresh_token.unwrap().ct_eq("rt"));
        assert_eq!(back.fhir_base().unwrap(), base);
        assert_eq!(
            back.user().unwrap().as_str(),
            "https://ehr.example/fhir/Practitioner/1"
        );
        assert_eq!(
            back.revocation_endpoint().unwrap().as_str(),
            "https://as.example/revoke"
        );
        assert!(SessionRecord::from_value(&serde_json::json!({"v": 2})).is_err());
    }

    #[test]
    fn scrub_zeroes_strings() {
        let mut v = serde_json::json!({"a": ["x", {"b": "y"}], "n": 1});
        scrub(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["", {"b": ""}], "n": 1}));
    }
}
