//! `discover` and `token`: the commands that talk to a server.

use std::path::PathBuf;

use clap::Args;
use smart_fhir_core::{Clock, FhirBaseUrl, InsecureHttp, SharedHttpClient, SystemClock, UrlError};
use smart_fhir_discovery::SmartConfiguration;
use smart_fhir_http::HyperHttpClient;
use smart_fhir_oauth::{BackendServices, PrivateKeyJwt};

use crate::keys::{load_key, Alg};
use crate::{Failure, Result};

/// Options every server command shares.
#[derive(Debug, Args)]
pub struct Transport {
    /// Allow plain http:// to a loopback host (development only).
    #[arg(long)]
    insecure_http: bool,
    /// An extra root certificate (PEM) to trust, for servers on a private PKI.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
}

impl Transport {
    fn policy(&self) -> InsecureHttp {
        if self.insecure_http {
            InsecureHttp::AllowLoopback
        } else {
            InsecureHttp::Deny
        }
    }

    pub(crate) fn base(&self, text: &str) -> Result<FhirBaseUrl> {
        FhirBaseUrl::parse_with(text, self.policy()).map_err(|e| match e {
            UrlError::InsecureHttp { .. } if !self.insecure_http => Failure::new(format!(
                "{e}; pass --insecure-http to allow plain http:// to a loopback host"
            )),
            e => Failure::new(e.to_string()),
        })
    }

    pub(crate) fn client(&self) -> Result<SharedHttpClient> {
        let mut b = HyperHttpClient::builder().insecure_http(self.policy());
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
            b = b.add_root_certificate_pem(pem);
        }
        let client = b
            .build()
            .map_err(|e| Failure::from_error("cannot set up HTTPS", &e))?;
        Ok(SharedHttpClient::new(client))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The FHIR base URL, e.g. https://ehr.example/fhir
    #[arg(value_name = "FHIR_BASE")]
    fhir_base: String,
    /// Print the configuration as JSON (endpoints resolved; "source" says where it came from).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    transport: Transport,
}

pub fn discover(a: DiscoverArgs) -> Result<u8> {
    let base = a.transport.base(&a.fhir_base)?;
    let http = a.transport.client()?;
    let config = runtime()?
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

fn print_configuration(c: &SmartConfiguration) {
    let json = c.to_json();
    outln!("FHIR base:       {}", c.base());
    outln!("source:          {}", c.source_url());
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
                "{:<16} {v}",
                format!("{}:", name.trim_end_matches("_endpoint"))
            );
        }
    }
    let list = |v: Option<&[String]>| match v {
        Some(items) if !items.is_empty() => items.join(", "),
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
                outln!("  {cap}");
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
            outln!("  {s}");
        }
    }
    let validation = c.validate();
    for issue in validation.errors() {
        outln!("error:   {issue}");
    }
    for issue in validation.warnings() {
        outln!("warning: {issue}");
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The FHIR base URL (its SMART configuration names the token endpoint).
    #[arg(long, value_name = "URL")]
    fhir_base: String,
    /// The registered client id.
    #[arg(long)]
    client_id: String,
    /// The private key (PEM, JWK or JWKS) whose public key is registered.
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// The scopes to request, space-separated (e.g. "system/Patient.rs").
    #[arg(long, value_name = "SCOPES")]
    scope: String,
    /// The signing algorithm (default: the best that the key and the server share).
    #[arg(long, value_enum)]
    alg: Option<Alg>,
    /// The kid header (default: the key's kid or its RFC 7638 thumbprint).
    #[arg(long)]
    kid: Option<String>,
    /// The jku header: the client's registered JWKS URL.
    #[arg(long, value_name = "URL")]
    jku: Option<String>,
    /// The token endpoint (skips discovery).
    #[arg(long, value_name = "URL")]
    token_url: Option<String>,
    /// Also print the access token itself.
    #[arg(long)]
    show_token: bool,
    #[command(flatten)]
    transport: Transport,
}

