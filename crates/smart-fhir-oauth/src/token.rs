//! The token-endpoint protocol (SC-3.2–3.7): sans-IO request builders and the response parser,
//! and [`exchange`], the one function every grant (client credentials, code exchange, refresh)
//! sends its token request with.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use oauth2::basic::BasicErrorResponseType;
use oauth2::StandardErrorResponse;
use serde::Deserialize;
use smart_fhir_core::text::printable;
use smart_fhir_core::{AccessToken, Clock, HttpClient, IdToken, MaxResponseBytes, RefreshToken};
use smart_fhir_store::StoredToken;
use tracing::Instrument as _;
use url::Url;
use zeroize::{Zeroize as _, Zeroizing};

pub(crate) use smart_fhir_core::text::describe_json_error;

use crate::error::{excerpt, OAuthError, OAuthErrorCode};

/// `client_assertion_type` for `private_key_jwt` (SC-2.13).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The largest token response read (a token response with an `id_token` and launch context is a
/// few kilobytes; this leaves ample room).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 256 * 1024;

/// The lifetime given to a token whose response has no `expires_in` (SC-3.4: kept short so that an
/// unknown expiry cannot keep a revoked token in use for long).
pub const DEFAULT_LIFETIME_WITHOUT_EXPIRES_IN: Duration = Duration::from_secs(60);

/// The longest lifetime taken from `expires_in`.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Builds the client-credentials token request with a signed assertion (SC-3.2, SC-2.13).
///
/// `scope` is sent as given (space-separated).
pub fn client_credentials_request(
    token_endpoint: &Url,
    scope: &str,
    client_assertion: &str,
) -> Result<http::Request<Bytes>, OAuthError> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", scope)
        .append_pair("client_assertion_type", JWT_BEARER_ASSERTION_TYPE)
        .append_pair("client_assertion", client_assertion)
        .finish();
    form_post(token_endpoint, body)
}

/// Sends a token request built by [`client_credentials_request`],
/// [`code_exchange_request`](crate::launch::code_exchange_request) or
/// [`refresh_request`](crate::launch::refresh_request) and reads the answer with
/// [`parse_token_response`]: the one token exchange of every grant.
///
/// * A redirect is refused, never followed (the request carries a credential).
/// * The token's lifetime is counted from `clock`'s time just before the request is sent, so the
///   computed expiry is never later than the server's.
/// * A `smart_fhir.token_request` span carries the grant, the endpoint's origin and path; one
///   event gives the status, the duration and the number of granted scopes. No token,
///   assertion, code, secret, query or body is logged.
pub async fn exchange(
    http: &dyn HttpClient,
    clock: &dyn Clock,
    request: http::Request<Bytes>,
    requested_scope: &str,
    grant: &'static str,
) -> Result<StoredToken, OAuthError> {
    let uri = request.uri();
    // The origin with its port, without any `user:password@`.
    let authority = uri.authority().map_or("", |a| {
        a.as_str()
            .rsplit_once('@')
            .map_or(a.as_str(), |(_, host)| host)
    });
    let origin = format!("{}://{authority}", uri.scheme_str().unwrap_or(""));
    let span = tracing::debug_span!(
        "smart_fhir.token_request",
        grant,
        origin = %origin,
        path = uri.path(),
    );
    async move {
        let issued_at = clock.now();
        let started = tokio::time::Instant::now();
        let response = match http.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(
                    duration_ms = elapsed_ms(started),
                    kind = ?e.kind(),
                    "token request failed in transport"
                );
                return Err(OAuthError::from(e));
            }
        };
        let status = response.status();
        if status.is_redirection() {
            tracing::debug!(
                status = status.as_u16(),
                duration_ms = elapsed_ms(started),
                "token endpoint redirected; refused"
            );
            return Err(OAuthError::Status {
                status: status.as_u16(),
                excerpt:
                    "the token endpoint redirected; redirects are not followed for token requests"
                        .to_owned(),
            });
        }
        let parsed = parse_token_response(response, issued_at, requested_scope);
        match &parsed {
            Ok(r) => tracing::debug!(
                status = status.as_u16(),
                duration_ms = elapsed_ms(started),
                granted_scopes = r
                    .token
                    .scope
                    .as_deref()
                    .map_or(0, |s| s.split_whitespace().count()),
                expires_in_given = r.expires_in_given,
                scope_given = r.scope_given,
                "token granted"
            ),
            Err(e) => tracing::debug!(
                status = status.as_u16(),
                duration_ms = elapsed_ms(started),
                code = e.oauth_code().map(ToString::to_string),
                "token request refused"
            ),
        }
        parsed.map(|r| r.token)
    }
    .instrument(span)
    .await
}

