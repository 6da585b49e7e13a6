//! `scope parse | normalize | covers`.

use clap::Subcommand;
use smart_fhir_scopes::{Scope, ScopeSet};

use crate::{Failure, Result};

#[derive(Debug, Subcommand)]
pub(crate) enum ScopeCommand {
    /// Parse scopes and print them as JSON (one object per scope).
    Parse {
        /// Scopes; an argument may hold several, separated by spaces.
        #[arg(required = true, value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Print the canonical SMART v2 form: v1 mapped to v2, permissions merged, duplicates removed.
    Normalize {
        /// The scopes, space-separated.
        #[arg(value_name = "SCOPES")]
        scopes: String,
    },
    /// Exit 0 when the granted scopes cover the requested ones; otherwise print what is not
    /// covered and exit 1.
    Covers {
        /// The granted scopes (e.g. a token response's `scope`).
        #[arg(long)]
        granted: String,
        /// The requested scopes.
        #[arg(long)]
        requested: String,
    },
}

pub(crate) fn run(cmd: ScopeCommand) -> Result<u8> {
    match cmd {
        ScopeCommand::Parse { scopes } => {
            let mut out = Vec::new();
            for text in scopes.iter().flat_map(|s| s.split_whitespace()) {
                let scope = Scope::parse(text).map_err(|e| Failure::new(e.to_string()))?;
                let mut json = serde_json::to_value(&scope)
                    .map_err(|e| Failure::new(format!("cannot print {text}: {e}")))?;
                if let Some(obj) = json.as_object_mut() {
                    obj.insert("input".to_owned(), text.into());
                    obj.insert("canonical".to_owned(), scope.to_v2().to_string().into());
                }
                out.push(json);
            }
            outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(0)
        }
        ScopeCommand::Normalize { scopes } => {
            let set = parse_set(&scopes, "scopes")?;
            outln!("{}", set.normalize());
            Ok(0)
        }
        ScopeCommand::Covers { granted, requested } => {
            let granted = parse_set(&granted, "--granted")?;
            let requested = parse_set(&requested, "--requested")?;
            let diff = requested.difference(&granted);
            if diff.missing().is_empty() {
                outln!("covered");
                Ok(0)
            } else {
                outln!("not covered: {}", diff.missing());
                Ok(1)
            }
        }
    }
}

/// Parses leniently (any permission order, as servers write them) but refuses what is not a
/// scope at all, naming it.
fn parse_set(text: &str, what: &str) -> Result<ScopeSet> {
    let lenient = ScopeSet::parse_lenient(text);
    if let Some(bad) = lenient.unrecognized().first() {
        return Err(Failure::new(format!("{what}: {}", bad.error())));
    }
    Ok(lenient.into_scopes())
}
