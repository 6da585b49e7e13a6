//! `discover` and `token`: the commands that talk to a server.

use std::path::{Path, PathBuf};

use clap::Args;
use smart_fhir_core::{Clock, FhirBaseUrl, SharedHttpClient, SystemClock};
use smart_fhir_discovery::SmartConfiguration;
use smart_fhir_jwt::PrivateKey;
use smart_fhir_oauth::{BackendServices, BackendServicesBuilder, PrivateKeyJwt};
use smart_fhir_store::SharedTokenStore;

use crate::credentials::saved_session;
use crate::keys::{load_key, load_key_text, Alg};
use crate::store::StoreArgs;
use crate::transport::{rt, Transport};
use crate::{Failure, Result};
use smart_fhir_core::text::printable;

/// The variable that holds a private key itself (PEM, JWK or JWKS), as the library's
/// `smart_fhir::Config` reads it. Read only when no key file is given; never a command-line
/// option, so that a key never shows in a process list or a shell history.
const PRIVATE_KEY_VAR: &str = "SMART_PRIVATE_KEY";

/// The private key: the file given (`--key` or `SMART_PRIVATE_KEY_FILE`), else the key itself
/// from `SMART_PRIVATE_KEY`.
fn private_key(file: Option<&Path>, kid: Option<&str>) -> Result<PrivateKey> {
    if let Some(path) = file {
        return load_key(path, kid);
    }
    match std::env::var(PRIVATE_KEY_VAR) {
        Ok(text) if !text.trim().is_empty() => {
            let text = zeroize::Zeroizing::new(text);
            load_key_text(&text, kid, Path::new(PRIVATE_KEY_VAR))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(Failure::new(format!(
            "{PRIVATE_KEY_VAR} is not valid Unicode"
        ))),
        _ => Err(Failure::new(format!(
            "no private key: pass --key (or set SMART_PRIVATE_KEY_FILE or {PRIVATE_KEY_VAR})"
        ))),
    }
}

/// A Backend Services token source from the auth options.
#[allow(clippy::too_many_arguments)]
fn backend_builder(
    base: FhirBaseUrl,
    http: SharedHttpClient,
    client_id: &str,
    scope: &str,
    key: PrivateKey,
    alg: Option<Alg>,
    jku: Option<&str>,
    token_url: Option<&str>,
    store: Option<SharedTokenStore>,
) -> BackendServicesBuilder {
    let mut credential = PrivateKeyJwt::new(key);
    if let Some(alg) = alg {
        credential = credential.algorithm(alg.into());
    }
    if let Some(jku) = jku {
        credential = credential.jku(jku);
    }
    let mut b = BackendServices::builder()
        .fhir_base(base)
        .client_id(client_id)
        .scope(scope)
        .private_key(credential)
        .http_client(http);
    if let Some(url) = token_url {
        b = b.token_endpoint(url);
    }
    if let Some(store) = store {
        b = b.token_store(store);
    }
    b
}

#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// The FHIR base URL, e.g. https://ehr.example/fhir
    #[arg(value_name = "FHIR_BASE")]
    fhir_base: String,
    /// Print the configuration as JSON (endpoints resolved; "source" says where it came from).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    transport: Transport,
}

pub(crate) fn discover(a: DiscoverArgs) -> Result<u8> {
    let base = a.transport.base(&a.fhir_base)?;
    let http = a.transport.client()?;
    let config = rt()?
        .block_on(smart_fhir_discovery::discover(&http, &base))
        .map_err(|e| Failure::from_error(&format!("discovery of {base} failed"), &e))?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&config.to_json()).unwrap_or_default()
        );
    } else {
        print_configuration(&config);
    }
    Ok(0)
}

/// Server text as shown on a terminal: printable, bounded (no escape sequence reaches it).
fn shown(text: &str) -> String {
    printable(text, 300)
}