fn elapsed_ms(started: tokio::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A form `POST` to a token-like endpoint with the usual headers and the response bound.
pub(crate) fn form_post(endpoint: &Url, body: String) -> Result<http::Request<Bytes>, OAuthError> {
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(endpoint.as_str())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(Bytes::from(body))
        .map_err(|e| OAuthError::Config {
            field: "token_endpoint",
            reason: format!("cannot build a request: {e}"),
        })?;
    req.extensions_mut()
        .insert(MaxResponseBytes(MAX_TOKEN_RESPONSE_BYTES));
    Ok(req)
}

/// A token response as it comes off the wire, read member by member.
///
/// The secret members (`access_token`, `refresh_token`, `id_token`) are read straight into
/// zeroizing buffers and moved, not copied, into the secret types of `smart-fhir-core`. The
/// members are read by a visitor of their own rather than a derived struct with a `flatten`ed
/// remainder: `flatten` first copies every member, the tokens included, into serde's untyped
/// buffer, which is freed without being wiped.
#[derive(Default)]
struct WireTokenResponse {
    access_token: Option<Zeroizing<String>>,
    refresh_token: Option<Zeroizing<String>>,
    id_token: Option<Zeroizing<String>>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    scope: Option<String>,
    /// The RFC 6749 §5.2 members, whatever their type: a response that has `error` is an error
    /// response, whatever else it carries.
    error: Option<serde_json::Value>,
    error_description: Option<serde_json::Value>,
    error_uri: Option<serde_json::Value>,
    /// Every other member: SMART launch context (`patient`, `encounter`, `fhirContext`…) and
    /// any extension, kept whole.
    rest: serde_json::Map<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for WireTokenResponse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WireVisitor)
    }
}

struct WireVisitor;

/// Sets `slot` from the next value, refusing a member sent twice (an ambiguous response).
fn take_once<'de, A, T>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
    seen: &mut bool,
) -> Result<(), A::Error>
where
    A: serde::de::MapAccess<'de>,
    T: Deserialize<'de>,
{
    if std::mem::replace(seen, true) {
        return Err(serde::de::Error::duplicate_field(name));
    }
    *slot = map.next_value()?;
    Ok(())
}

impl<'de> serde::de::Visitor<'de> for WireVisitor {
    type Value = WireTokenResponse;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a token response object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = WireTokenResponse::default();
        let mut seen = [false; 9];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "access_token" => {
                    take_once(&mut map, &mut r.access_token, "access_token", &mut seen[0])?
                }
                "refresh_token" => take_once(
                    &mut map,
                    &mut r.refresh_token,
                    "refresh_token",
                    &mut seen[1],
                )?,
                "id_token" => take_once(&mut map, &mut r.id_token, "id_token", &mut seen[2])?,
                "token_type" => take_once(&mut map, &mut r.token_type, "token_type", &mut seen[3])?,
                "expires_in" => take_once(&mut map, &mut r.expires_in, "expires_in", &mut seen[4])?,
                "scope" => take_once(&mut map, &mut r.scope, "scope", &mut seen[5])?,
                "error" => take_once(&mut map, &mut r.error, "error", &mut seen[6])?,
                "error_description" => take_once(
                    &mut map,
                    &mut r.error_description,
                    "error_description",
                    &mut seen[7],
                )?,
                "error_uri" => take_once(&mut map, &mut r.error_uri, "error_uri", &mut seen[8])?,
                other => {
                    let value = map.next_value::<serde_json::Value>()?;
                    r.rest.insert(other.to_owned(), value);
                }
            }
        }
        Ok(r)
    }
}

