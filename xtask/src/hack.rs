//! `cargo xtask hack`: every crate compiles over its feature combinations (`cargo hack`).
//!
//! The crate docs promise features that can be turned on and off (the transport without a
//! crypto provider or root store, the facade without `rustls-ring`, the stores without `file`),
//! yet the rest of CI builds with `--all-features` only. This step checks (`cargo check`, no
//! code generation) each package on its own, so that features are not unified with another
//! package's: every combination of the features of a crate with few features
//! (`--feature-powerset`), and each feature alone for the facade, whose features are many.
//! `--no-dev-deps` leaves the dev-dependencies out, so a feature a test pulls in cannot hide a
//! missing one in the library.

use crate::util::{cargo, output, run, step, Result};

/// Packages whose features are checked one at a time (with none and with all) rather than in
/// every combination: the facade's five features make 32 combinations, and each of its features
/// only forwards to a crate whose own combinations are checked in full.
const EACH_FEATURE_ONLY: &[&str] = &["smart-fhir"];

/// `cargo xtask hack`.
pub(crate) fn run_check() -> Result<()> {
    step("cargo hack (feature combinations)");
    if !crate::util::has_cargo_subcommand("hack") {
        eprintln!("cargo-hack is missing: installing it with cargo install --locked");
        run(cargo().args(["install", "--locked", "cargo-hack"]))?;
    }
    let started = std::time::Instant::now();
    let packages = packages_with_features()?;
    // `default` is itself one of the combinations of the other features: checking it again
    // would only repeat one of them.
    let common = ["--no-dev-deps", "--exclude-features", "default"];
    let mut powerset = cargo();
    powerset.args(["hack", "check", "--feature-powerset"]);
    for package in packages
        .iter()
        .filter(|p| !EACH_FEATURE_ONLY.contains(&p.as_str()))
    {
        powerset.args(["--package", package]);
    }
    run(powerset.args(common))?;
    for package in EACH_FEATURE_ONLY {
        run(cargo()
            .args(["hack", "check", "--each-feature", "--package", package])
            .args(common))?;
    }
    eprintln!("cargo hack: done in {:.0?}", started.elapsed());
    Ok(())
}

/// The workspace members that declare features (the others have one build, which clippy checks).
fn packages_with_features() -> Result<Vec<String>> {
    let meta: serde_json::Value = serde_json::from_str(&output(cargo().args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]))?)
    .map_err(|e| format!("cargo metadata: {e}"))?;
    Ok(meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["features"].as_object().is_some_and(|f| !f.is_empty()))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect())
}
