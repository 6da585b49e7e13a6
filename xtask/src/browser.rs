//! The browser test: headless Chromium (Debian's `chromium`, driven by `playwright-core` from
//! `tests/servers/browser_test.mjs`) through an EHR launch, a standalone launch and a sign-out
//! of the `patient-viewer` example, against the harness in its interactive mode (oidc-provider's
//! own login and consent pages, the "EHR" page at `/ehr`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, servers_dir, start, target_dir};
use crate::util::{cargo, root, run, step, Result};

/// The client the browser test registers (public: the viewer reads its settings from the
/// environment, as an app author's would).
const CLIENT_ID: &str = "it-browser";
const SCOPE: &str = "launch openid fhirUser launch/patient patient/*.rs offline_access";
const APP_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` on the `PATH`.
fn chromium() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "the browser test needs Chromium: apt-get install chromium (.ci/run does), or set CHROMIUM"
                .to_owned()
        })
}

/// Runs the browser test; `dir` is this run's fixture directory.
pub(crate) fn run_browser_test(dir: &Path) -> Result<()> {
    let started = Instant::now();
    step("browser: build the patient-viewer example");
    let chromium = chromium()?;
    run(cargo().args(["build", "--quiet", "-p", "patient-viewer"]))?;
    let viewer = target_dir().join("debug").join("patient-viewer");

    step("browser: start the harness in interactive mode");
    let port = free_port()?;
    let app = format!("http://127.0.0.1:{port}");
    let redirect = format!("{app}/smart/callback");
    let config = dir.join("browser-harness-config.json");
    let body = json!({"port": 0, "interactive": true, "clients": [
        {"client_id": CLIENT_ID, "token_endpoint_auth_method": "none", "redirect_uris": [redirect]}
    ]});
    std::fs::write(&config, body.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
    let harness = start(&config)?;
    let base = harness.base()?;
    let ready = &harness.ready;
    let ehr = ready
        .get("ehr")
        .and_then(Value::as_str)
        .ok_or("the interactive harness names no EHR page")?
        .to_owned();
    let patients = ready.get("patient_ids").cloned().unwrap_or(Value::Null);
    let practitioner = ready
        .get("practitioner_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    step("browser: start the patient viewer");
    let sessions = dir.join("browser-sessions.json");
    let _ = std::fs::remove_file(&sessions);
    let mut cmd = Command::new(&viewer);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SMART_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("SMART_FHIR_BASE", &base)
        .env("SMART_CLIENT_ID", CLIENT_ID)
        .env("SMART_SCOPE", SCOPE)
        .env("SMART_REDIRECT_URI", &redirect)
        .env("SMART_INSECURE_HTTP", "loopback")
        .env(
            "SMART_SESSION_STORE",
            format!("file:{}", sessions.display()),
        )
        .env("PATIENT_VIEWER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", viewer.display()))?;
    let stderr = child.stderr.take().ok_or("viewer stderr unavailable")?;
    let viewer_guard = Guard(child);
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
            eprintln!("[viewer] {line}");
        }
    });
    rx.recv_timeout(APP_READY_TIMEOUT)
        .map_err(|_| format!("the patient viewer did not listen within {APP_READY_TIMEOUT:?}"))?;

    step("browser: headless Chromium through the launches");
    let shots = target_dir().join("browser");
    std::fs::create_dir_all(&shots).map_err(|e| format!("{}: {e}", shots.display()))?;
    let result = run(Command::new("node")
        .arg("--test")
        .arg(servers_dir().join("browser_test.mjs"))
        .current_dir(root())
        .env("BROWSER_CHROMIUM", &chromium)
        .env("BROWSER_EHR", &ehr)
        .env("BROWSER_APP", &app)
        .env("BROWSER_PATIENT_IDS", patients.to_string())
        .env("BROWSER_USER", format!("Practitioner/{practitioner}"))
        .env("BROWSER_SESSIONS_FILE", &sessions)
        .env("BROWSER_SCREENSHOT_DIR", &shots));
    drop(viewer_guard);
    drop(harness);
    eprintln!(
        "browser: the browser test took {:.1} s in all (screenshots in {})",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    result
}