/// The human view of a configuration. Every string the server sent is shown through
/// [`shown`]; `--json` prints them exactly.
fn print_configuration(c: &SmartConfiguration) {
    let json = c.to_json();
    outln!("FHIR base:       {}", shown(c.base().as_str()));
    outln!("source:          {}", shown(c.source_url().as_str()));
    let endpoints = [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "registration_endpoint",
        "management_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "user_access_brand_bundle",
    ];
    for name in endpoints {
        if let Some(v) = json.get(name).and_then(|v| v.as_str()) {
            outln!(
                "{:<16} {}",
                format!("{}:", name.trim_end_matches("_endpoint")),
                shown(v)
            );
        }
    }
    let list = |v: Option<&[String]>| match v {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|i| printable(i, 100))
            .collect::<Vec<_>>()
            .join(", "),
        Some(_) => "(empty)".to_owned(),
        None => "(not listed)".to_owned(),
    };
    outln!("grant types:     {}", list(c.grant_types_supported()));
    outln!(
        "client auth:     {}",
        list(c.token_endpoint_auth_methods_supported())
    );
    outln!(
        "signing algs:    {}",
        list(c.token_endpoint_auth_signing_alg_values_supported())
    );
    outln!(
        "PKCE methods:    {}",
        list(c.code_challenge_methods_supported())
    );
    match c.scopes_supported() {
        Some(s) => outln!("scopes:          {} listed", s.len()),
        None => outln!("scopes:          (not listed)"),
    }
    match c.capabilities() {
        Some(caps) => {
            outln!("capabilities:");
            for cap in caps {
                outln!("  {}", shown(&cap.to_string()));
            }
        }
        None => {
            outln!("capabilities:    (unknown: the server has no .well-known/smart-configuration)")
        }
    }
    let sets = c.capability_sets();
    if !sets.is_empty() {
        outln!("capability sets met:");
        for s in sets {
            outln!("  {}", shown(&s.to_string()));
        }
    }
    let validation = c.validate();
    for issue in validation.errors() {
        outln!("error:   {}", shown(&issue.to_string()));
    }
    for issue in validation.warnings() {
        outln!("warning: {}", shown(&issue.to_string()));
    }
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The FHIR base URL (its SMART configuration names the token endpoint); not needed with
    /// --token-url.
    #[arg(
        long,
        value_name = "URL",
        env = "SMART_FHIR_BASE",
        required_unless_present = "token_url"
    )]
    fhir_base: Option<String>,
    /// The registered client id.
    #[arg(long, env = "SMART_CLIENT_ID")]
    client_id: String,
    /// The private key file (PEM, JWK or JWKS) whose public key is registered. Without it, the
    /// key itself is read from the variable SMART_PRIVATE_KEY.
    #[arg(long, value_name = "KEYFILE", env = "SMART_PRIVATE_KEY_FILE")]
    key: Option<PathBuf>,
    /// The scopes to request, space-separated (e.g. "system/Patient.rs").
    #[arg(long, value_name = "SCOPES", env = "SMART_SCOPE")]
    scope: String,
    /// The signing algorithm (default: the best that the key and the server share).
    #[arg(long, value_enum)]
    alg: Option<Alg>,
    /// The kid header (default: the key's kid or its RFC 7638 thumbprint); picks a key of a
    /// JWKS.
    #[arg(long, env = "SMART_KID")]
    kid: Option<String>,
    /// The jku header: the client's registered JWKS URL.
    #[arg(long, value_name = "URL", env = "SMART_JKU")]
    jku: Option<String>,
    /// The token endpoint (skips discovery).
    #[arg(long, value_name = "URL", env = "SMART_TOKEN_URL")]
    token_url: Option<String>,
    /// Also print the access token itself.
    #[arg(long)]
    show_token: bool,
    /// Print the result as JSON ("scope_given" says whether the server listed the granted
    /// scope).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    transport: Transport,
}

pub(crate) fn token(a: TokenArgs) -> Result<u8> {
    let base = match (&a.fhir_base, &a.token_url) {
        (Some(base), _) => a.transport.base(base)?,
        // The token source is made for a FHIR server; with only a token endpoint, that
        // endpoint's origin stands for it (no FHIR request is made by `token`).
        (None, Some(token_url)) => a.transport.base(&token_origin(token_url)?)?,
        (None, None) => return Err(Failure::new("--fhir-base or --token-url is required")),
    };
    let http = a.transport.client()?;
    let key = private_key(a.key.as_deref(), a.kid.as_deref())?;
    let store = a.store.token_store()?;
    let backend = backend_builder(
        base,
        http,
        &a.client_id,
        &a.scope,
        key,
        a.alg,
        a.jku.as_deref(),
        a.token_url.as_deref(),
        store,
    )
    .build()
    .map_err(|e| Failure::from_error("invalid token request", &e))?;
    let rt = rt()?;
    let token = rt
        .block_on(backend.token())
        .map_err(|e| Failure::from_error("no token", &e))?;
    let diff = rt
        .block_on(backend.scope_difference())
        .map_err(|e| Failure::from_error("no token", &e))?;
    let endpoint = backend.resolved_token_endpoint().map(|e| e.to_string());
    let report = TokenReport {
        endpoint: endpoint.as_deref(),
        token: &token,
        missing: diff.missing().to_string(),
        expires_in: token.remaining(SystemClock.now()).as_secs(),
        show_token: a.show_token,
    };
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report.json()).unwrap_or_default()
        );
    } else {
        outln!("{}", report.human());
    }
    Ok(0)
}

