//! Token introspection (RFC 7662; SC-6.1–SC-6.4) and revocation (RFC 7009; SC-6.5, SC-6.6).
//!
//! Sans-IO at heart: [`introspection_request`] / [`revocation_request`] build the request,
//! [`parse_introspection_response`] / [`parse_revocation_response`] read the response, and the
//! thin [`introspect`] and [`revoke`] do the I/O through an [`HttpClient`].
//!
//! Endpoints are checked before use: https, or plain http to a loopback host only (the
//! endpoints normally come from a SMART configuration already checked against the FHIR base's
//! policy; this is the floor under it).

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde_json::{Map, Value};
use smart_fhir_core::{check_endpoint_url, AccessToken, ClientSecret, HttpClient, InsecureHttp};
use smart_fhir_jwt::{ClientAssertion, CLIENT_ASSERTION_TYPE};
use url::form_urlencoded;
use url::Url;

use crate::error::OAuthError;
use crate::id_token::claims::numeric_date_seconds;
use crate::token::{
    describe_json_error, error_from_members, form_post, looks_like_html, parse_error_body,
};

/// The `token_type_hint` of RFC 7009 §2.1 and RFC 7662 §2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    /// The value sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

impl fmt::Display for TokenTypeHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the client authenticates to the introspection endpoint (SC-6.2).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum IntrospectionAuth {
    /// `Authorization: Bearer <token>`: what SMART servers that protect introspection expect
    /// (SC-6.2).
    Bearer(AccessToken),
    /// `Authorization: Basic`, with the client id and secret form-urlencoded first (RFC 6749
    /// §2.3.1).
    Basic {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: ClientSecret,
    },
    /// No authentication, for servers that leave introspection open.
    None,
}