type SmartErrorResponse = StandardErrorResponse<BasicErrorResponseType>;

/// A parsed, successful token response.
#[derive(Debug)]
#[non_exhaustive]
pub struct TokenResponse {
    /// The token with its absolute expiry, granted scope, refresh token, id_token and launch
    /// context, as it goes into a `TokenStore`.
    pub token: StoredToken,
    /// Whether the server said how long the token lives (`expires_in`); when it did not, a short
    /// default lifetime was used.
    pub expires_in_given: bool,
    /// Whether the server listed the granted scope (`scope`); when it did not, the token's
    /// scope is the requested one (RFC 6749 §5.1) and
    /// [`StoredToken::scope_given`](smart_fhir_store::StoredToken::scope_given) is `false`.
    pub scope_given: bool,
}

impl TokenResponse {
    /// Whether the server listed the granted scope (see [`TokenResponse::scope_given`]).
    pub fn scope_given(&self) -> bool {
        self.scope_given
    }
}

/// Parses a token-endpoint response (SC-3.4–3.7).
///
/// * A response with an `error` member is an RFC 6749 §5.2 error response, whatever its status
///   (a `200` included) and whatever else it carries: it is refused with the server's `error`,
///   `error_description` and `error_uri`, bounded and printable.
/// * `2xx` with a JSON body: `access_token` and `token_type` (case-insensitive `bearer`) required;
///   `expires_in` optional (missing: [`DEFAULT_LIFETIME_WITHOUT_EXPIRES_IN`]); `scope` optional (missing:
///   the requested scope, RFC 6749 §5.1, with [`TokenResponse::scope_given`] `false`); a
///   `refresh_token` kept if sent but never required (SC-3.6); a member sent twice is refused.
/// * any other status: an RFC 6749 §5.2 error body (`invalid_client` may come as 401, SC-3.7), or a
///   bounded excerpt when the body is not one.
///
/// The tokens are read straight into zeroizing buffers, and a body this function holds alone is
/// wiped once read.
pub fn parse_token_response(
    response: http::Response<Bytes>,
    now: SystemTime,
    requested_scope: &str,
) -> Result<TokenResponse, OAuthError> {
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        return Err(parse_error_body(status, &body));
    }
    if looks_like_html(&body) {
        return Err(OAuthError::InvalidResponse {
            status: status.as_u16(),
            reason: "the body is HTML, not a JSON token response".to_owned(),
        });
    }
    let (parsed, _wiped) = read_then_wipe(body, |bytes| {
        serde_json::from_slice::<WireTokenResponse>(bytes)
    });
    let parsed = parsed.map_err(|e| OAuthError::InvalidResponse {
        status: status.as_u16(),
        reason: describe_json_error(&e),
    })?;
    token_from_wire(parsed, status, now, requested_scope)
}

/// Runs `read` on `body`, then overwrites the body with zeros when this is its only owner, and
/// returns the wiped buffer (`None` for a body whose buffer is shared with another owner, or
/// static: that one is beyond reach).
fn read_then_wipe<T>(body: Bytes, read: impl FnOnce(&[u8]) -> T) -> (T, Option<bytes::BytesMut>) {
    match body.try_into_mut() {
        Ok(mut owned) => {
            let result = read(&owned);
            owned.as_mut().zeroize();
            (result, Some(owned))
        }
        Err(shared) => (read(&shared), None),
    }
}

