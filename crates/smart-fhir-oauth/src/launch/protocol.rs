//! Sans-IO App Launch protocol steps: the authorize request, the callback, the code exchange
//! and the refresh request (SC-4.5 – SC-4.18, SC-4.29).

use std::fmt;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use smart_fhir_core::{
    AuthorizationCode, ClientSecret, FhirBaseUrl, PkceCodeVerifier, RefreshToken, Url,
};
use smart_fhir_jwt::{ClientAssertion, CLIENT_ASSERTION_TYPE};
use smart_fhir_pkce::{Nonce, PkceChallenge, State};
use zeroize::Zeroizing;

use crate::error::OAuthError;
use crate::introspect::basic_authorization;
use crate::launch::error::LaunchError;
use crate::token::form_post;

/// The longest callback query accepted (P15).
const MAX_CALLBACK_QUERY: usize = 16 * 1024;

/// The parameters of an authorize request (SC-4.5 – SC-4.9). `response_type=code` and
/// `code_challenge_method=S256` are always sent; `max_age` and `auth_time` never are
/// (SC-4.12).
///
/// ```
/// use smart_fhir_core::{FhirBaseUrl, Url};
/// use smart_fhir_oauth::launch::{authorize_url, AuthorizeParams};
/// use smart_fhir_pkce::{Pkce, State};
///
/// let pkce = Pkce::new()?;
/// let state = State::generate()?;
/// let params = AuthorizeParams::new(
///     Url::parse("https://ehr.example/oauth2/authorize")?,
///     "my-app",
///     "https://app.example/callback",
///     "launch openid fhirUser patient/*.rs",
///     &state,
///     &FhirBaseUrl::parse("https://ehr.example/fhir")?,
///     pkce.challenge().clone(),
/// )
/// .launch("xyz123");
/// let url = authorize_url(&params);
/// assert!(url.as_str().contains("code_challenge_method=S256"));
/// assert!(url.as_str().contains("launch=xyz123"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AuthorizeParams {
    authorization_endpoint: Url,
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Zeroizing<String>,
    aud: String,
    code_challenge: PkceChallenge,
    launch: Option<String>,
    nonce: Option<Zeroizing<String>>,
}

impl fmt::Debug for AuthorizeParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeParams")
            .field(
                "authorization_endpoint",
                &self.authorization_endpoint.as_str(),
            )
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("aud", &self.aud)
            .field("launch", &self.launch.as_ref().map(|_| "[present]"))
            .finish_non_exhaustive()
    }
}

impl AuthorizeParams {
    /// The required parameters. `aud` is the FHIR base URL (SC-4.7).
    pub fn new(
        authorization_endpoint: Url,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        scope: impl Into<String>,
        state: &State,
        aud: &FhirBaseUrl,
        code_challenge: PkceChallenge,
    ) -> Self {
        Self {
            authorization_endpoint,
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            scope: scope.into(),
            state: Zeroizing::new(state.as_str().to_owned()),
            aud: aud.as_str().to_owned(),
            code_challenge,
            launch: None,
            nonce: None,
        }
    }

    /// The EHR launch's `launch` parameter, echoed exactly (SC-4.5).
    pub fn launch(mut self, launch: impl Into<String>) -> Self {
        self.launch = Some(launch.into());
        self
    }

    /// The OpenID Connect `nonce`, sent when `openid` is requested.
    pub fn nonce(mut self, nonce: &Nonce) -> Self {
        self.nonce = Some(Zeroizing::new(nonce.as_str().to_owned()));
        self
    }

    /// The authorization endpoint.
    pub fn authorization_endpoint(&self) -> &Url {
        &self.authorization_endpoint
    }

    /// The parameters in the order they are sent.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", self.scope.clone()),
            ("state", self.state.as_str().to_owned()),
            ("aud", self.aud.clone()),
        ];
        if let Some(launch) = &self.launch {
            fields.push(("launch", launch.clone()));
        }
        fields.push(("code_challenge", self.code_challenge.as_str().to_owned()));
        fields.push(("code_challenge_method", PkceChallenge::METHOD.to_owned()));
        if let Some(nonce) = &self.nonce {
            fields.push(("nonce", nonce.as_str().to_owned()));
        }
        fields
    }
}

/// The authorize URL for a `GET` redirect (SC-4.5, SC-4.10): the endpoint with the parameters
/// appended to any query it already has.
pub fn authorize_url(params: &AuthorizeParams) -> Url {
    let mut url = params.authorization_endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params.fields() {
            query.append_pair(name, &value);
        }
    }
    url
}

