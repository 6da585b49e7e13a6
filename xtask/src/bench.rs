//! Benchmarks that print figures beside a baseline measured in the same run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::util::{cargo, output, step, Result};

pub(crate) fn run(which: Option<&str>) -> Result<()> {
    match which {
        Some("jwt") => jwt(),
        Some("http") => http(),
        Some("bulk") => bulk(),
        Some("storm") => crate::storm::storm(),
        other => Err(format!(
            "unknown benchmark {other:?}; available: jwt, http, bulk, storm \
             (usage: cargo xtask bench <jwt|http|bulk|storm>)"
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

/// The `BENCH <name> <value>` lines of a benchmark's output.
fn bench_values(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            if cols.next() != Some("BENCH") {
                return None;
            }
            let name = cols.next()?;
            let value = cols.next()?.parse::<f64>().ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

fn value(values: &HashMap<String, f64>, name: &str) -> Result<f64> {
    values
        .get(name)
        .copied()
        .ok_or_else(|| format!("the benchmark printed no `BENCH {name}` line"))
}

/// Authenticated FHIR reads through `FhirClient` built as the CLI builds it (one shared
/// `HyperHttpClient` for the token source and the client; a warmed Backend Services token
/// source, and a static token) beside a raw hyper-util client, interleaved in rounds in one
/// process against a minimal local server (see `crates/smart-fhir-http/benches/http.rs`).
fn http() -> Result<()> {
    step("bench http: build (release)");
    crate::util::run(cargo().args([
        "bench",
        "-p",
        "smart-fhir-http",
        "--bench",
        "http",
        "--no-run",
    ]))?;
    step("bench http: run (raw hyper-util client and FhirClient, interleaved rounds)");
    let text = output(cargo().args([
        "bench",
        "-q",
        "-p",
        "smart-fhir-http",
        "--bench",
        "http",
        "--",
        "--rounds",
        "9",
    ]))?;
    for line in text.lines().filter(|l| !l.starts_with("BENCH")) {
        eprintln!("{line}");
    }
    let v = bench_values(&text);
    println!();
    println!(
        "authenticated reads (GET Patient/1, 0.5 KB JSON parsed into serde_json::Value) over \
         loopback HTTP/1.1 from one client thread; median of 9 rounds"
    );
    println!(
        "{:<34} {:>10} {:>11} {:>10} {:>8}",
        "", "p50 (µs)", "added (µs)", "req/s", "ratio"
    );
    println!(
        "{:<34} {:>10.2} {:>11} {:>10.0} {:>8}",
        "raw hyper-util client",
        value(&v, "raw.p50_us")?,
        "-",
        value(&v, "raw.rps")?,
        "-"
    );
    for (name, label) in [
        ("backend", "FhirClient + BackendServices"),
        ("static", "FhirClient + StaticTokenProvider"),
    ] {
        println!(
            "{:<34} {:>10.2} {:>11.2} {:>10.0} {:>8.3}",
            label,
            value(&v, &format!("{name}.p50_us"))?,
            value(&v, &format!("{name}.added_p50_us"))?,
            value(&v, &format!("{name}.rps"))?,
            value(&v, &format!("{name}.rps_ratio"))?
        );
    }
    println!(
        "FhirClient: FhirClient::builder(base).http_client(shared).auth(source), `shared` the \
         SharedHttpClient of one HyperHttpClient that the token source uses too (as the CLI \
         builds it)"
    );
    println!(
        "p50: sequential reads, one pooled connection per client, the clients taking turns \
         request by request; req/s: 16 concurrent tasks, the clients in turn; added and ratio: \
         median of the per-round differences and ratios against the raw client"
    );
    println!("target: req/s ratio >= 0.97, added p50 <= 2 µs");
    Ok(())
}

/// The executable of a bench target, built in release, from cargo's JSON messages.
fn bench_executable(package: &str, bench: &str) -> Result<PathBuf> {
    let text = output(cargo().args([
        "bench",
        "-p",
        package,
        "--bench",
        bench,
        "--no-run",
        "--message-format=json",
    ]))?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bench)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo named no executable for bench {bench} of {package}"))
}

/// A child process that is stopped when dropped: its standard input is closed (it exits by
/// itself then), and it is killed if it is still running.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Downloading a 525 MB NDJSON file through `BulkJob::open_lines` (raw lines) beside a raw hyper
/// body read of the same file, and parsing it through `BulkJob::open_file` beside the raw read
/// plus the simplest split and parse: the server and each client run as processes of their own
/// (the bench binary in several roles), so each client reports its own peak memory.
fn bulk() -> Result<()> {
    step("bench bulk: build (release)");
    let exe = bench_executable("smart-fhir-http", "bulk")?;
    step("bench bulk: start the NDJSON server (smart-fhir-testkit, own process)");
    let mut child = Command::new(&exe)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let stdout = child.stdout.take();
    let server = Server(child);
    let mut first = String::new();
    if let Some(out) = stdout {
        BufReader::new(out)
            .read_line(&mut first)
            .map_err(|e| format!("cannot read the server's address: {e}"))?;
    }
    let mut words = first.split_whitespace();
    let (status_url, file_url) = match (words.next(), words.next(), words.next()) {
        (Some("SERVE"), Some(status), Some(file)) => (status.to_owned(), file.to_owned()),
        _ => return Err(format!("the server did not start: {first:?}")),
    };

    let modes = ["raw", "lines", "floor", "floor-typed", "bulk", "bulk-typed"];
    let mut best: HashMap<&str, f64> = HashMap::new();
    let mut peak: HashMap<&str, f64> = HashMap::new();
    let mut bytes: HashMap<&str, f64> = HashMap::new();
    let mut resources: HashMap<&str, f64> = HashMap::new();
    let mut lines: HashMap<&str, f64> = HashMap::new();
    let rounds = 3;
    for round in 0..rounds {
        for k in 0..modes.len() {
            let mode = modes[(round + k) % modes.len()];
            step(&format!("bench bulk: round {}: {mode}", round + 1));
            let mut cmd = Command::new(&exe);
            cmd.args(["--mode", mode]);
            if matches!(mode, "raw" | "floor" | "floor-typed") {
                cmd.args(["--file-url", &file_url]);
            } else {
                cmd.args(["--status-url", &status_url]);
            }
            let text = output(&mut cmd)?;
            for line in text.lines().filter(|l| !l.starts_with("BENCH")) {
                eprintln!("{line}");
            }
            let v = bench_values(&text);
            let mb_s = value(&v, &format!("{mode}.mb_s"))?;
            let entry = best.entry(mode).or_insert(0.0);
            *entry = entry.max(mb_s);
            if let Some(p) = v.get(&format!("{mode}.peak_rss_mib")) {
                let entry = peak.entry(mode).or_insert(0.0);
                *entry = entry.max(*p);
            }
            bytes.insert(mode, value(&v, &format!("{mode}.bytes"))?);
            // `lines` counts lines (its `resources` value), which must equal the resources.
            match mode {
                "raw" => {}
                "lines" => {
                    lines.insert(mode, value(&v, &format!("{mode}.resources"))?);
                }
                _ => {
                    resources.insert(mode, value(&v, &format!("{mode}.resources"))?);
                }
            }
        }
    }
    drop(server);

    let raw_bytes = bytes.get("raw").copied().unwrap_or(f64::NAN);
    if bytes.values().any(|b| *b != raw_bytes) {
        return Err(format!("the clients read different amounts: {bytes:?}"));
    }
    let parsed = resources.get("floor").copied().unwrap_or(f64::NAN);
    if resources
        .values()
        .chain(lines.values())
        .any(|r| *r != parsed)
    {
        return Err(format!(
            "the clients parsed different numbers of resources: {resources:?}, lines: {lines:?}"
        ));
    }
    let raw = best.get("raw").copied().unwrap_or(f64::NAN);
    let mb_s = |mode: &str| best.get(mode).copied().unwrap_or(f64::NAN);
    let rss = |mode: &str| {
        peak.get(mode)
            .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1}"))
    };
    println!();
    println!(
        "Bulk Data file download: {:.1} MB of NDJSON (512,000 synthetic Observations, 1,024 \
         bytes a line) generated on the fly by the testkit server in its own process, over \
         loopback HTTP/1.1; each client in its own process; best of {rounds} interleaved runs",
        raw_bytes / 1e6
    );
    println!(
        "{:<46} {:>9} {:>8} {:>10} {:>15}",
        "", "MB/s", "vs raw", "vs own", "peak RSS (MiB)"
    );
    for (mode, label, base) in [
        ("raw", "raw hyper body read (no parsing)", None),
        (
            "lines",
            "BulkJob::open_lines (Bytes, no parsing)",
            Some("raw"),
        ),
        (
            "floor",
            "floor: raw read + split + from_slice::<Value>",
            None,
        ),
        (
            "floor-typed",
            "floor: raw read + split + from_slice::<{..}>",
            None,
        ),
        (
            "bulk",
            "BulkJob::open_file::<serde_json::Value>",
            Some("floor"),
        ),
        (
            "bulk-typed",
            "BulkJob::open_file::<{resourceType, id}>",
            Some("floor-typed"),
        ),
    ] {
        let ratio = |base: f64| format!("{:.3}", mb_s(mode) / base);
        let vs_raw = if mode == "raw" {
            "-".to_owned()
        } else {
            ratio(raw)
        };
        let vs_base = base.map_or_else(|| "-".to_owned(), |b| ratio(mb_s(b)));
        println!(
            "{label:<46} {:>9.1} {vs_raw:>8} {vs_base:>10} {:>15}",
            mb_s(mode),
            rss(mode)
        );
    }
    println!(
        "MB/s: 10^6 body bytes per second of wall time, request to end of body; peak RSS: VmHWM \
         of the client process"
    );
    println!(
        "vs raw: against the raw read, which parses nothing; vs own: each FhirClient path against \
         its own floor: open_lines against the raw read, open_file against the raw read plus the \
         simplest hand-written line split and serde_json::from_slice of the same type (the \
         least any parsing client can cost)"
    );
    println!("target: vs own >= 0.9 for open_lines, >= 0.95 for each open_file; peak RSS < 64 MiB");
    println!(
        "note: serde_json's preserve_order is on in this build (josekit asks for it), so every \
         Value object is an IndexMap, in the floor and in open_file alike"
    );
    Ok(())
}
