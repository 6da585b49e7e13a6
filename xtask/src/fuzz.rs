//! `cargo xtask fuzz [--seconds N] [--runs N] [--smoke] [--no-sanitizer] [TARGET...]`: builds the cargo-fuzz targets of
//! `fuzz/` once, runs each (all of them when none is named) on its seeds and working corpus,
//! and prints what libFuzzer reports: executions, executions per second, corpus size, crashes.
//!
//! * cargo-fuzz is installed with `cargo install --locked` when missing.
//! * The sanitizer build needs compiler features that only nightly enables; the stable
//!   toolchain accepts them with `RUSTC_BOOTSTRAP=1` (and ships the sanitizer runtimes), so
//!   the build runs with it, in release mode with debug assertions (overflow checks included).
//!   `--smoke` (CI's short run) builds the dev profile without a sanitizer instead: the library
//!   has no `unsafe`, and that build takes a fraction of the time; long runs use the default.
//! * `fuzz/seeds/<target>/` (committed, small) is copied into `fuzz/corpus/<target>/` (the
//!   working corpus, ignored by git) before each run; libFuzzer adds what it finds there.
//! * A crash (panic, failed invariant, timeout, out-of-memory) fails the command; the input
//!   is in `fuzz/artifacts/<target>/`, named in the message. Reproduce it with
//!   `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>` in the workspace root.
//! * Without `--seconds` or `--runs` each target runs 60 seconds; with both, it stops at the
//!   first limit reached.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, cargo, run, Result};

/// The target triple cargo-fuzz builds for on this platform.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// How long one input may take before libFuzzer reports it as a timeout (a crash).
const INPUT_TIMEOUT_SECS: u32 = 20;

/// The limits of a run: per target, seconds and/or executions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    /// Stop each target after this long.
    pub(crate) seconds: Option<u64>,
    /// Stop each target after this many executions.
    pub(crate) runs: Option<u64>,
    /// A smoke build: the dev profile (debug assertions on) without a sanitizer, which compiles
    /// in a fraction of the release + address-sanitizer build's time; for CI's short run.
    pub(crate) smoke: bool,
    /// A release build without the address sanitizer (`--no-sanitizer`): several times more
    /// executions per second; the library has no `unsafe`, so what the sanitizer adds is a check
    /// of the dependencies' `unsafe` code.
    pub(crate) no_sanitizer: bool,
}

/// What one target's run reported.
#[derive(Debug, Default)]
struct Outcome {
    target: String,
    executions: u64,
    exec_per_sec: u64,
    wall: Duration,
    corpus: usize,
    crashes: Vec<PathBuf>,
    failed: bool,
}

/// Parses `cargo xtask fuzz` arguments (after `fuzz`) and runs.
pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut limits = Limits::default();
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a whole number"))
        };
        match arg.as_str() {
            "--seconds" => limits.seconds = Some(number("--seconds")?),
            "--runs" => limits.runs = Some(number("--runs")?),
            "--smoke" => limits.smoke = true,
            "--no-sanitizer" => limits.no_sanitizer = true,
            s if s.starts_with('-') => return Err(format!("fuzz: unknown option {s}")),
            s => targets.push(s.to_owned()),
        }
    }
    if limits.seconds.is_none() && limits.runs.is_none() {
        limits.seconds = Some(60);
    }
    fuzz(&limits, &targets)
}