fn token_from_wire(
    mut wire: WireTokenResponse,
    status: http::StatusCode,
    now: SystemTime,
    requested_scope: &str,
) -> Result<TokenResponse, OAuthError> {
    let invalid = |reason: String| OAuthError::InvalidResponse {
        status: status.as_u16(),
        reason,
    };
    // RFC 6749 §5.2: an error response, even with a 2xx status and a token beside it.
    if let Some(error) = &wire.error {
        return Err(error_from_members(
            status,
            error,
            wire.error_description.as_ref(),
            wire.error_uri.as_ref(),
        ));
    }
    let token_type = wire
        .token_type
        .take()
        .ok_or_else(|| invalid("the response has no `token_type`".to_owned()))?;
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(invalid(format!(
            "token_type is {:?}, expected Bearer",
            printable(&token_type, 40)
        )));
    }
    let mut access = wire
        .access_token
        .take()
        .ok_or_else(|| invalid("the response has no `access_token`".to_owned()))?;
    if access.is_empty() {
        return Err(invalid("access_token is empty".to_owned()));
    }
    let expires_in = wire.expires_in.map(Duration::from_secs);
    // A lifetime beyond a year is taken as a year: an absurd `expires_in` must neither overflow
    // the clock (which would make the token look expired at once) nor pin a token for ever.
    let lifetime = expires_in
        .unwrap_or(DEFAULT_LIFETIME_WITHOUT_EXPIRES_IN)
        .min(MAX_TOKEN_LIFETIME);
    let expires_at = now.checked_add(lifetime).unwrap_or(now);
    let scope_given = wire.scope.is_some();
    let scope = match &wire.scope {
        Some(scope) => scope.split_whitespace().collect::<Vec<_>>().join(" "),
        None => requested_scope.to_owned(),
    };
    // `take` moves each secret's buffer into its secret type: no copy is left behind.
    let mut token = StoredToken::new(
        AccessToken::new(std::mem::take(&mut *access)),
        now,
        expires_at,
    )
    .with_token_type("Bearer")
    .with_scope(scope)
    .with_scope_given(scope_given)
    .with_launch_context(std::mem::take(&mut wire.rest));
    if let Some(mut rt) = wire.refresh_token.take() {
        token = token.with_refresh_token(RefreshToken::new(std::mem::take(&mut *rt)));
    }
    if let Some(mut id) = wire.id_token.take() {
        token = token.with_id_token(IdToken::new(std::mem::take(&mut *id)));
    }
    Ok(TokenResponse {
        token,
        expires_in_given: expires_in.is_some(),
        scope_given,
    })
}

/// The RFC 6749 §5.2 error of a response that has an `error` member: the code, and the
/// description and URI bounded and printable. A member of the wrong type is named, not shown.
pub(crate) fn error_from_members(
    status: http::StatusCode,
    error: &serde_json::Value,
    description: Option<&serde_json::Value>,
    uri: Option<&serde_json::Value>,
) -> OAuthError {
    let Some(code) = error.as_str() else {
        return OAuthError::InvalidResponse {
            status: status.as_u16(),
            reason: "the response has an `error` member that is not a string".to_owned(),
        };
    };
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .map(|s| excerpt(s.as_bytes()))
    };
    OAuthError::Server {
        status: status.as_u16(),
        code: error_code(code),
        description: text(description),
        uri: text(uri),
    }
}

/// The code of an RFC 6749 §5.2 `error`; an unknown one is kept bounded and without control
/// characters (it is shown in `Display`, so a server cannot write lines of its own into a log).
fn error_code(code: &str) -> OAuthErrorCode {
    match code {
        "invalid_client" => OAuthErrorCode::InvalidClient,
        "invalid_grant" => OAuthErrorCode::InvalidGrant,
        "invalid_request" => OAuthErrorCode::InvalidRequest,
        "invalid_scope" => OAuthErrorCode::InvalidScope,
        "unauthorized_client" => OAuthErrorCode::UnauthorizedClient,
        "unsupported_grant_type" => OAuthErrorCode::UnsupportedGrantType,
        other => OAuthErrorCode::Other(
            other
                .chars()
                .take(80)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        ),
    }
}