/// How the client authenticates to the revocation endpoint (RFC 7009 §2.1: as at the token
/// endpoint).
#[derive(Debug)]
#[non_exhaustive]
pub enum RevocationAuth {
    /// A public client: `client_id` in the body, no authentication (SC-2.22).
    Public {
        /// The client id.
        client_id: String,
    },
    /// `client_secret_basic` (SC-2.18, SC-2.19).
    Basic {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: ClientSecret,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body (SC-2.21).
    Post {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: ClientSecret,
    },
    /// `private_key_jwt`: a freshly signed client assertion (SC-2.13, P11).
    PrivateKeyJwt {
        /// The client id.
        client_id: String,
        /// The assertion, signed for this request and sent once.
        assertion: ClientAssertion,
    },
}

/// What an introspection endpoint says about a token (RFC 7662 §2.2, SC-6.3).
///
/// An inactive token carries nothing but `active: false`: whatever else the server sent is
/// dropped, as RFC 7662 §2.2 asks of clients.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Introspection {
    /// Whether the token is active.
    pub active: bool,
    /// `scope`, space-separated.
    pub scope: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `token_type`.
    pub token_type: Option<String>,
    /// `exp`.
    pub expires_at: Option<SystemTime>,
    /// `iat`.
    pub issued_at: Option<SystemTime>,
    /// `nbf`.
    pub not_before: Option<SystemTime>,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud`, as a list (a single string becomes one item).
    pub audiences: Vec<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `jti`.
    pub jti: Option<String>,
    /// `fhirUser`, as sent (SC-6.3).
    pub fhir_user: Option<String>,
    /// Every other member: SMART launch context (`patient`, `encounter`, `fhirContext`,
    /// `need_patient_banner`, `smart_style_url`, `intent`, `tenant`…) and extensions, kept
    /// whole (SC-6.3).
    pub extra: Map<String, Value>,
}

impl Introspection {
    fn inactive() -> Self {
        Self {
            active: false,
            scope: None,
            client_id: None,
            username: None,
            token_type: None,
            expires_at: None,
            issued_at: None,
            not_before: None,
            subject: None,
            audiences: Vec::new(),
            issuer: None,
            jti: None,
            fhir_user: None,
            extra: Map::new(),
        }
    }

    /// Whether the token is active and, if the server gave an `exp`, not expired at `now`.
    pub fn is_active_at(&self, now: SystemTime) -> bool {
        self.active && self.expires_at.is_none_or(|exp| now < exp)
    }

    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> + '_ {
        self.scope.as_deref().unwrap_or("").split_whitespace()
    }

    /// The `patient` launch context (a Patient id).
    pub fn patient(&self) -> Option<&str> {
        self.extra.get("patient").and_then(Value::as_str)
    }

    /// The `encounter` launch context (an Encounter id).
    pub fn encounter(&self) -> Option<&str> {
        self.extra.get("encounter").and_then(Value::as_str)
    }

    /// The `fhirContext` launch context items (SMART 2.2), as sent.
    pub fn fhir_context(&self) -> Option<&[Value]> {
        self.extra
            .get("fhirContext")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
    }
}

/// Checks an introspection or revocation endpoint: https, or http to a loopback host when
/// `insecure` allows it (P7).
fn check_endpoint(endpoint: &Url, what: &str, insecure: InsecureHttp) -> Result<(), OAuthError> {
    check_endpoint_url(endpoint, what, insecure)?;
    Ok(())
}

fn config(field: &'static str, reason: &str) -> OAuthError {
    OAuthError::Config {
        field,
        reason: reason.to_owned(),
    }
}

/// A sensitive `Authorization` header value (never logged by transports that honour the flag).
fn sensitive_header(value: String) -> Result<HeaderValue, OAuthError> {
    let mut header = HeaderValue::try_from(value)
        .map_err(|_| config("credentials", "not a valid HTTP header value"))?;
    header.set_sensitive(true);
    Ok(header)
}

/// `Basic base64(urlencode(client_id) ":" urlencode(secret))` (RFC 6749 §2.3.1; SC-2.18,
/// SC-2.19).
pub(crate) fn basic_authorization(
    client_id: &str,
    secret: &ClientSecret,
) -> Result<HeaderValue, OAuthError> {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = form_urlencoded::byte_serialize(secret.secret().as_bytes()).collect();
    sensitive_header(format!(
        "Basic {}",
        STANDARD.encode(format!("{id}:{secret}"))
    ))
}

fn token_form(
    token: &str,
    hint: Option<TokenTypeHint>,
) -> Result<form_urlencoded::Serializer<'static, String>, OAuthError> {
    if token.is_empty() {
        return Err(config("token", "empty"));
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token);
    if let Some(hint) = hint {
        form.append_pair("token_type_hint", hint.as_str());
    }
    Ok(form)
}

/// Builds an introspection request (SC-6.1, SC-6.2): `POST` form `token` and optional
/// `token_type_hint`, `Accept: application/json`, with the client's authentication.
///
/// `token` is the token to inspect (`AccessToken::secret()`, say); it travels only in the body.
///
/// The endpoint must be https; [`introspection_request_with`] allows loopback http by opt-in.
pub fn introspection_request(
    endpoint: &Url,
    token: &str,
    hint: Option<TokenTypeHint>,
    auth: &IntrospectionAuth,
) -> Result<http::Request<Bytes>, OAuthError> {
    introspection_request_with(endpoint, token, hint, auth, InsecureHttp::Deny)
}

/// [`introspection_request`] with an explicit plain-HTTP policy (`AllowLoopback` for local
/// development servers).
pub fn introspection_request_with(
    endpoint: &Url,
    token: &str,
    hint: Option<TokenTypeHint>,
    auth: &IntrospectionAuth,
    insecure: InsecureHttp,
) -> Result<http::Request<Bytes>, OAuthError> {
    check_endpoint(endpoint, "introspection_endpoint", insecure)?;
    let mut form = token_form(token, hint)?;
    let mut request = form_post(endpoint, form.finish())?;
    let authorization = match auth {
        IntrospectionAuth::Bearer(bearer) => {
            if bearer.secret().is_empty() {
                return Err(config("bearer token", "empty"));
            }
            Some(sensitive_header(format!("Bearer {}", bearer.secret()))?)
        }
        IntrospectionAuth::Basic { client_id, secret } => {
            Some(basic_authorization(client_id, secret)?)
        }
        IntrospectionAuth::None => None,
    };
    if let Some(value) = authorization {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(request)
}

fn invalid(status: http::StatusCode, reason: impl Into<String>) -> OAuthError {
    OAuthError::InvalidResponse {
        status: status.as_u16(),
        reason: reason.into(),
    }
}

/// Parses an introspection response (SC-6.3, SC-6.4).
///
/// * Non-2xx: an RFC 6749 §5.2 error body, or the status with a bounded excerpt (a `401` means
///   the endpoint wants other credentials, SC-6.2).
/// * `active` is required and must be a boolean; `{"active": false}` alone is accepted, and an
///   inactive token's other members are ignored.
/// * For an active token, the RFC 7662 members must have their RFC types (a string `exp` is an
///   error, not a guess); every other member is kept in [`Introspection::extra`].
pub fn parse_introspection_response(
    response: http::Response<Bytes>,
) -> Result<Introspection, OAuthError> {
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        return Err(parse_error_body(status, &body));
    }
    if looks_like_html(&body) {
        return Err(invalid(
            status,
            "the body is HTML, not a JSON introspection response",
        ));
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| invalid(status, describe_json_error(&e)))?;
    let Value::Object(mut members) = value else {
        return Err(invalid(status, "the body is not a JSON object"));
    };
    // RFC 6749 §5.2: a response with an `error` member is an error response, whatever its
    // status and whatever else it carries (an `active` beside it is not believed).
    if let Some(error) = members.get("error") {
        return Err(error_from_members(
            status,
            error,
            members.get("error_description"),
            members.get("error_uri"),
        ));
    }
    let active = match members.remove("active") {
        Some(Value::Bool(active)) => active,
        Some(_) => return Err(invalid(status, "`active` is not a boolean")),
        None => return Err(invalid(status, "the response has no `active` member")),
    };
    if !active {
        return Ok(Introspection::inactive());
    }
    let mut take_string = |name: &'static str| match members.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(status, format!("`{name}` is not a string"))),
    };
    let scope = take_string("scope")?;
    let client_id = take_string("client_id")?;
    let username = take_string("username")?;
    let token_type = take_string("token_type")?;
    let subject = take_string("sub")?;
    let issuer = take_string("iss")?;
    let jti = take_string("jti")?;
    let fhir_user = take_string("fhirUser")?;
    let mut take_date = |name: &'static str| match members.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => numeric_date(&n)
            .map(Some)
            .ok_or_else(|| invalid(status, format!("`{name}` is out of range"))),
        Some(_) => Err(invalid(status, format!("`{name}` is not a number"))),
    };
    let expires_at = take_date("exp")?;
    let issued_at = take_date("iat")?;
    let not_before = take_date("nbf")?;
    let audiences = match members.remove("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(aud)) => vec![aud],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid(status, "`aud` holds a value that is not a string"))?,
        Some(_) => return Err(invalid(status, "`aud` is not a string or an array")),
    };
    Ok(Introspection {
        active,
        scope,
        client_id,
        username,
        token_type,
        expires_at,
        issued_at,
        not_before,
        subject,
        audiences,
        issuer,
        jti,
        fhir_user,
        extra: members,
    })
}

/// A NumericDate (whole or fractional seconds since the epoch) as a time.
fn numeric_date(n: &serde_json::Number) -> Option<SystemTime> {
    let secs = numeric_date_seconds(n)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Introspects `token` at `endpoint` (SC-6.1–SC-6.4): [`introspection_request`], then
/// [`parse_introspection_response`].
///
/// The endpoint must be https; [`introspect_with`] allows loopback http by opt-in.
pub async fn introspect(
    http: &dyn HttpClient,
    endpoint: &Url,
    token: &str,
    hint: Option<TokenTypeHint>,
    auth: &IntrospectionAuth,
) -> Result<Introspection, OAuthError> {
    introspect_with(http, endpoint, token, hint, auth, InsecureHttp::Deny).await
}

/// [`introspect`] with an explicit plain-HTTP policy.
pub async fn introspect_with(
    http: &dyn HttpClient,
    endpoint: &Url,
    token: &str,
    hint: Option<TokenTypeHint>,
    auth: &IntrospectionAuth,
    insecure: InsecureHttp,
) -> Result<Introspection, OAuthError> {
    let request = introspection_request_with(endpoint, token, hint, auth, insecure)?;
    let response = http.execute(request).await.map_err(OAuthError::from)?;
    parse_introspection_response(response)
}

/// Why a revocation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The server is temporarily unable to revoke (`503`, RFC 7009 §2.2.1; or `429`): try
    /// again later, after `retry_after` when given. The token may still be valid meanwhile.
    #[error("the revocation endpoint is unavailable (HTTP {status}){}", retry_after.map(|d| format!("; retry after {} s", d.as_secs())).unwrap_or_default())]
    Unavailable {
        /// `503` or `429`.
        status: u16,
        /// The `Retry-After` delay, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// The request could not be built or sent, or the server refused it (an RFC 6749 §5.2
    /// error such as `invalid_client` or `unsupported_token_type`, or another status).
    #[error("token revocation failed")]
    Failed(#[source] OAuthError),
}

impl RevocationError {
    /// Whether trying again later could succeed: the endpoint was unavailable, or the transport
    /// failed transiently.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Failed(OAuthError::Http(e)) => e.is_transient(),
            Self::Failed(_) => false,
        }
    }

    /// How long the server asked to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            Self::Failed(_) => None,
        }
    }
}

/// Builds a revocation request (SC-6.6, RFC 7009 §2.1): `POST` form `token` and
/// `token_type_hint`, with the client's authentication as at the token endpoint.
///
/// The endpoint must be https; [`revocation_request_with`] allows loopback http by opt-in.
pub fn revocation_request(
    endpoint: &Url,
    token: &str,
    hint: TokenTypeHint,
    auth: &RevocationAuth,
) -> Result<http::Request<Bytes>, RevocationError> {
    revocation_request_with(endpoint, token, hint, auth, InsecureHttp::Deny)
}

/// [`revocation_request`] with an explicit plain-HTTP policy.
pub fn revocation_request_with(
    endpoint: &Url,
    token: &str,
    hint: TokenTypeHint,
    auth: &RevocationAuth,
    insecure: InsecureHttp,
) -> Result<http::Request<Bytes>, RevocationError> {
    let build = || -> Result<http::Request<Bytes>, OAuthError> {
        check_endpoint(endpoint, "revocation_endpoint", insecure)?;
        let mut form = token_form(token, Some(hint))?;
        let mut authorization = None;
        match auth {
            RevocationAuth::Public { client_id } => {
                form.append_pair("client_id", non_empty_client_id(client_id)?);
            }
            RevocationAuth::Basic { client_id, secret } => {
                authorization = Some(basic_authorization(
                    non_empty_client_id(client_id)?,
                    secret,
                )?);
            }
            RevocationAuth::Post { client_id, secret } => {
                form.append_pair("client_id", non_empty_client_id(client_id)?);
                form.append_pair("client_secret", secret.secret());
            }
            RevocationAuth::PrivateKeyJwt {
                client_id,
                assertion,
            } => {
                form.append_pair("client_id", non_empty_client_id(client_id)?);
                form.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE);
                form.append_pair("client_assertion", assertion.secret());
            }
        }
        let mut request = form_post(endpoint, form.finish())?;
        if let Some(value) = authorization {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        Ok(request)
    };
    build().map_err(RevocationError::Failed)
}

fn non_empty_client_id(client_id: &str) -> Result<&str, OAuthError> {
    if client_id.trim().is_empty() {
        return Err(config("client_id", "empty"));
    }
    Ok(client_id)
}

/// Parses a revocation response (SC-6.6, RFC 7009 §2.2): any 2xx is success (a server answers
/// `200` for a token it does not know, too); `503` and `429` are
/// [`RevocationError::Unavailable`]; anything else is [`RevocationError::Failed`] with the OAuth
/// error or status.
pub fn parse_revocation_response(response: http::Response<Bytes>) -> Result<(), RevocationError> {
    let status = response.status();
    if status.is_success() {
        // RFC 7009 §2.2 has the client ignore a success body, but a JSON object with an
        // `error` member is an RFC 6749 §5.2 error response whatever its status: the token
        // was not revoked, and saying it was would leave it valid unnoticed.
        if let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(response.body()) {
            if let Some(error) = members.get("error") {
                return Err(RevocationError::Failed(error_from_members(
                    status,
                    error,
                    members.get("error_description"),
                    members.get("error_uri"),
                )));
            }
        }
        return Ok(());
    }
    if status == http::StatusCode::SERVICE_UNAVAILABLE
        || status == http::StatusCode::TOO_MANY_REQUESTS
    {
        // Retry-After in delay-seconds; an HTTP-date is left for the caller's own policy.
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(RevocationError::Unavailable {
            status: status.as_u16(),
            retry_after,
        });
    }
    Err(RevocationError::Failed(parse_error_body(
        status,
        response.body(),
    )))
}

/// Revokes `token` at `endpoint` (SC-6.5, SC-6.6): [`revocation_request`], then
/// [`parse_revocation_response`].
///
/// The endpoint must be https; [`revoke_with`] allows loopback http by opt-in.
pub async fn revoke(
    http: &dyn HttpClient,
    endpoint: &Url,
    token: &str,
    hint: TokenTypeHint,
    auth: &RevocationAuth,
) -> Result<(), RevocationError> {
    revoke_with(http, endpoint, token, hint, auth, InsecureHttp::Deny).await
}

/// [`revoke`] with an explicit plain-HTTP policy.
pub async fn revoke_with(
    http: &dyn HttpClient,
    endpoint: &Url,
    token: &str,
    hint: TokenTypeHint,
    auth: &RevocationAuth,
    insecure: InsecureHttp,
) -> Result<(), RevocationError> {
    let request = revocation_request_with(endpoint, token, hint, auth, insecure)?;
    let response = http
        .execute(request)
        .await
        .map_err(|e| RevocationError::Failed(OAuthError::from(e)))?;
    parse_revocation_response(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Url {
        Url::parse("https://auth.example/introspect").unwrap()
    }

    fn response(status: u16, body: &str) -> http::Response<Bytes> {
        http::Response::builder()
            .status(status)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn form(req: &http::Request<Bytes>) -> Vec<(String, String)> {
        form_urlencoded::parse(req.body()).into_owned().collect()
    }

    /// SC-2.19: client id and secret are form-urlencoded before base64; the header is
    /// sensitive.
    #[test]
    fn sc_2_19_basic_encodes_first() {
        let v = basic_authorization("my app:1", &ClientSecret::new("p@ss:w/rd é")).unwrap();
        assert!(v.is_sensitive());
        let encoded = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "my+app%3A1:p%40ss%3Aw%2Frd+%C3%A9");
    }

    /// SC-6.1: the form carries the token and the hint; no hint when none is given.
    #[test]
    fn sc_6_1_form_with_and_without_hint() {
        let req = introspection_request(
            &endpoint(),
            "tok",
            Some(TokenTypeHint::RefreshToken),
            &IntrospectionAuth::None,
        )
        .unwrap();
        assert_eq!(
            form(&req),
            vec![
                ("token".into(), "tok".into()),
                ("token_type_hint".into(), "refresh_token".into())
            ]
        );
        assert!(req.headers().get(AUTHORIZATION).is_none());
        let req =
            introspection_request(&endpoint(), "tok", None, &IntrospectionAuth::None).unwrap();
        assert_eq!(form(&req), vec![("token".into(), "tok".into())]);
    }

    /// P7: plain http is refused unless the host is loopback and the caller opted in; empty
    /// tokens are refused.
    #[test]
    fn p7_endpoint_checked() {
        let http_remote = Url::parse("http://auth.example/introspect").unwrap();
        assert!(matches!(
            introspection_request(&http_remote, "t", None, &IntrospectionAuth::None),
            Err(OAuthError::Url(_))
        ));
        let loopback = Url::parse("http://127.0.0.1:4000/introspect").unwrap();
        assert!(matches!(
            introspection_request(&loopback, "t", None, &IntrospectionAuth::None),
            Err(OAuthError::Url(_))
        ));
        assert!(revocation_request(
            &loopback,
            "t",
            TokenTypeHint::AccessToken,
            &RevocationAuth::Public {
                client_id: "c".to_owned()
            }
        )
        .is_err());
        assert!(introspection_request_with(
            &loopback,
            "t",
            None,
            &IntrospectionAuth::None,
            InsecureHttp::AllowLoopback
        )
        .is_ok());
        assert!(matches!(
            introspection_request(&endpoint(), "", None, &IntrospectionAuth::None),
            Err(OAuthError::Config { field: "token", .. })
        ));
        assert!(matches!(
            revocation_request(
                &http_remote,
                "t",
                TokenTypeHint::AccessToken,
                &RevocationAuth::Public {
                    client_id: "c".into()
                }
            ),
            Err(RevocationError::Failed(OAuthError::Url(_)))
        ));
    }

    /// SC-6.3: numeric dates may be fractional; strings are refused.
    #[test]
    fn sc_6_3_numeric_dates() {
        let r = parse_introspection_response(response(
            200,
            r#"{"active":true,"exp":1700000000.9,"iat":1699990000}"#,
        ))
        .unwrap();
        assert_eq!(
            r.expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert!(r.is_active_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_999_999)));
        assert!(!r.is_active_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        for body in [
            r#"{"active":true,"exp":"1700000000"}"#,
            r#"{"active":true,"iat":-1}"#,
            r#"{"active":true,"aud":[1]}"#,
            r#"{"active":true,"scope":["a"]}"#,
        ] {
            assert!(
                matches!(
                    parse_introspection_response(response(200, body)),
                    Err(OAuthError::InvalidResponse { .. })
                ),
                "{body}"
            );
        }
    }

    /// RFC 6749 §5.2: a 2xx introspection or revocation response with an `error` member is
    /// refused as the error it is, even beside `"active": true`; its text is bounded and
    /// printable.
    #[test]
    fn success_status_with_error_member_is_refused() {
        let body = r#"{"active":true,"scope":"x","error":"invalid_token","error_description":"no\u001b[2J"}"#;
        let e = parse_introspection_response(response(200, body)).unwrap_err();
        match &e {
            OAuthError::Server {
                status: 200,
                code,
                description,
                ..
            } => {
                assert_eq!(code.as_str(), "invalid_token");
                assert_eq!(description.as_deref(), Some("no [2J"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = parse_introspection_response(response(200, r#"{"error":7}"#)).unwrap_err();
        assert!(matches!(e, OAuthError::InvalidResponse { .. }), "{e:?}");
        let e =
            parse_revocation_response(response(200, r#"{"error":"invalid_client"}"#)).unwrap_err();
        assert!(
            matches!(&e, RevocationError::Failed(o) if o.is_invalid_client()),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        // A success body that is not an error response is still ignored (RFC 7009 §2.2).
        assert!(parse_revocation_response(response(200, r#"{"revoked":true}"#)).is_ok());
        assert!(parse_revocation_response(response(200, "<html>ok</html>")).is_ok());
    }

    /// SC-6.6: Retry-After in seconds is read; an HTTP-date is not guessed at.
    #[test]
    fn sc_6_6_retry_after() {
        let with_header = |v: &str| {
            http::Response::builder()
                .status(503)
                .header(RETRY_AFTER, v)
                .body(Bytes::new())
                .unwrap()
        };
        let e = parse_revocation_response(with_header("30")).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "the revocation endpoint is unavailable (HTTP 503); retry after 30 s"
        );
        let e =
            parse_revocation_response(with_header("Wed, 21 Oct 2015 07:28:00 GMT")).unwrap_err();
        assert!(e.is_retryable() && e.retry_after().is_none());
        let e = parse_revocation_response(response(429, "")).unwrap_err();
        assert!(matches!(
            e,
            RevocationError::Unavailable { status: 429, .. }
        ));
        assert!(parse_revocation_response(response(204, "")).is_ok());
    }
}
