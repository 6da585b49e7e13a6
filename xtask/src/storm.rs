//! `cargo xtask bench storm`: many processes × many callers at token expiry, one shared Redis
//! token store, the real harness (oidc-provider) counting token requests.
//!
//! The storm itself is the integration test `redis_processes`
//! (`p12_storm_8_processes_x_1000_callers_standalone_one_token_request`): 8 OS processes, each
//! with 1,000 concurrent callers of one `BackendServices`, sharing an encrypted
//! `RedisTokenStore` that holds a just-expired token, released at once. This command starts what
//! it needs (the harness and a standalone `redis-server`, each stopped when done), runs that test
//! and prints the figures it reports on its `STORM-FIGURES` line.

use std::process::Stdio;
use std::time::Duration;

use crate::util::{cargo, step, Result};

const TEST: &str = "p12_storm_8_processes_x_1000_callers_standalone_one_token_request";

/// The longest a follower may wait beyond the token request's own time.
const FOLLOWER_SLACK: Duration = Duration::from_millis(50);

/// What the test reported.
#[derive(Debug, PartialEq, Eq)]
struct Figures {
    processes: u64,
    callers: u64,
    requests: u64,
    longest_wait: Duration,
    alone: Duration,
    /// The longest wait in the process served first (the lease holder's): the token request's
    /// own time under the storm.
    holder: Duration,
}

pub(crate) fn storm() -> Result<()> {
    let fx = crate::harness::prepare()?;
    step("bench storm: start Redis (standalone)");
    let redis = crate::redis::start_standalone()?;
    step("bench storm: start the harness");
    let harness = crate::harness::start(fx.config())?;
    step("bench storm: build and run the storm (integration test redis_processes)");
    let out = cargo()
        .args([
            "test",
            "-q",
            "-p",
            "smart-fhir-integration-tests",
            "--features",
            "harness",
            "--test",
            "redis_processes",
            "--",
            "--exact",
            TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(fx.test_env(&harness)?)
        .env("SMART_FHIR_IT_REDIS_URL", redis.url())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start cargo test: {e}"))?;
    drop(harness);
    drop(redis);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figures = stdout.lines().find_map(parse);
    let Some(f) = figures else {
        eprintln!("{stdout}");
        return Err(format!(
            "the storm reported no figures ({}); see its output above",
            out.status
        ));
    };
    // The token request's own time: alone (a quiet machine) or under the storm (the holder's
    // process, which shares the CPU with 8,000 callers), whichever is longer.
    let own = f.alone.max(f.holder);
    let bound = own + FOLLOWER_SLACK;
    let requests_ok = f.requests == 1;
    let wait_ok = f.longest_wait <= bound;
    println!();
    println!("token storm at expiry: one shared Redis token store (standalone, encrypted), the harness's oidc-provider");
    println!("{:<44} {:>12} {:>22}", "", "measured", "target");
    println!("{:<44} {:>12}", "processes", f.processes);
    println!("{:<44} {:>12}", "concurrent callers per process", f.callers);
    println!(
        "{:<44} {:>12} {:>22}",
        "token requests (counted by the harness)",
        f.requests,
        format!("1 {}", verdict(requests_ok))
    );
    println!(
        "{:<44} {:>9} ms",
        "token request's own time, alone (+discovery)",
        ms(f.alone)
    );
    println!(
        "{:<44} {:>9} ms",
        "  ... in the storm (lease holder's process)",
        ms(f.holder)
    );
    println!(
        "{:<44} {:>9} ms {:>22}",
        "longest follower wait (from release to token)",
        ms(f.longest_wait),
        format!("<= {} ms {}", ms(bound), verdict(wait_ok))
    );
    println!(
        "{:<44} {:>9} ms",
        "  follower wait beyond the holder's",
        ms(f.longest_wait.saturating_sub(f.holder))
    );
    if !out.status.success() {
        return Err(format!("the storm test failed ({})", out.status));
    }
    if requests_ok && wait_ok {
        Ok(())
    } else {
        Err("the storm missed its target".to_owned())
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "(met)"
    } else {
        "(MISSED)"
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The figures of a `STORM-FIGURES key=value …` line (libtest may print text before it).
fn parse(line: &str) -> Option<Figures> {
    let at = line.find("STORM-FIGURES ")?;
    let mut processes = None;
    let mut callers = None;
    let mut requests = None;
    let mut longest = None;
    let mut alone = None;
    let mut holder = None;
    for pair in line[at..].split_whitespace().skip(1) {
        let (k, v) = pair.split_once('=')?;
        let n = || v.parse::<u64>().ok();
        match k {
            "processes" => processes = n(),
            "callers" => callers = n(),
            "requests" => requests = n(),
            "longest_wait_us" => longest = n().map(Duration::from_micros),
            "alone_us" => alone = n().map(Duration::from_micros),
            "holder_us" => holder = n().map(Duration::from_micros),
            _ => {}
        }
    }
    Some(Figures {
        processes: processes?,
        callers: callers?,
        requests: requests?,
        longest_wait: longest?,
        alone: alone?,
        holder: holder?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_figures_line_after_libtest_text() {
        let line = "test p12_storm ... STORM-FIGURES mode=standalone processes=8 callers=1000 \
                    requests=1 longest_wait_us=123456 alone_us=100000 holder_us=90000";
        assert_eq!(
            parse(line),
            Some(Figures {
                processes: 8,
                callers: 1000,
                requests: 1,
                longest_wait: Duration::from_micros(123_456),
                alone: Duration::from_micros(100_000),
                holder: Duration::from_micros(90_000),
            })
        );
        assert_eq!(parse("STORM-FIGURES processes=8"), None);
        assert_eq!(parse("nothing here"), None);
    }
}