/// How the client authenticates a token request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum TokenAuth<'a> {
    /// A public client: `client_id` in the body (SC-2.22, SC-4.30).
    Public {
        /// The client id.
        client_id: &'a str,
    },
    /// `client_secret_basic` (SC-2.18, SC-2.19).
    ClientSecretBasic {
        /// The client id.
        client_id: &'a str,
        /// The secret.
        secret: &'a ClientSecret,
    },
    /// `client_secret_post` (SC-2.21).
    ClientSecretPost {
        /// The client id.
        client_id: &'a str,
        /// The secret.
        secret: &'a ClientSecret,
    },
    /// `private_key_jwt`: an assertion signed for this request, `aud` = the token endpoint
    /// (SC-2.9 – SC-2.13).
    PrivateKeyJwt {
        /// The signed assertion.
        assertion: &'a ClientAssertion,
    },
}

/// The code exchange (SC-4.18): `POST` form `grant_type=authorization_code`, `code`,
/// `redirect_uri` (the one of the authorize request), `code_verifier`, and the client's
/// authentication.
pub fn code_exchange_request(
    token_endpoint: &Url,
    code: &AuthorizationCode,
    redirect_uri: &str,
    code_verifier: &PkceCodeVerifier,
    auth: TokenAuth<'_>,
) -> Result<http::Request<Bytes>, OAuthError> {
    token_request(
        token_endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.secret()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier.secret()),
        ],
        auth,
    )
}

/// The refresh request (SC-4.29, SC-4.30): `POST` form `grant_type=refresh_token`,
/// `refresh_token`, an optional narrower `scope`, and the same client authentication as the
/// code exchange.
pub fn refresh_request(
    token_endpoint: &Url,
    refresh_token: &RefreshToken,
    scope: Option<&str>,
    auth: TokenAuth<'_>,
) -> Result<http::Request<Bytes>, OAuthError> {
    let mut fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.secret()),
    ];
    if let Some(scope) = scope {
        fields.push(("scope", scope));
    }
    token_request(token_endpoint, &fields, auth)
}

fn token_request(
    token_endpoint: &Url,
    fields: &[(&str, &str)],
    auth: TokenAuth<'_>,
) -> Result<http::Request<Bytes>, OAuthError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        form.append_pair(name, value);
    }
    let mut basic = None;
    match auth {
        TokenAuth::Public { client_id } => {
            form.append_pair("client_id", client_id);
        }
        TokenAuth::ClientSecretPost { client_id, secret } => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", secret.secret());
        }
        TokenAuth::ClientSecretBasic { client_id, secret } => {
            basic = Some(basic_authorization(client_id, secret)?);
        }
        TokenAuth::PrivateKeyJwt { assertion } => {
            form.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE);
            form.append_pair("client_assertion", assertion.secret());
        }
    }
    let mut request = form_post(token_endpoint, form.finish())?;
    if let Some(value) = basic {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(request)
}

/// The parameters of an authorize callback (SC-4.14, SC-4.17).
pub(crate) struct Callback {
    pub(crate) state: Option<Zeroizing<String>>,
    pub(crate) iss: Option<String>,
    pub(crate) code: Option<AuthorizationCode>,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
    pub(crate) error_uri: Option<String>,
}

