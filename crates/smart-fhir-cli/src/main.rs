//! `smart-fhir`: the command-line tool for the people who register, test and debug SMART on
//! FHIR clients.
//!
//! Exit codes: 0 success; 1 a failure, with a one-line reason on stderr; 2 bad usage.
#![forbid(unsafe_code)]
// Dependencies the program does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
// Doc comments here are also the `--help` text, where a bare URL reads best.
#![allow(rustdoc::bare_urls)]

/// `println!` that does not panic when stdout is closed (e.g. piped into `head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod credentials;
mod export;
mod fhir;
mod files;
mod keys;
mod login;
mod loopback;
mod scope;
mod server;
mod store;
mod tracing_output;
mod transport;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Register, test and debug SMART on FHIR clients.
#[derive(Debug, Parser)]
#[command(name = "smart-fhir", version, about, max_term_width = 100)]
struct Cli {
    /// Show what the libraries do on stderr (requests, tokens fetched, cache hits; never a
    /// secret): -v info, -vv debug, -vvv trace. RUST_LOG, if set, adds its own directives.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a signing key: a PKCS#8 private key (mode 0600) and, if asked, its public JWKS.
    Keygen(keys::KeygenArgs),
    /// Print the public JWKS of a private key (PEM, JWK or JWKS): what you register with a server.
    Jwks(keys::JwksArgs),
    /// Print one signed client assertion (private_key_jwt), for debugging a token endpoint.
    Assertion(keys::AssertionArgs),
    /// Parse, normalise and compare SMART scopes.
    #[command(subcommand)]
    Scope(scope::ScopeCommand),
    /// Fetch and show a server's SMART configuration.
    Discover(server::DiscoverArgs),
    /// Get a Backend Services access token (client credentials with a signed assertion).
    Token(server::TokenArgs),
    /// Read a resource, a version, or any path under the base (e.g. Patient/123, metadata).
    Get(fhir::GetArgs),
    /// Search a resource type (GET, or POST _search with --post); --all follows paging.
    Search(fhir::SearchArgs),
    /// Create a resource from a file or stdin.
    Create(fhir::CreateArgs),
    /// Update a resource from a file or stdin (optionally version-aware).
    Update(fhir::UpdateArgs),
    /// Apply a JSON Patch from a file or stdin.
    Patch(fhir::PatchArgs),
    /// Delete a resource.
    Delete(fhir::DeleteArgs),
    /// Show the history of a resource or a type.
    History(fhir::HistoryArgs),
    /// Send a batch or transaction Bundle from a file or stdin.
    Batch(fhir::BatchArgs),
    /// Run a Bulk Data export into a directory.
    Export(export::ExportArgs),
    /// Sign in with a browser (SMART standalone launch, loopback redirect) and save the session
    /// for the FHIR commands' --session.
    Login(login::LoginArgs),
    /// Revoke the saved session's tokens and delete it.
    Logout(login::LogoutArgs),
}

/// A failure: printed as one line on stderr, exit code 1.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// A failure from an error and its whole source chain, on one line. A server certificate
    /// of an unknown issuer (the library says to add the CA as a trusted root) names the
    /// option that does it.
    pub fn from_error(context: &str, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut line = format!("{context}: {}", smart_fhir_core::text::error_chain(e));
        if smart_fhir_http::is_unknown_issuer(e) {
            line.push_str(" (with the CA's certificate in a PEM file: --ca-cert FILE)");
        }
        Self(line)
    }
}

/// The CLI's result type.
pub type Result<T> = std::result::Result<T, Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = tracing_output::init(cli.verbose).and_then(|()| run(cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message)) => {
            let one_line: String = message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            eprintln!("smart-fhir: {one_line}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<u8> {
    match command {
        Command::Keygen(a) => keys::keygen(a),
        Command::Jwks(a) => keys::jwks(a),
        Command::Assertion(a) => keys::assertion(a),
        Command::Scope(c) => scope::run(c),
        Command::Discover(a) => server::discover(a),
        Command::Token(a) => server::token(a),
        Command::Get(a) => fhir::get(a),
        Command::Search(a) => fhir::search(a),
        Command::Create(a) => fhir::create(a),
        Command::Update(a) => fhir::update(a),
        Command::Patch(a) => fhir::patch(a),
        Command::Delete(a) => fhir::delete(a),
        Command::History(a) => fhir::history(a),
        Command::Batch(a) => fhir::batch(a),
        Command::Export(a) => export::export(a),
        Command::Login(a) => login::login(a),
        Command::Logout(a) => login::logout(a),
    }
}
