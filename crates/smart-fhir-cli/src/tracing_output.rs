//! The libraries' `tracing` events on stderr, as Rust tools show them: `-v` (repeatable) for the
//! smart-fhir crates, `RUST_LOG` for any directives (`RUST_LOG=smart_fhir_http=trace,hyper=debug`).
//!
//! Nothing is shown without either. Colours only when stderr is a terminal. The events carry no
//! secret, query string or body (the libraries' rule), so `-vvv` output can be pasted into an
//! issue.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::{Failure, Result};

/// The level that `-v` given `count` times shows for the smart-fhir crates (and this tool).
fn verbose_level(count: u8) -> Option<&'static str> {
    match count {
        0 => None,
        1 => Some("info"),
        2 => Some("debug"),
        _ => Some("trace"),
    }
}

/// The filter for `-v` given `verbose` times and `RUST_LOG`; `None` when neither asks for
/// output. `RUST_LOG` wins for a target that both name.
fn filter(verbose: u8, rust_log: Option<&str>) -> Result<Option<EnvFilter>> {
    let rust_log = rust_log.map(str::trim).filter(|v| !v.is_empty());
    if let Some(directives) = rust_log {
        // Checked alone, so that the error is about the variable.
        EnvFilter::builder()
            .parse(directives)
            .map_err(|e| Failure::new(format!("invalid RUST_LOG: {e}")))?;
    }
    // A target prefix: `smart_fhir` covers every `smart_fhir_*` crate and this binary.
    let verbose = verbose_level(verbose).map(|level| format!("smart_fhir={level}"));
    let directives: Vec<&str> = verbose.as_deref().into_iter().chain(rust_log).collect();
    if directives.is_empty() {
        return Ok(None);
    }
    EnvFilter::builder()
        .parse(directives.join(","))
        .map(Some)
        .map_err(|e| Failure::new(format!("invalid RUST_LOG: {e}")))
}

/// Installs the stderr subscriber for `-v` given `verbose` times and `RUST_LOG`, if they ask for
/// output.
pub(crate) fn init(verbose: u8) -> Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let Some(filter) = filter(verbose, rust_log.as_deref())? else {
        return Ok(());
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| Failure::new(format!("cannot set up -v output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(verbose: u8, rust_log: Option<&str>) -> Option<String> {
        filter(verbose, rust_log).unwrap().map(|f| f.to_string())
    }

    #[test]
    fn each_v_shows_one_level_more_of_the_smart_fhir_crates() {
        assert_eq!(shown(0, None), None);
        assert_eq!(shown(0, Some("  ")), None);
        assert_eq!(shown(1, None).as_deref(), Some("smart_fhir=info"));
        assert_eq!(shown(2, None).as_deref(), Some("smart_fhir=debug"));
        assert_eq!(shown(3, None).as_deref(), Some("smart_fhir=trace"));
        assert_eq!(shown(7, None).as_deref(), Some("smart_fhir=trace"));
    }

    #[test]
    fn rust_log_adds_directives_and_wins_for_the_same_target() {
        let f = shown(1, Some("hyper=debug")).unwrap();
        assert!(
            f.contains("hyper=debug") && f.contains("smart_fhir=info"),
            "{f}"
        );
        let f = shown(3, Some("smart_fhir=warn")).unwrap();
        assert_eq!(f, "smart_fhir=warn");
        assert_eq!(shown(0, Some("info")).as_deref(), Some("info"));
    }

    #[test]
    fn a_malformed_rust_log_is_an_error_naming_it() {
        let e = filter(0, Some("smart_fhir=loud")).unwrap_err();
        assert!(e.0.starts_with("invalid RUST_LOG"), "{}", e.0);
    }
}
