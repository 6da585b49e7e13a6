//! Project automation: `cargo xtask <command>`.
//!
//! * `ci`: formatting, clippy, tests, docs, the dependency gate, a fuzz smoke run and the
//!   integration tests: the one test command of the project.
//! * `test`: the workspace's unit and doc tests only.
//! * `integration`: installs and starts the Node harness (`tests/servers/`) and Redis (a
//!   standalone server and a three-master cluster, `redis-server` installed with apt-get when
//!   missing), runs the integration tests against them, and always stops them; then the
//!   browser test (headless Chromium through the `patient-viewer` example, `browser.rs`).
//! * `browser`: the browser test alone.
//! * `demo`: a full Backend Services flow against the harness (the README's first command).
//! * `docs`: every test `docs/CONFORMANCE.md` and `docs/SECURITY.md` cite exists, none is left
//!   pending, and every checklist id a test cites is an item of `docs/CONFORMANCE.md` (`docs.rs`).
//! * `fuzz [--seconds N] [--runs N] [--smoke] [--no-sanitizer] [TARGET...]`: builds the cargo-fuzz targets of `fuzz/`
//!   once (installs cargo-fuzz when missing) and runs each on its seeds and corpus; prints
//!   executions, exec/s, corpus size and crashes per target; a crash fails it (`fuzz.rs`).
//! * `deny`: `cargo deny --offline check bans licenses sources` (installs cargo-deny when missing).
//! * `hack`: `cargo hack check` over each crate's feature combinations (`hack.rs`).
//! * `public-api`: no hyper/rustls type in a public signature of a library crate, read from
//!   rustdoc JSON (`public_api.rs`).
//! * `bench jwt`: client-assertion signatures per second beside `openssl speed`.
//! * `bench http`: authenticated reads through `FhirClient` beside a raw hyper client.
//! * `bench bulk`: a Bulk NDJSON download beside a raw body read, with peak memory.
//! * `bench storm`: 8 processes × 1,000 callers at token expiry on one Redis token store →
//!   token requests counted by the harness, and the longest follower wait.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod bench;
mod browser;
mod docs;
mod fuzz;
mod hack;
mod harness;
mod public_api;
mod redis;
mod storm;
mod util;

use std::process::ExitCode;

use util::{cargo, run, Result};

const USAGE: &str =
    "usage: cargo xtask <ci|test|integration|browser|demo|docs|deny|bench jwt|http|bulk|storm>\n       cargo xtask fuzz [--seconds N] [--runs N] [--smoke] [--no-sanitizer] [TARGET...]";
const USAGE_CHECKS: &str = "       cargo xtask <hack|public-api>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => unit_tests(),
        Some("integration") => harness::integration(),
        Some("demo") => harness::demo(),
        Some("browser") => harness::browser(),
        Some("docs") => docs::check(),
        Some("fuzz") => fuzz::main(&args[1..]),
        Some("deny") => deny(args.iter().any(|a| a == "--advisories")),
        Some("hack") => hack::run_check(),
        Some("public-api") => public_api::run_check(),
        Some("bench") => bench::run(args.get(1).map(String::as_str)),
        _ => {
            eprintln!("{USAGE}");
            eprintln!("{USAGE_CHECKS}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Seconds per fuzz target in `ci`'s smoke run.
const FUZZ_SMOKE_SECONDS: u64 = 3;

fn ci() -> Result<()> {
    let started = std::time::Instant::now();
    util::step("rustfmt");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    docs::check()?;
    util::step("clippy");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    unit_tests()?;
    util::step("rustdoc");
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    deny(false)?;
    hack::run_check()?;
    public_api::run_check()?;
    // A smoke run of every fuzz target (the long runs are `cargo xtask fuzz --runs N`).
    fuzz::fuzz(
        &fuzz::Limits {
            seconds: Some(FUZZ_SMOKE_SECONDS),
            runs: None,
            smoke: true,
            no_sanitizer: true,
        },
        &[],
    )?;
    harness::integration()?;
    eprintln!("xtask ci: all steps passed in {:.0?}", started.elapsed());
    Ok(())
}

fn unit_tests() -> Result<()> {
    util::step("tests");
    // The integration tests need the harness: `integration` runs them.
    run(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "smart-fhir-integration-tests",
        "--all-features",
    ]))
}

fn deny(advisories: bool) -> Result<()> {
    util::step("cargo deny");
    if !util::has_cargo_subcommand("deny") {
        eprintln!("cargo-deny is missing: installing it with cargo install --locked");
        run(cargo().args(["install", "--locked", "cargo-deny"]))?;
    }
    // The offline check reads every package's manifest, for every platform: fetch them first
    // (from crates.io; a no-op when they are already in the local cache).
    run(cargo().args(["fetch", "--quiet"]))?;
    let mut checks = vec!["bans", "licenses", "sources"];
    if advisories {
        checks.push("advisories");
    }
    let mut cmd = cargo();
    cmd.args(["deny"]);
    if !advisories {
        cmd.arg("--offline");
    }
    cmd.args(["check"]).args(checks);
    run(&mut cmd)
}
