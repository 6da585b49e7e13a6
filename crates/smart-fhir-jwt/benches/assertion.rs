//! Client-assertion signing throughput on one core, to compare with
//! `openssl speed rsa2048 ecdsap384` (`cargo xtask bench jwt` runs both).
//!
//! `cargo bench -p smart-fhir-jwt --bench assertion -- --seconds 3` prints, per algorithm, a
//! human-readable line and a `BENCH <alg> <assertions per second>` line for tools.

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
        let mut count = 0u32;
        while start.elapsed() < budget {
            for _ in 0..20 {
                black_box(sign());
            }
            count += 20;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let per_second = f64::from(count) / elapsed;
        println!(
            "{alg} ({spec:?}): {per_second:.1} assertions/s ({:.1} µs each, {count} in {elapsed:.2} s)",
            elapsed * 1e6 / f64::from(count),
        );
        println!("BENCH {alg} {per_second:.1}");
    }
}
