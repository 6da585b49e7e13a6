//! `-v` / `-vv` / `-vvv` and `RUST_LOG`: the libraries' `tracing` events on stderr, as a person
//! sees them, against the in-repo test server (no harness needed).

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use smart_fhir_testkit::{Method, Reply, TestServer};

/// Runs the binary without blocking the test server's runtime.
async fn cli(args: Vec<String>, dir: &Path, rust_log: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_smart-fhir"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .env_remove("SMART_FHIR_BASE");
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run smart-fhir"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server with a protected `Patient/1`, checking client assertions against a key made with
/// `keygen` in `dir`; returns the `get` arguments for it.
async fn server_and_args(dir: &Path) -> (TestServer, Vec<String>) {
    let keygen = cli(
        [
            "keygen", "--alg", "ES384", "--out", "k.pem", "--jwks", "k.json",
        ]
        .map(String::from)
        .to_vec(),
        dir,
        None,
    )
    .await;
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("k.json")).unwrap()).unwrap();
    let server = TestServer::start().await;
    server.verify_client_assertions(&jwks).unwrap();
    server
        .route(Method::GET, "/fhir/Patient/1")
        .reply(Reply::fhir(200, json!({"resourceType": "Patient", "id": "1"})).require_auth());
    let args = [
        "get",
        "Patient/1",
        "--fhir-base",
        server.fhir_base(),
        "--insecure-http",
        "--client-id",
        "cli-verbose",
        "--key",
        "k.pem",
        "--scope",
        "system/Patient.rs",
    ]
    .map(String::from)
    .to_vec();
    (server, args)
}

fn with(args: &[String], more: &[&str]) -> Vec<String> {
    args.iter()
        .cloned()
        .chain(more.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// SC-8.4, P5: `-vv` shows the libraries' debug events on stderr (plain text: stderr is not a
/// terminal), the output on stdout is unchanged, and neither stream holds the access token or
/// the signed client assertion that got it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_vv_shows_debug_events_and_no_token_or_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let (server, args) = server_and_args(dir.path()).await;

    let out = cli(with(&args, &["-vv"]), dir.path(), None).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let body: Value = serde_json::from_str(&stdout).expect("stdout is the resource alone");
    assert_eq!(body["id"], "1");

    let events: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" DEBUG ") && l.contains("smart_fhir"))
        .collect();
    assert!(!events.is_empty(), "debug events on stderr: {stderr}");
    let origin = server.url().trim_start_matches("http://");
    assert!(
        events.iter().any(|l| l.contains(origin)),
        "an event names the server's origin: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours into a pipe: {stderr}"
    );

    let token_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/token")
        .collect();
    assert_eq!(token_requests.len(), 1);
    let assertion = token_requests[0]
        .form_param("client_assertion")
        .expect("a client assertion was sent");
    let signature = assertion.rsplit('.').next().unwrap().to_owned();
    let fhir = server.requests_to("/fhir/Patient/1");
    let token = fhir[0]
        .bearer_token()
        .expect("the read carried a token")
        .to_owned();
    for secret in [token.as_str(), assertion.as_str(), signature.as_str()] {
        assert!(!stdout.contains(secret), "stdout leaks {secret}");
        assert!(!stderr.contains(secret), "stderr leaks {secret}");
    }
    server.shutdown().await;
}

/// Without `-v` or `RUST_LOG` nothing but the command's own output appears; `-v` shows no debug
/// event; `RUST_LOG` alone turns events on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appear_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (server, args) = server_and_args(dir.path()).await;

    let quiet = cli(args.clone(), dir.path(), None).await;
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert_eq!(text(&quiet.stderr), "", "no events without -v");

    let info = cli(with(&args, &["-v"]), dir.path(), None).await;
    assert!(info.status.success(), "{}", text(&info.stderr));
    assert!(
        !text(&info.stderr).contains(" DEBUG "),
        "{}",
        text(&info.stderr)
    );

    let env = cli(args.clone(), dir.path(), Some("smart_fhir=debug")).await;
    assert!(env.status.success(), "{}", text(&env.stderr));
    assert!(
        text(&env.stderr).contains(" DEBUG "),
        "{}",
        text(&env.stderr)
    );

    let bad = cli(args, dir.path(), Some("smart_fhir=loud")).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("invalid RUST_LOG"),
        "{}",
        text(&bad.stderr)
    );
    server.shutdown().await;
}
