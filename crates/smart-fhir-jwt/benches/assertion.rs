//! Client-assertion signing throughput on one core, to compare with
//! `openssl speed rsa2048 ecdsap384` (`cargo xtask bench jwt` runs both).
//!
//! `cargo bench -p smart-fhir-jwt --bench assertion -- --seconds 3` prints, per algorithm, a
//! human-readable line and a `BENCH <alg> <assertions per second>` line for tools.
//!
//! The rate is per second of this thread's user CPU time, which is what `openssl speed` measures
//! by default (without `-elapsed`): on a shared machine, time spent waiting for the core counts
//! against neither side.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use smart_fhir_jwt::{Algorithm, AssertionSigner, KeySpec, PrivateKey};

fn main() {
    // `cargo bench` adds `--bench`; only `--seconds N` matters here.
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .windows(2)
        .find(|w| w[0] == "--seconds")
        .and_then(|w| w[1].parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(seconds);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);

    for (alg, spec) in [
        (Algorithm::RS384, KeySpec::Rsa2048),
        (Algorithm::ES384, KeySpec::P384),
    ] {
        let key = PrivateKey::generate(spec).expect("key generation");
        let signer = AssertionSigner::new(&key, alg).expect("signer");
        let sign = || {
            signer
                .sign(
                    black_box("backend-client-7"),
                    black_box("https://ehr.example/interconnect/oauth2/token"),
                    Duration::from_secs(300),
                    now,
                )
                .expect("sign")
        };
        // Warm up caches and OpenSSL's lazily built tables.
        for _ in 0..50 {
            black_box(sign());
        }
        let start = Instant::now();
        let cpu_start = thread_user_seconds();
        let mut count = 0u32;
        while thread_user_seconds()
            .zip(cpu_start)
            .map_or(start.elapsed().as_secs_f64(), |(n, s)| n - s)
            < budget.as_secs_f64()
        {
            for _ in 0..20 {
                black_box(sign());
            }
            count += 20;
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = thread_user_seconds()
            .zip(cpu_start)
            .map_or(wall, |(n, s)| n - s);
        let per_second = f64::from(count) / cpu;
        println!(
            "{alg} ({spec:?}): {per_second:.1} assertions/s of CPU time ({:.1} µs each; {count} in {cpu:.2} s CPU, {wall:.2} s wall)",
            cpu * 1e6 / f64::from(count),
        );
        println!("BENCH {alg} {per_second:.1}");
    }
}

/// This thread's user CPU time in seconds, from `/proc/thread-self/stat` (field 14, in the
/// kernel's fixed 100 Hz `USER_HZ` ticks); `None` where that file is unreadable.
fn thread_user_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let utime: u64 = rest.split_whitespace().nth(11)?.parse().ok()?;
    Some(utime as f64 / 100.0)
}