pub fn token(a: TokenArgs) -> Result<u8> {
    let base = a.transport.base(&a.fhir_base)?;
    let http = a.transport.client()?;
    let mut credential = PrivateKeyJwt::new(load_key(&a.key, a.kid.as_deref())?);
    if let Some(alg) = a.alg {
        credential = credential.algorithm(alg.into());
    }
    if let Some(jku) = a.jku {
        credential = credential.jku(jku);
    }
    let mut b = BackendServices::builder()
        .fhir_base(base)
        .client_id(a.client_id)
        .scope(a.scope)
        .private_key(credential)
        .http_client(http);
    if let Some(url) = a.token_url {
        b = b.token_endpoint(url);
    }
    let backend = b
        .build()
        .map_err(|e| Failure::from_error("invalid token request", &e))?;
    let rt = runtime()?;
    let token = rt
        .block_on(backend.token())
        .map_err(|e| Failure::from_error("no token", &e))?;
    let diff = rt
        .block_on(backend.scope_difference())
        .map_err(|e| Failure::from_error("no token", &e))?;
    if let Some(endpoint) = backend.resolved_token_endpoint() {
        outln!("token endpoint: {endpoint}");
    }
    outln!("token type:     {}", token.token_type);
    outln!("granted scope:  {}", token.scope.as_deref().unwrap_or(""));
    if !diff.missing().is_empty() {
        outln!("not granted:    {}", diff.missing());
    }
    let secs = token.remaining(SystemClock.now()).as_secs();
    outln!("expires in:     {secs} s");
    if a.show_token {
        outln!("access token:   {}", token.access_token.secret());
    }
    Ok(0)
}

/// Connection and authorization options shared by every FHIR command (`get`, `search`, …,
/// `export`): the same as `token`, all optional; without `--client-id` the server is used
/// without a token (an open server).
#[derive(Debug, Args)]
pub struct FhirArgs {
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
    #[arg(long, conflicts_with = "client_id")]
    pub session: bool,
    /// With --session: the session file (default: the one `login` writes).
    #[arg(long, value_name = "FILE", conflicts_with = "client_id")]
    pub session_file: Option<PathBuf>,
    /// The registered client id (Backend Services); omit for an open server.
    #[arg(long, requires_all = ["key", "scope"])]
    pub client_id: Option<String>,
    /// The private key (PEM, JWK or JWKS) whose public key is registered.
    #[arg(long, value_name = "KEYFILE")]
    pub key: Option<PathBuf>,
    /// The scopes to request, space-separated.
    #[arg(long, value_name = "SCOPES")]
    pub scope: Option<String>,
    /// The signing algorithm (default: the best that the key and the server share).
    #[arg(long, value_enum)]
    pub alg: Option<Alg>,
    /// The kid header.
    #[arg(long)]
    pub kid: Option<String>,
    /// The jku header: the client's registered JWKS URL.
    #[arg(long, value_name = "URL")]
    pub jku: Option<String>,
    /// The token endpoint (skips discovery).
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    #[command(flatten)]
    pub transport: Transport,
}

impl FhirArgs {
    /// A FHIR client for these options, with a Backend Services token source when a client id
    /// is given.
    pub fn client(&self) -> Result<smart_fhir_http::FhirClient> {
        if self.session || self.session_file.is_some() {
            return self.session_client();
        }
        let Some(fhir_base) = &self.fhir_base else {
            return Err(Failure::new("--fhir-base is required"));
        };
        let base = self.transport.base(fhir_base)?;
        let http = self.transport.client()?;
        let mut builder =
            smart_fhir_http::FhirClient::builder(base.clone()).http_client(http.clone());
        if let (Some(client_id), Some(key), Some(scope)) = (&self.client_id, &self.key, &self.scope)
        {
            let mut credential = PrivateKeyJwt::new(load_key(key, self.kid.as_deref())?);
            if let Some(alg) = self.alg {
                credential = credential.algorithm(alg.into());
            }
            if let Some(jku) = &self.jku {
                credential = credential.jku(jku.clone());
            }
            let mut b = BackendServices::builder()
                .fhir_base(base)
                .client_id(client_id.clone())
                .scope(scope.clone())
                .private_key(credential)
                .http_client(http);
            if let Some(url) = &self.token_url {
                b = b.token_endpoint(url.clone());
            }
            let backend = b
                .build()
                .map_err(|e| Failure::from_error("invalid token request", &e))?;
            builder = builder.auth(backend);
        }
        builder
            .build()
            .map_err(|e| Failure::from_error("cannot set up the FHIR client", &e))
    }
}

impl FhirArgs {
    /// A FHIR client on the saved App Launch session (`--session`).
    fn session_client(&self) -> Result<smart_fhir_http::FhirClient> {
        let http = self.transport.client()?;
        let (base, session) = crate::login::saved_session(
            self.session_file.as_deref(),
            &self.transport,
            http.clone(),
        )?;
        if let Some(given) = &self.fhir_base {
            if self.transport.base(given)? != base {
                return Err(Failure::new(format!(
                    "the saved session is for {base}, not {given}"
                )));
            }
        }
        smart_fhir_http::FhirClient::builder(base)
            .http_client(http)
            .auth(session)
            .build()
            .map_err(|e| Failure::from_error("cannot set up the FHIR client", &e))
    }
}

/// A runtime for the commands that talk to a server.
pub fn rt() -> Result<tokio::runtime::Runtime> {
    runtime()
}
