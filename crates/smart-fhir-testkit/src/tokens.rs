//! The token endpoint's book of issued tokens.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::record::form_value;
use crate::reply::Reply;

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token this server did not issue, revoked, or used up.
    Invalid,
}

#[derive(Default)]
struct TokenRecord {
    uses: u64,
    revoked: bool,
}

/// Issued tokens and the token endpoint's settings. No `Debug`: it holds tokens.
pub(crate) struct TokenBook {
    issued: u64,
    pub(crate) lifetime_secs: u64,
    pub(crate) max_uses: Option<u64>,
    pub(crate) granted_scope: Option<String>,
    pub(crate) requests: u64,
    tokens: HashMap<String, TokenRecord>,
    #[cfg(feature = "jwt")]
    pub(crate) assertions: Option<crate::assertion::AssertionCheck>,
}

impl Default for TokenBook {
    fn default() -> Self {
        Self {
            issued: 0,
            lifetime_secs: 3600,
            max_uses: None,
            granted_scope: None,
            requests: 0,
            tokens: HashMap::new(),
            #[cfg(feature = "jwt")]
            assertions: None,
        }
    }
}

impl TokenBook {
    /// Answers a token request (`POST /token`, form body).
    pub(crate) fn token_request(&mut self, form: &[u8], token_endpoint: &str) -> Reply {
        let grant_type = form_value(form, "grant_type");
        if grant_type.as_deref() != Some("client_credentials") {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "this server issues tokens for grant_type=client_credentials only",
            );
        }
        #[cfg(feature = "jwt")]
        if let Some(check) = self.assertions.as_mut() {
            if let Err(description) = check.check(form, token_endpoint) {
                return oauth_error(401, "invalid_client", &description);
            }
        }
        #[cfg(not(feature = "jwt"))]
        let _ = token_endpoint;
        self.issued += 1;
        let token = format!("tok-{}", self.issued);
        self.tokens.insert(token.clone(), TokenRecord::default());
        let scope = self
            .granted_scope
            .clone()
            .or_else(|| form_value(form, "scope"));
        let mut body = json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.lifetime_secs,
        });
        if let (Some(scope), Some(map)) = (scope, body.as_object_mut()) {
            map.insert("scope".to_owned(), Value::String(scope));
        }
        Reply::json(200, body)
            .header("cache-control", "no-store")
            .header("pragma", "no-cache")
    }

    /// Whether `token` would be accepted now, without using it.
    pub(crate) fn is_live(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|t| !t.revoked && self.max_uses.is_none_or(|max| t.uses < max))
    }

    /// Accepts and counts one use of `token`, or says why not.
    pub(crate) fn authorize(&mut self, token: Option<&str>) -> Result<(), Refusal> {
        let token = token.ok_or(Refusal::Missing)?;
        if !self.is_live(token) {
            return Err(Refusal::Invalid);
        }
        if let Some(record) = self.tokens.get_mut(token) {
            record.uses += 1;
        }
        Ok(())
    }

    pub(crate) fn revoke(&mut self, token: &str) {
        if let Some(record) = self.tokens.get_mut(token) {
            record.revoked = true;
        }
    }

    pub(crate) fn revoke_all(&mut self) {
        for record in self.tokens.values_mut() {
            record.revoked = true;
        }
    }

    pub(crate) fn issued(&self) -> u64 {
        self.issued
    }
}

/// An RFC 6749 §5.2 error response.
pub(crate) fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": error, "error_description": description}),
    )
    .header("cache-control", "no-store")
}

/// The `401` for a refused bearer token (RFC 6750 §3).
pub(crate) fn unauthorized(refusal: Refusal) -> Reply {
    let (challenge, diagnostics) = match refusal {
        Refusal::Missing => (
            "Bearer realm=\"smart-fhir-testkit\"",
            "this request needs a bearer token",
        ),
        Refusal::Invalid => (
            "Bearer realm=\"smart-fhir-testkit\", error=\"invalid_token\"",
            "the bearer token is not valid (unknown, revoked or expired)",
        ),
    };
    Reply::operation_outcome(401, "login", diagnostics).header("www-authenticate", challenge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::BodySpec;

    fn body_json(reply: &Reply) -> Value {
        let BodySpec::Static(b) = &reply.body else {
            return Value::Null;
        };
        serde_json::from_slice(b).unwrap_or(Value::Null)
    }

    const FORM: &[u8] = b"grant_type=client_credentials&scope=system%2FPatient.rs";

    #[test]
    fn issues_numbered_tokens_with_lifetime_and_scope_sc_3_4() {
        let mut book = TokenBook {
            lifetime_secs: 42,
            ..TokenBook::default()
        };
        let r = book.token_request(FORM, "http://x/token");
        assert_eq!(r.status, 200);
        let v = body_json(&r);
        assert_eq!(v["access_token"], "tok-1");
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(v["expires_in"], 42);
        assert_eq!(v["scope"], "system/Patient.rs");
        book.granted_scope = Some("system/Patient.r".to_owned());
        let v = body_json(&book.token_request(FORM, "http://x/token"));
        assert_eq!(v["access_token"], "tok-2");
        assert_eq!(v["scope"], "system/Patient.r");
        assert_eq!(book.issued(), 2);
    }

    #[test]
    fn refuses_other_grants_sc_3_7() {
        let mut book = TokenBook::default();
        let r = book.token_request(b"grant_type=password", "http://x/token");
        assert_eq!(r.status, 400);
        assert_eq!(body_json(&r)["error"], "unsupported_grant_type");
        assert_eq!(book.issued(), 0);
    }

    #[test]
    fn revocation_and_use_budget_sc_8_26() {
        let mut book = TokenBook::default();
        book.token_request(FORM, "t");
        book.token_request(FORM, "t");
        assert_eq!(book.authorize(None), Err(Refusal::Missing));
        assert_eq!(book.authorize(Some("tok-9")), Err(Refusal::Invalid));
        assert_eq!(book.authorize(Some("tok-1")), Ok(()));
        book.revoke("tok-1");
        assert_eq!(book.authorize(Some("tok-1")), Err(Refusal::Invalid));
        assert_eq!(book.authorize(Some("tok-2")), Ok(()));

        book.max_uses = Some(2);
        assert!(book.is_live("tok-2"));
        assert_eq!(book.authorize(Some("tok-2")), Ok(()));
        assert!(!book.is_live("tok-2"));
        assert_eq!(book.authorize(Some("tok-2")), Err(Refusal::Invalid));
        book.max_uses = None;
        assert_eq!(book.authorize(Some("tok-2")), Ok(()));

        book.revoke_all();
        assert!(!book.is_live("tok-2"));
        book.token_request(FORM, "t");
        assert!(book.is_live("tok-3"));
    }

    #[test]
    fn unauthorized_challenges_rfc_6750() {
        let r = unauthorized(Refusal::Invalid);
        assert_eq!(r.status, 401);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v.contains("error=\"invalid_token\"")));
        let r = unauthorized(Refusal::Missing);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && !v.contains("error=")));
    }
}
