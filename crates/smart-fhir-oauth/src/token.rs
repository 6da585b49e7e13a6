//! The token-endpoint protocol (SC-3.2–3.7): sans-IO request builders and the response parser,
//! and [`exchange`], the one function every grant (client credentials, code exchange, refresh)
//! sends its token request with.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use oauth2::basic::{BasicErrorResponseType, BasicTokenType};
use oauth2::{ExtraTokenFields, StandardErrorResponse, StandardTokenResponse, TokenResponse as _};
use serde::{Deserialize, Serialize};
use smart_fhir_core::{AccessToken, Clock, HttpClient, IdToken, MaxResponseBytes, RefreshToken};
use smart_fhir_store::StoredToken;
use tracing::Instrument as _;
use url::Url;

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

/// Every member of the token response that is not a standard OAuth field: SMART launch context
/// (`patient`, `encounter`, `fhirContext`…), `id_token`, and any extension, kept whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ExtraFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl ExtraTokenFields for ExtraFields {}

type SmartTokenResponse = StandardTokenResponse<ExtraFields, BasicTokenType>;
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
}

/// Parses a token-endpoint response (SC-3.4–3.7).
///
/// * `2xx` with a JSON body: `access_token` and `token_type` (case-insensitive `bearer`) required;
///   `expires_in` optional (missing: [`DEFAULT_LIFETIME_WITHOUT_EXPIRES_IN`]); `scope` optional (missing:
///   the requested scope, RFC 6749 §5.1); a `refresh_token` kept if sent but never required (SC-3.6).
/// * any other status: an RFC 6749 §5.2 error body (`invalid_client` may come as 401, SC-3.7), or a
///   bounded excerpt when the body is not one.
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
    // A JSON error body with a 200 status happens on some servers; report it as the error it is.
    if let Ok(err) = serde_json::from_slice::<SmartErrorResponse>(&body) {
        if !body_has_access_token(&body) {
            return Err(server_error(status, err));
        }
    }
    let parsed: SmartTokenResponse =
        serde_json::from_slice(&body).map_err(|e| OAuthError::InvalidResponse {
            status: status.as_u16(),
            reason: describe_json_error(&e),
        })?;
    match parsed.token_type() {
        BasicTokenType::Bearer => {}
        other => {
            return Err(OAuthError::InvalidResponse {
                status: status.as_u16(),
                reason: format!(
                    "token_type is {:?}, expected Bearer",
                    token_type_name(other)
                ),
            })
        }
    }
    let access = parsed.access_token().secret();
    if access.is_empty() {
        return Err(OAuthError::InvalidResponse {
            status: status.as_u16(),
            reason: "access_token is empty".to_owned(),
        });
    }
    let expires_in = parsed.expires_in();
    // A lifetime beyond a year is taken as a year: an absurd `expires_in` must neither overflow
    // the clock (which would make the token look expired at once) nor pin a token for ever.
    let lifetime = expires_in
        .unwrap_or(DEFAULT_LIFETIME_WITHOUT_EXPIRES_IN)
        .min(MAX_TOKEN_LIFETIME);
    let expires_at = now.checked_add(lifetime).unwrap_or(now);
    let scope = match parsed.scopes() {
        Some(scopes) => scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        None => requested_scope.to_owned(),
    };
    let extra = parsed.extra_fields().clone();
    let mut token = StoredToken::new(AccessToken::new(access.as_str()), now, expires_at)
        .with_token_type("Bearer")
        .with_scope(scope)
        .with_launch_context(extra.rest);
    if let Some(rt) = parsed.refresh_token() {
        token = token.with_refresh_token(RefreshToken::new(rt.secret().as_str()));
    }
    if let Some(id) = extra.id_token {
        token = token.with_id_token(IdToken::new(id));
    }
    Ok(TokenResponse {
        token,
        expires_in_given: expires_in.is_some(),
    })
}

fn body_has_access_token(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("access_token").map(|_| ()))
        .is_some()
}

fn token_type_name(t: &BasicTokenType) -> String {
    match t {
        BasicTokenType::Bearer => "Bearer".to_owned(),
        BasicTokenType::Mac => "MAC".to_owned(),
        BasicTokenType::Extension(s) => s.chars().take(40).collect(),
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
        // Shown in `Display`: bounded, and control characters replaced so that a server cannot
        // write lines of its own into a log.
        BasicErrorResponseType::Extension(s) => OAuthErrorCode::Other(
            s.chars()
                .take(80)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        ),
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

    #[test]
    fn error_excerpt_is_bounded() {
        let big = "x".repeat(10 * 1024 * 1024);
        let e = parse_token_response(response(503, &big), now(), "").unwrap_err();
        assert!(e.to_string().len() < 400);
    }
}
