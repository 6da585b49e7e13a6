//! The `smart-fhir` binary, run as a person runs it, for the commands that need no server.

use std::path::Path;
use std::process::{Command, Output};

use smart_fhir_jwt::{verify, Algorithm, Jwks};

/// The variables the CLI reads (as the library's `smart_fhir::Config` does).
const SMART_VARS: [&str; 12] = [
    "SMART_FHIR_BASE",
    "SMART_ISS",
    "SMART_CLIENT_ID",
    "SMART_SCOPE",
    "SMART_PRIVATE_KEY",
    "SMART_PRIVATE_KEY_FILE",
    "SMART_KID",
    "SMART_JKU",
    "SMART_TOKEN_URL",
    "SMART_REDIRECT_URI",
    "SMART_INSECURE_HTTP",
    "SMART_TOKEN_STORE",
];

/// The CLI with `vars` as its only `SMART_*` variables (none from the test's environment).
fn cli_with(args: &[&str], dir: &Path, vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smart-fhir"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE");
    for var in SMART_VARS {
        command.env_remove(var);
    }
    command.envs(vars.iter().copied());
    command.output().expect("run smart-fhir")
}

fn cli(args: &[&str], dir: &Path) -> Output {
    cli_with(args, dir, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with exactly one line on stderr, and no panic.
fn assert_failure(o: &Output, expect: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// SC-2.1, SC-2.3, SC-2.4, SC-2.16: keygen writes a PKCS#8 key readable only by its owner and a
/// public JWKS with no private members; prints the kid; never overwrites without --force.
#[test]
fn sc_2_4_keygen_writes_private_key_0600_and_public_jwks() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, kty, crv) in [
        ("RS384", "RSA", None),
        ("ES384", "EC", Some("P-384")),
        ("ES256", "EC", Some("P-256")),
        ("RS256", "RSA", None),
        ("PS384", "RSA", None),
    ] {
        let pem = format!("{alg}.pem");
        let jwks = format!("{alg}.json");
        let o = cli(
            &["keygen", "--alg", alg, "--out", &pem, "--jwks", &jwks],
            dir.path(),
        );
        assert!(o.status.success(), "{alg}: {}", stderr(&o));
        let kid = stdout(&o).trim().to_owned();
        assert!(!kid.is_empty());
        let text = std::fs::read_to_string(dir.path().join(&pem)).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(&pem))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{alg}");
        }
        let set: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(&jwks)).unwrap())
                .unwrap();
        let key = &set["keys"][0];
        assert_eq!(key["kty"], kty);
        assert_eq!(key["kid"], kid.as_str());
        if let Some(crv) = crv {
            assert_eq!(key["crv"], crv);
        }
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{alg} publishes {private}");
        }
        // `jwks` on the private key prints the same public key.
        let o = cli(&["jwks", &pem], dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let again: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(again, set);
    }
    let o = cli(
        &["keygen", "--alg", "ES384", "--out", "ES384.pem"],
        dir.path(),
    );
    assert_failure(&o, "exists");
    let o = cli(
        &["keygen", "--alg", "ES384", "--out", "ES384.pem", "--force"],
        dir.path(),
    );
    assert!(o.status.success());
}

/// SC-2.9, SC-2.10, SC-2.11: the assertion verifies with the published JWKS and carries the
/// required header and claims; a fresh jti each time.
#[test]
fn sc_2_10_assertion_verifies_against_the_published_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        &[
            "keygen", "--alg", "RS384", "--out", "k.pem", "--jwks", "k.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("k.json")).unwrap()).unwrap();
    let jwks = Jwks::from_value(&jwks).unwrap();
    let args = [
        "assertion",
        "--key",
        "k.pem",
        "--client-id",
        "my-app",
        "--token-url",
        "https://auth.example/token",
        "--jku",
        "https://app.example/jwks.json",
    ];
    let mut jtis = vec![];
    for _ in 0..2 {
        let o = cli(&args, dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let jwt = stdout(&o).trim().to_owned();
        let v = verify(&jwt, &jwks, &[Algorithm::RS384]).expect("verifies");
        assert_eq!(v.issuer(), Some("my-app"));
        assert_eq!(v.subject(), Some("my-app"));
        assert!(v.has_audience("https://auth.example/token"));
        let c = v.claims();
        let exp = c["exp"].as_u64().unwrap();
        let iat = c["iat"].as_u64().unwrap();
        assert_eq!(exp - iat, 120, "default lifetime");
        jtis.push(c["jti"].as_str().unwrap().to_owned());
        let header = jwt.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(&base64_url_decode(header)).unwrap();
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "RS384");
        assert_eq!(header["jku"], "https://app.example/jwks.json");
    }
    assert_ne!(jtis[0], jtis[1]);

    // Each bad input fails on one line that names it.
    for (client_id, token_url, extra, expect) in [
        ("a", "https://a/t", &["--lifetime", "301"][..], "lifetime"),
        ("a", "https://a/t", &["--alg", "ES384"][..], "ES384"),
        ("", "https://a/t", &[][..], "client"),
        ("a", "/token", &[][..], "aud"),
    ] {
        let mut args = vec![
            "assertion",
            "--key",
            "k.pem",
            "--client-id",
            client_id,
            "--token-url",
            token_url,
        ];
        args.extend_from_slice(extra);
        assert_failure(&cli(&args, dir.path()), expect);
    }
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = vec![];
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// P5, P13: bad key files fail with one line and never echo key material.
#[test]
fn bad_key_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("junk.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("weak.pem"),
        include_str!("../../smart-fhir-jwt/tests/fixtures/rsa1024_pkcs1.pem"),
    )
    .unwrap();
    let o = cli(&["jwks", "junk.pem"], dir.path());
    assert_failure(&o, "junk.pem");
    assert!(!stderr(&o).contains("AAAA"));
    let o = cli(&["jwks", "weak.pem"], dir.path());
    assert_failure(&o, "2048");
    let o = cli(&["jwks", "missing.pem"], dir.path());
    assert_failure(&o, "missing.pem");
}