/// Turns a non-2xx token-endpoint response into a typed error.
pub(crate) fn parse_error_body(status: http::StatusCode, body: &[u8]) -> OAuthError {
    match serde_json::from_slice::<SmartErrorResponse>(body) {
        Ok(err) => server_error(status, err),
        Err(_) => OAuthError::Status {
            status: status.as_u16(),
            excerpt: excerpt(body),
        },
    }
}

fn server_error(status: http::StatusCode, err: SmartErrorResponse) -> OAuthError {
    let code = match err.error() {
        BasicErrorResponseType::InvalidClient => OAuthErrorCode::InvalidClient,
        BasicErrorResponseType::InvalidGrant => OAuthErrorCode::InvalidGrant,
        BasicErrorResponseType::InvalidRequest => OAuthErrorCode::InvalidRequest,
        BasicErrorResponseType::InvalidScope => OAuthErrorCode::InvalidScope,
        BasicErrorResponseType::UnauthorizedClient => OAuthErrorCode::UnauthorizedClient,
        BasicErrorResponseType::UnsupportedGrantType => OAuthErrorCode::UnsupportedGrantType,
        BasicErrorResponseType::Extension(s) => error_code(s),
    };
    OAuthError::Server {
        status: status.as_u16(),
        code,
        description: err.error_description().map(|d| excerpt(d.as_bytes())),
        uri: err.error_uri().map(|u| excerpt(u.as_bytes())),
    }
}

