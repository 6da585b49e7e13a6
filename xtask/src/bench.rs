//! Benchmarks that print figures beside a baseline measured in the same run.

use std::process::Command;

use crate::util::{cargo, output, step, Result};

pub fn run(which: Option<&str>) -> Result<()> {
    match which {
        Some("jwt") => jwt(),
        other => Err(format!(
            "unknown benchmark {other:?}; available: jwt (usage: cargo xtask bench jwt)"
        )),
    }
}

/// Client-assertion signatures per second (RS384 with RSA-2048, ES384 with P-384) on one core,
/// beside `openssl speed` for the same primitives. Each side runs twice, interleaved, and the best
/// of each is compared, so a burst of load from another process on this shared machine skews the
/// ratio less.
fn jwt() -> Result<()> {
    step("bench jwt: build (release)");
    crate::util::run(cargo().args([
        "bench",
        "-p",
        "smart-fhir-jwt",
        "--bench",
        "assertion",
        "--no-run",
    ]))?;
    let mut ours_rs: f64 = 0.0;
    let mut ours_es: f64 = 0.0;
    let mut ossl_rs: f64 = 0.0;
    let mut ossl_es: f64 = 0.0;
    for round in 1..=2 {
        step(&format!("bench jwt: round {round}: openssl speed"));
        let (rs, es) = openssl_speed()?;
        eprintln!("openssl speed: rsa2048 sign/s {rs:.0}, ecdsap384 sign/s {es:.0}");
        ossl_rs = ossl_rs.max(rs);
        ossl_es = ossl_es.max(es);
        step(&format!("bench jwt: round {round}: smart-fhir-jwt"));
        let text = output(cargo().args([
            "bench",
            "-q",
            "-p",
            "smart-fhir-jwt",
            "--bench",
            "assertion",
            "--",
            "--seconds",
            "3",
        ]))?;
        let (rs, es) = parse_ours(&text)?;
        eprintln!("smart-fhir-jwt: RS384 assertions/s {rs:.0}, ES384 assertions/s {es:.0}");
        ours_rs = ours_rs.max(rs);
        ours_es = ours_es.max(es);
    }
    println!();
    println!(
        "client assertions per second of user CPU time, one core (best of 2 interleaved runs)"
    );
    println!(
        "{:<28} {:>12} {:>16} {:>8}",
        "", "smart-fhir", "openssl speed", "ratio"
    );
    println!(
        "{:<28} {:>12.0} {:>16.0} {:>8.3}",
        "RS384 (RSA-2048)",
        ours_rs,
        ossl_rs,
        ours_rs / ossl_rs
    );
    println!(
        "{:<28} {:>12.0} {:>16.0} {:>8.3}",
        "ES384 (P-384)",
        ours_es,
        ossl_es,
        ours_es / ossl_es
    );
    println!("target: ratio >= 0.95");
    Ok(())
}

fn openssl_speed() -> Result<(f64, f64)> {
    let text =
        output(Command::new("openssl").args(["speed", "-seconds", "3", "rsa2048", "ecdsap384"]))?;
    let mut rs = None;
    let mut es = None;
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("rsa 2048 bits") && cols.len() >= 7 {
            rs = cols[5].parse::<f64>().ok();
        }
        if line.contains("ecdsa (nistp384)") && cols.len() >= 8 {
            es = cols[6].parse::<f64>().ok();
        }
    }
    match (rs, es) {
        (Some(r), Some(e)) => Ok((r, e)),
        _ => Err(format!("cannot read openssl speed output:\n{text}")),
    }
}

fn parse_ours(text: &str) -> Result<(f64, f64)> {
    let mut rs = None;
    let mut es = None;
    for line in text.lines() {
        let mut cols = line.split_whitespace();
        if cols.next() != Some("BENCH") {
            continue;
        }
        match (cols.next(), cols.next().and_then(|v| v.parse::<f64>().ok())) {
            (Some("RS384"), Some(v)) => rs = Some(v),
            (Some("ES384"), Some(v)) => es = Some(v),
            _ => {}
        }
    }
    match (rs, es) {
        (Some(r), Some(e)) => Ok((r, e)),
        _ => Err(format!("cannot read the benchmark output:\n{text}")),
    }
}