/// Builds once, then runs `targets` (every target when empty) with `limits`.
pub(crate) fn fuzz(limits: &Limits, targets: &[String]) -> Result<()> {
    let started = Instant::now();
    util::step("cargo fuzz");
    if !util::has_cargo_subcommand("fuzz") {
        eprintln!("cargo-fuzz is missing: installing it with cargo install --locked");
        run(cargo().args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let all = all_targets()?;
    let chosen: Vec<String> = if targets.is_empty() {
        all.iter().cloned().collect()
    } else {
        for t in targets {
            if !all.contains(t) {
                return Err(format!(
                    "fuzz: no target {t} (the targets: {})",
                    all.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        targets.to_vec()
    };
    let build_started = Instant::now();
    // One build for every target (cargo fuzz build builds them all).
    let build: &[&str] = if limits.smoke {
        &["fuzz", "build", "--dev", "--sanitizer", "none"]
    } else if limits.no_sanitizer {
        &["fuzz", "build", "--debug-assertions", "--sanitizer", "none"]
    } else {
        &["fuzz", "build", "--debug-assertions"]
    };
    run(cargo().args(build).env("RUSTC_BOOTSTRAP", "1"))?;
    eprintln!("fuzz build: {:.0?}", build_started.elapsed());

    let mut outcomes = Vec::new();
    for target in &chosen {
        eprintln!("fuzz {target}: running");
        let outcome = run_target(target, limits)?;
        eprintln!(
            "fuzz {target}: {} executions in {:.0?}{}",
            outcome.executions,
            outcome.wall,
            if outcome.crashes.is_empty() && !outcome.failed {
                String::new()
            } else {
                " — CRASH".to_owned()
            }
        );
        outcomes.push(outcome);
    }
    println!("{}", table(&outcomes));
    eprintln!("xtask fuzz: {:.0?} in all", started.elapsed());
    let crashed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.failed || !o.crashes.is_empty())
        .map(|o| {
            let artifacts: Vec<String> =
                o.crashes.iter().map(|p| p.display().to_string()).collect();
            if artifacts.is_empty() {
                format!(
                    "{} (see fuzz/artifacts/{}/last-run.log)",
                    o.target, o.target
                )
            } else {
                format!("{} ({})", o.target, artifacts.join(", "))
            }
        })
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz: crash in {}", crashed.join("; ")))
    }
}

fn fuzz_dir() -> PathBuf {
    util::root().join("fuzz")
}

/// The targets: the files of `fuzz/fuzz_targets/`.
fn all_targets() -> Result<BTreeSet<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect())
}

/// Copies the committed seeds into the working corpus (files already there are kept).
fn seed_corpus(target: &str, corpus: &Path) -> Result<()> {
    fs::create_dir_all(corpus).map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
    let seeds = fuzz_dir().join("seeds").join(target);
    let Ok(entries) = fs::read_dir(&seeds) else {
        return Ok(());
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let to = corpus.join(format!("seed-{}", entry.file_name().to_string_lossy()));
        if !to.exists() {
            fs::copy(entry.path(), &to)
                .map_err(|e| format!("cannot copy {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn files_in(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

fn run_target(target: &str, limits: &Limits) -> Result<Outcome> {
    let dir = fuzz_dir();
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    seed_corpus(target, &corpus)?;
    fs::create_dir_all(&artifacts)
        .map_err(|e| format!("cannot create {}: {e}", artifacts.display()))?;
    let before = files_in(&artifacts);
    let profile = if limits.smoke { "debug" } else { "release" };
    let binary = dir.join("target").join(TRIPLE).join(profile).join(target);
    let mut cmd = Command::new(&binary);
    cmd.arg(&corpus)
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(s) = limits.seconds {
        cmd.arg(format!("-max_total_time={s}"));
    }
    if let Some(n) = limits.runs {
        cmd.arg(format!("-runs={n}"));
    }
    let started = Instant::now();
    let output = cmd
        .output()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let wall = started.elapsed();
    let log = String::from_utf8_lossy(&output.stderr);
    let log_path = artifacts.join("last-run.log");
    fs::write(&log_path, log.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let mut outcome = Outcome {
        target: target.to_owned(),
        wall,
        corpus: files_in(&corpus).len(),
        failed: !output.status.success(),
        ..Outcome::default()
    };
    parse_stats(&log, &mut outcome);
    outcome.crashes = files_in(&artifacts)
        .into_iter()
        .filter(|p| !before.contains(p) && p != &log_path)
        .collect();
    if outcome.failed {
        // Show the end of the log: the panic message and libFuzzer's report.
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines.len().saturating_sub(40);
        eprintln!("{}", lines[tail..].join("\n"));
    }
    Ok(outcome)
}

/// Reads libFuzzer's `-print_final_stats=1` lines (`stat::name: value`).
fn parse_stats(log: &str, outcome: &mut Outcome) {
    for line in log.lines() {
        let Some((name, value)) = line
            .trim()
            .strip_prefix("stat::")
            .and_then(|rest| rest.split_once(':'))
        else {
            continue;
        };
        let value = value.trim().parse::<u64>().unwrap_or(0);
        match name {
            "number_of_executed_units" => outcome.executions = value,
            "average_exec_per_sec" => outcome.exec_per_sec = value,
            _ => {}
        }
    }
}

fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>12} {:>9} {:>9} {:>8} {:>8}",
        "target", "executions", "exec/s", "wall", "corpus", "crashes"
    );
    for o in outcomes {
        let crashes = if o.failed && o.crashes.is_empty() {
            "failed".to_owned()
        } else {
            o.crashes.len().to_string()
        };
        let _ = writeln!(
            out,
            "{:<22} {:>12} {:>9} {:>8.0}s {:>8} {:>8}",
            o.target,
            o.executions,
            o.exec_per_sec,
            o.wall.as_secs_f64(),
            o.corpus,
            crashes
        );
    }
    out
}