pub(crate) fn looks_like_html(body: &[u8]) -> bool {
    // JSON never starts with '<'; HTML and XML error pages do.
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> http::Response<Bytes> {
        http::Response::builder()
            .status(status)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// SC-3.2, SC-2.13: the exact form of a client-credentials request.
    #[test]
    fn sc_3_2_request_form() {
        let url = Url::parse("https://auth.example/token").unwrap();
        let req =
            client_credentials_request(&url, "system/Patient.rs system/Observation.rs", "a.b.c")
                .unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri(), "https://auth.example/token");
        assert_eq!(
            req.headers()[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(req.headers()[ACCEPT], "application/json");
        let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body())
            .into_owned()
            .collect();
        assert_eq!(
            form,
            vec![
                ("grant_type".into(), "client_credentials".into()),
                (
                    "scope".into(),
                    "system/Patient.rs system/Observation.rs".into()
                ),
                (
                    "client_assertion_type".into(),
                    JWT_BEARER_ASSERTION_TYPE.into()
                ),
                ("client_assertion".into(), "a.b.c".into()),
            ]
        );
        assert_eq!(
            req.extensions().get::<MaxResponseBytes>(),
            Some(&MaxResponseBytes(MAX_TOKEN_RESPONSE_BYTES))
        );
    }

    /// SC-3.4, SC-3.5: token_type case-insensitive; expires_in longer than 300 s accepted.
    #[test]
    fn sc_3_4_parses_success_case_insensitive_bearer() {
        let r = parse_token_response(
            response(
                200,
                r#"{"access_token":"tok","token_type":"bEaReR","expires_in":3600,"scope":"system/Patient.rs","extra":1}"#,
            ),
            now(),
            "system/Patient.rs system/Observation.rs",
        )
        .unwrap();
        assert!(r.expires_in_given);
        assert_eq!(r.token.access_token.secret(), "tok");
        assert_eq!(r.token.scope.as_deref(), Some("system/Patient.rs"));
        assert_eq!(r.token.expires_at, now() + Duration::from_secs(3600));
        assert_eq!(
            r.token.launch_context.get("extra"),
            Some(&serde_json::json!(1))
        );
    }

    /// SC-3.4: no expires_in → short conservative lifetime; no scope → the requested one.
    #[test]
    fn sc_3_4_missing_expires_in_and_scope() {
        let r = parse_token_response(
            response(200, r#"{"access_token":"tok","token_type":"Bearer"}"#),
            now(),
            "system/*.rs",
        )
        .unwrap();
        assert!(!r.expires_in_given);
        assert_eq!(
            r.token.expires_at,
            now() + DEFAULT_LIFETIME_WITHOUT_EXPIRES_IN
        );
        assert_eq!(r.token.scope.as_deref(), Some("system/*.rs"));
    }

    /// SC-3.5: any `expires_in` is accepted; an absurd one is capped at a year, never overflowing.
    #[test]
    fn sc_3_5_huge_expires_in_is_capped_not_expired() {
        let r = parse_token_response(
            response(
                200,
                r#"{"access_token":"tok","token_type":"Bearer","expires_in":18446744073709551615}"#,
            ),
            now(),
            "",
        )
        .unwrap();
        assert_eq!(r.token.expires_at, now() + MAX_TOKEN_LIFETIME);
        assert!(!r.token.is_expired(now()));
    }

    /// SC-3.6: a refresh token is kept when sent, never required.
    #[test]
    fn sc_3_6_refresh_token_optional() {
        let r = parse_token_response(
            response(
                200,
                r#"{"access_token":"tok","token_type":"Bearer","expires_in":60,"refresh_token":"rt"}"#,
            ),
            now(),
            "",
        )
        .unwrap();
        assert_eq!(r.token.refresh_token.unwrap().secret(), "rt");
    }

    /// SC-3.7, SC-2.15: RFC 6749 §5.2 errors are typed; invalid_client may come with 401.
    #[test]
    fn sc_3_7_error_bodies_are_typed() {
        let e = parse_token_response(
            response(
                401,
                r#"{"error":"invalid_client","error_description":"bad assertion","error_uri":"https://x/doc"}"#,
            ),
            now(),
            "",
        )
        .unwrap_err();
        match &e {
            OAuthError::Server {
                status,
                code,
                description,
                uri,
            } => {
                assert_eq!(*status, 401);
                assert_eq!(*code, OAuthErrorCode::InvalidClient);
                assert_eq!(description.as_deref(), Some("bad assertion"));
                assert_eq!(uri.as_deref(), Some("https://x/doc"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.is_invalid_client());
        for (body, code) in [
            (r#"{"error":"invalid_scope"}"#, OAuthErrorCode::InvalidScope),
            (r#"{"error":"invalid_grant"}"#, OAuthErrorCode::InvalidGrant),
            (
                r#"{"error":"invalid_request"}"#,
                OAuthErrorCode::InvalidRequest,
            ),
            (
                r#"{"error":"unauthorized_client"}"#,
                OAuthErrorCode::UnauthorizedClient,
            ),
            (
                r#"{"error":"unsupported_grant_type"}"#,
                OAuthErrorCode::UnsupportedGrantType,
            ),
            (
                r#"{"error":"slow_down"}"#,
                OAuthErrorCode::Other("slow_down".into()),
            ),
        ] {
            match parse_token_response(response(400, body), now(), "").unwrap_err() {
                OAuthError::Server { code: c, .. } => assert_eq!(c, code, "{body}"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Bad input from the server: a typed error that says what was wrong, and never the token.
    #[test]
    fn broken_server_responses_are_typed_errors() {
        let cases = [
            (200, "<html><body>Login</body></html>", "HTML"),
            (
                200,
                r#"{"access_token":"SECRET-TOKEN","token_type":"Bearer","expires_in":3"#,
                "truncated",
            ),
            (
                200,
                r#"{"access_token":"SECRET-TOKEN","token_type":"Bearer","expires_in":"soon"}"#,
                "invalid type",
            ),
            (200, r#"{"token_type":"Bearer"}"#, "access_token"),
            (200, r#"{"access_token":"SECRET-TOKEN"}"#, "token_type"),
            (
                200,
                r#"{"access_token":"SECRET-TOKEN","token_type":"MAC"}"#,
                "expected Bearer",
            ),
            (200, r#"{"access_token":"","token_type":"Bearer"}"#, "empty"),
            (200, r#"[1,2,3]"#, "unexpected content"),
            (200, "", "truncated"),
            (500, "<html>Internal error</html>", "500"),
            (502, "upstream \u{1b}[31m failed", "502"),
        ];
        for (status, body, expect) in cases {
            let e = parse_token_response(response(status, body), now(), "").unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains(expect), "{body:?}: {shown}");
            assert!(!shown.contains("SECRET-TOKEN"), "{shown}");
            assert!(
                !shown.contains('\u{1b}'),
                "control characters escaped: {shown:?}"
            );
        }
    }

    /// P5, P15: an unknown `error` code is shown bounded and without control characters.
    #[test]
    fn unknown_error_code_is_printable() {
        let body = format!(
            r#"{{"error":"odd\n[ERROR] forged \u001b[31m{}"}}"#,
            "x".repeat(500)
        );
        let e = parse_token_response(response(400, &body), now(), "").unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("odd"), "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.len() < 200, "{}", shown.len());
    }

    /// A transport whose server takes ten seconds to answer `status` with `body`.
    #[derive(Debug)]
    struct Slow {
        clock: smart_fhir_core::FixedClock,
        status: u16,
        body: &'static str,
    }

    #[async_trait::async_trait]
    impl HttpClient for Slow {
        async fn execute(
            &self,
            _request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, smart_fhir_core::HttpError> {
            self.clock.advance(Duration::from_secs(10));
            Ok(response(self.status, self.body))
        }
    }

    fn slow(status: u16, body: &'static str) -> (Slow, smart_fhir_core::FixedClock) {
        let clock = smart_fhir_core::FixedClock::at_unix(1_700_000_000);
        let transport = Slow {
            clock: clock.clone(),
            status,
            body,
        };
        (transport, clock)
    }

    /// SC-3.4: the one token exchange counts a token's lifetime from just before the request
    /// was sent, so the computed expiry is never later than the server's.
    #[tokio::test]
    async fn sc_3_4_exchange_counts_the_lifetime_from_before_the_request() {
        let (http, clock) = slow(
            200,
            r#"{"access_token":"tok","token_type":"Bearer","expires_in":3600}"#,
        );
        let url = Url::parse("https://auth.example/token").unwrap();
        let request = client_credentials_request(&url, "system/*.rs", "a.b.c").unwrap();
        let token = exchange(&http, &clock, request, "system/*.rs", "client_credentials")
            .await
            .unwrap();
        assert_eq!(token.issued_at, now());
        assert_eq!(token.expires_at, now() + Duration::from_secs(3600));
        assert_eq!(clock.now(), now() + Duration::from_secs(10));
    }

    /// SC-3.2: the token exchange never follows a redirect (the request carries a credential).
    #[tokio::test]
    async fn exchange_refuses_redirects() {
        let (http, clock) = slow(307, "");
        let url = Url::parse("https://auth.example/token").unwrap();
        let request = client_credentials_request(&url, "system/*.rs", "a.b.c").unwrap();
        let e = exchange(&http, &clock, request, "system/*.rs", "client_credentials")
            .await
            .unwrap_err();
        assert!(matches!(e, OAuthError::Status { status: 307, .. }), "{e:?}");
        assert!(e.to_string().contains("redirect"), "{e}");
    }

    /// SC-3.7, RFC 6749 §5.2: a 2xx response with an `error` member is the error it says, even
    /// with a token beside it; its text is bounded and printable, and no token is shown.
    #[test]
    fn sc_3_7_success_status_with_error_member_is_refused() {
        let body = format!(
            r#"{{"access_token":"SECRET-TOKEN","token_type":"Bearer","error":"invalid_client","error_description":"bad\n\u001b[31m{}","error_uri":"https://x/doc"}}"#,
            "d".repeat(5000)
        );
        for status in [200, 201, 299] {
            let e = parse_token_response(response(status, &body), now(), "").unwrap_err();
            match &e {
                OAuthError::Server {
                    status: s,
                    code,
                    description,
                    uri,
                } => {
                    assert_eq!(*s, status);
                    assert_eq!(*code, OAuthErrorCode::InvalidClient);
                    let d = description.as_deref().unwrap();
                    assert!(d.starts_with("bad [31mddd"), "{d:?}");
                    assert!(d.chars().count() <= 201, "{}", d.len());
                    assert_eq!(uri.as_deref(), Some("https://x/doc"));
                }
                other => panic!("unexpected {other:?}"),
            }
            let shown = e.to_string();
            assert!(!shown.contains("SECRET-TOKEN") && !shown.chars().any(char::is_control));
        }
        // Without a token, and with an `error` that is not even a string.
        let e = parse_token_response(response(200, r#"{"error":"invalid_grant"}"#), now(), "")
            .unwrap_err();
        assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant));
        let e = parse_token_response(
            response(
                200,
                r#"{"access_token":"SECRET-TOKEN","token_type":"Bearer","error":{"x":1}}"#,
            ),
            now(),
            "",
        )
        .unwrap_err();
        assert!(
            matches!(e, OAuthError::InvalidResponse { status: 200, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("`error`"), "{e}");
    }

    /// SC-5.13, RFC 6749 §5.1: an omitted `scope` defaults to the requested one, and the token
    /// says the server did not list it; a listed one is kept and said to be listed.
    #[test]
    fn sc_5_13_scope_given_is_recorded() {
        let r = parse_token_response(
            response(200, r#"{"access_token":"tok","token_type":"Bearer"}"#),
            now(),
            "system/*.rs",
        )
        .unwrap();
        assert!(!r.scope_given() && !r.token.scope_given);
        assert_eq!(r.token.scope.as_deref(), Some("system/*.rs"));
        let r = parse_token_response(
            response(
                200,
                r#"{"access_token":"tok","token_type":"Bearer","scope":" system/Patient.rs  system/Observation.rs "}"#,
            ),
            now(),
            "system/*.rs",
        )
        .unwrap();
        assert!(r.scope_given() && r.token.scope_given);
        assert_eq!(
            r.token.scope.as_deref(),
            Some("system/Patient.rs system/Observation.rs")
        );
    }

    /// Every member read: secrets into their types, the rest into the launch context; a
    /// member sent twice is refused rather than guessed at.
    #[test]
    fn secrets_are_read_into_their_types_and_duplicates_refused() {
        let r = parse_token_response(
            response(
                200,
                r#"{"access_token":"a\u0062c","token_type":"Bearer","refresh_token":"rt","id_token":"x.y.z","patient":"123","expires_in":null,"scope":null}"#,
            ),
            now(),
            "launch",
        )
        .unwrap();
        assert!(r.token.access_token.ct_eq("abc"));
        assert!(r.token.refresh_token.as_ref().unwrap().ct_eq("rt"));
        assert!(r.token.id_token.as_ref().unwrap().ct_eq("x.y.z"));
        assert_eq!(r.token.launch_context.len(), 1);
        assert_eq!(r.token.launch_context["patient"], "123");
        assert!(!r.expires_in_given && !r.scope_given);
        let e = parse_token_response(
            response(
                200,
                r#"{"access_token":"SECRET-1","token_type":"Bearer","access_token":"SECRET-2"}"#,
            ),
            now(),
            "",
        )
        .unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("duplicate field `access_token`"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    /// A body this parser holds alone is overwritten once read; a shared one is left alone.
    #[test]
    fn owned_body_is_wiped_after_reading() {
        let body = Bytes::from(br#"{"access_token":"SECRET"}"#.to_vec());
        let (len, wiped) = read_then_wipe(body, <[u8]>::len);
        let wiped = wiped.expect("a body held alone is wiped");
        assert_eq!(wiped.len(), len);
        assert!(wiped.iter().all(|b| *b == 0));
        let shared = Bytes::from(b"SECRET".to_vec());
        let keep = shared.clone();
        let (_, wiped) = read_then_wipe(shared, <[u8]>::len);
        assert!(wiped.is_none());
        assert_eq!(&keep[..], b"SECRET");
    }

    #[test]
    fn error_excerpt_is_bounded() {
        let big = "x".repeat(10 * 1024 * 1024);
        let e = parse_token_response(response(503, &big), now(), "").unwrap_err();
        assert!(e.to_string().len() < 400);
    }
}