/// Message shown when the token response had no `scope` (RFC 6749 §5.1).
const SCOPE_NOT_LISTED: &str =
    "the server did not list the granted scope; assuming the requested ones";

/// What `token` prints.
struct TokenReport<'a> {
    endpoint: Option<&'a str>,
    token: &'a smart_fhir_store::StoredToken,
    /// The requested scopes not granted, space-separated.
    missing: String,
    expires_in: u64,
    show_token: bool,
}

impl TokenReport<'_> {
    /// The human view: every server string printable and bounded.
    fn human(&self) -> String {
        let mut lines = Vec::new();
        if let Some(endpoint) = self.endpoint {
            lines.push(format!("token endpoint: {}", shown(endpoint)));
        }
        lines.push(format!(
            "token type:     {}",
            printable(&self.token.token_type, 40)
        ));
        lines.push(format!(
            "granted scope:  {}",
            shown(self.token.scope.as_deref().unwrap_or(""))
        ));
        if !self.token.scope_given {
            lines.push(format!("                ({SCOPE_NOT_LISTED})"));
        }
        if !self.missing.is_empty() {
            lines.push(format!("not granted:    {}", shown(&self.missing)));
        }
        lines.push(format!("expires in:     {} s", self.expires_in));
        if self.show_token {
            lines.push(format!(
                "access token:   {}",
                self.token.access_token.secret()
            ));
        }
        lines.join("\n")
    }

    /// `--json`: the values exactly as received; `scope_given` says whether `scope` is the
    /// server's or the requested one assumed granted.
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "token_endpoint": self.endpoint,
            "token_type": self.token.token_type,
            "scope": self.token.scope,
            "scope_given": self.token.scope_given,
            "not_granted": self.missing.split_whitespace().collect::<Vec<_>>(),
            "expires_in": self.expires_in,
        });
        if self.show_token {
            v["access_token"] = self.token.access_token.secret().into();
        }
        v
    }
}

/// The origin of a token endpoint, as a base URL (`https://host:port/`).
fn token_origin(token_url: &str) -> Result<String> {
    let url = url::Url::parse(token_url.trim())
        .map_err(|e| Failure::new(format!("invalid --token-url: {e}")))?;
    match url.origin() {
        origin @ url::Origin::Tuple(..) => Ok(format!("{}/", origin.ascii_serialization())),
        url::Origin::Opaque(_) => Err(Failure::new(
            "invalid --token-url: it has no origin (expected https://…)",
        )),
    }
}

/// Connection and authorization options shared by every FHIR command (`get`, `search`, …,
/// `export`): the same as `token`, all optional; without `--client-id` the server is used
/// without a token (an open server). Each also reads the `SMART_*` variable the library's
/// `smart_fhir::Config` reads; with `--session` the Backend Services options are not used.
#[derive(Debug, Args)]
pub(crate) struct FhirArgs {
    /// The FHIR base URL (with --session: the session's; if given, it must be the same).
    #[arg(
        long,
        value_name = "URL",
        env = "SMART_FHIR_BASE",
        required_unless_present_any = ["session", "session_file"]
    )]
    pub fhir_base: Option<String>,
    /// Use the session saved by `smart-fhir login` (App Launch) for access tokens, refreshed as
    /// needed.
    // No clap conflict with --client-id: that would also refuse a SMART_CLIENT_ID set in the
    // environment for other commands; the session simply takes precedence.
    #[arg(long)]
    pub session: bool,
    /// With --session: the session file (default: the one `login` writes).
    #[arg(long, value_name = "FILE")]
    pub session_file: Option<PathBuf>,
    /// The registered client id (Backend Services); omit for an open server.
    #[arg(long, env = "SMART_CLIENT_ID", requires = "scope")]
    pub client_id: Option<String>,
    /// The private key file (PEM, JWK or JWKS) whose public key is registered. Without it, the
    /// key itself is read from the variable SMART_PRIVATE_KEY.
    #[arg(long, value_name = "KEYFILE", env = "SMART_PRIVATE_KEY_FILE")]
    pub key: Option<PathBuf>,
    /// The scopes to request, space-separated.
    #[arg(long, value_name = "SCOPES", env = "SMART_SCOPE")]
    pub scope: Option<String>,
    /// The signing algorithm (default: the best that the key and the server share).
    #[arg(long, value_enum)]
    pub alg: Option<Alg>,
    /// The kid header; picks a key of a JWKS.
    #[arg(long, env = "SMART_KID")]
    pub kid: Option<String>,
    /// The jku header: the client's registered JWKS URL.
    #[arg(long, value_name = "URL", env = "SMART_JKU")]
    pub jku: Option<String>,
    /// The token endpoint (skips discovery).
    #[arg(long, value_name = "URL", env = "SMART_TOKEN_URL")]
    pub token_url: Option<String>,
    /// The token store (not used with --session).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub transport: Transport,
}

