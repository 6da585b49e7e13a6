//! The Node integration harness (`tests/servers/`): install, start, wait for readiness, stop.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{cargo, output, root, run, step, Result};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running harness; stopped when dropped, also when a step fails or panics.
pub(crate) struct Harness {
    child: Child,
    pub ready: Value,
    pub started_in: Duration,
}

impl Harness {
    pub(crate) fn base(&self) -> Result<String> {
        self.ready
            .get("base")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "HARNESS_READY line has no \"base\"".to_owned())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("harness stopped");
    }
}

pub(crate) fn servers_dir() -> PathBuf {
    root().join("tests").join("servers")
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// `npm ci` when `node_modules` is missing or older than the lockfile.
pub(crate) fn npm_install() -> Result<()> {
    let dir = servers_dir();
    let lock = dir.join("package-lock.json");
    let marker = dir.join("node_modules").join(".package-lock.json");
    let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&marker)) {
        (Ok(l), Ok(m)) => match (l.modified(), m.modified()) {
            (Ok(l), Ok(m)) => m >= l,
            _ => false,
        },
        _ => false,
    };
    if fresh {
        eprintln!("node_modules is up to date");
        return Ok(());
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))
}

/// Starts the harness with `config` and waits for its `HARNESS_READY` line.
pub(crate) fn start(config: &Path) -> Result<Harness> {
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(servers_dir().join("harness.mjs"))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "harness stdout unavailable".to_owned())?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if let Some(rest) = line.strip_prefix("HARNESS_READY ") {
                let _ = tx.send(rest.to_owned());
            } else {
                eprintln!("[harness] {line}");
            }
        }
    });
    let mut harness = Harness {
        child,
        ready: Value::Null,
        started_in: Duration::ZERO,
    };
    let line = rx.recv_timeout(READY_TIMEOUT).map_err(|_| {
        let status = harness.child.try_wait().ok().flatten();
        format!("the harness was not ready within {READY_TIMEOUT:?} (exit status: {status:?})")
    })?;
    harness.started_in = started.elapsed();
    harness.ready =
        serde_json::from_str(&line).map_err(|e| format!("bad HARNESS_READY line: {e}"))?;
    eprintln!(
        "harness ready in {} ms at {}",
        harness.started_in.as_millis(),
        harness.base()?
    );
    Ok(harness)
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A random client secret (192 bits, hex) from the operating system's generator.
fn random_secret() -> Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The App Launch clients of `tests/integration/tests/app_launch.rs`. The tests read their
/// secrets and redirect URIs from the harness configuration file in the fixture directory;
/// nothing prints them. `rs` is the JWKS of the `rs384` key (the `private_key_jwt` client).
fn app_launch_clients(rs: &Value) -> Result<Vec<Value>> {
    // A native client's loopback redirect URI matches on any port (RFC 8252 §7.3).
    let loopback = json!(["http://127.0.0.1/callback"]);
    // Nothing listens there: the library tests stop at the redirect and call the callback.
    let web = json!(["https://app.example/callback"]);
    let public = |id: &str| {
        json!({"client_id": id, "token_endpoint_auth_method": "none",
               "application_type": "native", "redirect_uris": loopback})
    };
    let mut clients = vec![
        public("it-public"),
        public("it-rotation"),
        public("it-redis-rotation"),
        public("it-login"),
        json!({"client_id": "it-public-es384", "token_endpoint_auth_method": "none",
               "application_type": "native", "redirect_uris": loopback,
               "id_token_signed_response_alg": "ES384"}),
        json!({"client_id": "it-basic", "token_endpoint_auth_method": "client_secret_basic",
               "client_secret": random_secret()?, "redirect_uris": web}),
        json!({"client_id": "it-post", "token_endpoint_auth_method": "client_secret_post",
               "client_secret": random_secret()?, "redirect_uris": web}),
        json!({"client_id": "it-jwt", "token_endpoint_auth_method": "private_key_jwt",
               "jwks": rs, "redirect_uris": web,
               "grant_types": ["authorization_code", "refresh_token"]}),
        json!({"client_id": "it-login-basic", "token_endpoint_auth_method": "client_secret_basic",
               "client_secret": random_secret()?, "application_type": "native",
               "redirect_uris": loopback}),
    ];
    // The example web app listens on a port chosen now; its registered redirect URI is exact.
    let example = format!("http://127.0.0.1:{}/callback", free_port()?);
    clients.push(json!({"client_id": "it-example",
        "token_endpoint_auth_method": "client_secret_basic", "client_secret": random_secret()?,
        "redirect_uris": [example]}));
    Ok(clients)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the CLI and returns the path of the `smart-fhir` binary.
fn build_cli() -> Result<PathBuf> {
    run(cargo().args(["build", "--quiet", "-p", "smart-fhir-cli"]))?;
    let bin = target_dir().join("debug").join("smart-fhir");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}

/// Generates a key pair with the project's own CLI; returns the public JWKS.
fn keygen(bin: &Path, dir: &Path, name: &str, alg: &str) -> Result<Value> {
    let pem = dir.join(format!("{name}.pem"));
    let jwks = dir.join(format!("{name}.jwks.json"));
    output(
        Command::new(bin)
            // The default kid (the RFC 7638 thumbprint) is also what a PEM key signs with.
            .args(["keygen", "--alg", alg, "--out"])
            .arg(&pem)
            .arg("--jwks")
            .arg(&jwks),
    )?;
    read_json(&jwks)
}

/// The keys, clients and configuration the integration tests use.
pub(crate) struct Fixture {
    dir: PathBuf,
    config: PathBuf,
    jwks_port: u16,
    bin: PathBuf,
}

impl Fixture {
    /// The harness configuration to [`start`] it with.
    pub(crate) fn config(&self) -> &Path {
        &self.config
    }

    /// The variables the integration tests read (`SMART_FHIR_IT_*`, `SMART_FHIR_BIN`), for the
    /// harness started from this fixture; Redis comes separately.
    pub(crate) fn test_env(&self, harness: &Harness) -> Result<Vec<(&'static str, String)>> {
        let patient_ids = harness
            .ready
            .get("patient_ids")
            .map(Value::to_string)
            .unwrap_or_else(|| "[]".to_owned());
        Ok(vec![
            ("SMART_FHIR_IT_BASE", harness.base()?),
            ("SMART_FHIR_IT_DIR", self.dir.display().to_string()),
            ("SMART_FHIR_IT_JWKS_PORT", self.jwks_port.to_string()),
            ("SMART_FHIR_IT_PATIENT_IDS", patient_ids),
            ("SMART_FHIR_BIN", self.bin.display().to_string()),
        ])
    }
}

pub(crate) fn prepare() -> Result<Fixture> {
    step("integration: npm ci (tests/servers)");
    npm_install()?;
    step("integration: build the CLI and generate keys with it");
    let bin = build_cli()?;
    // One directory per run, so that runs side by side (two checkouts' worth of work on one
    // machine) never share or delete each other's keys; older runs' directories are removed.
    let parent = target_dir().join("integration");
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if stale {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = parent.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let rs = keygen(&bin, &dir, "rs384", "RS384")?;
    let es = keygen(&bin, &dir, "es384", "ES384")?;
    let jku = keygen(&bin, &dir, "jku-rs384", "RS384")?;
    // Generated but never registered: the server must refuse it.
    keygen(&bin, &dir, "unregistered", "RS384")?;
    let jwks_port = free_port()?;
    let jwks_uri = format!("http://127.0.0.1:{jwks_port}/jwks.json");
    let mut clients = vec![];
    // One client per test where the harness counts token requests per client, so that the counts
    // of one test are not disturbed by another.
    for id in [
        "it-rs384",
        "it-single-flight",
        "it-single-flight-expired",
        "it-renew",
        "it-unregistered",
        "it-cli",
        "it-demo",
        "it-bulk",
        "it-bulk-cli",
        "it-fhir",
        "it-fhir-renew",
        "it-fhir-scope",
        "it-fhir-cli",
        "it-redis-storm",
        "it-redis-storm-cluster",
        "it-redis-reference",
        "it-redis-takeover",
        "it-redis-restart",
        "it-redis-cluster-restart",
        "it-skew-fast",
        "it-skew-slow",
        "it-skew-retry",
    ] {
        clients.push(json!({"client_id": id, "jwks": rs}));
    }
    clients.push(json!({"client_id": "it-es384", "jwks": es}));
    clients.push(json!({"client_id": "it-jku", "jwks_uri": jwks_uri}));
    clients.extend(app_launch_clients(&rs)?);
    let config = dir.join("harness-config.json");
    let body = json!({"port": 0, "clients": clients});
    std::fs::write(&config, body.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
    std::fs::copy(dir.join("jku-rs384.jwks.json"), dir.join("jwks.json"))
        .map_err(|e| format!("jwks copy: {e}"))?;
    let _ = jku;
    Ok(Fixture {
        dir,
        config,
        jwks_port,
        bin,
    })
}

pub(crate) fn integration() -> Result<()> {
    let fx = prepare()?;
    step("integration: start Redis (standalone and a three-master cluster)");
    let redis = crate::redis::start()?;
    step("integration: start the harness");
    let harness = start(&fx.config)?;
    step("integration: tests");
    let result = run(cargo()
        .args([
            "test",
            "-p",
            "smart-fhir-integration-tests",
            "--features",
            "harness",
            "--",
            "--test-threads=1",
            "--nocapture",
        ])
        .envs(fx.test_env(&harness)?)
        .envs(redis.env()));
    eprintln!(
        "integration: harness start time {} ms",
        harness.started_in.as_millis()
    );
    drop(harness);
    drop(redis);
    eprintln!("redis stopped");
    // The browser test runs on its own harness, also when a test above failed.
    let browser = crate::browser::run_browser_test(&fx.dir);
    result.and(browser)
}

/// The browser test alone (`cargo xtask browser`), on this run's fixture directory.
pub(crate) fn browser() -> Result<()> {
    let fx = prepare()?;
    crate::browser::run_browser_test(&fx.dir)
}

pub(crate) fn demo() -> Result<()> {
    let fx = prepare()?;
    step("demo: start the harness");
    let harness = start(&fx.config)?;
    let base = harness.base()?;
    let key = fx.dir.join("rs384.pem");
    step("demo: discover");
    run(Command::new(&fx.bin).args(["discover", &base, "--insecure-http"]))?;
    step("demo: Backend Services token, then a FHIR read, through the library");
    // The example reads its configuration from the environment (`smart_fhir::Config`); the
    // variables it could also read are cleared so that the caller's environment cannot change
    // what the demo shows.
    let mut example = cargo();
    example.args([
        "run",
        "--quiet",
        "-p",
        "smart-fhir",
        "--example",
        "backend_services",
    ]);
    for var in [
        "SMART_ISS",
        "SMART_PRIVATE_KEY",
        "SMART_KID",
        "SMART_JKU",
        "SMART_TOKEN_URL",
        "SMART_REDIRECT_URI",
    ] {
        example.env_remove(var);
    }
    let result = run(example
        .env("SMART_FHIR_BASE", &base)
        .env("SMART_CLIENT_ID", "it-demo")
        .env("SMART_SCOPE", "system/Patient.rs system/Observation.rs")
        .env("SMART_PRIVATE_KEY_FILE", &key)
        .env("SMART_INSECURE_HTTP", "loopback"));
    drop(harness);
    result
}
