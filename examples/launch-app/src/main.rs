//! `launch-app`: run the example SMART App Launch web app.
//!
//! ```sh
//! LAUNCH_APP_CLIENT_SECRET=… cargo run -p launch-app -- \
//!     --client-id my-app --redirect-uri http://127.0.0.1:8080/callback \
//!     --issuer https://ehr.example/fhir --listen 127.0.0.1:8080
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use launch_app::{App, Settings, DEFAULT_SCOPE};
use smart_fhir::core::{ClientSecret, UrlError};
use smart_fhir::{FhirBaseUrl, InsecureHttp};

/// A small server-side SMART App Launch web app. The client secret, if any, comes from the
/// environment variable LAUNCH_APP_CLIENT_SECRET only.
#[derive(Debug, Parser)]
#[command(name = "launch-app", max_term_width = 100)]
struct Args {
    /// Where to listen.
    #[arg(long, env = "LAUNCH_APP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The registered client id.
    #[arg(long, env = "LAUNCH_APP_CLIENT_ID")]
    client_id: String,
    /// The registered redirect URI: this app's /callback as the browser reaches it.
    #[arg(long, env = "LAUNCH_APP_REDIRECT_URI", value_name = "URL")]
    redirect_uri: String,
    /// A FHIR server allowed to launch the app (repeat, or comma-separated in the variable).
    #[arg(
        long = "issuer",
        env = "LAUNCH_APP_ISSUERS",
        value_name = "URL",
        value_delimiter = ',',
        required = true
    )]
    issuers: Vec<String>,
    /// The scopes to request, space-separated.
    #[arg(long, env = "LAUNCH_APP_SCOPE", default_value = DEFAULT_SCOPE)]
    scope: String,
    /// Allow plain http:// on loopback hosts (development only).
    #[arg(long, env = "LAUNCH_APP_INSECURE_HTTP")]
    insecure_http: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("launch-app: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let insecure = if args.insecure_http {
        InsecureHttp::AllowLoopback
    } else {
        InsecureHttp::Deny
    };
    let issuers = args
        .issuers
        .iter()
        .map(|i| {
            FhirBaseUrl::parse_with(i.trim(), insecure)
                .map_err(|e: UrlError| format!("--issuer {i}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut settings = Settings::new(args.client_id, args.redirect_uri, issuers);
    settings.scope = args.scope;
    settings.insecure_http = args.insecure_http;
    settings.client_secret = std::env::var("LAUNCH_APP_CLIENT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(ClientSecret::new);
    let app = Arc::new(App::new(settings).map_err(|e| e.to_string())?);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        eprintln!("launch-app: listening on http://{}", args.listen);
        tokio::select! {
            () = launch_app::serve(listener, app) => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