impl FhirArgs {
    /// A FHIR client for these options, with a Backend Services token source when a client id
    /// is given.
    pub(crate) fn client(&self) -> Result<smart_fhir_http::FhirClient> {
        if self.session || self.session_file.is_some() {
            return self.session_client();
        }
        let Some(fhir_base) = &self.fhir_base else {
            return Err(Failure::new("--fhir-base is required"));
        };
        let base = self.transport.base(fhir_base)?;
        let http = self.transport.client()?;
        let builder = match (&self.client_id, &self.scope) {
            (Some(client_id), Some(scope)) => {
                let key = private_key(self.key.as_deref(), self.kid.as_deref())?;
                let backend = backend_builder(
                    base,
                    http,
                    client_id,
                    scope,
                    key,
                    self.alg,
                    self.jku.as_deref(),
                    self.token_url.as_deref(),
                    self.store.token_store()?,
                )
                .build()
                .map_err(|e| Failure::from_error("invalid token request", &e))?;
                // The token source's server and transport: one connection pool.
                smart_fhir_http::FhirClient::for_token_source(backend)
                    .map_err(|e| Failure::from_error("cannot set up the FHIR client", &e))?
            }
            _ => smart_fhir_http::FhirClient::builder(base).http_client(http),
        };
        builder
            .build()
            .map_err(|e| Failure::from_error("cannot set up the FHIR client", &e))
    }
}

impl FhirArgs {
    /// A FHIR client on the saved App Launch session (`--session`).
    fn session_client(&self) -> Result<smart_fhir_http::FhirClient> {
        let http = self.transport.client()?;
        let session = saved_session(self.session_file.as_deref(), &self.transport, http)?;
        if let Some(given) = &self.fhir_base {
            let base = session.base();
            if &self.transport.base(given)? != base {
                return Err(Failure::new(format!(
                    "the saved session is for {base}, not {given}"
                )));
            }
        }
        // The session names its server and its transport: the client uses both.
        smart_fhir_http::FhirClient::for_token_source(session)
            .and_then(|builder| builder.build())
            .map_err(|e| Failure::from_error("cannot set up the FHIR client", &e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use smart_fhir_core::AccessToken;
    use smart_fhir_store::StoredToken;

    use super::*;

    fn token(scope_given: bool) -> StoredToken {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        StoredToken::new(
            AccessToken::new("SECRET-AT"),
            now,
            now + Duration::from_secs(300),
        )
        .with_scope("system/Patient.rs \u{1b}[2J")
        .with_scope_given(scope_given)
    }

    fn report(token: &StoredToken) -> TokenReport<'_> {
        TokenReport {
            endpoint: Some("https://as.example/token"),
            token,
            missing: String::new(),
            expires_in: 300,
            show_token: false,
        }
    }

    /// SC-5.13, RFC 6749 §5.1: when the server did not list the granted scope, the human
    /// output says that the requested one is assumed, and `--json` says so in a field.
    #[test]
    fn sc_5_13_token_output_says_when_the_scope_was_not_listed() {
        let assumed = token(false);
        let human = report(&assumed).human();
        assert!(human.contains(SCOPE_NOT_LISTED), "{human}");
        assert!(!human.contains('\u{1b}'), "{human:?}");
        assert!(!human.contains("SECRET-AT"));
        let json = report(&assumed).json();
        assert_eq!(json["scope_given"], false);
        assert_eq!(
            json["scope"], "system/Patient.rs \u{1b}[2J",
            "JSON stays exact"
        );
        assert!(json.get("access_token").is_none());

        let listed = token(true);
        let human = report(&listed).human();
        assert!(!human.contains("did not list"), "{human}");
        assert!(
            human.contains("granted scope:  system/Patient.rs [2J"),
            "{human}"
        );
        assert_eq!(report(&listed).json()["scope_given"], true);
    }
}
