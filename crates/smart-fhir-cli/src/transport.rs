//! How every server command connects: the `--insecure-http` and `--ca-cert` options, the HTTP
//! transport they make, and the async runtime the commands run on.

use std::path::PathBuf;

use clap::{ArgAction, Args};
use smart_fhir_core::{FhirBaseUrl, InsecureHttp, SharedHttpClient, UrlError};
use smart_fhir_http::HyperHttpClient;

use crate::{Failure, Result};

/// Options every server command shares.
#[derive(Debug, Args)]
pub(crate) struct Transport {
    /// Allow plain http:// to a loopback host (development only). The variable takes
    /// `loopback` (or `deny`).
    #[arg(long, env = "SMART_INSECURE_HTTP", action = ArgAction::SetTrue, value_parser = parse_insecure_http)]
    insecure_http: bool,
    /// An extra root certificate (PEM) to trust, for servers on a private PKI.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
}

/// `--insecure-http` (clap passes `true`), or `SMART_INSECURE_HTTP` with the values the library
/// takes: `loopback` or `deny`.
fn parse_insecure_http(value: &str) -> std::result::Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "loopback" => Ok(true),
        "false" | "deny" | "" => Ok(false),
        _ => Err("expected `loopback` or `deny`".to_owned()),
    }
}

impl Transport {
    fn policy(&self) -> InsecureHttp {
        if self.insecure_http {
            InsecureHttp::AllowLoopback
        } else {
            InsecureHttp::Deny
        }
    }

    /// A FHIR base URL, checked against `--insecure-http`.
    pub(crate) fn base(&self, text: &str) -> Result<FhirBaseUrl> {
        FhirBaseUrl::parse_with(text, self.policy()).map_err(|e| match e {
            UrlError::InsecureHttp { .. } if !self.insecure_http => Failure::new(format!(
                "{e}; pass --insecure-http (or set SMART_INSECURE_HTTP=loopback) to allow plain \
                 http:// to a loopback host"
            )),
            e => Failure::new(e.to_string()),
        })
    }

    /// The HTTP transport: HTTPS with the built-in roots (and `--ca-cert`), plain http to a
    /// loopback host with `--insecure-http`.
    pub(crate) fn client(&self) -> Result<SharedHttpClient> {
        let mut b = HyperHttpClient::builder().insecure_http(self.policy());
        if let Some(path) = &self.ca_cert {
            let pem = crate::files::read_file(
                path,
                "a PEM certificate file",
                crate::files::CA_CERT_LIMIT,
            )?;
            b = b.add_root_certificate_pem_from(format!("--ca-cert {}", path.display()), pem);
        }
        let client = b
            .build()
            .map_err(|e| Failure::from_error("cannot set up HTTPS", &e))?;
        Ok(SharedHttpClient::new(client))
    }
}

/// The runtime for the commands that talk to a server.
pub(crate) fn rt() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))
}