/// SC-5.1, SC-5.5, SC-5.10: `scope parse` prints JSON; a bad scope is a one-line error.
#[test]
fn sc_5_1_scope_parse_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        &[
            "scope",
            "parse",
            "patient/Observation.rs?category=laboratory launch/patient",
            "openid",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["context"], "patient");
    assert_eq!(a[0]["resource"], "Observation");
    assert_eq!(a[0]["permissions"], "rs");
    assert_eq!(
        a[0]["canonical"],
        "patient/Observation.rs?category=laboratory"
    );
    assert_eq!(a[1]["kind"], "launch");
    let o = cli(&["scope", "parse", "patient/Observation.rx"], dir.path());
    assert_failure(&o, "patient/Observation.rx");
}

/// SC-5.7, SC-5.8: `scope normalize` maps v1 to v2 and merges.
#[test]
fn sc_5_7_scope_normalize() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        &[
            "scope",
            "normalize",
            "patient/Observation.read patient/Observation.s user/*.write",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("patient/Observation.rs"), "{out}");
    assert!(out.contains("user/*.cud"), "{out}");
    assert!(!out.contains("read"), "{out}");
}

/// SC-5.16: `scope covers` exits 0 when covered, 1 with what is missing otherwise.
#[test]
fn sc_5_16_scope_covers_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        &[
            "scope",
            "covers",
            "--granted",
            "patient/*.rs",
            "--requested",
            "patient/Observation.r",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0));
    let o = cli(
        &[
            "scope",
            "covers",
            "--granted",
            "patient/Observation.rs?category=x",
            "--requested",
            "patient/Observation.rs",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("patient/Observation.rs"),
        "{}",
        stdout(&o)
    );
    let o = cli(
        &[
            "scope",
            "covers",
            "--granted",
            "user/*.cruds",
            "--requested",
            "patient/Observation.r",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "contexts never cross");
}

/// Bad usage exits 2; help exits 0.
#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["bogus"],
        vec![],
        vec!["keygen", "--alg", "HS256", "--out", "x.pem"],
        vec!["keygen", "--alg", "RS384"],
        vec!["token", "--fhir-base", "https://x"],
        vec!["scope", "covers", "--granted", "openid"],
    ] {
        let o = cli(&args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    let o = cli(&["--help"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("keygen"));
}

/// P7: plain http without the opt-in is refused before any connection, naming the option;
/// with it, an unreachable loopback server is a one-line connection error.
#[test]
fn p7_http_needs_opt_in_and_failures_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(&["discover", "http://127.0.0.1:9/fhir"], dir.path());
    assert_failure(&o, "--insecure-http");
    let o = cli(
        &["discover", "http://ehr.example/fhir", "--insecure-http"],
        dir.path(),
    );
    assert_failure(&o, "not loopback");
    let o = cli(
        &["discover", "http://127.0.0.1:9/fhir", "--insecure-http"],
        dir.path(),
    );
    assert_failure(&o, "127.0.0.1:9");
}

/// P7: `SMART_INSECURE_HTTP=loopback` is the same opt-in as `--insecure-http`; another value is
/// bad usage.
#[test]
fn p7_insecure_http_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["discover", "http://127.0.0.1:9/fhir"];
    let o = cli_with(&args, dir.path(), &[("SMART_INSECURE_HTTP", "loopback")]);
    assert_failure(&o, "connection");
    let o = cli_with(&args, dir.path(), &[("SMART_INSECURE_HTTP", "deny")]);
    assert_failure(&o, "SMART_INSECURE_HTTP=loopback");
    let o = cli_with(&args, dir.path(), &[("SMART_INSECURE_HTTP", "yes")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// SC-2.9, SC-3.3: `token` takes every option from the `SMART_*` variables the library reads,
/// the key itself included; it gets as far as the (unreachable) token endpoint.
#[test]
fn token_options_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(&["keygen", "--alg", "ES384", "--out", "k.pem"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let pem = std::fs::read_to_string(dir.path().join("k.pem")).unwrap();
    let base = [
        ("SMART_FHIR_BASE", "http://127.0.0.1:9/fhir"),
        ("SMART_CLIENT_ID", "env-client"),
        ("SMART_SCOPE", "system/Patient.rs"),
        ("SMART_TOKEN_URL", "http://127.0.0.1:9/token"),
        ("SMART_INSECURE_HTTP", "loopback"),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut vars = base.to_vec();
        vars.extend_from_slice(extra);
        cli_with(&["token"], dir.path(), &vars)
    };
    // The key from a file, or the key itself; either way the token request is attempted.
    assert_failure(&with(&[("SMART_PRIVATE_KEY_FILE", "k.pem")]), "connection");
    assert_failure(&with(&[("SMART_PRIVATE_KEY", &pem)]), "connection");
    // No key at all names the ways to give one.
    assert_failure(&with(&[]), "SMART_PRIVATE_KEY");
    // A bad key names the variable and never echoes it (P5).
    let junk = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n";
    let o = with(&[("SMART_PRIVATE_KEY", junk)]);
    assert_failure(&o, "SMART_PRIVATE_KEY");
    assert!(!stderr(&o).contains("SECRET"), "{}", stderr(&o));
}

/// Issue 11 §1 (a custom `--kid` is lost): the kid is kept in the PEM file, so `jwks` and
/// `assertion` use it without being told again.
#[test]
fn keygen_keeps_a_custom_kid() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        &[
            "keygen", "--alg", "ES256", "--kid", "k-2025", "--out", "k.pem", "--jwks", "k.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "k-2025");
    let o = cli(&["jwks", "k.pem"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let set: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(set["keys"][0]["kid"], "k-2025");
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("k.json")).unwrap()).unwrap();
    assert_eq!(set, published);
}

/// Issue 11 §1 (writes that follow symlinks): `keygen --force` replaces a symlink at `--out`
/// instead of writing through it; without --force it refuses; and when `--jwks` cannot be
/// written, no private key is left behind (all outputs or none).
#[cfg(unix)]
#[test]
fn keygen_never_follows_a_symlink_and_writes_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("k.pem")).unwrap();
    let o = cli(&["keygen", "--alg", "ES256", "--out", "k.pem"], dir.path());
    assert_failure(&o, "exists");
    let o = cli(
        &["keygen", "--alg", "ES256", "--out", "k.pem", "--force"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let meta = std::fs::symlink_metadata(dir.path().join("k.pem")).unwrap();
    assert!(!meta.file_type().is_symlink());

    let o = cli(
        &[
            "keygen",
            "--alg",
            "ES256",
            "--out",
            "new.pem",
            "--jwks",
            "no-such-dir/k.json",
        ],
        dir.path(),
    );
    assert_failure(&o, "k.json");
    assert!(
        !dir.path().join("new.pem").exists(),
        "no private key without its JWKS"
    );
}

/// Issue 11 §1 (local input read without a bound): a FIFO given as a key file is refused at
/// once (it would block for ever), a device is refused, and a huge file is refused naming the
/// limit, all without reading them.
#[cfg(unix)]
#[test]
fn key_files_are_bounded_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.pem");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let o = cli(&["jwks", "fifo.pem"], dir.path());
    assert_failure(&o, "not a regular file");
    let o = cli(&["jwks", "/dev/zero"], dir.path());
    assert_failure(&o, "not a regular file");
    let big = std::fs::File::create(dir.path().join("big.pem")).unwrap();
    big.set_len(2 << 20).unwrap();
    let o = cli(&["jwks", "big.pem"], dir.path());
    assert_failure(&o, "larger than 1 MiB");
    let o = cli(
        &[
            "discover",
            "https://ehr.example/fhir",
            "--ca-cert",
            "fifo.pem",
        ],
        dir.path(),
    );
    assert_failure(&o, "not a regular file");
    // A bad certificate file is named in the error.
    std::fs::write(
        dir.path().join("bad.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let o = cli(
        &[
            "discover",
            "https://ehr.example/fhir",
            "--ca-cert",
            "bad.pem",
        ],
        dir.path(),
    );
    assert_failure(&o, "bad.pem");
}

/// Issue 11 §1 (`token --token-url` demanded `--fhir-base`): with a token endpoint given, no
/// FHIR base is asked for; the request goes to that endpoint (here refused: nothing listens).
#[test]
fn token_with_a_token_url_needs_no_fhir_base() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(&["keygen", "--alg", "ES256", "--out", "k.pem"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(
        &[
            "token",
            "--token-url",
            "http://127.0.0.1:9/token",
            "--client-id",
            "app",
            "--scope",
            "system/Patient.rs",
            "--key",
            "k.pem",
            "--insecure-http",
        ],
        dir.path(),
    );
    assert_failure(&o, "no token");
    assert!(!stderr(&o).contains("--fhir-base"), "{}", stderr(&o));
}