/// Parses the query of the redirect back from the authorization server. A leading `?` is
/// ignored. A response parameter given twice is refused (RFC 6749 §3.1); unknown parameters are
/// ignored.
pub(crate) fn parse_callback(query: &str) -> Result<Callback, LaunchError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    if query.len() > MAX_CALLBACK_QUERY {
        return Err(LaunchError::InvalidCallback {
            reason: format!("the query is longer than {MAX_CALLBACK_QUERY} bytes"),
        });
    }
    let mut cb = Callback {
        state: None,
        iss: None,
        code: None,
        error: None,
        error_description: None,
        error_uri: None,
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let repeated = match name.as_ref() {
            "state" => cb
                .state
                .replace(Zeroizing::new(value.into_owned()))
                .is_some(),
            "iss" => cb.iss.replace(value.into_owned()).is_some(),
            "code" => cb
                .code
                .replace(AuthorizationCode::new(value.into_owned()))
                .is_some(),
            "error" => cb.error.replace(value.into_owned()).is_some(),
            "error_description" => cb.error_description.replace(value.into_owned()).is_some(),
            "error_uri" => cb.error_uri.replace(value.into_owned()).is_some(),
            _ => false,
        };
        if repeated {
            return Err(LaunchError::InvalidCallback {
                reason: format!("the parameter `{name}` is repeated"),
            });
        }
    }
    Ok(cb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use smart_fhir_pkce::Pkce;

    fn form(req: &http::Request<Bytes>) -> Vec<(String, String)> {
        url::form_urlencoded::parse(req.body())
            .into_owned()
            .collect()
    }

    fn endpoint() -> Url {
        Url::parse("https://auth.example/token").unwrap()
    }

    /// SC-4.5, SC-4.7, SC-4.8, SC-4.12: every parameter, the existing query kept, no max_age.
    #[test]
    fn sc_4_5_authorize_url_has_every_parameter() {
        let pkce = Pkce::new().unwrap();
        let state = State::generate().unwrap();
        let nonce = Nonce::generate().unwrap();
        let params = AuthorizeParams::new(
            Url::parse("https://auth.example/authorize?tenant=a").unwrap(),
            "app",
            "https://app.example/cb",
            "launch openid",
            &state,
            &FhirBaseUrl::parse("https://ehr.example/fhir/").unwrap(),
            pkce.challenge().clone(),
        )
        .launch("a b+c&d=é")
        .nonce(&nonce);
        let url = authorize_url(&params);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let expect = [
            ("tenant", "a"),
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb"),
            ("scope", "launch openid"),
            ("state", state.as_str()),
            ("aud", "https://ehr.example/fhir"),
            ("launch", "a b+c&d=é"),
            ("code_challenge", pkce.challenge().as_str()),
            ("code_challenge_method", "S256"),
            ("nonce", nonce.as_str()),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(pairs, expect);
        assert!(!url.as_str().contains("max_age") && !url.as_str().contains("auth_time"));
        assert!(!format!("{params:?}").contains(state.as_str()));
    }

    /// SC-2.18, SC-2.19: the id and secret are form-encoded before they are joined.
    #[test]
    fn sc_2_19_basic_header_encodes_colon_and_percent() {
        let secret = ClientSecret::new("p:ss%w rd");
        let verifier = PkceCodeVerifier::new("v".repeat(43));
        let req = code_exchange_request(
            &endpoint(),
            &AuthorizationCode::new("c0de"),
            "https://app.example/cb",
            &verifier,
            TokenAuth::ClientSecretBasic {
                client_id: "my:app",
                secret: &secret,
            },
        )
        .unwrap();
        let header = &req.headers()[AUTHORIZATION];
        assert!(header.is_sensitive());
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "my%3Aapp:p%3Ass%25w+rd");
        let f = form(&req);
        assert!(!f
            .iter()
            .any(|(k, _)| k == "client_id" || k == "client_secret"));
    }

    /// SC-4.29: refresh form with an optional scope.
    #[test]
    fn sc_4_29_refresh_request_form() {
        let req = refresh_request(
            &endpoint(),
            &RefreshToken::new("rt-1"),
            Some("patient/Observation.rs"),
            TokenAuth::Public { client_id: "app" },
        )
        .unwrap();
        assert_eq!(
            form(&req),
            vec![
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), "rt-1".into()),
                ("scope".into(), "patient/Observation.rs".into()),
                ("client_id".into(), "app".into()),
            ]
        );
        assert!(req.headers().get(AUTHORIZATION).is_none());
    }

    /// SC-4.14: error parameters; RFC 6749 §3.1: repeated parameters refused.
    #[test]
    fn sc_4_14_callback_parsing() {
        let cb = parse_callback("?state=s&error=access_denied&error_description=no+way&error_uri=https%3A%2F%2Fx&extra=1")
            .unwrap();
        assert_eq!(cb.state.as_deref().map(String::as_str), Some("s"));
        assert_eq!(cb.error.as_deref(), Some("access_denied"));
        assert_eq!(cb.error_description.as_deref(), Some("no way"));
        assert_eq!(cb.error_uri.as_deref(), Some("https://x"));
        assert!(cb.code.is_none());
        let e = parse_callback("code=SECRET1&code=SECRET2&state=s")
            .err()
            .unwrap();
        let shown = e.to_string();
        assert!(shown.contains("`code` is repeated"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(parse_callback(&"a".repeat(MAX_CALLBACK_QUERY + 1)).is_err());
    }
}
